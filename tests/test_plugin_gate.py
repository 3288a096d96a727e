"""End to end: gating on baselines, reports, exit codes and updating baselines from history."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLATFORM = "gate_box"

# Speeds are set by the clock (sleeps), never by fixed CPU work: this machine swings 2x.
SUITE = """
import os, time, pytest

def ms(name, default):
    return float(os.environ.get(name, default)) / 1000

@pytest.mark.perf(metric="query_latency")
def test_latency():
    time.sleep(ms("LATENCY_MS", 20))

@pytest.mark.perf(metric="throughput", direction="higher", unit="items/s")
def test_throughput(perf):
    perf.record("throughput", float(os.environ.get("THROUGHPUT", 1000)), unit="items/s",
                direction="higher")

def test_unmarked():
    time.sleep(ms("UNMARKED_MS", 5))

@pytest.mark.perf(metric="flaky_latency")
def test_maybe_fails():
    time.sleep(ms("FAIL_MS", 20))
    assert os.environ.get("FAIL") != "1"
"""


COMMON = ("--perf-platform", PLATFORM, "--perf-threshold", "0.5")


def run(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return pytester.runpytest(*COMMON, *args)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five recorded runs, then baselines updated from them: made once, copied per test."""
    path = tmp_path_factory.mktemp("recorded")
    (path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *COMMON]
    for _ in range(5):
        subprocess.run([*command, "--perf-record"], cwd=path, check=True, capture_output=True)
    done = subprocess.run(
        [*command, "--perf-update-baselines"], cwd=path, capture_output=True, text=True, check=True
    )
    assert "baselines update for platform gate_box" in done.stdout
    return path


@pytest.fixture
def baselined(suite: pytest.Pytester, recorded: Path) -> pytest.Pytester:
    for name in ("baselines", ".perfguard"):
        shutil.copytree(recorded / name, suite.path / name)
    return suite


def baselines_path(pytester: pytest.Pytester) -> Path:
    return pytester.path / "baselines" / "perf_baselines.json"


def load(pytester: pytest.Pytester) -> dict:  # type: ignore[type-arg]
    return json.loads(baselines_path(pytester).read_text())


def test_update_writes_schema_entries_with_spread(baselined: pytest.Pytester) -> None:
    data = load(baselined)
    assert data["schema"] == 1
    tests = data["platforms"][PLATFORM]["tests"]
    latency = tests["test_suite.py::test_latency"]["query_latency"]
    assert latency["direction"] == "lower" and latency["runs"] == 5
    assert latency["value"] == pytest.approx(0.020, rel=0.5)
    assert tests["test_suite.py::test_throughput"]["throughput"]["direction"] == "higher"
    assert "test_suite.py::test_unmarked" not in tests  # not gated under the default scope
    metadata = data["platforms"][PLATFORM]["metadata"]
    assert metadata["last_updated"].endswith("Z") and metadata["python_version"]
    text = baselines_path(baselined).read_text()
    assert text.endswith("}\n") and '\n  "platforms"' in text


def test_clean_run_passes(baselined: pytest.Pytester) -> None:
    result = run(baselined)
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*no performance regressions*"])


def test_slowdown_fails_with_numbers_in_terminal_and_reports(baselined: pytest.Pytester) -> None:
    result = run(
        baselined, "--perf-report", "report.md", "--perf-json", "report.json", LATENCY_MS="40"
    )
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*1 performance regression*", "*test_suite.py::test_latency*query_latency*+*%*"]
    )
    markdown = (baselined.path / "report.md").read_text()
    assert "<!-- perfguard-report -->" in markdown
    assert "❌" in markdown and "query_latency" in markdown
    report = json.loads((baselined.path / "report.json").read_text())
    assert report["schema"] == 1
    (verdict,) = [c for c in report["comparisons"] if c["verdict"] == "regression"]
    assert verdict["metric"] == "query_latency" and verdict["change"] > 0.5
    assert verdict["baseline"] == pytest.approx(0.020, rel=0.5)


def test_warn_only_reports_but_exits_zero(baselined: pytest.Pytester) -> None:
    result = run(baselined, "--perf-warn-only", LATENCY_MS="40")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*1 performance regression*", "*--perf-warn-only*"])


def test_throughput_drop_is_a_regression(baselined: pytest.Pytester) -> None:
    result = run(baselined, THROUGHPUT="400")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_throughput*throughput*"])


def test_speedup_is_an_improvement_not_a_failure(baselined: pytest.Pytester) -> None:
    result = run(baselined, "-v", LATENCY_MS="4", THROUGHPUT="3000")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*2 improvement*"])


def test_failed_test_is_never_a_perf_regression(baselined: pytest.Pytester) -> None:
    result = run(baselined, "--perf-json", "r.json", FAIL="1", FAIL_MS="80")
    result.assert_outcomes(passed=3, failed=1)
    report = json.loads((baselined.path / "r.json").read_text())
    verdicts = {c["metric"]: c["verdict"] for c in report["comparisons"]}
    assert verdicts["flaky_latency"] == "skipped_failed"
    assert "regression" not in verdicts.values()


