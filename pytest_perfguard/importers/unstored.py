"""Runs a session could not store, read back from their fallback file.

When the history is unreachable at session end, `session.py` writes the run and its
measurements to `.perfguard/unstored/run-<time>-<pid>.json` (docs/reliability.md);
`perfguard import <file>` stores them once the database is back, exactly as the session
would have.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..results import Measurement, PlatformInfo, RunInfo
from .model import ImportedRun, ImportFormatError, finite

UNSTORED = "perfguard unstored run"
# The field that marks the file, and its format version.
MARKER = "perfguard_unstored_run"


def unstored_payload(run: RunInfo, measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """The fallback file's content: the run as stored, and its measurements' dicts."""
    return {
        MARKER: 1,
        "run": {
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "platform": run.platform.key,
            "fingerprint": run.platform.fingerprint,
            "git_commit": run.git_commit,
            "git_branch": run.git_branch,
            "git_dirty": run.git_dirty,
            "python_version": run.python_version,
            "run_type": run.run_type,
            "triggered_by": run.triggered_by,
            "host": run.host,
            "args": run.args,
            "outcome": run.outcome,
            "notes": run.notes,
            "system_info": run.system_info,
            "test_type": run.test_type,
        },
        "results": measurements,
    }


def is_unstored_run(data: Any) -> bool:
    return isinstance(data, dict) and MARKER in data


def unstored_run(path: Path, data: dict[str, Any], key: str, platform: str | None) -> ImportedRun:
    if data[MARKER] != 1:
        raise ImportFormatError(
            f"{path}: unstored run format {data[MARKER]!r} is newer than this pytest-perfguard "
            "reads (1): upgrade pytest-perfguard"
        )
    try:
        fields = dict(data["run"])
        fingerprint = fields.pop("fingerprint", None) or {}
        stored_platform = fields.pop("platform")
        started, finished = fields.pop("started_at"), fields.pop("finished_at", None)
        run = RunInfo(
            platform=PlatformInfo(platform or str(stored_platform), dict(fingerprint)),
            started_at=datetime.fromisoformat(started),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            **fields,
        )
        measurements = [_measurement(row) for row in data["results"]]
    except ImportFormatError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ImportFormatError(f"{path}: not a valid unstored run ({exc!r})") from None
    return ImportedRun(path, str(path), UNSTORED, key, run, measurements)


def _measurement(row: dict[str, Any]) -> Measurement:
    if not finite(row["value"]):
        raise ImportFormatError(f"{row['test']} {row['metric']}: value {row['value']!r}")
    return Measurement(
        test=str(row["test"]),
        metric=str(row["metric"]),
        value=float(row["value"]),
        unit=str(row.get("unit", "")),
        direction=row.get("direction", "lower"),
        kind=row.get("kind", "primary"),
        marked=bool(row.get("marked", False)),
        outcome=row.get("outcome", "passed"),
        threshold=row.get("threshold"),
        samples=tuple(float(v) for v in row.get("samples", ())),
        error=row.get("error"),
    )
