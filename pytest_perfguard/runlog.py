"""The run log: what one pytest session measured, and how a measured call is run and recorded.

The plugin's hooks (`plugin.py`) own one `RunLog` and hand it to whatever needs it: the
re-runs after the main loop (`reruns.py`) and, at session end, `session.py` gets its rows.
Here live the session's measuring state, the rounds of a marked test (warmup, `rounds=`,
auto rounds within `--perf-rounds-budget`), the recording of each call and the wire format
xdist workers send their rows in. Nothing here is a hook and nothing here imports the
plugin module. A measured test's `runtest` is wrapped at collection (`wrap_calls`): the
wrapper starts and ends the measurement around the test's own call, no hook involved. A
marked test's wrapper is a method set on the item; plain tests are measured through their
class, whose `runtest` is replaced for the session (`plain_runtest`) and put back at its end
(`restore_classes`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from operator import itemgetter
from types import MethodType
from typing import TYPE_CHECKING, Any

import pytest

from .collectors import RUSAGE_SELF as _RUSAGE_SELF
from .collectors import RusageCollector
from .collectors import getrusage as _getrusage
from .measure import (
    BenchmarkBudget,
    Confirmation,
    MeasuredRun,
    PerfRecorder,
    PerfSpec,
    PerfUsageError,
    TestRun,
    as_test_run,
    measurements_of,
    parse_marker,
)
from .results import Measurement, PlainRuns, judged_on

if TYPE_CHECKING:
    from .measure import Collector, Reading
    from .results import TestOutcome
    from .settings import PerfSettings

# A marked test without rounds= takes at most this many calls within --perf-rounds-budget.
MAX_AUTO_ROUNDS = 50


# The key of a worker's rows in xdist's `workeroutput`.
WORKER_OUTPUT_KEY = "perfguard"

_clock = time.perf_counter
_write = os.write


def _nothing(item: pytest.Item) -> None:
    pass


# What a class's own dict held for `runtest` before `_measure_class`: nothing.
_ABSENT = object()


def reads_cached_node_ids(item: pytest.Item) -> bool:
    """Whether `item`'s id can be read as `item._id._str_cache` (pytest 9's `NodeId`,
    whose string is built once): 0.13 k instructions against 1.4 k for the `nodeid`
    property, which calls `NodeId.__str__` each time (`benchmarks/bench_per_test_floor.py`,
    part `call_added`). Checked on a real item, so an older or newer pytest, or an item
    class of another plugin's with its own `nodeid`, takes the property instead."""
    if type(item).nodeid is not pytest.Item.nodeid:
        return False
    try:
        cached = item._id._str_cache
    except AttributeError:
        return False
    return cached is None or (isinstance(cached, str) and cached == item.nodeid)


def _calling(runtest: Callable[[], object]) -> Callable[[pytest.Item], object]:
    """An item's own `runtest` (set on the item, not its class) in the shape `RunLog`
    calls: with the item."""
    return lambda item: runtest()


