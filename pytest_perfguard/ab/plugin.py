"""pytest hooks of an A/B session (`--perf-against BASE`): registered instead of the
measuring session, so nothing is compared with the baselines file.

The head is this pytest process. For each gated test that the base has too, its call phase
becomes a series of pairs (`pairing.pair_test`) with the base worker, which holds the same
test in its own call phase; fixtures are set up once per side. Gated tests the base lacks
run once, as usual, and are reported as new; unmarked tests run once, as usual, and are not
compared (unless ``--perf-gate all``).
"""

from __future__ import annotations

import signal
import sys
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
from .finish import ABResult, ABSummary, PairedTest, finish_ab, judge
from .pairing import (
    MODES,
    BaseProcess,
    Mode,
    PairedRun,
    PairingPlan,
    WorkerError,
    confirm_test,
    pair_test,
    python_for_base,
    usable_cpus,
    worker_args,
)
from .series import pair_series

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
    args = _worker_args(config, checkout.path)
    try:
        worker = BaseProcess(
            checkout.path,
            python_for_base(settings.against_python),
            args,
            count=counter is not None,
        )
    except WorkerError as exc:
        checkout.remove()
        raise pytest.UsageError(f"--perf-against {label}: {exc}") from None
    return ABSession(
        config, settings, checkout, worker, mode, cpus, platform, db_url, note,
        counter=counter, base_args=args,
    )  # fmt: skip


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
    )


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
        worker: BaseProcess,
        mode: Mode,
        cpus: list[int] | None,
        platform: PlatformInfo,
        db_url: str | None,
        note: str,
        *,
        counter: CallgrindCounter | None = None,
        base_args: list[str] | None = None,
    ) -> None:
        assert mode in MODES
        self.config = config
        self.settings = settings
        self.label = settings.against or ""
        self.checkout = checkout
        self.worker: BaseProcess | None = worker
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
        self.tests: dict[str, PairedTest] = {}
        self.plan: PairingPlan | None = None
        self.counter = counter  # both sides count instructions (under callgrind)
        self.base_args = base_args or []  # the base worker's pytest arguments
        self.confirm_messages: list[str] = []
        self.pairing = False
        self.ready = False
        self.result: ABResult | None = None
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
        mode = "instruction counts" if self.counter is not None else self.mode
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

    def pytest_collection_finish(self, session: pytest.Session) -> None:
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
        head_ids = {item.nodeid for item in session.items}
        for item in session.items:
            nodeid = item.nodeid
            if nodeid not in self.gated:
                continue
            if nodeid in in_base:
                self.order.append(nodeid)
            else:
                self.new.append((nodeid, self.specs.get(nodeid), True))
        gate_all = self.settings.gate == "all"
        self.removed = [
            t for t, marked in in_base.items() if (marked or gate_all) and t not in head_ids
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

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        if self.pairing or not self.ready or pyfuncitem.nodeid not in self.gated:
            return None
        nodeid = pyfuncitem.nodeid
        if nodeid not in self.order:
            return None  # new: runs once, as usual
        index = self.order.index(nodeid)
        following = self.order[index + 1] if index + 1 < len(self.order) else None
        worker, plan = self.worker, self.plan
        assert worker is not None and plan is not None
        spec, gated = self.specs.get(nodeid), self.gated[nodeid]
        entry = self.tests[nodeid] = PairedTest(spec, gated, PairedRun())
        self.pairing = True
        try:
            worker.send({"op": "test", "id": nodeid, "next": following})
            answer = worker.recv()
            if answer["op"] != "ready":
                entry.run.base_error = answer.get("error", "did not run")
                pyfuncitem.runtest()
                return True
            if spec is not None and spec.warmup:
                plan.warmup = spec.warmup
            else:
                plan.warmup = 1
            try:
                entry.run = pair_test(
                    plan,
                    worker,
                    pyfuncitem.runtest,
                    pyfuncitem.funcargs.get("perf"),
                    lambda base, head: pair_series(base, head, spec, gated),
                    lambda series: _threshold(series.threshold, spec, self.settings.threshold),
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
        if self.worker is not None:
            self.worker.quit()  # it tears down while the verdicts are made
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
        )
        tests = {k: v for k, v in self.tests.items() if v.outcome != "skipped"}
        confirmations = self._confirm(tests, summary) if self.counter is None else None
        self.result = finish_ab(
            tests,
            self.new,
            self.removed,
            summary,
            settings=self.settings,
            db_url=self.db_url,
            exitstatus=int(exitstatus),
            confirmations=confirmations,
        )
        self.result.messages += [(text, {"yellow": True}) for text in self.confirm_messages]
        if self.result.fail_session and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _confirm(
        self, tests: dict[str, PairedTest], summary: ABSummary
    ) -> dict[str, PairedRun] | None:
        """Pair each test flagged as a regression again, between two fresh processes (a new
        base worker and a head worker running this checkout's code): a difference between
        the first pairing's two processes is not carried over, a change in the code is.
        Nothing is confirmed, and the verdicts stand, when the fresh workers cannot start."""
        comparison, _, _ = judge(tests, [], [], summary, self.settings.gate == "none")
        flagged = list(dict.fromkeys(
            v.test for v in comparison.verdicts if v.kind == "regression" and v.gated
        ))  # fmt: skip
        if not flagged or self.plan is None:
            return None
        config = self.config
        head_args = _worker_args(config, config.rootpath)
        base: BaseProcess | None = None
        head: BaseProcess | None = None
        found: dict[str, PairedRun] = {}
        try:
            base = BaseProcess(
                self.checkout.path, python_for_base(self.settings.against_python), self.base_args
            )
            head = BaseProcess(
                config.rootpath, sys.executable, head_args, start_line_path=base.start_line_path
            )
            for side in (base, head):
                hello = side.wait_hello()
                if hello["errors"] or hello["imports"]:
                    raise WorkerError((hello["errors"] or hello["imports"])[0])
            for index, test in enumerate(flagged):
                following = flagged[index + 1] if index + 1 < len(flagged) else None
                found[test] = self._confirm_test(test, following, base, head)
        except WorkerError as exc:
            self.confirm_messages.append(
                f"perfguard: regressions not confirmed in fresh processes: {exc}"
            )
        finally:
            for started in (head, base):
                if started is not None:
                    started.close()
        return found

    def _confirm_test(
        self, test: str, following: str | None, base: BaseProcess, head: BaseProcess
    ) -> PairedRun:
        assert self.plan is not None
        entry = self.tests[test]
        self.plan.warmup = entry.spec.warmup if entry.spec and entry.spec.warmup else 1
        for side in (base, head):
            side.send({"op": "test", "id": test, "next": following})
        answers = [side.recv() for side in (base, head)]
        try:
            not_ready = [a.get("error", "did not run") for a in answers if a["op"] != "ready"]
            if not_ready:
                for side, answer in zip((base, head), answers, strict=True):
                    if answer["op"] == "ready":
                        side.send({"op": "end"})
                return PairedRun(base_error=not_ready[0])
            return confirm_test(
                self.plan,
                base,
                head,
                lambda b, h: pair_series(b, h, entry.spec, entry.gated),
                lambda series: _threshold(series.threshold, entry.spec, self.settings.threshold),
            )
        finally:
            for side in (base, head):
                while side.recv()["op"] != "done":
                    pass

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.result is None:
            return
        terminalreporter.write_sep("-", "perfguard A/B")
        for text, markup in self.result.terminal_lines(self.config.get_verbosity() > 0):
            terminalreporter.write_line(text, **markup)

    def close(self) -> None:
        """Stop the worker and remove the worktree; safe to call more than once."""
        worker, self.worker = self.worker, None
        if worker is not None:
            try:
                worker.close()
            except BaseException:
                worker.kill()
                raise
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
