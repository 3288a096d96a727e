"""`--perf-against BASE`, end to end: a real git repository, a real base worker process.

Speeds are set by the clock (a busy loop until a deadline of the thread's CPU clock, which
preemption does not move), never asserted as times: the gate's verdict on a head that does
three times the work of its base is what is checked.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard.valgrind import unsupported_platform

LIBRARY = """
import time

FACTOR = {factor}


def work(ms):
    # A known amount of work, set by the thread's CPU clock: being preempted (by the other
    # side, or by anything else on the machine) does not shorten it.
    end = time.thread_time() + ms / 1000 * FACTOR
    while time.thread_time() < end:
        pass
"""

TESTS = """
import pytest
import speedlib


@pytest.mark.perf
def test_two_ms():
    speedlib.work(2)


@pytest.mark.perf(rounds=3)
def test_one_ms():
    speedlib.work(1)


def test_plain():
    speedlib.work(1)
"""

MODES = ["duet", "interleave"]
# (mode, lanes): the head process pairing with one base worker in both modes, and two
# interleaved lanes of worker pairs (duet lanes need four CPUs).
LANES = [("duet", "1"), ("interleave", "1"), ("interleave", "2")]
# Whether this machine can give two lanes a CPU each.
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _worktrees(root: Path) -> int:
    return _git(root, "worktree", "list", "--porcelain").count("worktree ")


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A committed base (speedlib at factor 1) in a git repository; the working tree is
    the head, changed by each test."""
    root = pytester.path
    (root / "speedlib.py").write_text(LIBRARY.format(factor=1.0))
    (root / "test_speed.py").write_text(TESTS)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "base")
    return root


def _base_arg(project: Path, kind: str, tmp_path: Path) -> str:
    """The base as a revision, or as a directory holding a copy of the committed base.
    Passed as ``--perf-against=DIR``: pytest picks its rootdir before plugins register
    their options, and would take a separate DIR argument for a test path."""
    if kind == "rev":
        return "HEAD"
    copy = tmp_path / "base-checkout"
    copy.mkdir()
    for name in ("speedlib.py", "test_speed.py"):
        (copy / name).write_text(_git(project, "show", f"HEAD:{name}"))
    return str(copy)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In process: the base worker is a process of its own anyway, and a second pytest
    # start-up per test would double these tests' time.
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def _lanes_line(lanes: str) -> str:
    """How the A/B header ends for `--perf-ab-lanes lanes` on this machine."""
    return "*measured side by side on * (*, 2 lanes)" if lanes == "2" and TWO_CPUS else "*"


@pytest.mark.parametrize("kind", ["rev", "dir"])
@pytest.mark.parametrize(("mode", "lanes"), LANES)
def test_unchanged_code_passes(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, mode: str, lanes: str, kind: str
) -> None:
    base = _base_arg(project, kind, tmp_path)
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode, "--perf-threshold", "0.5",
        "--perf-report", "report.md", "--perf-ab-lanes", lanes,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*base * vs head *, measured side by side on *", "*no performance regressions*"]
    )
    result.stdout.fnmatch_lines([_lanes_line(lanes)])
    assert "measured side by side" in (project / "report.md").read_text()
    assert _worktrees(project) == 1


@pytest.mark.parametrize("kind", ["rev", "dir"])
@pytest.mark.parametrize(("mode", "lanes"), LANES)
def test_three_times_slower_head_fails_with_the_ab_header(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, mode: str, lanes: str, kind: str
) -> None:
    base = _base_arg(project, kind, tmp_path)
    (project / "speedlib.py").write_text(LIBRARY.format(factor=3.0))
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode, "--perf-ab-lanes", lanes,
        "--perf-report", "report.md", "--perf-json", "report.json",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*performance regression*", "*test_two_ms*ratio *pairs*"])
    result.stdout.fnmatch_lines([_lanes_line(lanes)])
    markdown = (project / "report.md").read_text()
    assert "measured side by side" in markdown
    assert "vs head" in markdown
    report = json.loads((project / "report.json").read_text())
    rows = {(r["test"], r["metric"]): r for r in report["comparisons"]}
    row = rows[("test_speed.py::test_two_ms", "duration")]
    assert row["verdict"] == "regression"
    assert row["mode"] == "ab"
    assert row["ratio"] > 2
    assert row["interval"][0] <= row["ratio"] <= row["interval"][1]
    assert row["pairs"] >= 6
    assert "confirmed in fresh processes" in row["detail"]
    assert ("test_speed.py::test_plain", "duration") not in rows  # unmarked: not re-run
    assert _worktrees(project) == 1


