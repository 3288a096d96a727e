"""The base side of an A/B session: a pytest process rooted in the base checkout that
collects the base's tests and then runs them on command, one round at a time.

This file imports only the standard library and pytest, because it runs in the *base's*
interpreter and import path: the head starts it as ``python -c <bootstrap> <this file>
<pytest args>`` with the base checkout as working directory, the bootstrap loading this
file by path under the name ``_perfguard_ab_worker``. So ``import pytest_perfguard`` inside
the base's tests finds the base's own copy (if it has one), never this one, and the head's
perfguard plugin is blocked there (``-p no:perfguard``): this module registers the `perf`
marker and a `perf` fixture of its own. The head imports this module too
(`pytest_perfguard.ab.worker`) for `run_round`, so both sides time a round with the same
code.

Protocol: one JSON object per line over two pipes whose descriptors arrive in
``PERFGUARD_AB_FDS`` ("read,write"); a duet's rounds start together through a `StartLine`
(shared memory, ``PERFGUARD_AB_START_LINE``). Lanes need several workers of one checkout:
then both variables hold one entry per worker, separated by ";", and after collection this
process forks a *copy* of itself for each entry after the first (`BaseWorker.take_slot`),
so the checkout's modules are imported and its tests collected once, not once per lane.
After collection each worker says ``hello`` on its own pipes (its process id, its tests,
collection errors, import problems); then it serves ``test`` commands: it runs pytest's own
test protocol for that item (fixtures set up once, torn down as the item named ``next``
needs; with ``keep``, as a lane sends it, every fixture above the test function stays until
the next ``test`` command says what that test needs), and inside the call phase answers
``round`` commands (optionally pinned to a CPU and started with the head's round) until
``end``. ``quit`` tears everything down, also from inside a call phase. When the head counts
instructions under callgrind, the worker runs under callgrind too and ``PERFGUARD_AB_COUNT``
names the head's ``valgrind.py`` (stdlib only), which it loads by path to count the rounds
the head asks it to count.
"""

from __future__ import annotations

import atexit
import json
import math
import mmap
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

FDS_ENV = "PERFGUARD_AB_FDS"
START_LINE_ENV = "PERFGUARD_AB_START_LINE"
COUNT_ENV = "PERFGUARD_AB_COUNT"
MODULE_NAME = "_perfguard_ab_worker"
# A head worker's argument (before its pytest arguments) with the options its reports are
# written with, as JSON: the head's --tb, --showlocals, --full-trace and verbosity. They
# are the terminal plugin's options, and a worker runs without it.
REPORTING_ARG = "--perfguard-ab-reporting="
# The answer to a `test` command for a test this worker did not collect.
NOT_COLLECTED = "not collected here"
# The line a worker writes to its log when a copy it forked exits: slot and exit status.
COPY_EXITED = "perfguard-ab: copy exited:"
VALGRIND_MODULE_NAME = "_perfguard_ab_valgrind"
BOOTSTRAP = (
    "import importlib.util, sys\n"
    f"spec = importlib.util.spec_from_file_location({MODULE_NAME!r}, sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module.exit_now(module.main(sys.argv[2:]))\n"
)
MARKER_LINE = (
    "perf(metric='duration', direction='lower', threshold=None, unit='s', rounds=1, "
    "warmup=0): a performance test, measured and gated by pytest-perfguard"
)


class Channel:
    """JSON lines over a pair of pipe ends."""

    def __init__(self, reader: IO[str], writer: IO[str]) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    def from_fds(cls, read_fd: int, write_fd: int) -> Channel:
        return cls(
            os.fdopen(read_fd, "r", encoding="utf-8"),
            os.fdopen(write_fd, "w", encoding="utf-8"),
        )

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message) + "\n")
        self.writer.flush()

    def recv(self) -> dict[str, Any]:
        line = self.reader.readline()
        if not line:
            raise EOFError("the other side closed the pipe")
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> None:
        for stream in (self.reader, self.writer):
            with suppress(OSError):
                stream.close()


_pinned: list[int | None] = [None]


