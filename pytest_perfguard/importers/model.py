"""What importers produce, and the small parsing helpers they share."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..results import Measurement, RunInfo

NO_COMMIT = ("", "unversioned")
NO_BRANCH = ("", "(unknown)", "HEAD")


class ImportFormatError(ValueError):
    """A file that cannot be imported; the message is one line naming the file."""


@dataclass(frozen=True)
class ImportedRun:
    """One run read from a file, ready to store."""

    path: Path
    label: str  # the file, plus `[i]` for the i-th run of a seed file
    format: str
    source_key: str
    run: RunInfo
    measurements: list[Measurement]
    notes: list[str] = field(default_factory=list)  # what was left out, e.g. empty stats


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one run (or one file that held none): imported or skipped."""

    label: str
    format: str | None
    run_id: int | None = None
    n_results: int = 0
    platform: str | None = None
    skipped: str | None = None  # the reason, when skipped
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    outcomes: list[ImportOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def imported(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.skipped is None]

    @property
    def skipped(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.skipped is not None]


def mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text(value: Any, *, empty: tuple[str, ...]) -> str | None:
    if value is None or str(value).strip() in empty:
        return None
    return str(value).strip()


def timestamp(value: Any, *, naive_is_utc: bool, fallback: Path) -> datetime:
    """A stored time as an aware datetime; the file's modification time when there is none.

    pytest-benchmark writes UTC (naive before 4.0); the seed wrote `datetime.now()`, local.
    """
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ImportFormatError(f"{fallback}: {value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc) if naive_is_utc else parsed.astimezone()
        return parsed
    return datetime.fromtimestamp(os.stat(fallback).st_mtime, tz=timezone.utc)
