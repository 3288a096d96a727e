"""Where `--perf-record`'s instructions per plain test go: each part counted on its own.

`bench_overhead.py` counts whole pytest sessions; their slopes move by several thousand
instructions a test from one suite size or mode to another (where a full garbage
collection falls, dict layouts), which is as large as the parts looked at here. So each
part of the per-test path runs here by itself, `N` times in a loop, under
``valgrind --tool=callgrind``; a run with no iterations is subtracted and the rest divided
by `N`. A count does not move with the machine's load; from one run to the next (another
working directory, the package installed or on the path) a part moved by up to 0.25 k.

Parts (docs/architecture.md, "The per-test path, part by part", explains which ones no
design avoids):

- ``dispatch``: what the previous design paid (before ``RunLog.wrap_calls``): pluggy's
  dispatch to two more implementations of a hook that already has pytest's own
  (`pytest_runtest_call` in a real session has 9; ours were a ``tryfirst`` one and a
  ``trylast`` one), with bodies that return at once; kept for the comparison;
- ``runtest_wrapper``: what the replaced ``runtest`` (`RunLog._measure_class`: the
  item's class's ``runtest`` replaced by a function, `RunLog.plain_runtest`, that checks
  the item's session and calls the original) costs over calling ``runtest`` directly,
  with nothing measured; the shape that replaced ``dispatch`` (a method set on each item
  until 2026-12-01);
- ``measure``: the built-in collector's work as a plain test does it (inline in
  `RunLog.plain_runtest`: the reset, a ``getrusage`` at each end, the two readings
  appended) and both clock reads: writing ``/proc/self/clear_refs``, two ``getrusage``,
  two ``perf_counter``;
- ``call``: a plain test's measured call as it runs, its class's ``runtest`` replaced by
  `RunLog.wrap_calls` with a real `RunLog` of a ``--perf-record`` session (the replacement
  is `RunLog.plain_runtest`'s, the measuring included);
- ``call_added``: ``call`` less the same loop over the same items with their
  ``runtest`` not wrapped (what a bare session pays for calling them): what measuring adds
  to a plain test's call;
- ``nodeid``: pytest building a test's id string, which nothing else asks for in a quiet
  run, and which a stored result needs;
- ``markers``: reading a collected item's `perf` markers (`RunLog.read_markers`), once
  per item in every process that collects;
- ``wrap``: `RunLog.wrap_calls` over collected plain items (the check for a ``runtest``
  of the item's own, and its class noted), once per item in every process that collects;
- ``session_end``: the run log turned into columns (`RunLog.session_results`), per test;
  storing the columns is `bench_plain_storage.py`'s (about 2.8 k a test into a history
  that knows the suite, 8.4 k in another order, as xdist's workers return them);
- ``xdist_worker``: an xdist worker's columns put on the wire (`RunLog.worker_output`);
- ``xdist_controller``: the controller reading two workers' outputs back and joining them
  into the columns it stores (execnet's own transfer of the bytes is not counted).

    python benchmarks/bench_per_test_floor.py            # all parts, N = 20 000
    python benchmarks/bench_per_test_floor.py --part call --n 5000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

PARTS = (
    "dispatch",
    "runtest_wrapper",
    "measure",
    "call",
    "call_added",
    "nodeid",
    "markers",
    "wrap",
    "session_end",
    "xdist_worker",
    "xdist_controller",
)
# pytest_runtest_call's implementations in a bare pytest 8/9 session (runner, logging,
# capture, skipping, unraisable/threadexception, faulthandler, ...), all cheap here.
PYTEST_IMPLS = 9


def _dispatch_caller(ours: bool) -> Any:
    """A hook with pytest's implementations of `pytest_runtest_call`, and ours if asked."""
    import pluggy

    hookspec = pluggy.HookspecMarker("bench")
    hookimpl = pluggy.HookimplMarker("bench")

    class Spec:
        @hookspec
        def pytest_runtest_call(self, item: Any) -> None: ...

    manager = pluggy.PluginManager("bench")
    manager.add_hookspecs(Spec)
    for index in range(PYTEST_IMPLS):
        plugin = type(
            f"Pytest{index}", (), {"pytest_runtest_call": hookimpl(lambda self, item: None)}
        )
        manager.register(plugin())
    if ours:

        class First:
            @hookimpl(tryfirst=True)
            def pytest_runtest_call(self, item: Any) -> None:
                return None

        class Last:
            @hookimpl(trylast=True)
            def pytest_runtest_call(self, item: Any) -> None:
                return None

        manager.register(First())
        manager.register(Last())
    return manager.hook.pytest_runtest_call


