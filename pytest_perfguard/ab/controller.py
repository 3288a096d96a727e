"""An A/B head process that does not collect: with lanes, the head's tests are imported,
collected and run in the lanes' head workers, as pytest-xdist's controller leaves them to
its workers, and this process replays their reports in collection order.

Why: this process would otherwise import and collect the suite a third time (the base
worker and the head worker do too) and run every test once more after the lanes paired
them; beside a memory-bandwidth hog, where an A/B run is CPU-bound, that was an eighth of
its time (benchmarks/ab/RESULTS.md). When does this process still collect and run the
tests itself: `controller_blocker`.

A head worker that reports runs every test of its lane: a paired test's outcome is that
of its pairs' head side (the first call's, as in this process; a later call's failure is
named in the A/B summary), an unpaired one (new, unmarked) runs once. Its reports come
back serialized with each test's ``done`` (`pytest_report_to_serializable`), with the
teardown reports of fixtures the lane kept for its next test (``late``) and the warnings
recorded meanwhile.
"""

from __future__ import annotations

import importlib
import json
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from .pairing import PairedRun
from .worker import REPORTING_ARG

# Command-line options this process reads and the head workers need not (perfguard's
# own, reporting) or get as given (`forwarded_options`, `reporting_options`), and the
# selection `worker_args` passes on. Any other option (a conftest's own, -s, --lf, --cov,
# --pdb) keeps the tests in this process, where they run as they always have.
_PLAIN_PREFIXES = (
    "--perf-",
    "--tb",
    "--color",
    "--code-highlight",
    "--durations",
    "--junitxml",
    "--junit-xml",
    "--junit-prefix",
    "--import-mode",
    "--override-ini",
    "--pythonwarnings",
    "--maxfail",
    "--showlocals",
    "--verbose",
    "--quiet",
    "--verbosity",
    "--no-header",
    "--no-summary",
    "--strict-markers",
    "--strict-config",
    "--noconftest",
    "--exitfirst",
    "--ignore",
    "--ignore-glob",
    "--basetemp",
)
# Short options given with their value (-k EXPR, -rA) or alone (-q, -vx).
_SHORT_WITH_VALUE = frozenset("kmoWr")
_SHORT_FLAGS = frozenset("qvxl")


def controller_blocker(config: pytest.Config) -> str | None:
    """Why this process must collect and run the head's tests itself (an option its head
    workers would not apply, or output that must appear as the tests run), or None."""
    option = config.option
    args = list(config.invocation_params.args)
    tokens = iter(args)
    for arg in tokens:
        if not arg.startswith("-") or arg == "-":
            continue  # a path or node id, or an option's value
        if arg.startswith("--"):
            if arg.startswith(_PLAIN_PREFIXES):
                continue
            return arg.partition("=")[0]
        letter, rest = arg[1:2], arg[2:]
        if letter == "p":
            name = rest or next(tokens, "")
            if not name.startswith("no:"):
                return f"-p {name}"
            continue
        if letter in _SHORT_WITH_VALUE:
            if not rest:
                next(tokens, None)
            continue
        if not set(arg[1:]) <= _SHORT_FLAGS:
            return arg
    capture = str(getattr(option, "capture", "fd"))
    if capture in ("no", "tee-sys"):
        return "--capture=" + capture
    for name, flag in (
        ("usepdb", "--pdb"),
        ("trace", "--trace"),
        ("lf", "--last-failed"),
        ("failedfirst", "--failed-first"),
        ("newfirst", "--new-first"),
        ("stepwise", "--stepwise"),
        ("stepwise_skip", "--stepwise-skip"),
        ("collectonly", "--collect-only"),
        ("continue_on_collection_errors", "--continue-on-collection-errors"),
        ("setupshow", "--setup-show"),
        ("setuponly", "--setup-only"),
        ("setupplan", "--setup-plan"),
        ("cov_source", "--cov"),
        ("runxfail", "--runxfail"),
    ):
        if getattr(option, name, None):
            return flag
    if config.getini("log_cli"):
        return "log_cli"
    return None


def reporting_options(config: pytest.Config) -> list[str]:
    """What a reporting head worker needs to write its reports as this process would:
    the traceback style, local variables, and the verbosity (assertion diffs), as its
    first argument (`worker.REPORTING_ARG`)."""
    options = {
        name: config.getoption(name, default)
        for name, default in (
            ("tbstyle", "auto"),
            ("showlocals", False),
            ("fulltrace", False),
            ("verbose", 0),
        )
    }
    out = [REPORTING_ARG + json.dumps(options)]
    basetemp = config.option.basetemp
    if basetemp:
        # The tests' temporary directories where this session was told to put them.
        out.append(f"--basetemp={config.invocation_params.dir / basetemp}")
    return out