def test_three_times_faster_head_is_an_improvement_and_passes(
    pytester: pytest.Pytester, project: Path
) -> None:
    """A head that reads far faster goes on past the futility looks (they only find tests
    unchanged) to the first look that tests, which states the improvement; the run passes."""
    (project / "speedlib.py").write_text(LIBRARY.format(factor=1 / 3))
    result = _run(pytester, "--perf-against=HEAD", "--perf-ab-lanes", "1",
                  "--perf-json", "report.json")  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    rows = {(r["test"], r["metric"]): r for r in
            json.loads((project / "report.json").read_text())["comparisons"]}  # fmt: skip
    for test in ("test_speed.py::test_two_ms", "test_speed.py::test_one_ms"):
        row = rows[(test, "duration")]
        assert row["verdict"] == "improvement", row
        assert row["mode"] == "ab" and row["ratio"] < 0.5 and row["pairs"] > 6, row
    assert _worktrees(project) == 1


# Test modules' known amount of work (they import `time`).
SPIN = """
def spin(ms):
    # A known amount of work, set by the thread's CPU clock: preemption does not shorten it.
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
"""

OFFSET_TESTS = (
    """
import sys
import time

import pytest


"""
    + SPIN
    + """

@pytest.mark.perf
def test_slower_in_this_process_only():
    # Three times the work in the pytest process itself, not in a worker process: a
    # difference between processes, with the same code on both sides.
    spin(2 if "_perfguard_ab_worker" in sys.modules else 6)
"""
)


@pytest.mark.parametrize("mode", MODES)
def test_a_difference_between_processes_is_not_confirmed_in_fresh_ones(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, mode: str
) -> None:
    """Identical code that runs slower in the head's own process: the first pairing flags
    it, the pairing again between two fresh processes does not, and the session passes
    with the test unstable, saying why."""
    base = tmp_path / "base-checkout"
    base.mkdir()
    for root in (project, base):
        (root / "test_speed.py").write_text(OFFSET_TESTS)
    # One lane (as one paired test gets anyway): the head's side runs in this process.
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode, "--perf-json", "report.json",
        "--perf-ab-lanes", "1",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    (row,) = json.loads((project / "report.json").read_text())["comparisons"]
    assert row["verdict"] == "unstable", row
    assert row["ratio"] > 2  # what the first pairing saw
    confirmed = re.search(r"not confirmed in fresh processes: ratio ([0-9.]+)", row["detail"])
    assert confirmed, row["detail"]
    assert 0.8 < float(confirmed.group(1)) < 1.25  # what the fresh processes saw


OFFSET_LANE_TESTS = (
    """
import os
import sys
import time

import pytest


def first_head_worker():
    # Whether this process is, or was forked from, the first head worker to collect: a
    # worker (it loaded perfguard's worker module) in the head checkout that created the
    # flag file. The lanes' head workers are that process and its copy; the confirmation
    # lanes' are a fresh process and its copy, which find the file there.
    if "_perfguard_ab_worker" not in sys.modules or os.path.realpath(os.getcwd()) != {head!r}:
        return False
    try:
        os.close(os.open({flag!r}, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


# Three times the work in the lanes' head workers only: a difference between processes
# (their memory layout, say), the same code everywhere.
SLOW = first_head_worker()


"""
    + SPIN
    + """

@pytest.mark.perf
def test_x():
    spin(6 if SLOW else 2)


@pytest.mark.perf
def test_y():
    spin(6 if SLOW else 2)
"""
)


@pytest.mark.skipif(not TWO_CPUS, reason="two lanes need two CPUs")
def test_with_lanes_a_difference_of_the_lanes_processes_is_not_confirmed_in_fresh_ones(
    pytester: pytest.Pytester, project: Path, tmp_path: Path
) -> None:
    """Both tests are paired in the lanes, whose head workers (one process and its copy)
    are slower, and flagged there; paired again in the confirmation lanes' fresh
    processes, which do not share the difference, they are not confirmed, and the
    session passes."""
    base = tmp_path / "base-checkout"
    base.mkdir()
    source = OFFSET_LANE_TESTS.format(
        head=str(project.resolve()), flag=str(tmp_path / "first-head-worker")
    )
    for root in (project, base):
        (root / "test_speed.py").write_text(source)
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-lanes", "2", "--perf-json", "report.json"
    )
    assert result.ret == 0, result.stdout.str()
    rows = json.loads((project / "report.json").read_text())["comparisons"]
    assert len(rows) == 2
    for row in rows:  # what the lanes saw, and then the fresh processes
        assert row["verdict"] == "unstable" and row["ratio"] > 2, row
        confirmed = re.search(r"not confirmed in fresh processes: ratio ([0-9.]+)", row["detail"])
        assert confirmed, row["detail"]
        assert 0.8 < float(confirmed.group(1)) < 1.25


TEARDOWN_CONFTEST = """
import atexit
import os
import sys

import pytest

IN_WORKER = "_perfguard_ab_worker" in sys.modules
FLAGS = {flags!r}


def flag(name):
    with open(os.path.join(FLAGS, f"{{name}}-{{os.getpid()}}"), "w"):
        pass


@pytest.fixture(scope="session", autouse=True)
def session_resource():
    yield
    if IN_WORKER:
        flag("torn-down")


if IN_WORKER:  # registered before the copies are forked: they inherit it
    atexit.register(flag, "atexit")
"""

