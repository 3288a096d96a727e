"""Where the CLI's output goes, and how it looks: aligned tables, JSON, one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..formatting import NONE, text_table


class CLIError(Exception):
    """A problem the user can fix: printed as `perfguard: error: <message>`, exit 2."""


class OutputError(CLIError):
    """Standard output could not be written (a full disk, a closed terminal)."""


@dataclass
class Console:
    """The streams a command reads and writes; tests pass their own.

    `interactive` decides whether a command may ask a question (`baselines update`); by
    default it asks only when stdin is a terminal.
    """

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    interactive: Callable[[], bool] | None = None

    def is_interactive(self) -> bool:
        if self.interactive is not None:
            return self.interactive()
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):  # closed or replaced stdin
            return False

    def out(self, text: str = "") -> None:
        try:
            self.stdout.write(text + "\n")
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"standard output: {exc.strerror or exc}") from None

    def flush(self) -> None:
        """Push buffered output now, so a failure to write it is reported as one line."""
        try:
            self.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"standard output: {exc.strerror or exc}") from None

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
        """An aligned table, or the `empty` line when there are no rows."""
        if not rows:
            self.out(empty)
            return
        for line in text_table(headers, rows):
            self.out(line)

    def json(self, data: Any) -> None:
        self.out(json.dumps(data, indent=2, default=json_default, ensure_ascii=False))

    def ask(self, question: str) -> str:
        """Ask on stdout, read one line from stdin ('' at end of input)."""
        self.stdout.write(question)
        self.stdout.flush()
        return self.stdin.readline().strip()


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def when(moment: datetime | None) -> str:
    """A stored time in UTC, to the second: `2026-01-07 10:00:00`."""
    if moment is None:
        return NONE
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def short_commit(commit: str | None) -> str:
    return commit[:10] if commit else NONE


def clip(text: str | None, width: int = 40) -> str:
    """One line of at most `width` characters (tables stay aligned and readable)."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def signed_change(change: float | None, worse: float | None) -> str:
    """`+12.3% worse`, `-4.0% better`, `+0.0%`; `—` when there is no change to show."""
    if change is None:
        return NONE
    if abs(change) < 0.0005:  # shows as 0.0%: neither worse nor better
        return "0.0%"
    text = f"{change:+.1%}"
    if worse is not None and worse > 0:
        return text + " worse"
    if worse is not None and worse < 0:
        return text + " better"
    return text


@contextlib.contextmanager
def output(path: str | None, cwd: Path, console: Console) -> Iterator[TextIO]:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path in (None, "-"):
        with _naming_failures("standard output"):
            yield console.stdout
        console.flush()
        return
    target = cwd / Path(path).expanduser()
    if target.exists() and not target.is_file():
        # A device or a pipe (/dev/stdout): written in place; renaming a file over it
        # would replace it.
        with _naming_failures(str(target)), open(target, "w", encoding="utf-8") as out:
            yield out
        return
    tmp = target.with_name(f".{target.name}.partial")
    try:
        with _naming_failures(str(target)), open(tmp, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):  # never made (its directory may not exist)
            tmp.unlink()


@contextlib.contextmanager
def _naming_failures(what: str) -> Iterator[None]:
    """A failed open or write says which output it was for (a write error carries no
    file name at all)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        # Named by the file the user gave, not our temporary `.name.partial` beside it.
        raise OutputError(f"{what}: {exc.strerror or exc}") from None