@dataclass
class _Deselected:
    """A test the head worker deselected, for `pytest_deselected` here (only its id)."""

    nodeid: str


def deselected_items(nodeids: Sequence[str]) -> list[Any]:
    return [_Deselected(nodeid) for nodeid in nodeids]


def replay_warnings(config: pytest.Config, recorded: Sequence[dict[str, Any]]) -> None:
    """A worker's recorded warnings, as this process's `pytest_warning_recorded` (the
    warnings summary); a category that cannot be imported here becomes a UserWarning."""
    for entry in recorded:
        category: type[Warning] = UserWarning
        try:
            found = getattr(importlib.import_module(entry["module"]), entry["category"])
            if isinstance(found, type) and issubclass(found, Warning):
                category = found
        except Exception:  # any failure to resolve it keeps UserWarning
            category = UserWarning
        message = warnings.WarningMessage(
            category(entry["message"]), category, entry["filename"], entry["lineno"]
        )
        config.hook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": message,
                "when": entry["when"],
                "nodeid": entry["nodeid"],
                "location": None,
            }
        )


@dataclass
class _Arrived:
    reports: list[dict[str, Any] | pytest.TestReport]  # serialized, or made here
    run: PairedRun | None


@dataclass
class Replay:
    """Reports as the lanes' threads receive them (`arrived`, `late`), and their replay
    in this process's main thread, in collection order (`replay`)."""

    order: list[str]
    arrived: dict[str, _Arrived] = field(default_factory=dict)
    late: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    replayed: int = 0  # tests of `order` replayed
    stopped: bool = False  # -x, --maxfail or a plugin stopped the session
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, test: str, message: dict[str, Any], run: PairedRun | None) -> None:
        """A test's ``done`` from its head worker (in a lane's thread)."""
        with self.lock:
            self.arrived[test] = _Arrived(list(message.get("reports", [])), run)
            self._extras(message)

    def add_failure(self, test: str, location: Sequence[Any], why: str) -> None:
        """A test whose lane's worker died on it: it fails with the worker's exit."""
        path, line, name = location
        report = pytest.TestReport(
            test, (path, line, name), {}, "failed", why, "call", duration=0.0
        )
        with self.lock:
            self.arrived[test] = _Arrived([report], None)

    def add_extras(self, message: dict[str, Any]) -> None:
        with self.lock:
            self._extras(message)

    def _extras(self, message: dict[str, Any]) -> None:
        self.late += message.get("late", [])
        self.warnings += message.get("warnings", [])

    def replay(
        self, session: pytest.Session, on_test: Callable[[str, PairedRun | None], None]
    ) -> None:
        """Replay what arrived: each test whose turn has come (`on_test(test, run)` first),
        late teardown reports of tests already replayed, and warnings. Stops for good when
        the session should (as pytest's loop does after a test)."""
        config = session.config
        hook = config.hook
        with self.lock:
            before = set(self.order[: self.replayed])
            ready: list[tuple[str, _Arrived]] = []
            for test in self.order[self.replayed :]:
                if self.stopped or test not in self.arrived:
                    break
                ready.append((test, self.arrived.pop(test)))
            # A test's late teardown reports come after its own (one worker sent both).
            late: dict[str, list[dict[str, Any] | pytest.TestReport]] = {}
            kept = []
            taken = before | {test for test, _ in ready}
            for data in self.late:
                if data.get("nodeid") in taken:
                    late.setdefault(data["nodeid"], []).append(data)
                else:
                    kept.append(data)
            self.late = kept
        for test in before & late.keys():
            for entry in late[test]:
                if not self.stopped:
                    hook.pytest_runtest_logreport(report=_report(config, entry))
        for test, arrived in ready:
            if self.stopped:
                break
            on_test(test, arrived.run)
            reports = [_report(config, data) for data in [*arrived.reports, *late.get(test, [])]]
            location = reports[0].location if reports else (test, None, test)
            hook.pytest_runtest_logstart(nodeid=test, location=location)
            for report in reports:
                hook.pytest_runtest_logreport(report=report)
            hook.pytest_runtest_logfinish(nodeid=test, location=location)
            with self.lock:
                self.replayed += 1
                self.stopped = bool(session.shouldfail or session.shouldstop)
        with self.lock:
            # A test's warnings go with its reports: none for a test -x left unreplayed.
            waiting = set(self.order[self.replayed :])
            found_warnings = [w for w in self.warnings if w["nodeid"] not in waiting]
            self.warnings = [w for w in self.warnings if w["nodeid"] in waiting]
        replay_warnings(config, found_warnings)


def _report(config: pytest.Config, data: dict[str, Any] | pytest.TestReport) -> Any:
    if isinstance(data, pytest.TestReport):
        return data
    return config.hook.pytest_report_from_serializable(config=config, data=data)