def pin(cpu: int | None) -> None:
    """Run this process on `cpu` only (no-op for None or where the OS has no affinity)."""
    if cpu is None or _pinned[0] == cpu or not hasattr(os, "sched_setaffinity"):
        return
    os.sched_setaffinity(0, {cpu})
    _pinned[0] = cpu


def unpin(cpus: set[int] | None) -> None:
    if cpus is not None and hasattr(os, "sched_setaffinity") and _pinned[0] is not None:
        os.sched_setaffinity(0, cpus)
    _pinned[0] = None


def _records(recorder: Any) -> dict[str, Any]:
    """What `perf.record` collected this round: name -> [values, unit, direction, threshold]."""
    found = getattr(recorder, "records", None)
    if not found:
        return {}
    return {name: [list(r.values), r.unit, r.direction, r.threshold] for name, r in found.items()}


# About 0.1 ms of spinning; then the CPU is offered to others (a loaded machine would
# otherwise lose whole time slices to a side waiting for the other to be scheduled).
_SPINS_BEFORE_YIELD = 2_000
# A head worker gives up waiting for its base after this long and runs unsynchronised.
_MAX_START_WAIT = 60.0
_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: time.sleep(0))


class StartLine:
    """Two bytes of shared memory that start a duet's two rounds together: the base
    writes the pair's number into byte 0 when it is ready and spins until the head
    writes it into byte 1; the head spins until the base is ready, then writes. Both
    sides are running on their CPUs when the round starts, a few microseconds apart."""

    def __init__(self, path: str) -> None:
        with open(path, "r+b") as file:
            self.view = mmap.mmap(file.fileno(), 2)

    def base_wait(self, number: int) -> None:
        view = self.view
        view[0] = number
        spins = 0
        while view[1] != number:
            spins += 1
            if spins % _SPINS_BEFORE_YIELD == 0:
                _yield()

    def head_go(self, number: int, still_waiting: Callable[[], bool]) -> None:
        """Start when the base is ready; `still_waiting` is asked now and then and
        returning False gives up (the base failed or said something else)."""
        view = self.view
        spins = 0
        while view[0] != number:
            spins += 1
            if spins % _SPINS_BEFORE_YIELD == 0:
                if not still_waiting():
                    return
                _yield()
        view[1] = number

    def close(self) -> None:
        self.view.close()


def _voluntary_switches_of_thread() -> Callable[[], int] | None:
    """How many times this thread has blocked (slept, waited for I/O, a lock or the GIL),
    where the OS says (Linux: ``RUSAGE_THREAD``); None elsewhere."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    who = getattr(resource, "RUSAGE_THREAD", None)
    if who is None:
        return None
    getrusage = resource.getrusage
    return lambda: getrusage(who).ru_nvcsw


_blocked_count = _voluntary_switches_of_thread()


def _before(seconds: float) -> Callable[[], bool]:
    """True until `seconds` from now."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


def run_round(
    call: Callable[[], object],
    recorder: Any,
    *,
    cpu: int | None = None,
    start: Callable[[], None] | None = None,
    warm: int = 0,
    repeat: int = 1,
    counter: Any = None,
) -> dict[str, Any]:
    """`warm` unmeasured calls, then `repeat` measured calls back to back, started when
    `start` returns (a duet's `StartLine`). With a `counter` (a `valgrind.CallgrindCounter`)
    one call is made and its instructions counted. The round's values are the best
    (smallest) of its calls: a call that was descheduled, or that started with a cache the
    other side had filled, only ever takes longer.

    Three times per call: wall, process CPU, and *busy*: the thread's own CPU time when the
    call never blocked (no voluntary context switch: it was runnable throughout, so its
    wall time on a CPU of its own would have been its CPU time; what other processes were
    given meanwhile is the machine's, not the code's), else its wall time (a call that
    sleeps or waits is measured as it is)."""
    pin(cpu)
    for _ in range(warm):
        call()
    if recorder is not None and getattr(recorder, "records", None) is not None:
        recorder.records.clear()
    blocked_count = _blocked_count
    if start is not None:
        start()
    started = time.monotonic_ns()
    walls, cpus, busies = [], [], []
    if counter is not None:
        repeat = 1
        counter.start("perfguard A/B round")
    for _ in range(max(1, repeat)):
        switches = blocked_count() if blocked_count is not None else -1
        thread0 = time.thread_time()
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        call()
        wall = time.perf_counter() - wall0
        cpus.append(time.process_time() - cpu0)
        thread = time.thread_time() - thread0
        walls.append(wall)
        never_blocked = blocked_count is not None and blocked_count() == switches
        busies.append(min(thread, wall) if never_blocked else wall)
    return {
        "instructions": None if counter is None else counter.stop(),
        "wall": min(walls),
        "cpu": min(cpus),
        "busy": min(busies),
        "start": started,
        "records": _records(recorder),
    }


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Record:
    __slots__ = ("direction", "threshold", "unit", "values")

    def __init__(self, unit: str, direction: str, threshold: float | None) -> None:
        self.values: list[float] = []
        self.unit = unit
        self.direction = direction
        self.threshold = threshold