TEARDOWN_TESTS = (
    """
import glob
import os
import time

import pytest

from conftest import FLAGS, IN_WORKER


"""
    + SPIN
    + """

@pytest.mark.perf
def test_a():
    spin(1)


@pytest.mark.perf
def test_b():
    spin(1)


def test_runs_once_the_lanes_are_done():
    # In the head's own loop, after the lanes paired test_a and test_b.
    if IN_WORKER:
        return
    deadline = time.monotonic() + 60
    while len(glob.glob(os.path.join(FLAGS, "torn-down-*"))) < 4:
        assert time.monotonic() < deadline, "the lanes' workers were not told to quit"
        time.sleep(0.02)
"""
)


@pytest.mark.skipif(not TWO_CPUS, reason="two lanes need two CPUs")
def test_lane_workers_tear_down_while_the_head_runs_its_tests_and_run_atexit(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Once the lanes have paired every test, their workers (two processes and their
    copies) tear their session down while the head runs its loop, not after it; each
    exits without freeing its objects one by one, but runs its atexit functions."""
    flags = tmp_path / "flags"
    flags.mkdir()
    base = tmp_path / "base-checkout"
    base.mkdir()
    for root in (pytester.path, base):
        (root / "conftest.py").write_text(TEARDOWN_CONFTEST.format(flags=str(flags)))
        (root / "test_teardown.py").write_text(TEARDOWN_TESTS)
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-lanes", "2", "--perf-threshold", "0.5"
    )
    assert result.ret == 0, result.stdout.str()
    torn_down = {path.name.rpartition("-")[2] for path in flags.glob("torn-down-*")}
    exited = {path.name.rpartition("-")[2] for path in flags.glob("atexit-*")}
    assert len(torn_down) >= 4 and exited == torn_down


def test_duet_lanes_pair_and_fail_a_slower_head(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duet in two lanes (four CPUs' worth: here both lanes get the same two CPUs, which
    only costs precision): each lane's workers start their rounds together on the lane's
    start line, and a head three times slower fails."""
    # Through sys.modules: after an earlier in-process run the package's `plugin`
    # attribute may still be the module object pytester dropped from sys.modules.
    plugin = importlib.import_module("pytest_perfguard.ab.plugin")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        pytest.skip("duet needs two CPUs")
    monkeypatch.setattr(plugin, "lane_count", lambda *args, **kwargs: (2, ""))
    monkeypatch.setattr(plugin, "lane_cpus", lambda mode, cpus, count: [cpus[:2]] * count)
    (project / "speedlib.py").write_text(LIBRARY.format(factor=3.0))
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-mode", "duet", "--perf-json", "report.json"
    )
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*measured side by side on * (duet, 2 lanes)*"])
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    for test in ("test_two_ms", "test_one_ms"):
        assert rows[f"test_speed.py::{test}"]["verdict"] == "regression"


@pytest.mark.parametrize(("mode", "lanes"), LANES)
def test_tests_on_one_side_only_are_reported_and_never_fail(
    pytester: pytest.Pytester, project: Path, mode: str, lanes: str
) -> None:
    # A third marked test on both sides, so that two are paired and two lanes have work.
    extra = "\n\n@pytest.mark.perf\ndef test_three_ms():\n    speedlib.work(3)\n"
    with (project / "test_speed.py").open("a") as tests:
        tests.write(extra)
    _git(project, "commit", "-q", "-am", "a third test")
    source = (project / "test_speed.py").read_text()
    source = source.replace("def test_one_ms", "def test_renamed_one_ms")
    (project / "test_speed.py").write_text(source)
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-mode", mode, "--perf-threshold", "0.5",
        "--perf-json", "report.json", "-v", "--perf-ab-lanes", lanes,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([_lanes_line(lanes)])
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    assert rows["test_speed.py::test_renamed_one_ms"]["verdict"] == "new"
    assert rows["test_speed.py::test_one_ms"]["verdict"] == "missing"
    assert "removed" in rows["test_speed.py::test_one_ms"]["detail"]
    assert not rows["test_speed.py::test_one_ms"]["gated"]
    for paired in ("test_two_ms", "test_three_ms"):
        assert rows[f"test_speed.py::{paired}"]["verdict"] in ("unchanged", "unstable")


def test_without_a_mode_the_sides_are_interleaved(
    pytester: pytest.Pytester, project: Path
) -> None:
    """The default mode, chosen by measurement (docs/ab.md, "Which mode"), in one lane per
    CPU."""
    result = _run(pytester, "--perf-against", "HEAD", "--perf-threshold", "0.5", "-v")
    assert result.ret == 0, result.stdout.str()
    lanes = "interleave, 2 lanes" if TWO_CPUS else "interleave"
    result.stdout.fnmatch_lines([f"*measured side by side on * ({lanes})*"])


def test_lanes_beyond_the_cpus_are_not_started(pytester: pytest.Pytester, project: Path) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    result = _run(pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "999", "-v")
    assert result.ret == 0, result.stdout.str()
    if cpus:
        result.stdout.fnmatch_lines([f"*--perf-ab-lanes 999: {cpus} lane*"])


