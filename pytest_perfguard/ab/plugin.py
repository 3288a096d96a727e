"""pytest hooks of an A/B session (`--perf-against BASE`): registered instead of the
measuring session, so nothing is compared with the baselines file.

With one lane (`--perf-ab-lanes 1`, or one CPU) the head is this pytest process: for each
gated test that the base has too, its call phase becomes a series of pairs
(`pairing.pair_test`) with the base worker, which holds the same test in its own call
phase; fixtures are set up once per side. With more lanes (`lanes`), every such test is
paired between a base worker and a head worker of a lane, the lanes at once. Then, as a
rule, this process does not collect at all: the lanes' head workers collect, run every
test (paired, or once) and report, and this process replays their reports
(`controller`); where an option needs the tests here (`controller.controller_blocker`),
it collects, the lanes pair before the normal loop, and the loop runs each test once in
this process for its outcome. Gated tests the base lacks run once and are reported as
new; unmarked tests run once and are not compared (unless ``--perf-gate all``).
"""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from .._version import __version__
from ..measure import PerfSpec, PerfUsageError, parse_marker
from ..platform import detect_platform
from ..results import PlatformInfo, TestOutcome
from ..settings import PerfSettings
from ..valgrind import CallgrindCounter, CallgrindError, open_callgrind_counter, valgrind_tool
from .base import BaseCheckout, BaseError, resolve_base
from .controller import (
    Replay,
    controller_blocker,
    deselected_items,
    replay_warnings,
    reporting_options,
)
from .finish import (
    ABResult,
    ABSummary,
    PairedTest,
    confirmation_plan,
    draws_again,
    due_a_draw,
    finish_ab,
    judge,
    likely_lean,
    likely_regression,
)
from .lanes import Lane, close_workers, lane_count, lane_cpus, run_lanes, start_lanes
from .pairing import (
    MODES,
    Mode,
    PairedRun,
    PairingPlan,
    Worker,
    WorkerError,
    WorkerProcess,
    confirmation_args,
    forwarded_options,
    pair_on_workers,
    pair_test,
    python_for_base,
    usable_cpus,
    worker_args,
)
from .series import Round, Series, pair_series
from .worker import NOT_COLLECTED

# Without `--perf-ab-mode`. Measured (benchmarks/ab/RESULTS.md, docs/ab.md "Which mode"):
# on a calm host both modes kept their calm and their detections, duet in less time; on a
# shared host whose two vCPUs change speed from one millisecond to the next, each on its
# own, duet's pairs (one side on each vCPU) carry that difference and it detected 53 % of
# +25 % slowdowns (17 % under busy loops) against interleave's 87 % (83 %), in 17 % more
# time quiet and the same under load. Interleave compares calls taken moments apart on
# one CPU.
DEFAULT_MODE: Mode = "interleave"