class WorkerUsageError(ValueError):
    """A test used the `perf` fixture wrongly: the head's `PerfUsageError`, in words the
    head's fixture uses (this file cannot import perfguard)."""


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class WorkerStep:
    """What `perf.measure` yields in a worker: a step's name, data and times, as the
    head's `StepRecord` (a test may write to `step.data`)."""

    __slots__ = ("data", "end", "error", "name", "start", "success")

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.data = data
        self.start = time.perf_counter()
        self.end: float | None = None
        self.success = True
        self.error: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class BaseRecorder:
    """The `perf` fixture in a worker: keeps `perf.record` values per round, checking
    their arguments as the head's fixture does (a head worker runs the head's tests);
    steps and `perf.benchmark` just run their code (as the head's inactive fixture does)."""

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}

    def record(
        self,
        name: str,
        value: float,
        unit: str = "",
        direction: str = "lower",
        threshold: float | None = None,
    ) -> None:
        where = f"perf.record({name!r})"
        if not isinstance(name, str) or not name.strip():
            raise WorkerUsageError(f"perf.record: name={name!r} must be a non-empty string")
        if name.startswith("step:"):
            raise WorkerUsageError(f"{where}: names starting with 'step:' are reserved")
        if not _finite(value):
            raise WorkerUsageError(f"{where}: value={value!r} must be a finite number")
        if direction not in ("lower", "higher"):
            raise WorkerUsageError(
                f"{where}: direction={direction!r} is invalid; use 'lower' or 'higher'"
            )
        if threshold is not None and (not _finite(threshold) or float(threshold) < 0):
            raise WorkerUsageError(
                f"{where}: threshold={threshold!r} is invalid; use a number >= 0 such as 0.1 "
                "for 10 %"
            )
        entry = self.records.get(name)
        if entry is None:
            checked = None if threshold is None else float(threshold)
            entry = self.records[name] = _Record(unit, direction, checked)
        entry.values.append(float(value))

    @contextmanager
    def measure(self, name: str, **data: Any) -> Iterator[WorkerStep]:
        if not isinstance(name, str) or not name.strip():
            raise WorkerUsageError(f"perf.measure: name={name!r} must be a non-empty string")
        step = WorkerStep(name, data)
        try:
            yield step
        except BaseException as exc:
            step.success = False
            step.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise
        finally:
            step.end = time.perf_counter()

    def benchmark(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not callable(fn):
            raise WorkerUsageError(f"perf.benchmark: {fn!r} is not callable")
        return fn(*args, **kwargs)


@pytest.fixture
def perf() -> BaseRecorder:
    """The base side's `perf` fixture (see `BaseRecorder`)."""
    return BaseRecorder()


def _short(longrepr: object) -> str:
    text = str(longrepr).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[0][2:].strip() if errors else lines[-1] if lines else "error")[:300]