class RunLog:
    """The measuring state of one session and the logic of a measured call.

    A call is measured from `started` (set by `start_call` once the collectors run) until
    `end_call` (its `runtest` returned), `end_current` (the plugin's failure hook) or
    `drop_current` (a call that ended in neither: a skip or an xfail inside the test).
    """

    def __init__(self, settings: PerfSettings) -> None:
        self.settings = settings
        self.started_at = datetime.now(timezone.utc)
        self.collectors: tuple[Collector, ...] = ()
        # Keyed by id(item): items live for the whole session, and hashing a node by id
        # skips its Python-level __hash__.
        self.specs: dict[int, PerfSpec] = {}
        self.recorders: dict[int, PerfRecorder] = {}
        # Collector readings judged in place of the tests' own metrics (`gated_metrics`).
        self.gated_readings: frozenset[str] = frozenset()
        self.benchmark_budget: BenchmarkBudget | None = None  # None: `perf.benchmark`'s own
        self.runs: dict[str, MeasuredRun] = {}
        # Plain tests' runs as columns, appended in place when the built-in Linux collector
        # measures alone (the usual case): no object per test for the garbage collector to
        # track, nothing to take apart at the session end. Otherwise (other collectors,
        # judged readings) None, and plain runs are tuples in `runs`. `fold_plain` turns
        # the columns into tuples where a re-run must pool into a test's first run.
        self.plain: PlainRuns | None = None
        self.plain_collector: RusageCollector | None = None
        self.plain_cpu_times: list[float] = []
        self.plain_rss_peaks: list[float] = []
        self.selected: set[str] = set()
        self.worker_rows: list[Measurement] = []
        self.worker_plain = PlainRuns()
        self.estimator = settings.estimator
        self.rounds_budget = settings.rounds_budget
        # A plain test's rows (no marker, no `perf` fixture) are only stored, judged (gate
        # all), reported, calibrated or compared against a base. A session doing none of
        # that does not measure such a test at all: its runtest is not even wrapped.
        self.measure_plain = bool(
            settings.record
            or settings.gate == "all"
            or settings.report
            or settings.json_report
            or settings.calibrate
            or settings.experiment
            or settings.against
            or os.environ.get("GITHUB_STEP_SUMMARY")
        )
        # Re-runs (confirm, calibration) pool their samples into the first run's.
        self.rerunning = False
        self.confirmations: dict[tuple[str, str], Confirmation] = {}
        self.calibration_passes: list[list[Measurement]] = []
        # Set when the rows were built after the main loop and nothing changed them since.
        self.final_rows: list[Measurement] | None = None
        # The call being measured, from `start_call` until its end or its failure, and
        # the item's own `runtest` (what its rounds call).
        self.current: pytest.Item | None = None
        self.current_call: Callable[[pytest.Item], object] = _nothing
        # Items whose `runtest` another plugin set on the item itself: what to call.
        self.own_runtests: dict[int, Callable[[pytest.Item], object]] = {}
        # The item classes whose `runtest` this session replaced (`_measure_class`): each
        # class, what its own dict held before (or _ABSENT), and the replacement; and
        # each replacement's original, what a measured call runs.
        self.patched_classes: list[tuple[type, object, Callable[[pytest.Item], None]]] = []
        self.class_originals: dict[object, Callable[[pytest.Item], object]] = {}
        self.current_spec: PerfSpec | None = None
        self.current_durations: list[float] = []
        self.started = 0.0

    def use_collectors(self, collectors: tuple[Collector, ...]) -> None:
        """The collectors every measured call runs, as the public hook returned them."""
        self.collectors = collectors
        self.gated_readings = frozenset(
            metric for c in collectors for metric in getattr(c, "gated_metrics", ())
        )
        if self.gated_readings:
            # The gate no longer reads a clock: auto rounds and confirm re-runs, which are
            # there to beat timing noise, would only cost time (and vary a per-round count).
            self.rounds_budget = 0.0
            self.settings = replace(self.settings, confirm=0)
            # `perf.benchmark` sizes its loop by the clock; a count needs a fixed number of
            # calls: one warm-up call and one sample.
            self.benchmark_budget = BenchmarkBudget(0.0, 0.0, 1, 1, 0.0)
        elif self.measure_plain and len(collectors) == 1 and type(collectors[0]) is RusageCollector:
            self.plain_collector = collectors[0]
            self.plain = PlainRuns(RusageCollector.READINGS)
            self.plain_cpu_times = self.plain.readings[0][2]
            self.plain_rss_peaks = self.plain.readings[1][2]

    def read_markers(self, items: list[pytest.Item]) -> dict[int, str]:
        """Parse every `perf` marker once; returns the bad ones' messages by id(item)."""
        specs = self.specs
        inherited: dict[int, bool] = {}  # id(parent) -> a perf marker above the item
        bad: dict[int, str] = {}
        # Items come grouped by parent: the last one's answer first (0.7 k instructions
        # an item less than the dict's, `bench_per_test_floor.py`, part `markers`).
        last_parent: object = _ABSENT
        last_marked = False
        for item in items:
            for mark in item.own_markers:
                if mark.name == "perf":
                    break
            else:
                parent = item.parent
                if parent is last_parent:
                    if not last_marked:
                        continue
                else:
                    marked = inherited.get(id(parent))
                    if marked is None:
                        marked = inherited[id(parent)] = (
                            parent is not None and parent.get_closest_marker("perf") is not None
                        )
                    last_parent, last_marked = parent, marked
                    if not marked:
                        continue
            marker = item.get_closest_marker("perf")
            if marker is None or not isinstance(item, pytest.Function):
                continue
            try:
                specs[id(item)] = parse_marker(marker.args, dict(marker.kwargs))
            except PerfUsageError as exc:
                bad[id(item)] = f"{item.nodeid}: {exc}"
        return bad

    def wrap_calls(self, items: Sequence[pytest.Item]) -> None:
        """Measure each item that needs it from inside its own `runtest`: marked items and
        items using the `perf` fixture (`measured_call`, a method set on each), and plain
        ones when plain tests are measured (`plain_runtest`, their class's `runtest` for
        the session, `_measure_class`). The rest keep their `runtest` and pay nothing:
        when plain tests are not measured, nothing of an unmarked test is stored,
        reported or judged, so one that asks for `perf` only at run time
        (`request.getfixturevalue`) loses nothing. Not per-test hook implementations:
        pluggy's dispatch to two of them cost 7.4 k instructions a test, the replaced
        `runtest` 0.6 k (`benchmarks/bench_per_test_floor.py`, `runtest_wrapper`)."""
        specs, measure_plain = self.specs, self.measure_plain
        measured = self.measured_call
        plain_classes: dict[type, pytest.Item] = {}
        last_class: type | None = None
        class_runtest: object = None
        for item in items:
            if specs and id(item) in specs:  # 0.5 k an item: skipped in a suite without markers
                call: Callable[[pytest.Item], None] | None = measured
            elif measure_plain:
                # A test using `perf` too: its recorder, set up by then, sends its call
                # on to `measured_call`.
                call = None
            elif "perf" in getattr(item, "fixturenames", ()):
                call = measured
            else:
                continue
            # Another plugin's `runtest`, set on the item itself: anything but the class's
            # function bound. Not `vars(item)`: in CPython 3.11 that makes a dict object
            # of the item's attributes (inline values until then), one more object an
            # item for the garbage collector. (Not `isinstance` and `__self__` as well:
            # 0.6 k instructions an item more, `bench_per_test_floor.py`, part `wrap`,
            # for a method of the same class bound to another item.)
            cls = type(item)
            if cls is not last_class:
                last_class, class_runtest = cls, cls.runtest
            bound = item.runtest
            if getattr(bound, "__func__", None) is not class_runtest:
                self.own_runtests[id(item)] = _calling(bound)
                call = measured
            if call is None:
                if cls not in plain_classes:
                    plain_classes[cls] = item
                continue
            # One object an item for the garbage collector to track, the method that
            # binds the item to the call (docs/architecture.md); plain items, most of a
            # suite, go through their class instead and cost none.
            item.runtest = MethodType(call, item)  # type: ignore[method-assign]
        for cls, item in plain_classes.items():
            self._measure_class(cls, item)

    def _measure_class(self, cls: type, item: pytest.Item) -> None:
        """Replace `cls.runtest`, for this session, by `plain_runtest`'s function, which
        measures the calls of this session's items and passes any other session's
        (pytester's in-process runs share pytest's classes) to the original.
        `restore_classes` undoes it. Not a method set on each item: that is an object
        per item, which every full collection of a long session walks, and making and
        setting it cost 1.3 k instructions a test (docs/architecture.md)."""
        original = cls.runtest  # type: ignore[attr-defined]
        if original in self.class_originals:
            return  # a subclass of a class replaced already, or replaced twice: measured
        runtest = self.plain_runtest(item.session, original, reads_cached_node_ids(item))
        self.patched_classes.append((cls, cls.__dict__.get("runtest", _ABSENT), runtest))
        self.class_originals[runtest] = original
        cls.runtest = runtest  # type: ignore[attr-defined]

    def restore_classes(self) -> None:
        """Put back every `runtest` that `_measure_class` replaced (latest first), where
        nobody replaced it again since; safe to call more than once."""
        for cls, before, runtest in reversed(self.patched_classes):
            if cls.__dict__.get("runtest") is not runtest:
                continue  # replaced on top of ours: ours passes other sessions' calls on
            if before is _ABSENT:
                delattr(cls, "runtest")
            else:
                cls.runtest = before  # type: ignore[attr-defined]
        self.patched_classes = []

    def plain_runtest(
        self,
        session: pytest.Session,
        original: Callable[[pytest.Item], object],
        cached_ids: bool = False,
    ) -> Callable[[pytest.Item], None]:
        """The `runtest` of a class whose items are plain tests (no marker, no `perf`
        fixture, their class's `runtest`), the path every plain test of a recorded suite
        takes. While the built-in Linux collector measures alone, it measures the call
        with the collector's work written out (`RusageCollector.start` and `stop`) and
        appends to the session's columns in place, without the checks and calls that tell
        a plain test from a marked one and without the run log's state unless the call
        ends elsewhere (13.2 k -> 11.0 k -> 9.6 k instructions a test,
        `benchmarks/bench_per_test_floor.py`, part `call_added`; a function made by the
        run log, not a method of it, which would be one more call). Anything
        else the run log is in the middle of (a re-run pass, a `perf` fixture asked for,
        a call left unfinished by a skip, other collectors) takes `measured_call`.
        `cached_ids`: read the item's id where pytest keeps it built
        (`reads_cached_node_ids`)."""
        log = self

        def runtest(item: pytest.Item) -> None:
            if item.session is not session:
                original(item)
                return
            plain, collector, recorders = log.plain, log.plain_collector, log.recorders
            if (
                plain is None
                or collector is None
                or log.current is not None
                or (recorders and id(item) in recorders)  # `perf` set up: its recorder's
                or log.rerunning
            ):
                log.measured_call(item)
                return
            # `collector.start()` and `stop`, inline (see `RusageCollector`).
            _write(collector.fd, b"5")
            before = _getrusage(_RUSAGE_SELF)
            started = _clock()
            try:
                original(item)
            except BaseException:
                # A failure's `end_current`, or the next call's `drop_current` after a
                # skip, finds the call there (an `except` is zero-cost in CPython 3.11).
                log.hand_over(item, started, collector, before)
                raise
            end = _clock()
            if recorders and id(item) in recorders:  # `perf` asked for in the test's body
                log.hand_over(item, started, collector, before)
                log.end_current(end, "passed")
                return
            after = _getrusage(_RUSAGE_SELF)
            # pytest built the id before the call (`pytest_runtest_logstart` reports it).
            plain.ids.append(
                (item._id._str_cache or item.nodeid) if cached_ids else item.nodeid
            )
            plain.outcomes.append("passed")
            plain.durations.append(end - started)
            log.plain_cpu_times.append(after[0] + after[1] - before[0] - before[1])
            grown = after[2] - before[2]
            log.plain_rss_peaks.append(grown / 1024 if grown > 0 else 0.0)

        return runtest

    def hand_over(
        self, item: pytest.Item, started: float, collector: RusageCollector, usage: Any
    ) -> None:
        """A plain call that `plain_runtest` measured without the run log's state, as
        `start_call` would have left it: the call in progress, its start, the collector's
        reading after the reset."""
        self.current, self.current_spec, self.started = item, None, started
        collector.started(usage)

    def measured_call(self, item: pytest.Item) -> None:
        """`item`'s `runtest` as `wrap_calls` leaves it: its own, measured."""
        own = self.own_runtests.get(id(item)) if self.own_runtests else None
        runtest = type(item).runtest if own is None else own
        if self.class_originals:  # the class's, as `_measure_class` found it
            runtest = self.class_originals.get(runtest, runtest)
        self.start_call(item, runtest)
        runtest(item)
        self.end_call(item)

    def start_call(self, item: pytest.Item, call: Callable[[pytest.Item], object]) -> None:
        """The measured call of `item` (whose own `runtest` is `call(item)`) starts: the
        collectors and the clock, after the warmup and all counted rounds but the last
        for a marked test with rounds."""
        if self.current is not None:
            self.drop_current()
        spec = self.specs.get(id(item)) if self.specs else None
        if spec is None and not self.measure_plain and id(item) not in self.recorders:
            return
        self.current = item
        self.current_call = call
        self.current_spec = spec
        if spec is None:
            for collector in self.collectors:
                collector.start()
        else:
            self.current_durations = []
            if spec.rounds > 1 or spec.warmup:
                self.run_extra_rounds(item, spec)
            else:
                for collector in self.collectors:
                    collector.start()
        self.started = _clock()

    def end_call(self, item: pytest.Item) -> None:
        """The measured call of `item` returned: record it. (One that raised ends through
        `end_current` from the plugin's failure hook; one that skipped or xfailed inside
        the test is dropped when the next one starts.)"""
        end = _clock()
        if self.current is not item:
            return
        recorders = self.recorders
        if (
            self.current_spec is not None
            or self.plain is not None  # the columns: `_record` appends a plain run there
            or self.rerunning
            or (recorders and id(item) in recorders)
        ):
            self.end_current(end, "passed")
            return
        # A plain test measured by other collectors than the built-in Linux one (macOS,
        # Windows, callgrind), inline: it runs for every test of the suite.
        self.current = None
        collectors = self.collectors
        if len(collectors) == 1:
            readings = collectors[0].stop(1)
        else:
            readings = [reading for c in collectors for reading in c.stop(1)]
        self.runs[item.nodeid] = ("passed", end - self.started, readings)

    def run_extra_rounds(self, item: pytest.Item, spec: PerfSpec) -> None:
        """Warmup and all counted rounds but the last, which pytest's own call runs."""
        recorder = self.recorders.get(id(item))
        durations = self.current_durations
        call = self.current_call
        for _ in range(spec.warmup):
            call(item)
        if recorder is not None:
            recorder.reset()
        for collector in self.collectors:
            collector.start()
        for index in range(spec.rounds - 1):
            if recorder is not None:
                recorder.round = index
            start = _clock()
            try:
                call(item)
            finally:
                durations.append(_clock() - start)
        if recorder is not None:
            recorder.round = spec.rounds - 1

    def end_current(self, end: float, outcome: TestOutcome) -> None:
        """The measured call ended at `end` (a `_clock()` reading): record it."""
        item, spec = self.current, self.current_spec
        assert item is not None
        self.current = None
        elapsed = end - self.started
        recorder = self.recorders.pop(id(item), None) if self.recorders else None
        if spec is None:
            durations = [elapsed]
        else:
            durations = self.current_durations
            durations.append(elapsed)
            if outcome == "passed" and spec.auto_rounds and self.rounds_budget:
                try:
                    self._run_auto_rounds(item, durations, recorder)
                except BaseException:  # an interrupt: the test's failures end the rounds
                    self._record(item, spec, durations, recorder, "failed")
                    raise
        self._record(item, spec, durations, recorder, outcome)

    def drop_current(self) -> None:
        """The measured call ended without `end_call` or a failure: skipped or xfailed
        inside the test."""
        item = self.current
        assert item is not None
        self.current = None
        if self.recorders:
            self.recorders.pop(id(item), None)
        for collector in self.collectors:
            collector.stop(1)

    def _run_auto_rounds(
        self, item: pytest.Item, durations: list[float], recorder: PerfRecorder | None
    ) -> None:
        """More calls of a marked test without rounds=, while the next fits the budget.

        `perf.benchmark` already calibrates its own rounds, so its tests are left alone.
        These calls are perfguard's, not asked for by the test: one that raises (a test
        that asserts on what it captured passes once only) ends them, and the test keeps
        its first call's outcome and the rounds before; what the failed call recorded is
        dropped. (The collectors' readings span it: a partial call more of CPU time.)"""
        if recorder is not None and recorder.benchmark_samples:
            return
        spent, budget, call = durations[0], self.rounds_budget, self.current_call
        while spent + durations[-1] <= budget and len(durations) < MAX_AUTO_ROUNDS:
            if recorder is not None:
                recorder.round = len(durations)
                checkpoint = recorder.checkpoint()
            start = _clock()
            try:
                call(item)
            except (Exception, pytest.fail.Exception, pytest.skip.Exception):
                if recorder is not None:
                    recorder.rollback(checkpoint)
                    recorder.round = len(durations) - 1
                return
            durations.append(_clock() - start)
            spent += durations[-1]

    def _record(
        self,
        item: pytest.Item,
        spec: PerfSpec | None,
        durations: list[float],
        recorder: PerfRecorder | None,
        outcome: TestOutcome,
    ) -> None:
        rounds = len(durations) or 1
        readings: list[Reading] = []
        for collector in self.collectors:
            readings.extend(collector.stop(rounds))
        if outcome == "skipped" or not durations:
            return
        nodeid = item.nodeid
        if self.rerunning:
            first = self.runs.get(nodeid)
            if first is not None and outcome == "passed":
                first = self.runs[nodeid] = as_test_run(nodeid, first)
                first.pool(TestRun(nodeid, outcome, durations, readings, spec, recorder))
            return
        if spec is None and recorder is None:
            plain = self.plain
            if plain is None:
                self.runs[nodeid] = (outcome, durations[0], readings)
            else:
                plain.ids.append(nodeid)
                plain.outcomes.append(outcome)
                plain.durations.append(durations[0])
                self.plain_cpu_times.append(readings[0][1])
                self.plain_rss_peaks.append(readings[1][1])
        else:
            self.runs[nodeid] = TestRun(nodeid, outcome, durations, readings, spec, recorder)

    @contextmanager
    def pooled_reruns(self) -> Iterator[None]:
        """Calls recorded inside pool their samples into each test's first run."""
        self.rerunning = True
        try:
            yield
        finally:
            self.rerunning = False

    @contextmanager
    def separate_pass(self) -> Iterator[None]:
        """Calls recorded inside form a pass of their own (`rows()` gives its rows); the
        main loop's runs are back afterwards."""
        main_runs = self.runs
        self.runs = {}
        try:
            yield
        finally:
            self.runs = main_runs

    def has_runs(self) -> bool:
        return bool(self.runs or self.plain)

    def fold_plain(self) -> None:
        """Plain tests' columns into `runs` as tuples, and plain tests recorded there from
        now on: re-runs pool into a test's first run in `runs`, and a test run twice
        (rerun plugins) keeps its last run, as it does there."""
        columns, self.plain, self.plain_collector = self.plain, None, None
        self.plain_cpu_times, self.plain_rss_peaks = [], []
        if not columns:
            return
        runs = self.runs
        readings = columns.readings
        for index, nodeid in enumerate(columns.ids):
            runs[nodeid] = (
                columns.outcomes[index],
                columns.durations[index],
                [(metric, values[index], unit) for metric, unit, values in readings],
            )

    def rows(self, *, plain: bool = True) -> list[Measurement]:
        """Every measured test's rows, values by the session's estimator; without `plain`,
        only those of the tests that are not plain (marked, or using the `perf` fixture)."""
        if plain:
            self.fold_plain()
        runs = self.runs
        if not plain:
            runs = {nodeid: run for nodeid, run in runs.items() if type(run) is not tuple}
        rows = measurements_of(runs, self.estimator)
        return judged_on(rows, self.gated_readings) if self.gated_readings else rows

    def session_rows(self) -> list[Measurement]:
        """This process's rows at session end."""
        return self.final_rows if self.final_rows is not None else self.rows()

    def session_results(self) -> tuple[list[Measurement], PlainRuns]:
        """The session's results, its workers' included: (rows, plain runs as columns)."""
        if self.final_rows is not None or self.gated_readings:
            rows, plain = self.session_rows(), PlainRuns()
        else:
            rows, plain = self._split_plain()
        rows.extend(self.worker_rows)
        if not plain.extend(self.worker_plain):
            rows.extend(self.worker_plain.measurements())
        return rows, plain

    def close(self) -> None:
        """The tests are over: drop a call left unfinished, put the item classes'
        `runtest` back, close the collectors."""
        if self.current is not None:
            self.drop_current()
        self.restore_classes()
        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if close is not None:
                close()

    def system_info(self) -> dict[str, Any]:
        """What the collectors say about the machine and how they measured."""
        info: dict[str, Any] = {}
        for collector in self.collectors:
            describe = getattr(collector, "describe", None)
            if describe is not None:
                info.update(describe())
        return info

    def worker_output(self) -> dict[str, Any]:
        """What an xdist worker sends the controller (`WORKER_OUTPUT_KEY`).

        Plain tests' runs cross as columns (ids, outcomes, durations, one list per
        reading), not as rows: the worker builds no `Measurement` for them, and the JSON
        holds each test's numbers once, not three rows of eleven fields. Other tests, and
        every test when collector readings are judged (`judged_on`), cross as rows.
        """
        if self.gated_readings:
            rows, plain = self.session_rows(), PlainRuns()
        else:
            rows, plain = self._split_plain()
        return {
            # Strings: execnet serializes nested containers in pure Python, element by
            # element (0.5 M instructions per test on each side, as lists of dicts).
            "rows": json.dumps([row.to_row() for row in rows]),
            "plain": plain.to_wire() if plain else None,
            "selected": json.dumps(list(self.selected)),
            "confirmations": [
                {"test": test, "metric": metric, "change": c.first_change, "reruns": c.reruns}
                for (test, metric), c in self.confirmations.items()
            ],
        }

    def _split_plain(self) -> tuple[list[Measurement], PlainRuns]:
        """(the rows of the runs that are not plain, the plain runs as columns).

        Columns filled in place (`plain`) are handed on as they are, unless a test ran twice
        (then folded, the last run kept). Tuples are taken apart with C-level `zip` and
        `map`: a Python loop over every reading of every test would cost more than storing
        them."""
        kept = self.plain
        if kept is not None:
            if kept.has_distinct_ids() and (not self.runs or self.runs.keys().isdisjoint(kept.ids)):
                return measurements_of(self.runs, self.estimator), kept
            self.fold_plain()
        ids: list[str] = []
        plain_runs: list[tuple[TestOutcome, float, Sequence[Reading]]] = []
        others: dict[str, MeasuredRun] = {}
        for nodeid, run in self.runs.items():
            if type(run) is tuple:
                ids.append(nodeid)
                plain_runs.append(run)
            else:
                others[nodeid] = run
        plain = PlainRuns()
        if plain_runs:
            outcomes, durations, readings = zip(*plain_runs, strict=True)
            layout = [(metric, unit) for metric, _, unit in readings[0]]
            columns = [list(map(itemgetter(i), readings)) for i in range(len(layout))]
            if set(map(len, readings)) == {len(layout)} and all(
                set(map(itemgetter(0, 2), column)) == {expected}
                for column, expected in zip(columns, layout, strict=True)
            ):
                plain.ids, plain.outcomes, plain.durations = ids, list(outcomes), list(durations)
                plain.readings = [
                    (metric, unit, list(map(itemgetter(1), column)))
                    for (metric, unit), column in zip(layout, columns, strict=True)
                ]
            else:  # collectors that read differently from test to test: rows, in order
                others = self.runs
        return measurements_of(others, self.estimator), plain

    def forget_runs(self) -> None:
        """Drop every test's runs once the session end has used them."""
        self.runs = {}
        self.plain = None
        self.worker_rows = []
        self.worker_plain = PlainRuns()
        self.final_rows = None

    def add_worker_output(self, output: dict[str, Any]) -> None:
        """A worker's `worker_output`, on the controller."""
        self.worker_rows.extend(map(Measurement.from_row, json.loads(output["rows"])))
        if output.get("plain"):
            plain = PlainRuns.from_wire(output["plain"])
            if not self.worker_plain.extend(plain):
                self.worker_rows.extend(plain.measurements())
        self.selected.update(json.loads(output["selected"]))
        for row in output.get("confirmations", ()):
            self.confirmations[(row["test"], row["metric"])] = Confirmation(
                row["change"], row["reruns"]
            )
