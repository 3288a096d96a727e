"""With lanes, the A/B head process does not collect: the lanes' head workers import, run
and report every test, and the head process replays their reports (`ab/controller.py`).
End to end through pytester, a real git repository and real worker processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_perfguard.ab.controller import controller_blocker

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False
needs_lanes = pytest.mark.skipif(not TWO_CPUS, reason="lanes need two CPUs")
CONTROLLING = "*A/B against HEAD * lanes; the tests run in the lanes' head workers)"

# Notes each process that imports the test module: the head process must not.
CONFTEST = """
import os, sys
from pathlib import Path

IMPORTS = Path(__file__).with_name("imports")
HEAD = Path(__file__).with_name("head-pid")


def pytest_configure(config):
    if "_perfguard_ab_worker" not in sys.modules:
        HEAD.write_text(str(os.getpid()))
"""

TESTS = """
import os, sys, time, warnings
from pathlib import Path

import pytest

with open(Path(__file__).with_name("imports"), "a") as notes:
    notes.write(f"{os.getpid()}\\n")


def spin(ms):
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


@pytest.fixture(scope="module")
def resource():
    yield 1
    raise RuntimeError("teardown went wrong")


@pytest.mark.perf
def test_paired(resource):
    spin(1)


@pytest.mark.perf(rounds=3)
def test_records(perf):
    spin(1)
    with perf.measure("step") as step:
        step.data["kept"] = True
    perf.record("items", 3, unit="n")


def test_unmarked_fails():
    print("output of a failing test")
    assert 1 + 1 == 3


def test_warns():
    warnings.warn("mind the gap", UserWarning)
"""

NEW_TEST = """

@pytest.mark.perf
def test_only_in_head():
    spin(1)
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A committed base; the working tree (the head) adds a test only it has."""
    root = pytester.path
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_suite.py").write_text(TESTS)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "base")
    (root / "test_suite.py").write_text(TESTS + NEW_TEST)
    return root


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--perf-against", "HEAD", "--perf-threshold", "0.5", *args
    )


def _importers(project: Path) -> set[str]:
    path = project / "imports"
    return set(path.read_text().split()) if path.exists() else set()


@needs_lanes
def test_the_lanes_run_and_report_every_test_and_this_process_imports_none(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = _run(pytester, "-rA", "--junitxml=junit.xml")
    out = result.stdout.str()
    result.stdout.fnmatch_lines([CONTROLLING, "collected 5 items (by the head worker)"])
    # What pytest itself would show: the failure with its assertion and captured output,
    # the teardown error of a module fixture, the warning, the outcomes.
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_*",
            "*RuntimeError: teardown went wrong",
            "*_ test_unmarked_fails _*",
            "*assert (1 + 1) == 3",
            "*Captured stdout call*",
            "output of a failing test",
            "*warnings summary*",
            "*UserWarning: mind the gap",
        ]
    )
    result.assert_outcomes(passed=4, failed=1, errors=1, warnings=1)
    assert result.ret == 1
    assert "1 new" in out
    head = (project / "head-pid").read_text()
    assert head not in _importers(project) and len(_importers(project)) == 1  # a head worker
    cases = ET.parse(project / "junit.xml").getroot().iter("testcase")
    assert {case.get("name") for case in cases} >= {
        "test_paired",
        "test_records",
        "test_unmarked_fails",
        "test_warns",
        "test_only_in_head",
    }


@needs_lanes
def test_exitfirst_stops_at_the_first_failure_in_collection_order(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = _run(pytester, "-x", "-p", "no:randomly")
    result.stdout.fnmatch_lines([CONTROLLING, "*stopping after 1 failures*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1 and "test_warns" not in result.stdout.str()
    assert result.ret == 1


@needs_lanes
def test_a_collection_error_of_the_head_is_pytests_own(
    pytester: pytest.Pytester, project: Path
) -> None:
    (project / "test_broken.py").write_text("import not_a_module_anywhere\n")
    result = _run(pytester)
    result.stdout.fnmatch_lines(
        ["*ERROR collecting test_broken.py*", "*not_a_module_anywhere*", "*1 error*"]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


@needs_lanes
def test_a_bad_marker_is_a_collection_error_naming_it(
    pytester: pytest.Pytester, project: Path
) -> None:
    source = (project / "test_suite.py").read_text()
    (project / "test_suite.py").write_text(source.replace("perf(rounds=3)", "perf(rounds=0)"))
    result = _run(pytester)
    result.stdout.fnmatch_lines(["*test_records*rounds*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


@needs_lanes
def test_a_wrong_perf_record_fails_in_a_head_worker_as_in_this_process(
    pytester: pytest.Pytester, project: Path
) -> None:
    source = (project / "test_suite.py").read_text()
    bad = source.replace('perf.record("items", 3, unit="n")', 'perf.record("items", float("nan"))')
    (project / "test_suite.py").write_text(bad)
    result = _run(pytester, "-k", "records")
    result.stdout.fnmatch_lines(
        [
            CONTROLLING,
            "collected 5 items / 4 deselected / 1 selected (by the head worker)",
            "*perf.record('items'): value=nan must be a finite number*",
        ]
    )
    result.assert_outcomes(failed=1, deselected=4)


@needs_lanes
@pytest.mark.parametrize("option", ["-s", "--setup-show"])
def test_an_option_the_head_workers_would_not_apply_keeps_the_tests_here(
    pytester: pytest.Pytester, project: Path, option: str
) -> None:
    result = _run(pytester, option, "-k", "paired or records")
    assert "the tests run in the lanes' head workers" not in result.stdout.str()
    assert (project / "head-pid").read_text() in _importers(project)
    result.assert_outcomes(passed=2, errors=1, deselected=3)


@pytest.mark.parametrize(
    ("args", "blocker"),
    [
        ([], None),
        (["tests", "-q", "-rA", "--tb=short", "-k", "fast", "-m", "perf", "-x"], None),
        (["-vx", "--maxfail=2", "-p", "no:randomly", "-o", "xfail_strict=true"], None),
        (["--junitxml", "out.xml", "--durations=5", "-W", "error", "--perf-gate", "all"], None),
        (["-s"], "-s"),
        (["--capture=no"], "--capture"),
        (["--lf"], "--lf"),
        (["-p", "xdist"], "-p xdist"),
        (["-c", "other.ini"], "-c"),
        (["--my-conftest-option", "value"], "--my-conftest-option"),
    ],
)
def test_options_that_keep_the_tests_in_this_process(
    pytester: pytest.Pytester, args: list[str], blocker: str | None
) -> None:
    """As given on the command line: only options the head workers get, or that only
    this process reads, let it leave the tests to them."""
    config = pytester.parseconfig()
    config.invocation_params = dataclasses.replace(config.invocation_params, args=tuple(args))
    assert controller_blocker(config) == blocker


@pytest.mark.parametrize(
    ("addopts", "blocker"),
    [("-s", "--capture=no"), ("--setup-show", "--setup-show"), ("-q", None)],
)
def test_options_from_the_ini_file_count_too(
    pytester: pytest.Pytester, addopts: str, blocker: str | None
) -> None:
    pytester.makeini(f"[pytest]\naddopts = {addopts}\n")
    assert controller_blocker(pytester.parseconfig()) == blocker