def _described(item: pytest.Item) -> dict[str, Any]:
    """A collected test for the hello: its node id and location, and its `perf` marker's
    arguments (for a head that does not collect, as JSON; `marker_error` when they are not
    JSON values)."""
    marker = item.get_closest_marker("perf")
    described: dict[str, Any] = {
        "id": item.nodeid,
        "marked": marker is not None,
        "location": list(item.location),
    }
    if marker is not None:
        try:
            json.dumps([marker.args, marker.kwargs])
        except (TypeError, ValueError):
            described["marker_error"] = f"arguments {marker.args!r} {marker.kwargs!r}"
        else:
            described["marker"] = {"args": list(marker.args), "kwargs": dict(marker.kwargs)}
    return described


def _import_problems(root: Path) -> list[str]:
    """The base's own top-level packages that got imported from somewhere else (an
    installed copy of the head, say): measuring those would compare the head with itself."""
    problems = []
    for folder in (root, root / "src"):
        if not folder.is_dir():
            continue
        for package in folder.iterdir():
            module = sys.modules.get(package.name)
            if module is None or not (package / "__init__.py").is_file():
                continue
            where = getattr(module, "__file__", None)
            if where and not Path(where).resolve().is_relative_to(root.resolve()):
                problems.append(f"{package.name} was imported from {where}, not from {root}")
    return problems


