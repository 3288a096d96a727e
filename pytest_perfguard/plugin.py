"""pytest hooks only: options, the marker, the `perf` fixture and the measuring session.

Inactive (no ``--perf*`` flag, no ``perf = true``, no ``PERFGUARD=1``), only
``pytest_addoption``, ``pytest_configure`` and the fixture exist: no per-test hook runs and
nothing heavy is imported. Active, a :class:`PerfPlugin` is registered that times each
call phase and, at session end, hands the measurements to :mod:`pytest_perfguard.session`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from ._version import __version__
from .config import OPTIONS, ConfigError, Option, is_active
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
from .results import Measurement, judged_on

if TYPE_CHECKING:
    from .measure import Collector, Reading
    from .results import TestOutcome
    from .session import CalibrationResult, SessionResult
    from .settings import PerfSettings

SESSION_KEY = pytest.StashKey["PerfPlugin"]()
# A marked test without rounds= takes at most this many calls within --perf-rounds-budget.
MAX_AUTO_ROUNDS = 50
WORKER_OUTPUT_KEY = "perfguard"

_clock = time.perf_counter


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _argument_type(option: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.flag
    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfguard", "performance regression gate (pytest-perfguard)")
    for option in OPTIONS:
        env = " / ".join((option.env, *option.env_aliases))
        help_text = f"{option.help} [env {env}, ini {option.ini}]"
        if option.is_flag:
            group.addoption(
                option.flag, action="store_true", default=None, dest=option.dest, help=help_text
            )
        else:
            group.addoption(
                option.flag,
                default=None,
                dest=option.dest,
                metavar=option.metavar,
                type=_argument_type(option),
                help=help_text,
            )
        parser.addini(option.ini, option.help, default="")


def _cli_values(config: pytest.Config) -> dict[str, Any]:
    return {option.field: getattr(config.option, option.dest, None) for option in OPTIONS}


def _ini_values(config: pytest.Config) -> dict[str, str]:
    values = {}
    for option in OPTIONS:
        raw = config.getini(option.ini)
        if raw not in ("", None):
            values[option.ini] = str(raw).strip()
    return values


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "perf(metric='duration', direction='lower', threshold=None, unit='s', rounds=1, "
        "warmup=0): a performance test, measured and gated by pytest-perfguard",
    )
    cli, ini = _cli_values(config), _ini_values(config)
    if not is_active(cli, os.environ, ini, config.rootpath):
        return
    from .session import open_session
    from .settings import resolve  # lazy: pydantic only when active

    try:
        settings = resolve(cli, os.environ, ini, config.rootpath)
        context = open_session(settings, config.rootpath, is_worker=_is_worker(config))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.calibrate and getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(
            "--perf-calibrate: runs the tests in this process; drop -n/--dist for calibration"
        )
    from . import collectors, instructions  # lazy: built-ins ride the public hook

    config.pluginmanager.register(collectors, "perfguard-collectors")
    config.pluginmanager.register(instructions, "perfguard-instructions")
    plugin = PerfPlugin(config, settings, context)
    config.stash[SESSION_KEY] = plugin
    config.pluginmanager.register(plugin, "perfguard-session")
    config.pluginmanager.register(CallEnd(plugin), "perfguard-call-end")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfRecorder:
    """Record custom metrics, time steps and micro-benchmark code inside a test."""
    plugin = request.config.stash.get(SESSION_KEY, None)
    recorder = PerfRecorder(
        active=plugin is not None, budget=plugin.benchmark_budget if plugin else None
    )
    if plugin is not None:
        plugin.recorders[id(request.node)] = recorder
    return recorder


class PerfPlugin:
    """The measuring session, registered only when perfguard is active.

    A test's call phase is measured between two plain hook implementations: this class's
    ``tryfirst`` ``pytest_runtest_call`` starts the clock and the collectors, `CallEnd`'s
    ``trylast`` one stops them once the test function returned. A hook wrapper would be
    simpler and costs several times as much per test (pluggy's generator machinery); see
    docs/architecture.md. A call that raises never reaches `CallEnd`: the failure arrives
    through ``pytest_exception_interact``, and a call that ended in neither (a skip or an
    xfail inside the test) is dropped when the next one starts.
    """

    def __init__(self, config: pytest.Config, settings: PerfSettings, context: Any) -> None:
        self.config = config
        self.settings = settings
        self.context = context
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
        self.selected: set[str] = set()
        self.worker_rows: list[Measurement] = []
        self.result: SessionResult | CalibrationResult | None = None
        self.estimator = settings.estimator
        self.rounds_budget = settings.rounds_budget
        # Re-runs (confirm, calibration) pool their samples into the first run's.
        self.rerunning = False
        self.confirmations: dict[tuple[str, str], Confirmation] = {}
        self.calibration_passes: list[list[Measurement]] = []
        # Set when the rows were built after the main loop and nothing changed them since.
        self.final_rows: list[Measurement] | None = None
        # The call being measured, from its start hook until CallEnd or its failure.
        self.current: pytest.Item | None = None
        self.current_spec: PerfSpec | None = None
        self.current_durations: list[float] = []
        self.started = 0.0

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"perfguard: {__version__}, platform {self.context.platform.key}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        found = self.config.hook.pytest_perfguard_collectors(config=self.config)
        self.collectors = tuple(c for group in found if group for c in group)
        self.gated_readings = frozenset(
            metric for c in self.collectors for metric in getattr(c, "gated_metrics", ())
        )
        if self.gated_readings:
            # The gate no longer reads a clock: auto rounds and confirm re-runs, which are
            # there to beat timing noise, would only cost time (and vary a per-round count).
            self.rounds_budget = 0.0
            self.settings = self.settings.model_copy(update={"confirm": 0})
            # `perf.benchmark` sizes its loop by the clock; a count needs a fixed number of
            # calls: one warm-up call and one sample.
            self.benchmark_budget = BenchmarkBudget(0.0, 0.0, 1, 1, 0.0)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Parse every `perf` marker once; a bad one is a collection error of its test."""
        specs = self.specs
        inherited: dict[int, bool] = {}  # id(parent) -> a perf marker above the item
        bad: dict[int, str] = {}
        for item in items:
            for mark in item.own_markers:
                if mark.name == "perf":
                    break
            else:
                parent = item.parent
                marked = inherited.get(id(parent))
                if marked is None:
                    marked = inherited[id(parent)] = (
                        parent is not None and parent.get_closest_marker("perf") is not None
                    )
                if not marked:
                    continue
            marker = item.get_closest_marker("perf")
            if marker is None or not isinstance(item, pytest.Function):
                continue
            try:
                specs[id(item)] = parse_marker(marker.args, dict(marker.kwargs))
            except PerfUsageError as exc:
                bad[id(item)] = f"{item.nodeid}: {exc}"
        if not bad:
            return
        for item in items:
            if id(item) in bad:
                report = pytest.CollectReport(item.nodeid, "failed", bad[id(item)], [])
                session.ihook.pytest_collectreport(report=report)
        items[:] = [item for item in items if id(item) not in bad]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = {item.nodeid for item in session.items}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        if self.current is not None:
            self.drop_current()
        spec = self.specs.get(id(item)) if self.specs else None
        self.current = item
        self.current_spec = spec
        if spec is None:
            for collector in self.collectors:
                collector.start()
        else:
            self.current_durations = []
            if spec.rounds > 1 or spec.warmup:
                self._run_extra_rounds(item, spec)
            else:
                for collector in self.collectors:
                    collector.start()
        self.started = _clock()

    @pytest.hookimpl(tryfirst=True)
    def pytest_exception_interact(
        self, node: pytest.Item | pytest.Collector, call: pytest.CallInfo[Any], report: Any
    ) -> None:
        if node is self.current and call.when == "call":
            self.end_current(_clock(), "failed")

    def _run_extra_rounds(self, item: pytest.Item, spec: PerfSpec) -> None:
        """Warmup and all counted rounds but the last, which pytest's own call runs."""
        recorder = self.recorders.get(id(item))
        durations = self.current_durations
        for _ in range(spec.warmup):
            item.runtest()
        if recorder is not None:
            recorder.reset()
        for collector in self.collectors:
            collector.start()
        for index in range(spec.rounds - 1):
            if recorder is not None:
                recorder.round = index
            start = _clock()
            try:
                item.runtest()
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
                except BaseException as exc:
                    failed: TestOutcome = (
                        "skipped" if isinstance(exc, pytest.skip.Exception) else "failed"
                    )
                    self._record(item, spec, durations, recorder, failed)
                    raise
        self._record(item, spec, durations, recorder, outcome)

    def drop_current(self) -> None:
        """The measured call ended without CallEnd or a failure: skipped or xfailed inside."""
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

        `perf.benchmark` already calibrates its own rounds, so its tests are left alone."""
        if recorder is not None and recorder.benchmark_samples:
            return
        spent, budget = durations[0], self.rounds_budget
        while spent + durations[-1] <= budget and len(durations) < MAX_AUTO_ROUNDS:
            if recorder is not None:
                recorder.round = len(durations)
            start = _clock()
            try:
                item.runtest()
            finally:
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
            self.runs[nodeid] = (outcome, durations[0], readings)
        else:
            self.runs[nodeid] = TestRun(nodeid, outcome, durations, readings, spec, recorder)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        if self.current is not None:
            self.drop_current()
        if self.settings.calibrate:
            from .reruns import calibrate

            self.calibration_passes = calibrate(self, session)
        elif self.settings.confirm_runs and self.runs:
            from .reruns import confirm

            self.confirmations.update(confirm(self, session))
        return result

    def rows(self) -> list[Measurement]:
        """Every measured test's rows, values by the session's estimator."""
        rows = measurements_of(self.runs, self.estimator)
        return judged_on(rows, self.gated_readings) if self.gated_readings else rows

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if output:
            self.worker_rows.extend(map(Measurement.from_row, json.loads(output["rows"])))
            self.selected.update(json.loads(output["selected"]))
            for row in output.get("confirmations", ()):
                self.confirmations[(row["test"], row["metric"])] = Confirmation(
                    row["change"], row["reruns"]
                )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.current is not None:
            self.drop_current()
        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if close is not None:
                close()
        # The session end builds a few objects per test, all freed when it returns; with the
        # collector running, every full collection would also traverse the whole heap
        # (pytest's items, SQLAlchemy), which cost more than building them.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._finish(session, exitstatus)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _finish(self, session: pytest.Session, exitstatus: int) -> None:
        from .session import finish_session

        rows = self.final_rows if self.final_rows is not None else self.rows()
        if _is_worker(self.config):
            self.config.workeroutput[WORKER_OUTPUT_KEY] = {  # type: ignore[attr-defined]
                # Strings: execnet serializes nested containers in pure Python, element by
                # element (0.5 M instructions per test on each side, as lists of dicts).
                "rows": json.dumps([row.to_row() for row in rows]),
                "selected": json.dumps(list(self.selected)),
                "confirmations": [
                    {"test": test, "metric": metric, "change": c.first_change, "reruns": c.reruns}
                    for (test, metric), c in self.confirmations.items()
                ],
            }
            return
        if self.settings.calibrate:
            from .session import finish_calibration

            self.result = finish_calibration(self.context, self.calibration_passes)
            return
        system_info: dict[str, Any] = {}
        for collector in self.collectors:
            describe = getattr(collector, "describe", None)
            if describe is not None:
                system_info.update(describe())
        self.result = finish_session(
            self.context,
            [*rows, *self.worker_rows],
            selected=self.selected,
            started_at=self.started_at,
            exitstatus=int(exitstatus),
            args=list(self.config.invocation_params.args),
            system_info=system_info,
            confirmations=self.confirmations,
        )
        if self.result.fail_session and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.result is None:
            return
        terminalreporter.write_sep("-", "perfguard")
        verbose = self.config.get_verbosity() > 0
        for text, markup in self.result.terminal_lines(verbose):
            terminalreporter.write_line(text, **markup)


class CallEnd:
    """The other end of a measured call (see `PerfPlugin`): pytest calls this ``trylast``
    implementation after its own ``pytest_runtest_call`` returned, that is after the test
    function returned without raising."""

    __slots__ = ("plugin",)

    def __init__(self, plugin: PerfPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        end = _clock()
        plugin = self.plugin
        if plugin.current is not item:
            return
        recorders = plugin.recorders
        if (
            plugin.current_spec is not None
            or plugin.rerunning
            or (recorders and id(item) in recorders)
        ):
            plugin.end_current(end, "passed")
            return
        # The common case, a plain test, inline: it runs for every test of the suite.
        plugin.current = None
        collectors = plugin.collectors
        if len(collectors) == 1:
            readings = collectors[0].stop(1)
        else:
            readings = [reading for c in collectors for reading in c.stop(1)]
        plugin.runs[item.nodeid] = ("passed", end - plugin.started, readings)
