"""pytest hooks only: options, the marker, the `perf` fixture and the measuring session.

Inactive (no ``--perf*`` flag, no ``perf = true``, no ``PERFGUARD=1``), only
``pytest_addoption``, ``pytest_configure`` and the fixture exist: no per-test hook runs and
nothing heavy is imported. Active, a :class:`PerfPlugin` is registered that times each
call phase and, at session end, hands the measurements to :mod:`pytest_perfguard.session`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from . import __version__, hookspecs
from .config import OPTIONS, ConfigError, Option, is_active
from .measure import (
    Confirmation,
    PerfRecorder,
    PerfSpec,
    PerfUsageError,
    TestRun,
    parse_marker,
)

if TYPE_CHECKING:
    from .measure import Collector, Reading
    from .results import Measurement, TestOutcome
    from .session import CalibrationResult, SessionResult
    from .settings import PerfSettings

SESSION_KEY = pytest.StashKey["PerfPlugin"]()
# A marked test without rounds= takes at most this many calls within --perf-rounds-budget.
MAX_AUTO_ROUNDS = 50
SPEC_KEY = pytest.StashKey[PerfSpec]()
RECORDER_KEY = pytest.StashKey[PerfRecorder]()
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
    if not is_active(cli, os.environ, ini):
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
    from . import collectors  # lazy: built-ins ride the public hook

    config.pluginmanager.register(collectors, "perfguard-collectors")
    plugin = PerfPlugin(config, settings, context)
    config.stash[SESSION_KEY] = plugin
    config.pluginmanager.register(plugin, "perfguard-session")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfRecorder:
    """Record custom metrics, time steps and micro-benchmark code inside a test."""
    plugin = request.config.stash.get(SESSION_KEY, None)
    recorder = PerfRecorder(active=plugin is not None)
    if plugin is not None:
        request.node.stash[RECORDER_KEY] = recorder
    return recorder


def _outcome_of(exc: BaseException) -> TestOutcome:
    if isinstance(exc, pytest.skip.Exception):
        return "skipped"
    return "failed"


class PerfPlugin:
    """The measuring session, registered only when perfguard is active."""

    def __init__(self, config: pytest.Config, settings: PerfSettings, context: Any) -> None:
        self.config = config
        self.settings = settings
        self.context = context
        self.started_at = datetime.now(timezone.utc)
        self.collectors: tuple[Collector, ...] = ()
        self.runs: dict[str, TestRun] = {}
        self.selected: set[str] = set()
        self.worker_rows: list[dict[str, Any]] = []
        self.result: SessionResult | CalibrationResult | None = None
        self.estimator = settings.estimator
        self.rounds_budget = settings.rounds_budget
        # Re-runs (confirm, calibration) pool their samples into the first run's.
        self.rerunning = False
        self.confirmations: dict[tuple[str, str], Confirmation] = {}
        self.calibration_passes: list[list[Measurement]] = []

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"perfguard: {__version__}, platform {self.context.platform.key}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        found = self.config.hook.pytest_perfguard_collectors(config=self.config)
        self.collectors = tuple(c for group in found if group for c in group)

    @pytest.hookimpl(wrapper=True)
    def pytest_pycollect_makeitem(
        self, collector: pytest.Collector, name: str, obj: object
    ) -> Generator[None, Any, Any]:
        result = yield
        if result is None:
            return result
        for item in result if isinstance(result, list) else (result,):
            if not isinstance(item, pytest.Function):
                continue
            marker = item.get_closest_marker("perf")
            if marker is None:
                continue
            try:
                item.stash[SPEC_KEY] = parse_marker(marker.args, dict(marker.kwargs))
            except PerfUsageError as exc:
                raise collector.CollectError(f"{item.nodeid}: {exc}") from None
        return result

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = {item.nodeid for item in session.items}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        spec = item.stash.get(SPEC_KEY, None)
        collectors = self.collectors
        durations: list[float] = []
        try:
            if spec is not None and (spec.rounds > 1 or spec.warmup):
                self._run_extra_rounds(item, spec, durations)
            else:
                for collector in collectors:
                    collector.start()
            start = _clock()
            try:
                yield
            finally:
                durations.append(_clock() - start)
            if spec is not None and spec.auto_rounds and self.rounds_budget:
                self._run_auto_rounds(item, durations)
        except BaseException as exc:
            self._finish(item, spec, durations, _outcome_of(exc))
            raise
        self._finish(item, spec, durations, "passed")

    def _run_extra_rounds(self, item: pytest.Item, spec: PerfSpec, durations: list[float]) -> None:
        """Warmup and all counted rounds but the last, which pytest's own call runs."""
        recorder = item.stash.get(RECORDER_KEY, None)
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

    def _run_auto_rounds(self, item: pytest.Item, durations: list[float]) -> None:
        """More calls of a marked test without rounds=, while the next fits the budget.

        `perf.benchmark` already calibrates its own rounds, so its tests are left alone."""
        recorder = item.stash.get(RECORDER_KEY, None)
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

    def _finish(
        self, item: pytest.Item, spec: PerfSpec | None, durations: list[float], outcome: TestOutcome
    ) -> None:
        readings: list[Reading] = []
        rounds = len(durations) or 1
        for collector in self.collectors:
            readings.extend(collector.stop(rounds))
        if outcome == "skipped" or not durations:
            return
        run = TestRun(
            item.nodeid,
            outcome,
            durations,
            readings,
            spec,
            item.stash.get(RECORDER_KEY, None),
        )
        if self.rerunning:
            first = self.runs.get(item.nodeid)
            if first is not None and outcome == "passed":
                first.pool(run)
            return
        self.runs[item.nodeid] = run

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        if self.settings.calibrate:
            from .reruns import calibrate

            self.calibration_passes = calibrate(self, session)
        elif self.settings.confirm_runs and self.runs:
            from .reruns import confirm

            self.confirmations.update(confirm(self, session))
        return result

    def rows(self) -> list[Measurement]:
        """Every measured test's rows, values by the session's estimator."""
        estimator = self.estimator
        return [row for run in self.runs.values() for row in run.measurements(estimator)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if output:
            self.worker_rows.extend(output["rows"])
            self.selected.update(output["selected"])
            for row in output.get("confirmations", ()):
                self.confirmations[(row["test"], row["metric"])] = Confirmation(
                    row["change"], row["reruns"]
                )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from .session import finish_session

        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if close is not None:
                close()
        rows = self.rows()
        if _is_worker(self.config):
            self.config.workeroutput[WORKER_OUTPUT_KEY] = {  # type: ignore[attr-defined]
                "rows": [row.to_dict() for row in rows],
                "selected": sorted(self.selected),
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
            rows,
            worker_rows=self.worker_rows,
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
