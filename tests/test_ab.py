"""`--perf-against BASE`, end to end: a real git repository, a real base worker process.

Speeds are set by the clock (a busy loop until a deadline of the thread's CPU clock, which
preemption does not move), never asserted as times: the gate's verdict on a head that does
three times the work of its base is what is checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
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


@pytest.mark.parametrize("kind", ["rev", "dir"])
@pytest.mark.parametrize("mode", MODES)
def test_unchanged_code_passes(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, mode: str, kind: str
) -> None:
    base = _base_arg(project, kind, tmp_path)
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode, "--perf-threshold", "0.5",
        "--perf-report", "report.md",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*base * vs head *, measured side by side on *", "*no performance regressions*"]
    )
    assert "measured side by side" in (project / "report.md").read_text()
    assert _worktrees(project) == 1


@pytest.mark.parametrize("kind", ["rev", "dir"])
@pytest.mark.parametrize("mode", MODES)
def test_three_times_slower_head_fails_with_the_ab_header(
    pytester: pytest.Pytester, project: Path, tmp_path: Path, mode: str, kind: str
) -> None:
    base = _base_arg(project, kind, tmp_path)
    (project / "speedlib.py").write_text(LIBRARY.format(factor=3.0))
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode,
        "--perf-report", "report.md", "--perf-json", "report.json",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*performance regression*", "*test_two_ms*ratio *pairs*"])
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


OFFSET_TESTS = """
import sys
import time

import pytest


def spin(ms):
    # A known amount of work, set by the thread's CPU clock: preemption does not shorten it.
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


@pytest.mark.perf
def test_slower_in_this_process_only():
    # Three times the work in the pytest process itself, not in a worker process: a
    # difference between processes, with the same code on both sides.
    spin(2 if "_perfguard_ab_worker" in sys.modules else 6)
"""


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
    result = _run(
        pytester, f"--perf-against={base}", "--perf-ab-mode", mode, "--perf-json", "report.json"
    )
    assert result.ret == 0, result.stdout.str()
    (row,) = json.loads((project / "report.json").read_text())["comparisons"]
    assert row["verdict"] == "unstable", row
    assert row["ratio"] > 2  # what the first pairing saw
    confirmed = re.search(r"not confirmed in fresh processes: ratio ([0-9.]+)", row["detail"])
    assert confirmed, row["detail"]
    assert 0.8 < float(confirmed.group(1)) < 1.25  # what the fresh processes saw


@pytest.mark.parametrize("mode", MODES)
def test_tests_on_one_side_only_are_reported_and_never_fail(
    pytester: pytest.Pytester, project: Path, mode: str
) -> None:
    source = (project / "test_speed.py").read_text()
    source = source.replace("def test_one_ms", "def test_renamed_one_ms")
    (project / "test_speed.py").write_text(source)
    result = _run(
        pytester, "--perf-against", "HEAD", "--perf-ab-mode", mode, "--perf-threshold", "0.5",
        "--perf-json", "report.json", "-v",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    rows = {r["test"]: r for r in json.loads((project / "report.json").read_text())["comparisons"]}
    assert rows["test_speed.py::test_renamed_one_ms"]["verdict"] == "new"
    assert rows["test_speed.py::test_one_ms"]["verdict"] == "missing"
    assert "removed" in rows["test_speed.py::test_one_ms"]["detail"]
    assert not rows["test_speed.py::test_one_ms"]["gated"]


def test_without_a_mode_the_sides_are_interleaved(
    pytester: pytest.Pytester, project: Path
) -> None:
    """The default mode, chosen by measurement (docs/ab.md, "Which mode")."""
    result = _run(pytester, "--perf-against", "HEAD", "--perf-threshold", "0.5", "-v")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*measured side by side on * (interleave)*"])


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
    pytester: pytest.Pytester, project: Path
) -> None:
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


def test_the_worktree_is_removed_after_an_interrupted_session(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "conftest.py").write_text(
        "import pytest\n\n"
        "def pytest_runtest_call(item):\n"
        "    if item.name == 'test_one_ms':\n"
        "        raise KeyboardInterrupt\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-ab-mode", "interleave",
        timeout=240,
    )  # fmt: skip
    assert result.ret == 2  # interrupted
    assert _worktrees(project) == 1
    _git(project, "worktree", "prune")
    assert _worktrees(project) == 1


def test_the_worktree_is_removed_after_sigterm(pytester: pytest.Pytester, project: Path) -> None:
    (project / "conftest.py").write_text(
        "import os, signal\n\n"
        "def pytest_runtest_call(item):\n"
        "    if item.name == 'test_one_ms':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-ab-mode", "interleave",
        timeout=240,
    )  # fmt: skip
    assert result.ret == 2  # interrupted, not killed
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
    pytester: pytest.Pytester, project: Path
) -> None:
    start_lines = set(Path("/dev/shm").glob("perfguard-ab-*"))
    result = _run(pytester, "--perf-against", "HEAD", "--perf-against-python", "/nonexistent/py")
    assert result.ret == 4
    assert set(Path("/dev/shm").glob("perfguard-ab-*")) <= start_lines  # nothing left
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
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """pytest under callgrind with `--perf-against=base`, the head's work times `factor`."""
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
    done = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "-q",
            f"--callgrind-out-file={root / 'callgrind.out'}.%p",
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            f"--perf-against={base}", "--perf-json", str(report),
        ],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rows = {}
    if report.exists():
        for row in json.loads(report.read_text())["comparisons"]:
            rows[f"{row['test'].rpartition('::')[2]}:{row['metric']}"] = row
    return done, rows


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
    head = tmp_path / "head"
    head.mkdir()

    same, rows = _counted_session(head, base, 1.0)
    assert same.returncode == 0, same.stdout + same.stderr
    counted = rows["test_counted:instructions"]
    assert (counted["verdict"], counted["pairs"], counted["mode"]) == ("unchanged", 1, "ab")
    assert counted["ratio"] == pytest.approx(1.0, abs=0.01)
    assert [key for key, row in rows.items() if row["gated"]] == ["test_counted:instructions"]
    assert "instruction counts" in same.stdout
    assert not list((head / "tmp").glob("perfguard-ab-callgrind-*"))

    slower, rows = _counted_session(head, base, 3.0)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    counted = rows["test_counted:instructions"]
    assert counted["verdict"] == "regression"
    assert counted["ratio"] == pytest.approx(3.0, rel=0.15)
    assert not list((head / "tmp").glob("perfguard-ab-callgrind-*"))
