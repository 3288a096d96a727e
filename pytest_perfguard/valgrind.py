"""Whether this process runs under valgrind, with which options and tool; and counting
the instructions of a stretch of code under callgrind (`CallgrindCounter`).

How, with no compiled code in the package: a valgrind *client request* is a sequence of
machine instructions that does nothing on a real CPU and that valgrind's translator
recognises (valgrind.h). A function of a few instructions holding that sequence is written
into a page of its own, made executable, and called through ctypes.

Apart from the instruction collector (`instructions`) because platform detection needs it
too (a run under callgrind is a platform of its own) and must not depend on the collector.
Stdlib only and no import from this package: the A/B base worker, which runs in the base's
interpreter, loads this file by path to count the base's side. Nothing heavier than an
environment lookup runs unless the process is under valgrind.
"""

from __future__ import annotations

import gc
import os
import platform as std_platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_MACHINES = ("x86_64", "aarch64")


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


# size_t request(size_t *args, size_t default): valgrind.h's VALGRIND_DO_CLIENT_REQUEST_EXPR
# as a function. On a real CPU the four rotations add up to whole turns and the final
# register-to-itself instruction is a no-op, so it returns `default`; under valgrind the
# sequence is a request for `args` and its result replaces `default`.
_REQUEST_CODE = {
    "x86_64": b"".join(
        bytes.fromhex(instruction)
        for instruction in (
            "4889f8",  # mov rax, rdi: rax points at the request's six words
            "4889f2",  # mov rdx, rsi: rdx holds the default result
            "48c1c703",  # rol rdi, 3
            "48c1c70d",  # rol rdi, 13
            "48c1c73d",  # rol rdi, 61
            "48c1c733",  # rol rdi, 51
            "4887db",  # xchg rbx, rbx: the request; rdx = its result
            "4889d0",  # mov rax, rdx
            "c3",  # ret
        )
    ),
    "aarch64": b"".join(
        word.to_bytes(4, "little")
        for word in (
            0xAA0003E4,  # mov x4, x0: x4 points at the request's six words
            0xAA0103E3,  # mov x3, x1: x3 holds the default result
            0x93CC0D8C,  # ror x12, x12, #3
            0x93CC358C,  # ror x12, x12, #13
            0x93CCCD8C,  # ror x12, x12, #51
            0x93CCF58C,  # ror x12, x12, #61
            0xAA0A014A,  # orr x10, x10, x10: the request; x3 = its result
            0xAA0303E0,  # mov x0, x3
            0xD65F03C0,  # ret
        )
    ),
}

_RUNNING_ON_VALGRIND = 0x1001
# Callgrind's requests (callgrind.h), numbered from the tool's base 'C', 'T'.
_CALLGRIND_BASE = (ord("C") << 24) | (ord("T") << 16)
_ZERO_STATS = _CALLGRIND_BASE + 1
_TOGGLE_COLLECT = _CALLGRIND_BASE + 2
_DUMP_STATS_AT = _CALLGRIND_BASE + 3
_START_INSTRUMENTATION = _CALLGRIND_BASE + 4
_STOP_INSTRUMENTATION = _CALLGRIND_BASE + 5

# Options that change where or how callgrind writes its dumps, which this module reads back.
_UNSUPPORTED_OPTIONS = {
    "--combine-dumps=yes": "it appends every dump to one file",
    "--separate-threads=yes": "it writes one file per thread",
}
_TRIGGER = "desc: Trigger: Client Request: "
# Callgrind copies the trigger text into a fixed buffer; stay well inside it.
_MAX_LABEL = 200
# Where a dump's header is over and its cost lines begin.
_COST_LINES = ("ob=", "fl=", "fn=")


class CallgrindError(Exception):
    """Instructions cannot be counted here; the message is one line saying why and the fix."""


def unsupported_platform() -> str | None:
    """Why this machine cannot count instructions, or None when it can."""
    machine = std_platform.machine()
    if sys.platform != "linux" or machine not in SUPPORTED_MACHINES:
        return (
            f"instruction counts need Linux on {' or '.join(SUPPORTED_MACHINES)}, "
            f"not {sys.platform} on {machine or 'an unknown machine'}"
        )
    return None