def test_zero_lanes_exit_4_naming_the_setting(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "0")
    assert result.ret == 4  # pytest's own usage error, as for any option's bad value
    result.stderr.fnmatch_lines(["*argument --perf-ab-lanes: '0' must be at least 1"])
    monkeypatch.setenv("PERFGUARD_AB_LANES", "none")
    result = _run(pytester, "--perf-against", "HEAD")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "PERFGUARD_AB_LANES" in errors[0] and "'none' is not a whole number" in errors[0]
    assert _worktrees(project) == 1


def test_tests_the_head_leaves_out_are_not_reported_removed(
    pytester: pytest.Pytester, project: Path
) -> None:
    """A test deselected or in an ignored directory exists in the head; the base worker
    collects it, but it is not "removed" (it was, before 2026-12-01)."""
    (project / "sub").mkdir()
    (project / "sub" / "test_sub.py").write_text(
        "import pytest\n\n@pytest.mark.perf\ndef test_sub():\n    pass\n"
    )
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "a test in sub/")
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-threshold", "0.5", "--perf-json=report.json",
        "--ignore=sub", "--deselect", "test_speed.py::test_one_ms",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    assert set(rows) == {"test_speed.py::test_two_ms"}, rows
    assert "missing" not in result.stdout.str()


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_a_test_that_passes_once_only_is_not_compared_and_says_why(
    pytester: pytest.Pytester, project: Path, lanes: str
) -> None:
    """Pairs call a test many times with one setup of its fixtures. One that asserts on
    what it captured passes once and fails when called again: it passes (its first call,
    whether this process pairs it or a lane's head worker does), is not compared, and
    the verdict says it failed on a repeated call rather than blaming either side's code."""
    test = "import logging, pytest\n\n@pytest.mark.perf\ndef test_logs_once(caplog):\n"
    test += "    logging.getLogger('x').warning('w')\n    assert len(caplog.records) {}\n"
    # The base's version repeats; the head's does not, so the head side fails first.
    (project / "test_once.py").write_text(test.format(">= 1"))
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "a test")
    (project / "test_once.py").write_text(test.format("== 1"))
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-json=report.json", "--perf-threshold", "0.5",
        "--perf-ab-lanes", lanes,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    row = rows["test_once.py::test_logs_once"]
    assert row["verdict"] == "skipped_failed"
    # With lanes, a lane's head worker reports the test's outcome as this process would.
    assert row["detail"].startswith("failed on head"), row["detail"]
    assert "called again with the same fixtures, after 1 call: AssertionError" in row["detail"]


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_the_heads_import_mode_reaches_the_workers(
    pytester: pytest.Pytester, project: Path, lanes: str
) -> None:
    """Two test modules of one name in directories without `__init__.py` collect only in
    importlib mode. Given on the command line, the head's import mode reaches the base
    worker and the lanes' workers, which would otherwise fail to collect (exit 4)."""
    for sub in ("a", "b"):
        (project / sub).mkdir()
        (project / sub / "test_same.py").write_text(
            f"import pytest\n\n@pytest.mark.perf\ndef test_{sub}():\n    sum(range(1000))\n"
        )
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "two modules of one name")
    result = _run(
        pytester, "--import-mode=importlib", "--perf-against", "HEAD", "--perf-threshold", "0.5",
        "--perf-ab-lanes", lanes, "a", "b",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*measured side by side on *"])


def test_perfguard_options_in_pytest_addopts_stay_out_of_the_workers(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers run with perfguard blocked: its options in `PYTEST_ADDOPTS`, which they
    inherit, would be unrecognised there. The user's other options still apply on both
    sides."""
    monkeypatch.setenv(
        "PYTEST_ADDOPTS", "--perf-threshold 0.5 --perf-report=report.md --perf -p no:doctest"
    )
    result = _run(pytester, "--perf-against", "HEAD")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*measured side by side on *", "*no performance regressions*"])
    assert (project / "report.md").exists()


def test_a_worker_usage_error_names_the_error(
    pytester: pytest.Pytester, project: Path, tmp_path: Path
) -> None:
    """The line that ends the session is the worker's error, not the inifile and rootdir
    lines pytest prints after it."""
    base = Path(_base_arg(project, "dir", tmp_path))
    (base / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    result = _run(pytester, f"--perf-against={base}")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "exited (status 4)" in errors[0], errors
    assert "unrecognized arguments: --no-such-option" in errors[0], errors


def test_bad_revision_exits_4_with_one_line(pytester: pytest.Pytester, project: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob("perfguard-base-*"))
    result = _run(pytester, "--perf-against", "no-such-branch")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "--perf-against no-such-branch: neither a directory nor a git revision" in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert _worktrees(project) == 1
    assert set(Path(tempfile.gettempdir()).glob("perfguard-base-*")) <= before


def test_perf_instructions_outside_callgrind_exits_4_before_any_worktree(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary directory of this test's own: other A/B tests running beside it (xdist)
    # make worktrees in the shared one.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = set(Path(tempfile.gettempdir()).glob("perfguard-base-*"))
    result = _run(pytester, "--perf-against", "HEAD", "--perf-instructions")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "--perf-instructions" in errors[0] and "callgrind" in errors[0]
    assert _worktrees(project) == 1
    assert set(Path(tempfile.gettempdir()).glob("perfguard-base-*")) <= before


def test_a_base_that_cannot_be_collected_exits_4_naming_it(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "test_speed.py").write_text("import not_a_module_anywhere\n" + TESTS)
    _git(project, "commit", "-q", "-am", "broken base")
    (project / "test_speed.py").write_text(TESTS)
    result = _run(pytester, "--perf-against", "HEAD")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "the base's tests could not be collected" in errors[0]
    assert "not_a_module_anywhere" in errors[0]
    assert _worktrees(project) == 1


# The head process's id, noted where the head process configures (it loads the rootdir's
# conftest, and with lanes it runs no test itself), and a signal for it from a test.
SIGNAL_HEAD = """
import os, signal, sys
from pathlib import Path

HEAD = Path(__file__).with_name("head-pid")


def pytest_configure(config):
    if "_perfguard_ab_worker" not in sys.modules:
        HEAD.write_text(str(os.getpid()))


def pytest_runtest_call(item):
    if item.name == "test_one_ms":
        os.kill(int(HEAD.read_text()), signal.{signal})
"""


def test_the_worktree_is_removed_after_an_interrupted_session(
    pytester: pytest.Pytester, project: Path
) -> None:
    # Ctrl-C reaches the head process (with its workers: they are its process group's).
    (project / "conftest.py").write_text(SIGNAL_HEAD.format(signal="SIGINT"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-ab-mode", "interleave",
        timeout=240,
    )  # fmt: skip
    assert result.ret == 2  # interrupted
    assert _worktrees(project) == 1
    _git(project, "worktree", "prune")
    assert _worktrees(project) == 1


def test_the_worktree_is_removed_after_sigterm(pytester: pytest.Pytester, project: Path) -> None:
    (project / "conftest.py").write_text(SIGNAL_HEAD.format(signal="SIGTERM"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-ab-mode", "interleave",
        timeout=240,
    )  # fmt: skip
    assert result.ret == 2  # interrupted, not killed
    assert _worktrees(project) == 1


WORKER_PIDS = """
import os
import sys


def note_pid():
    with open({path!r}, "a") as pids:
        pids.write(f"{{os.getpid()}}\\n")


if "_perfguard_ab_worker" in sys.modules:  # a worker process, base or head
    note_pid()


def pytest_runtest_setup(item):
    if "_perfguard_ab_worker" in sys.modules:  # a lane's copy of a worker, forked later
        note_pid()
"""


def _still_running(pids_file: Path, patience: float = 30.0) -> list[int]:
    """The worker processes (their pids written by WORKER_PIDS) that still exist, reaped
    or not (a zombie still answers signal 0), after waiting up to `patience` seconds for
    them to go. The wait is for the one case where the system reaps: a lane's copies
    whose forking worker died in the test are orphans, and the machine's init reaps them
    when it gets to it."""
    deadline = time.monotonic() + patience
    while True:
        running = []
        for line in set(pids_file.read_text().split()):
            try:
                os.kill(int(line), 0)
            except ProcessLookupError:
                continue
            running.append(int(line))
        if not running or time.monotonic() > deadline:
            return sorted(running)
        time.sleep(0.05)


MEETING_TESTS = """
import sys
import time
from pathlib import Path

import pytest
import speedlib

MEETING = Path({meeting!r})


def meet(name, other):
    # In a worker, a test says it has started and waits for the other test, which only
    # a second lane running at the same time can start. (The head process runs each test
    # once after the lanes, for its outcome: it does not wait.) The minute is a bound on
    # a broken run, not a measurement.
    if "_perfguard_ab_worker" not in sys.modules:
        return
    (MEETING / name).touch()
    deadline = time.monotonic() + 60
    while not (MEETING / other).exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"test_{{other}} never started: the lanes took turns")
        time.sleep(0.001)


@pytest.mark.perf
def test_a():
    meet("a", "b")
    speedlib.work(1)


@pytest.mark.perf
def test_b():
    meet("b", "a")
    speedlib.work(1)
"""


@pytest.mark.skipif(not TWO_CPUS, reason="two lanes need two CPUs")
def test_lanes_pair_their_tests_at_the_same_time(
    pytester: pytest.Pytester, project: Path, tmp_path: Path
) -> None:
    """Each test waits, in the workers, until the other one has started: with two lanes
    both get compared; lanes taking turns would leave the first waiting in vain."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    (project / "test_speed.py").write_text(MEETING_TESTS.format(meeting=str(meeting)))
    _git(project, "commit", "-q", "-am", "two tests that meet")
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "2", "--perf-threshold", "0.5",
        "--perf-json", "report.json",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*measured side by side on * (interleave, 2 lanes)*"])
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    for test in ("test_a", "test_b"):
        row = rows[f"test_speed.py::{test}"]
        assert row["verdict"] in ("unchanged", "unstable"), row
        assert row["pairs"] >= 4, row  # at least the first (futility) look
    assert sorted(p.name for p in meeting.iterdir()) == ["a", "b"]


PROCESS_NOTES = """
import os
import sys

if "_perfguard_ab_worker" in sys.modules:  # a started worker, collecting
    with open({path!r}, "a") as notes:
        notes.write(f"collected {{os.getpid()}}\\n")


def pytest_runtest_setup(item):
    if "_perfguard_ab_worker" in sys.modules:
        with open({path!r}, "a") as notes:
            notes.write(f"ran {{os.getpid()}}\\n")
"""


def _processes(notes: Path, what: str) -> set[str]:
    lines = [line.split() for line in notes.read_text().splitlines()]
    return {pid for kind, pid in lines if kind == what}


@pytest.mark.skipif(not TWO_CPUS, reason="two lanes need two CPUs")
def test_lanes_collect_once_a_side_and_confirm_in_fresh_processes(
    pytester: pytest.Pytester, project: Path, tmp_path: Path
) -> None:
    """Two lanes: one base and one head worker collect, and each forks the other lane's
    worker, so four processes run tests. A clean session starts nothing more; a session
    with regressions starts two fresh workers (and their copies) to confirm them, which
    import the paired tests' modules and not the rest of the suite."""
    notes = tmp_path / "notes"
    notes.touch()
    (project / "conftest.py").write_text(PROCESS_NOTES.format(path=str(notes)))
    (project / "test_other.py").write_text(OTHER_MODULE.format(path=str(notes)))
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "notes")
    result = _run(pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "2")
    assert result.ret == 0, result.stdout.str()
    assert len(_processes(notes, "collected")) == 2
    assert len(_processes(notes, "ran")) == 4
    assert _processes(notes, "collected") < _processes(notes, "ran")
    assert _processes(notes, "imported") == _processes(notes, "collected")

    notes.write_text("")
    _rewrite(project / "speedlib.py", LIBRARY.format(factor=3.0))
    result = _run(pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "2")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*confirmed in fresh processes*"])
    collected = _processes(notes, "collected")
    assert len(collected) == 4
    assert len(_processes(notes, "imported")) == 2 and _processes(notes, "imported") < collected