def _prepared_dispatch(ours: bool) -> Any:
    def prepare(n: int) -> tuple[object, Any]:
        call, item = _dispatch_caller(ours), object()

        def work() -> None:
            for _ in range(n):
                call(item=item)

        return call, work

    return prepare


_SESSION = object()  # what a measured call checks an item's `session` against


def _prepared_wrapper(wrapped: bool) -> Any:
    def prepare(n: int) -> tuple[object, Any]:
        class RuntestItem:
            def __init__(self) -> None:
                self.session = _SESSION

            def runtest(self) -> None:
                pass

        items = [RuntestItem() for _ in range(n)]
        if wrapped:  # the shape of `RunLog.plain_runtest`, measuring nothing
            original = RuntestItem.runtest

            def runtest(item: Any) -> None:
                if item.session is not _SESSION:
                    original(item)
                    return
                original(item)

            RuntestItem.runtest = runtest  # type: ignore[method-assign]

        def work() -> None:
            for item in items:
                item.runtest()

        return items, work

    return prepare


def _measure(n: int) -> None:
    """A plain test's measuring as `RunLog.plain_runtest` does it inline."""
    from resource import RUSAGE_SELF, getrusage

    fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    clock, write = time.perf_counter, os.write
    cpu_times: list[float] = []
    rss_peaks: list[float] = []
    for _ in range(n):
        write(fd, b"5")
        before = getrusage(RUSAGE_SELF)
        clock()
        clock()
        after = getrusage(RUSAGE_SELF)
        cpu_times.append(after[0] + after[1] - before[0] - before[1])
        grown = after[2] - before[2]
        rss_peaks.append(grown / 1024 if grown > 0 else 0.0)
    os.close(fd)


class _Item:
    """What a measured call reads of an item: its id, kept as pytest 9 keeps it (a
    `NodeId` whose string is already built: `nodeid` counts the building), and its
    `runtest` (a test that does nothing). Not slotted: pytest's items keep their
    attributes in a `__dict__`; `RunLog.wrap_calls` replaces their class's `runtest`
    (`_prepared_call` gives each run a class of its own)."""

    def __init__(self, nodeid: str) -> None:
        from _pytest.nodeid import NodeId

        self._id = NodeId.parse(nodeid)
        self.session = _SESSION

    nodeid = pytest.Item.nodeid  # pytest's property, as a test's id is read

    def runtest(self) -> None:
        pass


def _record_log() -> Any:
    from pytest_perfguard.collectors import RusageCollector
    from pytest_perfguard.runlog import RunLog
    from pytest_perfguard.settings import PerfSettings

    log = RunLog(PerfSettings(enabled=True, record=True))
    log.use_collectors((RusageCollector(os.open("/proc/self/clear_refs", os.O_WRONLY)),))
    return log


def _prepared_call(n: int) -> tuple[object, Any]:
    log = _record_log()
    # A class of its own: a run log measures plain items through their class's `runtest`,
    # and the runs of this part in one process must not measure each other's.
    item_class = type("Item", (_Item,), {})
    items = [item_class(f"test_suite.py::test_param[{i}]") for i in range(n)]
    log.wrap_calls(items)  # type: ignore[arg-type]

    def work() -> None:
        for item in items:
            item.runtest()

    return [log, items], work


def _prepared_unwrapped(n: int) -> tuple[object, Any]:
    """`_prepared_call`'s loop over the same items, their `runtest` not wrapped: what a
    bare session pays for the same calls."""
    items = [_Item(f"test_suite.py::test_param[{i}]") for i in range(n)]

    def work() -> None:
        for item in items:
            item.runtest()

    return items, work


def counted(part: str, n: int, counter: Any) -> int:
    """The instructions of `n` iterations of `part`, the stretch's own cost subtracted."""
    totals = []
    for size in (0, n):
        setup, work = PREPARE[part](size)
        counter.start(f"{part} {size}")
        work()
        totals.append(counter.stop())
        del setup
    return totals[1] - totals[0]


def _prepared_session_end(n: int) -> tuple[object, Any]:
    """A log filled by measured calls, as a session leaves it; the count is its turning
    into what the history stores."""
    log_and_items, fill = _prepared_call(n)
    fill()
    log = log_and_items[0]  # type: ignore[index]
    return log_and_items, log.session_results