def expand_out_file(template: str, *, pid: int, environ: Mapping[str, str], cwd: Path) -> Path:
    """Callgrind's output file name, expanded as valgrind does: ``%p`` is the process id,
    ``%q{VAR}`` an environment variable, ``%%`` a percent sign; relative to ``cwd``."""
    parts: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char != "%":
            parts.append(char)
            index += 1
            continue
        code = template[index + 1 : index + 2]
        if code == "%":
            parts.append("%")
            index += 2
        elif code == "p":
            parts.append(str(pid))
            index += 2
        elif code == "q" and template[index + 2 : index + 3] == "{":
            end = template.find("}", index + 3)
            if end < 0:
                raise CallgrindError(f"--callgrind-out-file={template}: %q{{ has no closing brace")
            parts.append(environ.get(template[index + 3 : end], ""))
            index = end + 1
        else:
            raise CallgrindError(
                f"--callgrind-out-file={template}: perfguard cannot predict %{code} in the "
                "file name; use %p or a fixed name"
            )
    return cwd / "".join(parts)


@dataclass(frozen=True, slots=True)
class CallgrindSetup:
    """What this process's callgrind was told that matters to reading counts back."""

    out_file: Path  # dump n goes to `<out_file>.<n>`
    collect_atstart: bool

    @classmethod
    def from_options(
        cls, options: Sequence[str], *, environ: Mapping[str, str], cwd: Path
    ) -> CallgrindSetup:
        for option, why in _UNSUPPORTED_OPTIONS.items():
            name, _, value = option.partition("=")
            if option_value(options, name[2:], "no") == value:
                raise CallgrindError(
                    f"valgrind option {option} is not supported by perfguard ({why}); drop it"
                )
        template = option_value(options, "callgrind-out-file", "callgrind.out.%p")
        return cls(
            out_file=expand_out_file(template, pid=os.getpid(), environ=environ, cwd=cwd),
            collect_atstart=option_value(options, "collect-atstart", "yes") != "no",
        )