# The head's code, slower by a factor each process draws at its first call, in the order
# the processes call it: "lean" is a cycle of factors whose pairs read +8 %, spread past the
# threshold (`paired.leans_to_regression` at every look of a first pairing and of a fresh
# draw). A 12 ms call makes one call a side per pair, so each pair reads one factor.
DRAWN_LIBRARY = """
import itertools
import os
import time

DRAWS = {draws!r}
LEAN = [1.0, 1.18, 1.04, 1.14, 0.98, 1.2, 1.06, 1.12]
_factors = None


def _factor():
    global _factors
    if _factors is None:
        with open({path!r}, "a") as drawn:
            drawn.write("x")
        draw = DRAWS[min(os.path.getsize({path!r}), len(DRAWS)) - 1]
        _factors = itertools.cycle(LEAN if draw == "lean" else [draw])
    return next(_factors)


def work(ms):
    end = time.thread_time() + ms / 1000 * _factor()
    while time.thread_time() < end:
        pass
"""

TWELVE_MS = """
import pytest
import speedlib


@pytest.mark.perf
def test_twelve_ms():
    speedlib.work(12)
"""


@pytest.mark.parametrize(
    ("draws", "fails", "says"),
    [
        (["lean", 1.3, 1.3], True, r"^ratio 1\.[23].*\(drawn twice: the first read ratio "
         r"1\.[23].*, drawn again in fresh processes; the first pairing leaned: ratio 1\.0"),
        (["lean", 1.3, 1.0], False, r"; drawn again in fresh processes: ratio [01]\.[09].*"
         r"\(drawn twice: the first read ratio 1\.[23]"),
        ([1.3, "lean", 1.3], True, r"; confirmed in fresh processes: ratio 1\.[23].*\(drawn "
         r"twice: the first read ratio 1\.0"),
        ([1.3, "lean", 1.0], False, r"; not confirmed in fresh processes: ratio [01]\.[09].*"
         r"\(drawn twice: the first read ratio 1\.0"),
    ],
    ids=["redraw", "redraw-clears", "confirmation-drawn-twice", "second-draw-clears"],
)
def test_a_leaning_pairing_is_drawn_again_in_fresh_processes(
    pytester: pytest.Pytester,
    project: Path,
    tmp_path: Path,
    draws: list[object],
    fails: bool,
    says: str,
) -> None:
    """The head process pairs first, then each fresh head worker draws its own factor. A
    first pairing that leans to a regression is drawn again, and a regression when two
    fresh draws bear one out; a flag whose confirmation leans gets one more draw in other
    fresh processes, which decides it."""
    (project / "test_speed.py").write_text(TWELVE_MS)
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "one 12 ms test")
    drawn = tmp_path / "drawn"
    _rewrite(project / "speedlib.py", DRAWN_LIBRARY.format(draws=draws, path=str(drawn)))
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-lanes", "1", "--perf-threshold", "0.1",
        "--perf-json", "ab.json",
    )  # fmt: skip
    (verdict,) = json.loads((project / "ab.json").read_text())["comparisons"]
    assert result.ret == (1 if fails else 0), verdict["detail"]
    assert verdict["verdict"] == ("regression" if fails else "unstable")
    assert re.search(says, verdict["detail"]), verdict["detail"]
    assert len(drawn.read_text()) == len(draws)


