"""pytest hooks only: options, the marker, the `perf` fixture and the measuring session.

Inactive (no ``--perf*`` flag, no ``perf = true``, no ``PERFGUARD=1``), only
``pytest_addoption``, ``pytest_configure`` and the fixture exist: no per-test hook runs and
nothing heavy is imported. Active, a :class:`PerfPlugin` is registered whose hooks own a
:class:`~pytest_perfguard.runlog.RunLog` (the measuring state and the logic of a measured
call) and hand it on: to the re-runs after the main loop and, at session end, its rows to
:mod:`pytest_perfguard.session`. Nothing imports this module.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from ._version import __version__
from .config import OPTIONS, ConfigError, Option, is_active
from .measure import PerfRecorder
from .rootdir_check import rootdir_moved_by_option

if TYPE_CHECKING:
    from .runlog import RunLog
    from .session import CalibrationResult, SessionContext, SessionResult

RUN_LOG_KEY = pytest.StashKey["RunLog"]()
# The options that take a value: given apart from its flag, an existing path moves the rootdir.
VALUE_FLAGS = tuple(option.flag for option in OPTIONS if not option.is_flag)

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
                action="append" if option.repeatable else "store",
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
    moved = rootdir_moved_by_option(config, VALUE_FLAGS)
    if moved:
        raise pytest.UsageError(f"perfguard: {moved}")
    cli, ini = _cli_values(config), _ini_values(config)
    if not is_active(cli, os.environ, ini, config.rootpath):
        return
    from .session import open_session
    from .settings import resolve  # lazy: only active sessions resolve settings

    try:
        settings = resolve(cli, os.environ, ini, config.rootpath)
        if settings.against:  # A/B: the base is measured now; no baselines file involved
            from .ab.plugin import start_ab_session

            config.pluginmanager.register(start_ab_session(config, settings), "perfguard-ab")
            return
        context = open_session(settings, config.rootpath, is_worker=_is_worker(config))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.calibrate and getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(
            "--perf-calibrate: runs the tests in this process; drop -n/--dist for calibration"
        )
    from . import collectors  # lazy: built-ins ride the public hook
    from .runlog import RunLog
    from .valgrind import valgrind_options

    config.pluginmanager.register(collectors, "perfguard-collectors")
    if settings.instructions or valgrind_options() is not None:  # else it could count nothing
        from .instructions import InstructionCounting

        counting = InstructionCounting(
            count_all=settings.gate == "all", required=settings.instructions
        )
        config.pluginmanager.register(counting, "perfguard-instructions")
    log = RunLog(settings)
    # The item classes' `runtest` back even where the session end never ran (`close` puts
    # it back there first).
    config.add_cleanup(log.restore_classes)
    config.stash[RUN_LOG_KEY] = log
    config.pluginmanager.register(PerfPlugin(config, context, log), "perfguard-session")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfRecorder:
    """Record custom metrics, time steps and micro-benchmark code inside a test."""
    log = request.config.stash.get(RUN_LOG_KEY, None)
    recorder = PerfRecorder(active=log is not None, budget=log.benchmark_budget if log else None)
    if log is not None:
        log.recorders[id(request.node)] = recorder
    return recorder


class PerfPlugin:
    """The measuring session's hooks, registered only when perfguard is active.

    A test's call is measured from inside its own ``runtest``, wrapped at collection
    (`RunLog.wrap_calls`): no hook runs per test for it. pluggy's dispatch to the two
    implementations that bracketed the call before cost 7.4 k instructions a test, the
    wrapper 0.7 k (docs/architecture.md). A call that raises never reaches the wrapper's
    end: the failure arrives through ``pytest_exception_interact``, and a call that ended
    in neither (a skip or an xfail inside the test) is dropped when the next one starts.
    """

    def __init__(self, config: pytest.Config, context: SessionContext, log: RunLog) -> None:
        self.config = config
        self.context = context
        self.log = log
        self.result: SessionResult | CalibrationResult | None = None

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"perfguard: {__version__}, platform {self.context.platform.key}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        found = self.config.hook.pytest_perfguard_collectors(config=self.config)
        self.log.use_collectors(tuple(c for group in found if group for c in group))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Parse every `perf` marker once; a bad one is a collection error of its test."""
        bad = self.log.read_markers(items)
        if bad:
            for item in items:
                if id(item) in bad:
                    report = pytest.CollectReport(item.nodeid, "failed", bad[id(item)], [])
                    session.ihook.pytest_collectreport(report=report)
            items[:] = [item for item in items if id(item) not in bad]
        self.log.wrap_calls(items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.context.baselined_tests():
            self.log.selected = {item.nodeid for item in session.items}

    @pytest.hookimpl(tryfirst=True)
    def pytest_exception_interact(
        self, node: pytest.Item | pytest.Collector, call: pytest.CallInfo[Any], report: Any
    ) -> None:
        if node is self.log.current and call.when == "call":
            self.log.end_current(_clock(), "failed")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        log = self.log
        if log.current is not None:
            log.drop_current()
        if log.settings.calibrate:
            from .reruns import calibrate

            log.calibration_passes = calibrate(log, session)
        elif log.settings.confirm_runs and log.has_runs():
            from .reruns import confirm

            confirmations, log.final_rows = confirm(log, self.context, session)
            log.confirmations.update(confirmations)
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        from .runlog import WORKER_OUTPUT_KEY

        output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if output:
            self.log.add_worker_output(output)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.log.close()
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
        self._results(session, exitstatus)
        # Nothing per test outlives the session end: pytest's last full collections (at
        # unconfigure) would traverse it all again, in every process.
        self.log.forget_runs()

    def _results(self, session: pytest.Session, exitstatus: int) -> None:
        log = self.log
        if _is_worker(self.config):
            from .runlog import WORKER_OUTPUT_KEY

            self.config.workeroutput[WORKER_OUTPUT_KEY] = log.worker_output()  # type: ignore[attr-defined]
            return
        if log.settings.calibrate:
            from .session import finish_calibration

            self.result = finish_calibration(self.context, log.calibration_passes)
            return
        from .session import finish_session

        rows, plain = log.session_results()
        self.result = finish_session(
            self.context,
            rows,
            plain=plain,
            selected=log.selected,
            started_at=log.started_at,
            exitstatus=int(exitstatus),
            args=list(self.config.invocation_params.args),
            system_info=log.system_info(),
            confirmations=log.confirmations,
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