def test_gate_none_never_fails(baselined: pytest.Pytester) -> None:
    assert run(baselined, "--perf-gate", "none", LATENCY_MS="40").ret == 0


def test_gate_all_gates_unmarked_tests(baselined: pytest.Pytester) -> None:
    run(baselined, "--perf-update-baselines", "--perf-gate", "all")
    assert "test_suite.py::test_unmarked" in load(baselined)["platforms"][PLATFORM]["tests"]
    assert run(baselined, UNMARKED_MS="25").ret == 0  # default scope: marked tests only
    result = run(baselined, "--perf-gate", "all", UNMARKED_MS="25")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_unmarked*duration*"])


def test_seed_flat_baselines_file_gates(suite: pytest.Pytester) -> None:
    path = baselines_path(suite)
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                PLATFORM: {
                    "query_latency": 0.020,
                    "throughput": 1000,
                    "metadata": {"last_updated": "2026-01-01"},
                }
            }
        )
    )
    assert run(suite).ret == 0
    result = run(suite, THROUGHPUT="300")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*throughput*"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": 1, "platforms": {', "*perf_baselines.json*"),
        ('{"schema": 1, "platforms": []}', "*perf_baselines.json*platforms*"),
        (
            '{"schema": 1, "platforms": {"p": {"tests": {"t": {"m": {"value": -1}}}}}}',
            "*perf_baselines.json*value*",
        ),
        (
            '{"schema": 1, "platforms": {"p": {"tests": {"t": {"m": {"value": 1, '
            '"direction": "up"}}}}}}',
            "*perf_baselines.json*direction*",
        ),
    ],
)
def test_bad_baselines_file_is_a_usage_error(
    suite: pytest.Pytester, content: str, message: str
) -> None:
    path = baselines_path(suite)
    path.parent.mkdir()
    path.write_text(content)
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_update_with_too_few_runs_changes_nothing(suite: pytest.Pytester) -> None:
    run(suite, "--perf-record").assert_outcomes(passed=4)
    result = run(suite, "--perf-update-baselines")
    result.stdout.fnmatch_lines(["*1 of 5*"])
    assert not baselines_path(suite).exists()


def test_update_without_history_says_so(suite: pytest.Pytester) -> None:
    result = run(suite, "--perf-update-baselines")
    result.stdout.fnmatch_lines(["*no recorded runs*"])
    assert not baselines_path(suite).exists()


def test_update_keeps_other_platforms(suite: pytest.Pytester) -> None:
    path = baselines_path(suite)
    path.parent.mkdir()
    other = {
        "metadata": {"notes": "keep me"},
        "tests": {"x.py::t": {"m": {"value": 1.5, "unit": "s", "direction": "lower"}}},
    }
    path.write_text(json.dumps({"schema": 1, "platforms": {"other_box": other}}))
    for _ in range(5):
        run(suite, "--perf-record")
    run(suite, "--perf-update-baselines")
    data = load(suite)
    assert data["platforms"]["other_box"]["tests"] == other["tests"]
    assert data["platforms"]["other_box"]["metadata"]["notes"] == "keep me"
    assert PLATFORM in data["platforms"]


def cells(line: str) -> int:
    """Markdown table cells in a row, not counting escaped pipes."""
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_awkward_test_ids_render_as_one_table_row(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, time

        @pytest.mark.perf
        @pytest.mark.parametrize("q", ["a|b", "`tick`", "@team <b>"])
        def test_q(q):
            time.sleep(0.001)
        """
    )
    pytester.runpytest("--perf-platform", PLATFORM, "--perf-report", "r.md").assert_outcomes(
        passed=3
    )
    lines = (pytester.path / "r.md").read_text().splitlines()
    rows_with_ids = 0
    header = 0
    for line in lines:
        if not line.startswith("|"):
            header = 0
            continue
        if not header:
            header = cells(line)
            continue
        assert cells(line) == header, line
        rows_with_ids += "test_q" in line
    assert rows_with_ids >= 6  # three tests, each in the new-metrics and details tables
    text = "\n".join(line for line in lines if "test_q" in line)
    assert "@team" not in text and "<b>" not in text


def test_concurrent_updates_never_leave_a_half_written_file(baselined: pytest.Pytester) -> None:
    code = (
        "import sys, pytest; sys.exit(pytest.main(['--perf-platform', 'gate_box', '--perf-gate', "
        "'none', '--perf-update-baselines', '--perf-accept-regressions', '-q', '-p', "
        "'no:cacheprovider']))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=baselined.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    path = baselines_path(baselined)
    while any(p.poll() is None for p in procs):
        text = path.read_text()
        assert json.loads(text)["schema"] == 1
    for proc in procs:
        output = proc.communicate()[0]
        assert proc.returncode == 0, output
    assert PLATFORM in load(baselined)["platforms"]
