"""The seed guide's pytest commands and environment variables, on a seed-style project.

The project keeps its flat baselines file where the seed kept it
(`tests/performance_baselines.json`, named once in the ini file) and its performance tests
in `tests/test_performance_regression.py`. Each command is run as the guide writes it,
with its variables in the environment; none is silently ignored.
"""

from __future__ import annotations

import json

import pytest

from pytest_perfguard.api import History

PERF_TESTS = """
import time
import pytest

@pytest.mark.perf(metric="embedding_throughput", direction="higher", unit="chunks/s")
def test_embedding_throughput(perf):
    perf.record("embedding_throughput", 50.0, unit="chunks/s", direction="higher")

@pytest.mark.perf(metric="cache_hit_rate", direction="higher")
def test_cache(perf):
    perf.record("cache_hit_rate", 0.42, direction="higher")

@pytest.mark.slow
def test_slow_path():
    pass
"""
# The guide's flat format: this M1 Mac did 67 chunks/s; 50 now is 25 % worse.
BASELINES = {
    "M1_Mac_16GB": {
        "embedding_throughput": 67.0,
        "cache_hit_rate": 0.42,
        "metadata": {"last_updated": "2025-01-07T10:00:00Z", "git_commit": "abc123"},
    }
}
CMD = ["tests/test_performance_regression.py", "-p", "no:cacheprovider"]


@pytest.fixture
def seed_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "GITHUB_ACTIONS", "PERFGUARD_DB", "PERFORMANCE_DB_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERFORMANCE_PLATFORM", "M1_Mac_16GB")
    pytester.makeini(
        "[pytest]\nperf_baselines = tests/performance_baselines.json\nmarkers = slow: slow tests\n"
    )
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_performance_regression.py").write_text(PERF_TESTS)
    (pytester.path / "tests" / "performance_baselines.json").write_text(json.dumps(BASELINES))
    return pytester


def test_plain_pytest_gates_marked_tests_on_the_committed_baselines(
    seed_project: pytest.Pytester,
) -> None:
    """`pytest tests/test_performance_regression.py -v`: the baselines file switches
    perfguard on; the 25 % drop in throughput fails the run (the guide's 20 % default)."""
    result = seed_project.runpytest_subprocess(*CMD, "-v")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "perfguard: *, platform M1_Mac_16GB",
            "*1 performance regression*",
            "*test_embedding_throughput*embedding_throughput*67*50*-25.4%*20%*",
        ]
    )


def test_regression_threshold_widens_the_gate(seed_project: pytest.Pytester) -> None:
    """`REGRESSION_THRESHOLD=0.30 pytest ...` (the guide's false-positive advice)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGRESSION_THRESHOLD", "0.30")
        result = seed_project.runpytest_subprocess(*CMD)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*no performance regressions*"])


def test_quick_mode_and_not_slow_still_gate(seed_project: pytest.Pytester) -> None:
    """`pytest ... -m "not slow"` with `BENCHMARK_MODE=quick`: fewer tests, same gate."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_MODE", "quick")
        result = seed_project.runpytest_subprocess(*CMD, "-m", "not slow")
    assert result.ret == 1
    result.assert_outcomes(passed=2, deselected=1)


def test_recording_with_the_seeds_variables(seed_project: pytest.Pytester) -> None:
    """`ENABLE_PERFORMANCE_RECORDING=1 PERFORMANCE_RUN_TYPE=ci PERFORMANCE_DB_PATH=...`."""
    env = {
        "ENABLE_PERFORMANCE_RECORDING": "1",
        "PERFORMANCE_RUN_TYPE": "nightly",
        "PERFORMANCE_DB_PATH": "benchmarks/history/performance.db",
        "REGRESSION_THRESHOLD": "0.30",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        result = seed_project.runpytest_subprocess(*CMD)
    assert result.ret == 0, result.stdout.str()
    db = seed_project.path / "benchmarks" / "history" / "performance.db"
    with History(db, create=False) as history:
        (run,) = history.recent_runs()
    assert (run.platform, run.run_type, run.triggered_by) == ("M1_Mac_16GB", "nightly", "automated")


@pytest.mark.parametrize(("mode", "fewest", "most"), [("quick", 1, 1), ("comprehensive", 50, 150)])
def test_benchmark_mode_sets_rounds_and_budget(
    pytester: pytest.Pytester, mode: str, fewest: int, most: int
) -> None:
    """A marked test without `rounds=` takes one call in quick mode, and no re-runs;
    comprehensive mode spends up to 0.5 s on extra calls (at most 50) of a test this fast,
    and its two confirm passes (a first recording of a test samples it three times) add
    theirs."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.perf
        def test_fast():
            pass
        """
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_MODE", mode)
        mp.setenv("ENABLE_PERFORMANCE_RECORDING", "1")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        run = history.get_run(history.recent_runs()[0].id)
    (duration,) = [m for m in run.measurements if m.metric == "duration"]
    assert fewest <= len(duration.samples or (duration.value,)) <= most


def test_a_bad_benchmark_mode_is_one_line_and_exit_4(seed_project: pytest.Pytester) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_MODE", "fastest")
        result = seed_project.runpytest_subprocess(*CMD)
    assert result.ret == 4
    assert "BENCHMARK_MODE: 'fastest' is not one of quick, standard, comprehensive" in (
        result.stderr.str()
    )