class BaseWorker:
    """The plugin object of the base process (see the module docstring)."""

    def __init__(
        self,
        slots: list[tuple[int, int, str]],
        counter: Any = None,
        counter_error: str | None = None,
    ) -> None:
        # One (read fd, write fd, start line path) per worker this process becomes.
        self.slots = slots
        self.reapers: list[threading.Thread] = []  # each waits for a copy forked here
        self.channel: Channel | None = None
        self.start_line: StartLine | None = None
        self.counter = counter  # counts the base's rounds when both sides run under callgrind
        self.counter_error = counter_error
        self.errors: list[str] = []
        self.current: pytest.Item | None = None
        self.current_session: pytest.Session | None = None
        self.serving = False
        self.ready = False
        self.failure: str | None = None
        self.quitting = False
        # Reports for the head (`report` in a `test` command: the head process does not
        # collect, and a head worker's reports stand for its tests, as xdist's workers'
        # do): serialized, with the warnings recorded meanwhile.
        self.config: pytest.Config | None = None
        self.collect_reports: list[dict[str, Any]] = []
        self.deselected: list[str] = []
        self.reporting = False  # the last `test` command asked for reports
        self.report_options: dict[str, Any] = {}  # `REPORTING_ARG`
        self.reports: list[pytest.TestReport] = []  # of the test running, when reporting
        self.previous: pytest.Item | None = None  # the last test run, whose fixtures may stay
        self.late: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.first_call: float | None = None  # the served test's first measured call

    def _serialize(self, report: pytest.CollectReport | pytest.TestReport) -> dict[str, Any]:
        assert self.config is not None
        data: dict[str, Any] = self.config.hook.pytest_report_to_serializable(
            config=self.config, report=report
        )
        return data

    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str
    ) -> None:
        category = warning_message.category
        self.warnings.append(
            {
                "message": str(warning_message.message),
                "module": category.__module__,
                "category": category.__qualname__,
                "filename": str(warning_message.filename),
                "lineno": warning_message.lineno,
                "when": when,
                "nodeid": nodeid,
            }
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.reporting:
            self.reports.append(report)

    def _take_warnings(self) -> list[dict[str, Any]]:
        found, self.warnings = self.warnings, []
        return found

    def _tear_down_kept(self, nextitem: pytest.Item | None) -> None:
        """Tear down the fixtures the previous test kept that `nextitem` does not need
        (all of them for None). pytest reports their errors in the teardown of the test
        before; so does a reporting worker (`late`), where another does not report."""
        assert self.current_session is not None
        setup_state = self.current_session._setupstate
        previous, self.previous = self.previous, None
        if previous is None or not self.reporting:
            with suppress(Exception):
                setup_state.teardown_exact(nextitem)
            return
        from _pytest.runner import CallInfo

        info = CallInfo.from_call(lambda: setup_state.teardown_exact(nextitem), "teardown")
        if info.excinfo is not None:
            # Not through pytest_runtest_makereport: the test's protocol is over and
            # plugins' hooks there expect its fixtures still to be held.
            report = pytest.TestReport.from_item_and_call(previous, info)
            self.late.append(self._serialize(report))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, None]:
        outcome: Any = yield
        if call.when == "call" and item is self.current and self.first_call is not None:
            # Its call phase lasted all the pairs; --durations and junitxml get one call.
            outcome.get_result().duration = self.first_call

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config
        config.addinivalue_line("markers", MARKER_LINE)
        for name, value in self.report_options.items():
            setattr(config.option, name, value)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid or 'collection'}: {_short(report.longrepr)}")
            self.collect_reports.append(self._serialize(report))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += [item.nodeid for item in items]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        from _pytest.runner import runtestprotocol

        self.config = session.config
        self.current_session = session
        channel = self.take_slot(session.config)
        items = {item.nodeid: item for item in session.items}
        channel.send(
            {
                "op": "hello",
                "pid": os.getpid(),
                "tests": [_described(item) for item in session.items],
                "errors": self.errors,
                "collect_reports": self.collect_reports,
                "deselected": self.deselected,
                "warnings": self._take_warnings(),
                "imports": _import_problems(Path(session.config.rootpath)),
                "count_error": self.counter_error,
                "python": sys.version.split()[0],
                "pytest": pytest.__version__,
            }
        )
        while True:
            try:
                command = channel.recv()
            except EOFError:
                break
            if command["op"] == "quit":
                break
            if command["op"] == "finish":
                # The head has no more tests for this worker: the last one's kept fixtures
                # go now, their errors reported as pytest would (`late`).
                self._tear_down_kept(None)
                channel.send({"op": "finished", **self._reported()})
                continue
            if command["op"] != "test":
                continue  # an `end` for a call phase that a failed round already left
            item = items.get(command["id"])
            if item is None:
                channel.send({"op": "unavailable", "error": NOT_COLLECTED})
                channel.send({"op": "done"})
                continue
            # Fixtures the previous test kept (`keep`, or a `next` other than this one) and
            # this one does not need are torn down first, as pytest would have done after
            # the previous test; their errors are reported only to a head that asks.
            self._tear_down_kept(item)
            reporting = self.reporting = bool(command.get("report"))
            run_only = bool(command.get("run"))  # a test not paired: run once, as pytest does
            self.current = None if run_only else item
            self.ready, self.failure, self.first_call = False, None, None
            if command.get("keep"):
                # A lane does not know its next test yet: keep everything above this
                # function (session, package, module, class fixtures) for it; the line
                # above tears down what the next one does not share.
                nextitem: Any = item.parent
            else:
                nextitem = items.get(command.get("next") or "")
            if reporting:
                # The whole protocol, as pytest runs it: other plugins' wrappers of it
                # (the warnings plugin's capture) apply; its reports arrive in
                # `pytest_runtest_logreport`.
                self.reports = []
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                reports = self.reports
            else:
                reports = runtestprotocol(item, log=False, nextitem=nextitem)
            self.previous = item if nextitem is not None else None
            if not self.ready and not run_only:
                reason = self.failure or next(
                    (f"{r.when}: {_short(r.longrepr)}" for r in reports if not r.passed),
                    "the test did not run",
                )
                channel.send({"op": "unavailable", "error": reason})
            done: dict[str, Any] = {"op": "done"}
            if reporting:
                done["reports"] = [self._serialize(report) for report in reports]
                done.update(self._reported())
            channel.send(done)
            self.current = None
            if self.quitting:
                break
        if self.previous is not None:
            self.previous = None
            session._setupstate.teardown_exact(None)
        return True

    def _reported(self) -> dict[str, Any]:
        """The late teardown reports and warnings since the last message that had them."""
        late, self.late = self.late, []
        return {"late": late, "warnings": self._take_warnings()}

    def take_slot(self, config: pytest.Config) -> Channel:
        """This process's pipes and start line; with more than one slot, first a copy of
        this process is forked for each slot after the first. A copy has everything
        collection made (modules imported, tests collected, nothing set up yet), so a
        lane's worker costs a fork instead of a second import and collection.

        pytest's capture is stopped around the fork and started again on each side, so
        that each process captures into files of its own."""
        slot = 0
        factory = getattr(config, "_tmp_path_factory", None)
        if self.report_options and factory is not None and config.option.basetemp:
            # A given basetemp is emptied where it is first used: once, before the copies
            # share it, not in each copy.
            factory.getbasetemp()
        if len(self.slots) > 1:
            capture = config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                capture.stop_global_capturing()
            sys.stdout.flush()
            sys.stderr.flush()
            copies: list[tuple[int, int]] = []  # (slot, process id)
            for index in range(1, len(self.slots)):
                # Python 3.12 warns about forking a process with threads; any here are the
                # tests' own (a plugin's), and the copy runs what this process would.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    child = os.fork()
                if child == 0:
                    slot, copies = index, []
                    break
                copies.append((index, child))
            for copy in copies:
                # The log is this process's stdout before capture takes it again.
                reaper = threading.Thread(target=_report_exit, args=(*copy, os.dup(1)))
                reaper.daemon = True
                reaper.start()
                self.reapers.append(reaper)
            _own_every_page()
            if capture is not None:
                capture.start_global_capturing()
                capture.suspend_global_capture()
        for index, (read_fd, write_fd, _) in enumerate(self.slots):
            if index != slot:
                os.close(read_fd)
                os.close(write_fd)
        read_fd, write_fd, line_path = self.slots[slot]
        self.slots = []
        self.channel = Channel.from_fds(read_fd, write_fd)
        self.start_line = StartLine(line_path) if line_path else None
        return self.channel

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        if self.serving or pyfuncitem is not self.current:
            return None
        self.serving = True
        try:
            self._serve(pyfuncitem)
        finally:
            self.serving = False
        return True

    def _serve(self, item: pytest.Function) -> None:
        recorder = item.funcargs.get("perf")
        channel = self.channel
        assert channel is not None
        self.ready = True
        channel.send({"op": "ready"})
        calls = 0  # of the test function, with these fixtures
        while True:
            command = channel.recv()
            received = time.monotonic_ns()
            if command["op"] in ("end", "quit"):
                # `quit` here: the head is closing while this test is in its call phase
                # (an interrupt, or the lane's other worker died).
                self.quitting = command["op"] == "quit"
                return
            number, line = command.get("sync"), self.start_line
            start: Callable[[], None] | None = None
            if number is not None and line is not None:
                if command.get("role") == "head":  # a confirmation's head worker
                    start = partial(line.head_go, number, _before(_MAX_START_WAIT))
                else:
                    start = partial(line.base_wait, number)
            try:
                result = run_round(
                    item.runtest,
                    recorder,
                    cpu=command.get("cpu"),
                    start=start,
                    warm=command.get("warm", 0),
                    repeat=command.get("repeat", 1),
                    counter=self.counter if command.get("count") else None,
                )
            except BaseException as exc:
                error = repeated_call_error(calls, exc) if calls else describe_error(exc)
                channel.send({"op": "failed", "error": error, "repeated": calls > 0})
                if calls and self.reporting and isinstance(exc, Exception):
                    # As in the head process: the test's outcome is its first call's; the
                    # head names this failure in its summary.
                    return
                raise
            if self.first_call is None and not command.get("warm"):
                self.first_call = result["wall"]
            calls += command.get("warm", 0) + command.get("repeat", 1)
            result["op"] = "round"
            result["received"] = received
            channel.send(result)