def _rewrite(path: Path, text: str) -> None:
    """Write a module a run has imported (and cached as bytecode) since: the cache goes
    too, since a source of the same size rewritten within the second it was compiled in
    passes the cache's check (size and whole-second mtime), and the old code would run."""
    path.write_text(text)
    shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)


# A module of unmarked tests: every worker of the lanes imports it (they collect what the
# head collects), a confirmation's fresh workers do not.
OTHER_MODULE = """
import os
import sys

if "_perfguard_ab_worker" in sys.modules:
    with open({path!r}, "a") as notes:
        notes.write(f"imported {{os.getpid()}}\\n")


def test_unmarked():
    pass
"""


DYING_TESTS = """
import os
import sys

import pytest
import speedlib

DIE = {die}


@pytest.mark.perf
def test_first():
    speedlib.work(1)


@pytest.mark.perf
def test_dies_in_the_base():
    if DIE and "_perfguard_ab_worker" in sys.modules:
        os._exit(3)
    speedlib.work(1)


@pytest.mark.perf
def test_last():
    speedlib.work(1)
"""


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_a_worker_that_dies_fails_its_test_and_leaves_no_process(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, lanes: str
) -> None:
    """A base worker that dies in a test's call phase: that test fails with the worker's
    exit (as with one lane); with two lanes the other lane compares the rest; every worker
    process is gone after the session and the worktree is removed."""
    pids = tmp_path / "pids"
    pids.touch()
    (project / "conftest.py").write_text(WORKER_PIDS.format(path=str(pids)))
    (project / "test_speed.py").write_text(DYING_TESTS.format(die=True))
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "a base that dies")
    (project / "test_speed.py").write_text(DYING_TESTS.format(die=False))
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-lanes", lanes, "--perf-threshold", "0.5",
        "--perf-json", "report.json",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 if lanes == "2" else outcomes["failed"] >= 1
    result.stdout.fnmatch_lines(["FAILED *test_dies_in_the_base*"])
    assert re.search(r"the base worker( \(copy \d\))? exited \(status 3\)", result.stdout.str())
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    assert rows["test_speed.py::test_first"]["verdict"] in ("unchanged", "unstable")
    if lanes == "2" and TWO_CPUS:
        assert rows["test_speed.py::test_last"]["verdict"] in ("unchanged", "unstable")
    started = set(pids.read_text().split())
    assert len(started) >= (4 if lanes == "2" and TWO_CPUS else 1)  # two per lane
    assert _still_running(pids) == []
    assert _worktrees(project) == 1