def _worker_outputs(n: int) -> list[dict[str, Any]]:
    """Two xdist workers' outputs for `n` plain tests, half each, as measured."""
    outputs = []
    for half in (n // 2, n - n // 2):
        log_and_items, fill = _prepared_call(half)
        fill()
        outputs.append(log_and_items[0].worker_output())  # type: ignore[index]
    return outputs


def _prepared_xdist_worker(n: int) -> tuple[object, Any]:
    """What a worker does at its session end: its columns put on the wire."""
    log_and_items, fill = _prepared_call(n)
    fill()
    return log_and_items, log_and_items[0].worker_output  # type: ignore[index]


def _prepared_xdist_controller(n: int) -> tuple[object, Any]:
    """What the controller does per test before storing: both workers' outputs read back
    (`pytest_testnodedown`) and joined into the columns it stores."""
    outputs = _worker_outputs(n)
    log = _record_log()

    def work() -> None:
        for output in outputs:
            log.add_worker_output(output)
        log.session_results()

    return (log, outputs), work


def _prepared_markers(n: int) -> tuple[object, Any]:
    """Reading the `perf` markers of `n` collected items (once per item, in every process
    that collects: each xdist worker collects the whole suite)."""
    items, log = _collect(n), _record_log()
    return (items, log), lambda: log.read_markers(items)


def _prepared_wrap(n: int) -> tuple[object, Any]:
    """Wrapping the `runtest` of `n` collected plain items (`RunLog.wrap_calls`), once
    per item in every process that collects, as a recording session does."""
    items, log = _collect(n), _record_log()
    return (items, log), lambda: log.wrap_calls(items)


def _prepared_nodeid(n: int) -> tuple[object, Any]:
    items = _collect(n)
    return items, lambda: [item.nodeid for item in items]


def _collect(n: int) -> list[Any]:
    """`n` real, freshly collected pytest items whose ids were never asked for."""


    directory = Path(tempfile.mkdtemp(prefix="perfguard-floor-"))
    (directory / "test_suite.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('n', range({n}))\n"
        "def test_param(n):\n    pass\n",
        encoding="utf-8",
    )
    found: list[Any] = []

    class Keep:
        @pytest.hookimpl(tryfirst=True)
        def pytest_collection_modifyitems(self, items: list[Any]) -> None:
            found.extend(items)
            items[:] = []

    if n:
        pytest.main(
            [str(directory), "-q", "-p", "no:cacheprovider", "-p", "no:perfguard",
             "--import-mode=importlib"],  # each call its own suite: no module clash
            plugins=[Keep()],
        )
    return found


PREPARE: dict[str, Any] = {
    "dispatch": None,  # two counts: with and without ours (see `main`)
    "runtest_wrapper": None,  # two counts: wrapped and not (see `main`)
    "measure": lambda n: (None, lambda: _measure(n)),
    "call": _prepared_call,
    "call_added": None,  # two counts: `call` and its loop unwrapped (see `main`)
    "nodeid": _prepared_nodeid,
    "markers": _prepared_markers,
    "wrap": _prepared_wrap,
    "session_end": _prepared_session_end,
    "xdist_worker": _prepared_xdist_worker,
    "xdist_controller": _prepared_xdist_controller,
}


def child(parts: list[str], n: int) -> None:
    from pytest_perfguard.valgrind import open_callgrind_counter

    counter = open_callgrind_counter()
    assert counter is not None, "not under callgrind"
    _measure(1)
    _prepared_call(1)[1]()  # imports outside the counts
    for part in parts:
        if part == "dispatch":
            PREPARE["dispatch"] = _prepared_dispatch(True)
            with_ours = counted(part, n, counter)
            PREPARE["dispatch"] = _prepared_dispatch(False)
            value = (with_ours - counted(part, n, counter)) / n
        elif part == "call_added":
            PREPARE[part] = _prepared_call
            measured = counted(part, n, counter)
            PREPARE[part] = _prepared_unwrapped
            value = (measured - counted(part, n, counter)) / n
        elif part == "runtest_wrapper":
            PREPARE[part] = _prepared_wrapper(True)
            wrapped = counted(part, n, counter)
            PREPARE[part] = _prepared_wrapper(False)
            value = (wrapped - counted(part, n, counter)) / n
        else:
            value = counted(part, n, counter) / n
        print(f"| {part} | {value:,.0f} |", flush=True)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        child(sys.argv[3:], int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, action="append")
    parser.add_argument("--n", type=int, default=20_000)
    options = parser.parse_args()
    print("| part | instructions per test |")
    print("|---|--:|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}",
                sys.executable, __file__, "--child", str(options.n), *(options.part or PARTS),
            ],
            check=True, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONHASHSEED": "0"}, cwd=scratch,
        )  # fmt: skip


if __name__ == "__main__":
    main()