class ClientRequests:
    """Valgrind client requests, issued through a machine-code stub called with ctypes."""

    def __init__(self, machine: str) -> None:
        import ctypes
        import mmap

        code = _REQUEST_CODE[machine]
        # Written while writable, then made executable and read-only: systems that refuse
        # pages both writable and executable accept this.
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        libc = ctypes.CDLL(None, use_errno=True)
        mprotect = libc.mprotect
        mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        mprotect.restype = ctypes.c_int
        if mprotect(address, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            raise CallgrindError(
                "cannot make a page executable for valgrind's client requests: "
                f"{os.strerror(ctypes.get_errno())}"
            )
        function_type = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
        self._function = function_type(address)
        self._args = (ctypes.c_size_t * 6)()
        self._args_address = ctypes.addressof(self._args)

    def request(self, code: int, arg: int = 0, default: int = 0) -> int:
        args = self._args
        args[0] = code
        args[1] = arg
        return int(self._function(self._args_address, default))

    def running_on_valgrind(self) -> int:
        """How many valgrinds deep this process runs: 0 on a real CPU."""
        return self.request(_RUNNING_ON_VALGRIND)


@dataclass(frozen=True, slots=True)
class DumpHeader:
    trigger: str
    instructions: int


def read_dump_header(path: Path) -> DumpHeader | None:
    """The trigger and instruction total (``summary:``, event ``Ir``) from a dump's header;
    None when the file does not exist."""
    trigger, events, summary = "", ["Ir"], None
    try:
        with open(path, encoding="utf-8", errors="replace") as dump:
            for line in dump:
                if line.startswith(_TRIGGER):
                    trigger = line[len(_TRIGGER) :].rstrip("\n")
                elif line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("summary:"):
                    summary = line.split()[1:]
                    break  # the header ends with the summary
                elif line.startswith(_COST_LINES):
                    break  # no summary in the header: not a dump of callgrind's format
    except FileNotFoundError:
        return None
    if summary is None or "Ir" not in events:
        raise CallgrindError(f"{path}: not a callgrind dump with an instruction count (Ir)")
    return DumpHeader(trigger, int(summary[events.index("Ir")]))


class CallgrindCounter:
    """Counts the instructions of stretches of code: `start(label)` switches callgrind's
    instrumentation on and zeroes its counters; `stop()` dumps (callgrind writes
    `<callgrind-out-file>.<n>`, whose header holds the stretch's total), switches it off
    again and reads the total back. Outside the stretches the code runs uninstrumented,
    several times faster with ``--instr-atstart=no``. The garbage collector is off inside
    a stretch: a collection falls in whichever stretch crosses its allocation threshold,
    which depends on what ran before, and a count must not."""

    def __init__(self, requests: ClientRequests, setup: CallgrindSetup) -> None:
        import ctypes

        self._ctypes = ctypes
        self._requests = requests
        self._setup = setup
        # Tells this process's dumps from other processes' files of the same name.
        self._token = os.urandom(4).hex()
        self._dumps = 0
        self._part = 0  # callgrind's number of the last dump found
        # The label of the next dump, ready to pass, and how it begins.
        self._label: Any = None
        self._prefix = ""
        self._counting = False
        self._gc_was_enabled = False

    @property
    def out_file(self) -> Path:
        return self._setup.out_file

    def set_label(self, text: str) -> None:
        """Name the next dump (callgrind writes it into the dump as its trigger)."""
        self._dumps += 1
        self._prefix = f"perfguard {self._token}:{self._dumps} "
        label = (self._prefix + text)[:_MAX_LABEL]
        self._label = self._ctypes.create_string_buffer(label.encode("utf-8", "replace"))

    def probe(self) -> None:
        """Dump once and read it back, so a file perfguard cannot find fails before any
        count is needed, not in the middle of a session. Raises CallgrindError."""
        self.set_label("perfguard session start")
        self._requests.request(_DUMP_STATS_AT, self._ctypes.addressof(self._label))
        self._read_back()

    def start(self, label: str | None = None) -> None:
        if label is not None:
            self.set_label(label)
        self._counting = True
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        requests = self._requests
        requests.request(_START_INSTRUMENTATION)
        if not self._setup.collect_atstart:
            # After switching instrumentation on: that resets collection to its start value.
            requests.request(_TOGGLE_COLLECT)
        requests.request(_ZERO_STATS)

    def stop(self) -> int:
        """The instructions since `start`. Raises CallgrindError when the dump is not found."""
        if not self._counting:
            raise CallgrindError("stop() without start()")
        self._counting = False
        requests = self._requests
        requests.request(_DUMP_STATS_AT, self._ctypes.addressof(self._label))
        if not self._setup.collect_atstart:
            requests.request(_TOGGLE_COLLECT)
        requests.request(_STOP_INSTRUMENTATION)
        if self._gc_was_enabled:
            gc.enable()
        return self._read_back()

    def _read_back(self) -> int:
        """The count of the dump just made: the first file after the last one found whose
        trigger is this dump's label (other code may dump too)."""
        part = self._part + 1
        while (header := read_dump_header(self._dump_path(part))) is not None:
            if header.trigger.startswith(self._prefix):
                self._part = part
                return header.instructions
            part += 1
        label = self._label.value.decode("utf-8", "replace")
        raise CallgrindError(
            f"callgrind's dump {label!r} is not in {self._dump_path(self._part + 1)} or after it; "
            "run pytest from the directory valgrind started in, or set "
            "--callgrind-out-file to an absolute path"
        )

    def _dump_path(self, part: int) -> Path:
        return self._setup.out_file.with_name(f"{self._setup.out_file.name}.{part}")


def open_callgrind_counter(environ: Mapping[str, str] | None = None) -> CallgrindCounter | None:
    """A counter when this process runs under callgrind, else None. Raises CallgrindError
    (one line) when it runs under callgrind but cannot count here."""
    environ = os.environ if environ is None else environ
    options = valgrind_options(environ)
    if options is None or option_value(options, "tool", "memcheck") != "callgrind":
        return None
    reason = unsupported_platform()
    if reason is not None:
        raise CallgrindError(reason)
    setup = CallgrindSetup.from_options(options, environ=environ, cwd=Path.cwd())
    requests = ClientRequests(std_platform.machine())
    if not requests.running_on_valgrind():
        return None  # valgrind's preload was inherited, but this process runs on the CPU
    counter = CallgrindCounter(requests, setup)
    counter.probe()
    return counter
