"""`perfguard`: the history and the baselines from a shell, without running tests.

A thin layer over `pytest_perfguard.api.History`, the baselines, report and importers
modules: each command (in `history_commands`, `write_commands` and `baseline_commands`) is
a small function of the parsed arguments; `parser` declares them, and `project` finds the
plugin's settings (rootdir, ini, environment) so both use the same database and files.
It never imports pytest or the plugin. Errors are one line on stderr,
`perfguard: error: ...`, with exit status 2; never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..history.urls import mask_secrets
from .console import CLIError, Console, OutputError
from .context import Context
from .parser import build_parser

__all__ = ["CLIError", "Console", "build_parser", "main"]

EXIT_USAGE = 2


def version_line() -> str:
    """`perfguard <version> (pytest-perfguard from <package dir>)`: tells this project from
    the unrelated 0.1.x package of the same name on PyPI."""
    from .._version import __version__

    package = Path(__file__).resolve().parent.parent
    return f"perfguard {__version__} (pytest-perfguard from {package})"


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 regressions found, 2 error)."""
    console = console or Console()
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        if args.version:
            console.out(version_line())
            return 0
        if args.func is None:
            console.out(args.group.format_help().rstrip())
            return 0
        status = int(args.func(args, Context(console)))
        console.flush()
        return status
    except KeyboardInterrupt:
        console.err("perfguard: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`perfguard export | head`): stop quietly. Python would
        # complain again when flushing stdout at exit, so point it at /dev/null.
        _silence_stdout()
        return 0
    except Exception as exc:  # every error a user can cause becomes one line
        console.err(f"perfguard: error: {_message(exc)}")
        if isinstance(exc, OutputError):
            # What is left in the buffer would fail again, with a traceback, at exit.
            _silence_stdout()
        return EXIT_USAGE


def _message(exc: Exception) -> str:
    from ..baselines import BaselinesError
    from ..history.errors import HistoryError
    from ..importers import ImportFormatError

    if isinstance(exc, (CLIError, HistoryError, BaselinesError, ImportFormatError)):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        # A bug, not a user error: still one line, with a way to see more.
        if os.environ.get("PERFGUARD_DEBUG"):
            raise exc
        text = (
            f"unexpected {type(exc).__name__}: {exc} (this is a bug in pytest-perfguard; "
            "PERFGUARD_DEBUG=1 shows the traceback)"
        )
    return mask_secrets(" ".join(text.split()))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
