"""Whether this process runs under valgrind, and with which options and tool.

Apart from the instruction collector (`instructions`) because platform detection needs it
too (a run under callgrind is a platform of its own) and must not depend on the collector.
Stdlib only; nothing heavier than an environment lookup runs unless the process is under
valgrind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def valgrind_options(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """Valgrind's own options when this process runs under valgrind, else None.

    Valgrind shows its client the client's command line in ``/proc/self/cmdline``; the
    thread's entry under ``/proc/self/task`` still shows valgrind's own. The options from
    ``~/.valgrindrc``, ``$VALGRIND_OPTS`` and ``./.valgrindrc`` come first, as valgrind
    reads them, so the command line wins.
    """
    environ = os.environ if environ is None else environ
    # Valgrind preloads its core library into the client: an environment lookup tells a
    # process that is not under valgrind apart without touching /proc.
    if "vgpreload_core" not in environ.get("LD_PRELOAD", ""):
        return None
    try:
        raw = Path(f"/proc/self/task/{os.getpid()}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
    command_line: list[str] = []
    for arg in argv[1:]:
        if not arg.startswith("-"):
            break  # the client program: valgrind's options end here
        command_line.append(arg)
    home = environ.get("HOME")
    return [
        *(_rc_file_options(Path(home) / ".valgrindrc") if home else ()),
        *environ.get("VALGRIND_OPTS", "").split(),
        *_rc_file_options(Path(".valgrindrc")),
        *command_line,
    ]


def _rc_file_options(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return []


def option_value(options: Sequence[str], name: str, default: str) -> str:
    """The last value given to ``--name=value`` (valgrind takes the last one)."""
    prefix = f"--{name}="
    values = [option[len(prefix) :] for option in options if option.startswith(prefix)]
    return values[-1] if values else default


def valgrind_tool(environ: Mapping[str, str] | None = None) -> str | None:
    """The valgrind tool this process runs under (``callgrind``, ``memcheck``...), or None."""
    options = valgrind_options(environ)
    if options is None:
        return None
    return option_value(options, "tool", "memcheck")