def start_ab_session(config: pytest.Config, settings: PerfSettings) -> ABSession:
    """Check the options, check out the base and start its worker; a UsageError (exit 4)
    with one line when any of it fails. Never opens the baselines file."""
    label = settings.against or ""
    platform = detect_platform(settings.platform)
    db_url = None
    if settings.record:
        from ..history.errors import HistoryError
        from ..history.urls import resolve_db_url

        try:
            db_url = resolve_db_url(settings.db, config.rootpath)
        except HistoryError as exc:
            raise pytest.UsageError(str(exc)) from None
    if getattr(config.option, "dist", "no") not in ("no", None) or getattr(
        config.option, "numprocesses", None
    ):
        raise pytest.UsageError(f"--perf-against {label}: runs without xdist; drop -n/--dist")
    if settings.calibrate or settings.update_baselines:
        flag = "--perf-calibrate" if settings.calibrate else "--perf-update-baselines"
        raise pytest.UsageError(f"--perf-against {label}: cannot be combined with {flag}")
    counter = _open_counter(label, settings.instructions)
    try:
        checkout = resolve_base(label, config.rootpath)
    except BaseError as exc:
        raise pytest.UsageError(str(exc)) from None
    cpus = usable_cpus()
    mode: Mode
    if settings.ab_mode is None:
        mode, note = DEFAULT_MODE, ""
    elif settings.ab_mode == "duet" and (cpus is None or len(cpus) < 2):
        mode, note = "interleave", "duet needs two CPUs this process may pin: interleaving"
    else:
        mode, note = settings.ab_mode, ""
    count, lanes_note = lane_count(settings.ab_lanes, mode, cpus, counting=counter is not None)
    args = _worker_args(config, checkout.path)
    python = python_for_base(settings.against_python)
    lanes: list[Lane] = []
    copies = count if count > 1 and cpus else 1
    # With lanes, this process leaves the head's tests to the lanes' head workers
    # (`controller`) unless an option needs them here.
    controlling = copies > 1 and controller_blocker(config) is None
    head_args = (reporting_options(config) if controlling else []) + _worker_args(
        config, config.rootpath
    )
    try:
        worker = WorkerProcess(
            checkout.path, python, args, count=counter is not None, copies=copies
        )
    except WorkerError as exc:
        checkout.remove()
        raise pytest.UsageError(f"--perf-against {label}: {exc}") from None
    if copies > 1 and cpus:
        # The lanes' workers start now, beside the head's collection, as the base worker
        # does: a head worker with a copy per lane, as the base worker has. Extra lanes
        # are closed once collection tells how many tests there are to pair.
        try:
            lanes = start_lanes(
                lane_cpus(mode, cpus, count),
                worker,
                lambda base: _head_worker(config, base, head_args),
            )
        except WorkerError as exc:
            close_workers([worker])
            checkout.remove()
            raise pytest.UsageError(f"--perf-against {label}: {exc}") from None
    return ABSession(
        config, settings, checkout, worker, mode, cpus, platform, db_url,
        "; ".join(n for n in (note, lanes_note) if n), counter=counter, lanes=lanes,
        controlling=controlling and bool(lanes),
    )  # fmt: skip


def _head_worker(
    config: pytest.Config, base: WorkerProcess, args: list[str] | None = None
) -> WorkerProcess:
    """A worker rooted at this checkout (the head's code, this interpreter), with as many
    copies as `base`, the worker it pairs with, each sharing the duet start line of its
    copy of `base`; `args` its pytest arguments (by default this session's test paths and
    selection, `_worker_args`)."""
    return WorkerProcess(
        config.rootpath,
        sys.executable,
        _worker_args(config, config.rootpath) if args is None else args,
        start_lines=[copy.start_line_path for copy in base.copies],
        name="head worker",
        copies=len(base.copies),
    )


def _confirmation_args(config: pytest.Config, root: Path, tests: list[str]) -> list[str]:
    """A confirmation worker's pytest arguments for a checkout at `root`: the files of the
    paired `tests` (`confirmation_args`), else this session's test paths (`_worker_args`)."""
    narrow = confirmation_args(
        tests, root, config.option.keyword or "", config.option.markexpr or ""
    )
    if narrow is None:
        return _worker_args(config, root)
    return [*narrow, *forwarded_options(config.invocation_params.args)]


def _worker_args(config: pytest.Config, root: Path) -> list[str]:
    """A worker's pytest arguments for a checkout at `root`: this session's test paths that
    exist there, and its -k / -m selection."""
    return worker_args(
        [str(a) for a in config.args],
        config.invocation_params.dir,
        config.rootpath,
        root,
        config.option.keyword or "",
        config.option.markexpr or "",
        ignore=config.option.ignore or (),
        ignore_glob=config.option.ignore_glob or (),
    ) + forwarded_options(config.invocation_params.args)


def _open_counter(label: str, required: bool) -> CallgrindCounter | None:
    """The head's instruction counter when pytest runs under callgrind (then both sides are
    counted and the counts are compared, not the time); a UsageError with one line when
    it runs there but cannot count, or when `--perf-instructions` asks for counts outside
    callgrind."""
    if not required and valgrind_tool() != "callgrind":
        return None
    try:
        counter = open_callgrind_counter()
    except CallgrindError as exc:
        raise pytest.UsageError(f"--perf-against {label}: {exc}") from None
    if counter is None and required:
        from ..instructions import why_not_counted

        raise pytest.UsageError(f"perfguard: --perf-instructions: {why_not_counted()}")
    return counter