# The head process loads the rootdir's conftest (and with lanes imports no test module).
HEAD_PID = """

def pytest_configure(config):
    if "_perfguard_ab_worker" not in sys.modules:
        with open({path!r}, "w") as head:
            head.write(str(os.getpid()))
"""

SIGNALLING_TESTS = """
import os
import signal
import sys
from pathlib import Path

import pytest
import speedlib

SENT = Path({sent!r})
HEAD = SENT.with_name("head-pid")  # written by the head process (HEAD_PID)


@pytest.mark.perf
def test_first():
    speedlib.work(1)


@pytest.mark.perf
def test_stops_the_session():
    # The first worker to get here sends SIGTERM to the head process while the lanes are
    # pairing (the head's own run of the test comes after them). A lane's copy of a
    # worker is the started worker's child, so the head is not always the parent.
    if "_perfguard_ab_worker" in sys.modules and not SENT.exists():
        SENT.touch()
        os.kill(int(HEAD.read_text()), signal.SIGTERM)
    speedlib.work(1)
"""


def test_sigterm_while_the_lanes_pair_leaves_no_process_and_no_worktree(
    pytester: pytest.Pytester, project: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.touch()
    sent = tmp_path / "sent"
    head_pid = HEAD_PID.format(path=str(sent.with_name("head-pid")))
    (project / "conftest.py").write_text(WORKER_PIDS.format(path=str(pids)) + head_pid)
    (project / "test_speed.py").write_text(SIGNALLING_TESTS.format(sent=str(sent)))
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "a test that stops the session")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-ab-lanes", "2",
        timeout=240,
    )  # fmt: skip
    assert sent.exists()
    assert result.ret == 2, result.stdout.str()  # interrupted, not killed
    assert "Traceback" not in result.stderr.str()
    assert len(pids.read_text().split()) >= 2
    assert _still_running(pids) == []
    assert _worktrees(project) == 1