def repeated_call_error(calls: int, exc: BaseException) -> str:
    """Why a test that passed `calls` calls failed the next, with the same fixtures. Pairs
    call a test many times with one setup of its fixtures; one that passes once and not
    again (it asserts on what it captured, or on a file it made) cannot be paired, and
    neither side's code is at fault."""
    done = f"{calls} call" if calls == 1 else f"{calls} calls"
    return f"called again with the same fixtures, after {done}: {describe_error(exc)}"


def _own_every_page() -> None:
    """Give this process its own copy of every page it shares with the processes it was
    forked from or forked (Linux's MADV_POPULATE_WRITE on each private writable mapping),
    now rather than at each page's first write. Otherwise the first rounds of a
    memory-bound test would pay copy-on-write faults (even a read of a Python object writes
    its reference count), and more of them on the side that touches more memory: a +25 %
    slowdown of a 0.3 ms pointer chase through 20 MB read as unchanged (docs/ab.md).
    Where the kernel lacks it (before 5.14) the faults come as they come."""
    try:
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
        with open("/proc/self/maps") as maps:
            regions = [line.split()[:2] for line in maps]
    except (ImportError, OSError, AttributeError):  # no ctypes, no /proc, no madvise
        return
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advice = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # the constant since Python 3.13
    for addresses, permissions in regions:
        if permissions[1] == "w" and permissions[3] == "p":
            start, end = (int(address, 16) for address in addresses.split("-"))
            madvise(start, end - start, advice)  # fails harmlessly where it cannot