class ABSession:
    """The A/B session's hooks; see the module docstring."""

    def __init__(
        self,
        config: pytest.Config,
        settings: PerfSettings,
        checkout: BaseCheckout,
        worker: Worker,
        mode: Mode,
        cpus: list[int] | None,
        platform: PlatformInfo,
        db_url: str | None,
        note: str,
        *,
        counter: CallgrindCounter | None = None,
        lanes: list[Lane] | None = None,
        controlling: bool = False,
    ) -> None:
        assert mode in MODES
        self.config = config
        self.settings = settings
        self.label = settings.against or ""
        self.checkout = checkout
        self.worker: Worker | None = worker
        self.mode = mode
        self.cpus = cpus
        self.platform = platform
        self.db_url = db_url
        self.note = note
        self.started_at = datetime.now(timezone.utc)
        self.specs: dict[str, PerfSpec | None] = {}
        self.gated: dict[str, bool] = {}
        self.order: list[str] = []  # paired tests in run order
        self.new: list[tuple[str, PerfSpec | None, bool]] = []
        self.removed: list[str] = []
        # Tests this session deselected (--deselect, --lf, a plugin): not "removed".
        self.deselected: set[str] = set()
        self.tests: dict[str, PairedTest] = {}
        self.plan: PairingPlan | None = None
        self.counter = counter  # both sides count instructions (under callgrind)
        self.messages: list[str] = []  # for the A/B summary: lanes given up, confirmations
        self.lanes = lanes or []  # empty: the head process pairs with `worker`
        # Every worker process this session started, for `close`.
        self.workers = [worker, *(w for lane in self.lanes for w in lane.workers)]
        self.lane_tests: list[str] = []  # what the lanes pair, in collection order
        self.lane_runs: dict[str, PairedRun] = {}
        self.lane_errors: dict[str, str] = {}  # tests whose lane's worker died
        self.lane_plans: dict[int, PairingPlan] = {}  # by id() of the lane
        # Likely regressions, paired again in fresh processes while the lanes ran.
        self.lane_confirmations: dict[str, PairedRun] = {}
        # The lanes of fresh workers that confirm regressions, once one needed them.
        self.confirming: list[Lane] = []
        self.pairing = False
        self.ready = False
        self.result: ABResult | None = None
        # This process does not collect: the lanes' head workers run every test and
        # their reports are replayed here (`controller`).
        self.controlling = controlling
        self.head_tests: list[str] = []  # what the head workers collected, to run
        self.locations: dict[str, tuple[str, int | None, str]] = {}
        self._previous_sigterm: Any = None
        if hasattr(signal, "SIGTERM"):
            try:
                self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:  # not the main thread
                self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # As Ctrl-C: pytest unwinds, and pytest_unconfigure removes the worktree.
        raise KeyboardInterrupt

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        mode: str = "instruction counts" if self.counter is not None else self.mode
        if self.lanes:
            mode = f"{mode}, {len(self.lanes)} lanes"
        if self.controlling:
            mode += "; the tests run in the lanes' head workers"
        lines = [
            f"perfguard: {__version__}, platform {self.platform.key}, A/B against "
            f"{self.checkout.describe} ({mode})"
        ]
        if self.note:
            lines.append(f"perfguard: {self.note}")
        return lines

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        bad: dict[str, str] = {}
        gate_all = self.settings.gate == "all"
        for item in items:
            if not isinstance(item, pytest.Function):
                continue
            marker = item.get_closest_marker("perf")
            if marker is None:
                if gate_all:
                    self.specs[item.nodeid] = None
                    self.gated[item.nodeid] = True
                continue
            try:
                self.specs[item.nodeid] = parse_marker(marker.args, dict(marker.kwargs))
            except PerfUsageError as exc:
                bad[item.nodeid] = f"{item.nodeid}: {exc}"
                continue
            self.gated[item.nodeid] = True
        if bad:
            for nodeid, message in bad.items():
                report = pytest.CollectReport(nodeid, "failed", message, [])
                session.ihook.pytest_collectreport(report=report)
            items[:] = [item for item in items if item.nodeid not in bad]

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        self.deselected.update(item.nodeid for item in items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool | None:
        """When controlling, the head worker's collection stands for this process's."""
        if not self.controlling:
            return None
        config = session.config
        try:
            hello = self.lanes[0].head.wait_hello()
        except WorkerError as exc:
            raise pytest.UsageError(f"--perf-against {self.label}: {exc}") from None
        if hello["imports"]:
            raise pytest.UsageError(
                f"--perf-against {self.label}: {hello['imports'][0]} (see docs/ab.md, imports)"
            )
        replay_warnings(config, hello.get("warnings", []))
        for data in hello["collect_reports"]:
            report = config.hook.pytest_report_from_serializable(config=config, data=data)
            session.ihook.pytest_collectreport(report=report)
        gate_all = self.settings.gate == "all"
        for test in hello["tests"]:
            nodeid = test["id"]
            problem = None
            if test["marked"]:
                try:
                    if "marker_error" in test:
                        raise PerfUsageError(f"perf marker: {test['marker_error']}")
                    marker = test["marker"]
                    self.specs[nodeid] = parse_marker(marker["args"], marker["kwargs"])
                    self.gated[nodeid] = True
                except PerfUsageError as exc:
                    problem = f"{nodeid}: {exc}"
            elif gate_all:
                self.specs[nodeid], self.gated[nodeid] = None, True
            if problem is None:
                self.head_tests.append(nodeid)
                path, line, name = test["location"]
                self.locations[nodeid] = (path, line, name)
            else:
                report = pytest.CollectReport(nodeid, "failed", problem, [])
                session.ihook.pytest_collectreport(report=report)
        if hello["deselected"]:
            self.deselected.update(hello["deselected"])
            config.hook.pytest_deselected(items=deselected_items(hello["deselected"]))
        session.testscollected = len(self.head_tests)
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None and config.get_verbosity() >= 0:
            found = len(self.head_tests) + len(self.deselected)
            line = f"collected {found} item{'' if found == 1 else 's'}"
            if self.deselected:
                line += f" / {len(self.deselected)} deselected / {len(self.head_tests)} selected"
            terminal.write_line(line + " (by the head worker)", bold=True)
        self._match_base(self.head_tests)
        return True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._match_base([item.nodeid for item in session.items])

    def _match_base(self, head_tests: list[str]) -> None:
        """Compare the head's collected tests (node ids, in order) with the base worker's:
        which are paired, new and removed; then plan the pairs."""
        label = self.label
        assert self.worker is not None
        try:
            hello = self.worker.wait_hello()
        except WorkerError as exc:
            raise pytest.UsageError(f"--perf-against {label}: {exc}") from None
        if hello["errors"]:
            raise pytest.UsageError(
                f"--perf-against {label}: the base's tests could not be collected: "
                f"{hello['errors'][0]}"
            )
        if hello.get("count_error"):
            raise pytest.UsageError(
                f"--perf-against {label}: cannot count the base's instructions: "
                f"{hello['count_error']}"
            )
        if hello["imports"]:
            raise pytest.UsageError(
                f"--perf-against {label}: {hello['imports'][0]} (see docs/ab.md, imports)"
            )
        in_base = {t["id"]: t["marked"] for t in hello["tests"]}
        head_ids = set(head_tests)
        for nodeid in head_tests:
            if nodeid not in self.gated:
                continue
            if nodeid in in_base:
                self.order.append(nodeid)
            else:
                self.new.append((nodeid, self.specs.get(nodeid), True))
        gate_all = self.settings.gate == "all"
        self.removed = [
            t
            for t, marked in in_base.items()
            if (marked or gate_all) and t not in head_ids and t not in self.deselected
        ]
        self.plan = PairingPlan(
            mode=self.mode,
            budget=self.settings.ab_budget,
            q=self.settings.q,
            metrics=max(1, len(self.order)),
            cpus=self.cpus,
            counter=self.counter,
        )
        self.ready = True
        self._ready_lanes()

    def _ready_lanes(self) -> None:
        """Keep as many lanes as there are tests to pair; fewer than two leaves the pairs
        to this process and the base worker, as with `--perf-ab-lanes 1`."""
        if not self.lanes:
            return
        keep = min(len(self.lanes), len(self.order))
        if self.controlling:
            keep = max(1, min(len(self.lanes), len(self.head_tests)))
        elif keep < 2:
            keep = 0
            self._unpin_base()
        for lane in self.lanes[keep:]:
            for worker in lane.workers:
                if worker is not self.worker:
                    worker.quit()  # closed with the others at the end
        self.lanes = self.lanes[:keep]
        self.lane_tests = list(self.order)
        self._plan_lanes(self.lanes)

    def _unpin_base(self) -> None:
        """The base worker pairs with this process after all: a lane had kept it on one
        CPU."""
        if self.worker is not None:
            self.worker.pin(self.cpus)

    def _plan_lanes(self, lanes: list[Lane], *, confirming: bool = False) -> None:
        """Each lane pairs by a plan of its own: its CPUs, its random draws, its counts;
        a confirmation lane's looks are a confirmation's (`finish.confirmation_plan`)."""
        assert self.plan is not None
        plan = confirmation_plan(self.plan) if confirming else self.plan
        for lane in lanes:
            self.lane_plans[id(lane)] = replace(
                plan, cpus=lane.cpus, rng=random.Random(), late_starts=0
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """With lanes, pair every test they can before the normal loop runs the tests;
        when controlling, the lanes run every test and this is the loop."""
        if self.controlling:
            self._run_in_lanes(session)
            return True
        if not self.lanes or not self.lane_tests or session.config.option.collectonly:
            return None
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            return None  # pytest stops here with "errors during collection"
        results = run_lanes(
            self.lanes, self.lane_tests, self._pair_in_lane,
            confirm_if=self._likely_regression, redraw_if=self._leans,
            start_confirming=self._confirmation_lanes,
        )  # fmt: skip
        self.lane_runs, self.lane_errors = results.runs, results.errors
        self.lane_confirmations = results.confirmations
        for problem in dict.fromkeys(results.unusable):
            self.messages.append(f"perfguard: a lane could not start: {problem}")
        # What no lane could pair (no lane started), or a head worker did not collect (a
        # plugin of this process's own changed the collection), this process pairs with
        # the base worker during the loop, as with one lane.
        for test, run in list(self.lane_runs.items()):
            if run.head_error == NOT_COLLECTED:
                del self.lane_runs[test]
        if results.started == 0:
            self._unpin_base()
        assert self.plan is not None
        self.plan.late_starts += sum(plan.late_starts for plan in self.lane_plans.values())
        if all(test in self.lane_runs or test in self.lane_errors for test in self.order):
            self._quit_workers()
        return None

    def _run_in_lanes(self, session: pytest.Session) -> None:
        """The loop of a process that does not collect: the lanes pair each paired test
        and run every other once, their head workers reporting; the reports are replayed
        here in collection order as they come. As pytest's own loop, it stops at
        collection errors and where -x / --maxfail stop the session."""
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            errors = session.testsfailed
            plural = "s" if errors != 1 else ""
            raise session.Interrupted(f"{errors} error{plural} during collection")
        replay = Replay(list(self.head_tests))
        paired, label = set(self.order), self.label

        def work(lane: Lane, test: str) -> PairedRun:
            if not any(lane is own for own in self.lanes):  # a confirmation lane: no reports
                return self._pair_in_lane(lane, test)
            try:
                if test in paired:
                    found: list[dict[str, Any]] = []
                    run = self._pair_in_lane(lane, test, reported=found.append)
                    replay.add(test, found[0] if found else {}, run)
                    return run
                command = {"op": "test", "id": test, "keep": True, "run": True, "report": True}
                lane.head.send(command)
                while (message := lane.head.recv())["op"] != "done":
                    pass
            except WorkerError as exc:  # the lane ends (`run_lanes`); its test fails
                replay.add_failure(test, self.locations[test], f"--perf-against {label}: {exc}")
                raise
            replay.add(test, message, None)
            return PairedRun()

        def on_test(test: str, run: PairedRun | None) -> None:
            if run is not None:
                self.tests[test] = PairedTest(self.specs.get(test), self.gated[test], run)

        results = run_lanes(
            self.lanes, self.head_tests, work,
            confirm_if=lambda test, run: test in paired and self._likely_regression(test, run),
            redraw_if=lambda test, run: test in paired and self._leans(test, run),
            start_confirming=self._confirmation_lanes,
            progress=lambda: replay.replay(session, on_test),
            should_stop=lambda: replay.stopped,
        )  # fmt: skip
        self.lane_runs = results.runs
        self.lane_confirmations = results.confirmations
        for problem in dict.fromkeys(results.unusable):
            self.messages.append(f"perfguard: a lane could not start: {problem}")
        for lane in self.lanes:
            if lane.error is None:
                try:
                    lane.head.send({"op": "finish"})
                    while (message := lane.head.recv())["op"] != "finished":
                        pass
                    replay.add_extras(message)
                except WorkerError as exc:
                    lane.error = str(exc)
        # Tests no lane took: every lane's worker died (each on a test of its own).
        why = next((lane.error for lane in self.lanes if lane.error), "no lane could run it")
        for test in results.left:
            replay.add_failure(test, self.locations[test], f"--perf-against {label}: {why}")
        replay.replay(session, on_test)
        self._quit_workers()
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)

    def _quit_workers(self) -> None:
        """Every test is paired and every flag the lanes raised confirmed: the workers
        tear down (fixtures, their process's exit) while this process runs the tests once
        for their outcomes, instead of after it. `close` waits for them. A regression
        that still needs a confirmation at the end gets new confirmation lanes."""
        for worker in self.workers:
            worker.quit()
        self.worker = None
        self.confirming = []

    def _pair_in_lane(
        self,
        lane: Lane,
        test: str,
        reported: Callable[[dict[str, Any]], None] | None = None,
    ) -> PairedRun:
        """One test's pairs between a lane's two workers (in the lane's thread); the head
        worker reports the test's outcome to `reported` when given."""
        plan = self.lane_plans[id(lane)]
        spec, gated = self.specs.get(test), self.gated[test]
        plan.warmup = spec.warmup if spec is not None else 0
        return pair_on_workers(
            plan, lane.base, lane.head, test, *self._judging(spec, gated),
            keep=True, warm_together=False, reported=reported,
        )  # fmt: skip

    def _likely_regression(self, test: str, run: PairedRun) -> bool:
        return self._alone(likely_regression, test, run)

    def _leans(self, test: str, run: PairedRun) -> bool:
        return self._alone(likely_lean, test, run)

    def _alone(self, check: Callable[..., bool], test: str, run: PairedRun) -> bool:
        """`check` (`likely_regression`, `likely_lean`) on one test's pairs, judged alone
        while the lanes run."""
        assert self.plan is not None
        return check(
            run, self.specs.get(test), self.gated[test] and self.settings.gate != "none",
            q=self.settings.q, schedule=self.plan.schedule(), threshold=self.settings.threshold,
        )  # fmt: skip

    def _judging(
        self, spec: PerfSpec | None, gated: bool
    ) -> tuple[Callable[[list[Round], list[Round]], list[Series]], Callable[[Series], float]]:
        """A test's series of its pairs, and each series' threshold."""
        default = self.settings.threshold
        return (
            lambda base, head: pair_series(base, head, spec, gated),
            lambda series: _threshold(series.threshold, spec, default),
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        if self.pairing or not self.ready or pyfuncitem.nodeid not in self.gated:
            return None
        nodeid = pyfuncitem.nodeid
        if nodeid not in self.order:
            return None  # new: runs once, as usual
        spec, gated = self.specs.get(nodeid), self.gated[nodeid]
        if nodeid in self.lane_runs:  # paired in a lane: this is the head's outcome
            self.tests[nodeid] = PairedTest(spec, gated, self.lane_runs[nodeid])
            return None
        if nodeid in self.lane_errors:  # as when the base worker dies with one lane
            self.tests[nodeid] = PairedTest(spec, gated, PairedRun())
            raise pytest.UsageError(f"--perf-against {self.label}: {self.lane_errors[nodeid]}")
        index = self.order.index(nodeid)
        following = self.order[index + 1] if index + 1 < len(self.order) else None
        worker, plan = self.worker, self.plan
        assert worker is not None and plan is not None
        entry = self.tests[nodeid] = PairedTest(spec, gated, PairedRun())
        self.pairing = True
        try:
            worker.send({"op": "test", "id": nodeid, "next": following})
            answer = worker.recv()
            if answer["op"] != "ready":
                entry.run.base_error = answer.get("error", "did not run")
                pyfuncitem.runtest()
                return True
            plan.warmup = spec.warmup if spec is not None else 0
            try:
                entry.run = pair_test(
                    plan,
                    worker,
                    pyfuncitem.runtest,
                    pyfuncitem.funcargs.get("perf"),
                    *self._judging(spec, gated),
                )
            except WorkerError as exc:
                raise pytest.UsageError(f"--perf-against {self.label}: {exc}") from None
            return True
        finally:
            self.pairing = False
            try:
                while worker.recv()["op"] != "done":
                    pass
            except WorkerError:
                pass

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.get(report.nodeid)
        if entry is None:
            return
        outcome: TestOutcome | None = None
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        if outcome is not None and entry.outcome == "passed":
            entry.outcome = outcome

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        confirming = self.confirming
        for worker in self.workers:
            if not any(worker in lane.workers for lane in confirming):
                worker.quit()  # they tear down while the verdicts are made
        if not self.ready or self.plan is None:
            return
        summary = ABSummary(
            base_label=self.label,
            base_commit=self.checkout.commit,
            mode="instruction counts" if self.counter is not None else self.mode,
            platform=self.platform,
            threshold=self.settings.threshold,
            q=self.settings.q,
            schedule=self.plan.schedule(),
            started_at=self.started_at,
            rootdir=self.config.rootpath,
            args=list(self.config.invocation_params.args),
            run_type=self.settings.run_type,
            notes=self.settings.notes,
            late_starts=self.plan.late_starts,
            lanes=len(self.lanes) if self.lane_runs else 1,
        )
        tests = {k: v for k, v in self.tests.items() if v.outcome != "skipped"}
        confirmations: dict[str, PairedRun] | None = None
        second_draws: dict[str, PairedRun] | None = None
        try:
            if self.counter is None:
                confirmations = self._confirm(tests, summary)
        finally:
            for lane in confirming:
                for worker in lane.workers:
                    worker.quit()
        if confirmations:
            second_draws = self._draw_once_more(tests, summary, confirmations)
        self.result = finish_ab(
            tests,
            self.new,
            self.removed,
            summary,
            settings=self.settings,
            db_url=self.db_url,
            exitstatus=int(exitstatus),
            confirmations=confirmations,
            second_draws=second_draws,
        )
        self.result.messages += [(text, {"yellow": True}) for text in self.messages]
        if self.result.fail_session and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _confirm(
        self, tests: dict[str, PairedTest], summary: ABSummary
    ) -> dict[str, PairedRun] | None:
        """Pair each test flagged as a regression, or leaning to one, again between two
        fresh processes (a new base worker and a head worker running this checkout's code;
        with lanes, another lane's two): a difference between the first pairing's two
        processes is not carried over, a change in the code is (`finish.draws_again`).
        Nothing is confirmed or redrawn, and the verdicts stand, when the fresh workers
        cannot start."""
        comparison, _, _ = judge(tests, [], [], summary, self.settings.gate == "none")
        flagged = list(dict.fromkeys(v.test for v in comparison.verdicts if draws_again(v)))
        if not flagged or self.plan is None:
            return None
        found = {t: self.lane_confirmations[t] for t in flagged if t in self.lane_confirmations}
        rest = [test for test in flagged if test not in found]
        if rest and self.lane_runs:
            found.update(self._confirm_in_lanes(rest))
        elif rest:
            found.update(self._confirm_fresh(rest))
        return found

    def _draw_once_more(
        self, tests: dict[str, PairedTest], summary: ABSummary, first: dict[str, PairedRun]
    ) -> dict[str, PairedRun] | None:
        """The tests whose draws in fresh processes may still make a regression
        (`finish.due_a_draw`: a confirmation that leaned to one, or a redraw that bore one
        out and needs a second) are paired once more, in two other fresh processes."""
        gate_none = self.settings.gate == "none"
        comparison, _, _ = judge(tests, [], [], summary, gate_none, confirmations=first)
        due = list(dict.fromkeys(v.test for v in comparison.verdicts if due_a_draw(v)))
        return self._confirm_fresh(due) if due else None

    def _confirm_fresh(self, flagged: list[str]) -> dict[str, PairedRun]:
        """The confirmations in a new base worker and a new head worker, one test after
        the other."""
        assert self.plan is not None
        base: WorkerProcess | None = None
        head: WorkerProcess | None = None
        found: dict[str, PairedRun] = {}
        plan = confirmation_plan(self.plan)
        try:
            base = WorkerProcess(
                self.checkout.path,
                python_for_base(self.settings.against_python),
                _confirmation_args(self.config, self.checkout.path, self.order),
            )
            head = _head_worker(
                self.config, base, _confirmation_args(self.config, self.config.rootpath, self.order)
            )
            for side in (base, head):
                hello = side.wait_hello()
                if hello["errors"] or hello["imports"]:
                    raise WorkerError((hello["errors"] or hello["imports"])[0])
            for index, test in enumerate(flagged):
                entry = self.tests[test]
                plan.warmup = entry.spec.warmup if entry.spec else 0
                found[test] = pair_on_workers(
                    plan, base, head, test, *self._judging(entry.spec, entry.gated),
                    following=flagged[index + 1] if index + 1 < len(flagged) else None,
                )  # fmt: skip
        except WorkerError as exc:
            self._not_confirmed(str(exc))
        finally:
            close_workers([side for side in (head, base) if side is not None])
        return found

    def _confirmation_lanes(self) -> list[Lane]:
        """The lanes that confirm regressions, started at the first that needs them: a new
        base worker and a new head worker, each with a copy per lane, on the lanes' CPUs.
        Fresh processes, not the lanes' copies: whatever made one process of a pair faster
        than the other (where its data landed in memory) is drawn again. Raises
        WorkerError."""
        if self.confirming:
            return self.confirming
        base = WorkerProcess(
            self.checkout.path,
            python_for_base(self.settings.against_python),
            _confirmation_args(self.config, self.checkout.path, self.order),
            copies=len(self.lanes),
        )
        head_args = _confirmation_args(self.config, self.config.rootpath, self.order)
        try:
            lanes = start_lanes(
                [lane.cpus for lane in self.lanes],
                base,
                lambda b: _head_worker(self.config, b, head_args),
            )
        except WorkerError:
            close_workers(base.copies)
            raise
        self.workers += [worker for lane in lanes for worker in lane.workers]
        self._plan_lanes(lanes, confirming=True)
        self.confirming = lanes
        return lanes

    def _confirm_in_lanes(self, flagged: list[str]) -> dict[str, PairedRun]:
        """The confirmations of a session that paired in lanes and has flagged tests the
        lanes did not confirm: in the confirmation lanes, started now if no test needed
        them while the lanes ran."""
        try:
            lanes = self._confirmation_lanes()
        except WorkerError as exc:
            self._not_confirmed(str(exc))
            return {}
        results = run_lanes(lanes, flagged, self._pair_in_lane)
        if results.errors:
            self._not_confirmed(next(iter(results.errors.values())))
        elif results.left:
            self._not_confirmed(f"no confirmation lane could pair {results.left[0]}")
        return results.runs

    def _not_confirmed(self, why: str) -> None:
        self.messages.append(f"perfguard: regressions not confirmed in fresh processes: {why}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.result is None:
            return
        terminalreporter.write_sep("-", "perfguard A/B")
        for text, markup in self.result.terminal_lines(self.config.get_verbosity() > 0):
            terminalreporter.write_line(text, **markup)

    def close(self) -> None:
        """Stop the workers and remove the worktree; safe to call more than once."""
        workers, self.workers, self.worker = self.workers, [], None
        try:
            close_workers(workers)
        finally:
            self.checkout.remove()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None


def _threshold(own: float | None, spec: PerfSpec | None, default: float) -> float:
    if own is not None:
        return own
    if spec is not None and spec.threshold is not None:
        return spec.threshold
    return default