def test_record_stores_both_sides_linked(pytester: pytest.Pytester, project: Path) -> None:
    from pytest_perfguard import History

    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-record", "--perf-db", "history.db",
        "--perf-threshold", "0.5",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    with History(str(project / "history.db")) as history:
        runs = [history.get_run(run.id) for run in history.recent_runs(limit=5)]
    assert len(runs) == 2
    by_role = {run.system_info["ab"]["role"]: run for run in runs}
    base, head = by_role["base"], by_role["head"]
    assert base.system_info["ab"]["session"] == head.system_info["ab"]["session"]
    assert head.system_info["ab"]["base_run_id"] == base.id
    assert base.git_commit == _git(project, "rev-parse", "HEAD").strip()
    assert {m.test for m in base.measurements} == {m.test for m in head.measurements}
    assert not (project / "baselines").exists()


def test_against_python_names_a_missing_interpreter(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start lines this session makes (files in /dev/shm), not the whole directory's:
    # other tests' sessions make theirs there at the same time under xdist.
    from pytest_perfguard.ab import pairing as ab_pairing

    made: list[str] = []
    new_start_line = ab_pairing._new_start_line

    def recorded() -> str:
        made.append(new_start_line())
        return made[-1]

    monkeypatch.setattr(ab_pairing, "_new_start_line", recorded)
    result = _run(pytester, "--perf-against", "HEAD", "--perf-against-python", "/nonexistent/py")
    assert result.ret == 4
    assert made and not [path for path in made if Path(path).exists()]  # nothing left
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert "/nonexistent/py" in errors[0]
    assert _worktrees(project) == 1


COUNTED_LIBRARY = """
FACTOR = {factor}


def work(units):
    table = {{}}
    for i in range(round(units * FACTOR)):
        table[i % 97] = table.get(i % 97, 0) + i
"""

COUNTED_TESTS = """
import pytest
import countlib


@pytest.mark.perf
def test_counted():
    countlib.work(20000)


def test_plain():
    countlib.work(1000)
"""


def _counted_session(
    root: Path, base: Path, factor: float
) -> Callable[[], tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]]:
    """pytest under callgrind with `--perf-against=base`, the head's work times `factor`,
    started in the background: the function returned waits for it."""
    root.mkdir(exist_ok=True)
    (root / "countlib.py").write_text(COUNTED_LIBRARY.format(factor=factor))
    (root / "test_counted.py").write_text(COUNTED_TESTS)
    (root / "pytest.ini").write_text("[pytest]\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PERFGUARD", "PYTEST_")) and k not in ("CI", "GITHUB_ACTIONS")
    }
    env.update(PYTHONHASHSEED="0", TMPDIR=str(root / "tmp"))
    (root / "tmp").mkdir(exist_ok=True)
    report = root / "report.json"
    report.unlink(missing_ok=True)
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "-q",
        f"--callgrind-out-file={root / 'callgrind.out'}.%p",
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        f"--perf-against={base}", "--perf-json", str(report),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def wait() -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
        try:
            stdout, stderr = process.communicate(timeout=600)
        finally:
            process.kill()
        done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        rows = {}
        if report.exists():
            for row in json.loads(report.read_text())["comparisons"]:
                rows[f"{row['test'].rpartition('::')[2]}:{row['metric']}"] = row
        return done, rows

    return wait


@pytest.mark.skipif(
    shutil.which("valgrind") is None or unsupported_platform() is not None,
    reason="needs valgrind on Linux x86_64/aarch64",
)
def test_under_callgrind_both_sides_are_counted_and_one_pair_decides(tmp_path: Path) -> None:
    """Under callgrind the base worker runs under callgrind too; the counts of one pair
    decide (no time is compared): the same code passes at a ratio of 1, three times the
    work fails at about 3, and the base's dump files are gone afterwards."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "countlib.py").write_text(COUNTED_LIBRARY.format(factor=1.0))
    (base / "test_counted.py").write_text(COUNTED_TESTS)
    (base / "pytest.ini").write_text("[pytest]\n")
    # Two heads against one base, at once (each pairs on one CPU).
    head, slower_head = tmp_path / "head", tmp_path / "slower"
    same_session = _counted_session(head, base, 1.0)
    slower_session = _counted_session(slower_head, base, 3.0)

    (same, rows), (slower, slower_rows) = same_session(), slower_session()
    assert same.returncode == 0, same.stdout + same.stderr
    counted = rows["test_counted:instructions"]
    assert (counted["verdict"], counted["pairs"], counted["mode"]) == ("unchanged", 1, "ab")
    assert counted["ratio"] == pytest.approx(1.0, abs=0.01)
    assert [key for key, row in rows.items() if row["gated"]] == ["test_counted:instructions"]
    assert "instruction counts" in same.stdout
    assert not list((head / "tmp").glob("perfguard-ab-callgrind-*"))

    assert slower.returncode == 1, slower.stdout + slower.stderr
    counted = slower_rows["test_counted:instructions"]
    assert counted["verdict"] == "regression"
    assert counted["ratio"] == pytest.approx(3.0, rel=0.15)
    assert not list((slower_head / "tmp").glob("perfguard-ab-callgrind-*"))