def _report_exit(slot: int, pid: int, log_fd: int) -> None:
    """Wait for a copy this process forked and write its exit status to the log, where
    the head reads it (`COPY_EXITED`): the head did not start the copy, so it cannot wait
    for it itself. Reaped, the copy leaves no zombie behind."""
    try:
        _, status = os.waitpid(pid, 0)
        with suppress(OSError):
            os.write(log_fd, f"{COPY_EXITED} {slot} {os.waitstatus_to_exitcode(status)}\n".encode())
    except ChildProcessError:
        pass
    finally:
        os.close(log_fd)


def exit_now(code: int) -> NoReturn:
    """Exit as the interpreter would, less the freeing of every object it still holds:
    the session is over (pytest tore its fixtures down), the threads are joined and the
    atexit functions run (`weakref.finalize`, temporary directories, coverage), and the
    streams are flushed. Freeing the suite's data object by object took 65-85 ms of CPU
    per worker here (a 512 k-element list), and a session with lanes and confirmations
    ends eight workers on the CPUs the head's own loop and report need; the kernel frees
    the pages at once."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)


def _open_counter(valgrind_module: str) -> tuple[Any, str | None]:
    """The base's instruction counter when the head asks for one (`COUNT_ENV` names the
    head's ``valgrind.py``, loaded by path: stdlib only, like this file), and why there is
    none when it cannot be had."""
    if not valgrind_module:
        return None, None
    import importlib.util

    spec = importlib.util.spec_from_file_location(VALGRIND_MODULE_NAME, valgrind_module)
    if spec is None or spec.loader is None:
        return None, f"cannot load {valgrind_module}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        counter = module.open_callgrind_counter()
    except Exception as exc:  # CallgrindError, or a broken load: said in one line
        return None, describe_error(exc)
    if counter is None:
        return None, "the base worker does not run under valgrind's callgrind"
    return counter, None


def main(args: list[str]) -> int:
    pipes = os.environ.pop(FDS_ENV).split(";")
    lines = os.environ.pop(START_LINE_ENV, "").split(";")
    slots = []
    for index, pipe in enumerate(pipes):
        read_fd, write_fd = (int(fd) for fd in pipe.split(","))
        slots.append((read_fd, write_fd, lines[index] if index < len(lines) else ""))
    # `python -m pytest` from the base checkout: the checkout first on the path (the
    # bootstrap's `-c` put "" there); a src layout's packages right after it.
    src = Path.cwd() / "src"
    if src.is_dir():
        sys.path.insert(1, str(src))
    counter, counter_error = _open_counter(os.environ.pop(COUNT_ENV, ""))
    worker = BaseWorker(slots, counter, counter_error)
    if args and args[0].startswith(REPORTING_ARG):
        worker.report_options = json.loads(args.pop(0)[len(REPORTING_ARG) :])
    try:
        code = pytest.main(
            # No terminal: nobody reads the worker's summary, and plugins' summary hooks
            # (hypothesis imports itself there) would only delay its exit.
            [*args, "-p", "no:perfguard", "-p", "no:cacheprovider", "-p", "no:terminal"],
            plugins=[worker, sys.modules[__name__]],
        )
    finally:
        if worker.channel is not None:
            worker.channel.close()
        for reaper in worker.reapers:
            # The copies were asked to quit with this process: it exits after them, so
            # none is left to the system to reap.
            reaper.join(timeout=60)
    return int(code)
