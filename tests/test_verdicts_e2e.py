"""End to end: noise-aware verdicts, confirm re-runs, change points and A/A calibration.

Speeds are set by sleeps; a counter file makes a test slow on its first call only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.config import (
    parse_estimator,
    parse_fdr,
    parse_rule,
    parse_seconds,
)
from pytest_perfguard.settings import resolve

pytest_plugins = ["pytester"]

PLATFORM = "verdict_box"

SUITE = """
import os, time, pytest
from pathlib import Path

def ms(name, default):
    return float(os.environ.get(name, default)) / 1000

@pytest.mark.perf(metric="latency", rounds=1)
def test_latency():
    time.sleep(ms("LATENCY_MS", 20))

@pytest.mark.perf(metric="first_call", rounds=1)
def test_first_call_slow():
    counter = Path("calls.txt")
    calls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(calls + 1))
    time.sleep(ms("FIRST_MS", 20) if calls == 0 else 0.020)

def test_unmarked():
    pass
"""


def entry(value: float, **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": "s", "direction": "lower", **extra}


def write_baselines(pytester: pytest.Pytester, tests: dict[str, dict[str, Any]]) -> Path:
    path = pytester.path / "baselines" / "perf_baselines.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "platforms": {PLATFORM: {"tests": tests}}}))
    return path


def run(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return pytester.runpytest(
            "--perf-platform", PLATFORM, "--perf-threshold", "1.0", "--perf-json", "r.json", *args
        )


def verdicts(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    report = json.loads((pytester.path / "r.json").read_text())
    return {c["metric"]: c for c in report["comparisons"]}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    write_baselines(
        pytester,
        {
            "test_suite.py::test_latency": {"latency": entry(0.020)},
            "test_suite.py::test_first_call_slow": {"first_call": entry(0.020)},
        },
    )
    return pytester


def test_confirmed_regression_fails_once(suite: pytest.Pytester) -> None:
    result = run(suite, "--perf-report", "r.md", LATENCY_MS="90")
    result.assert_outcomes(passed=3)  # the re-run is not counted again
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*1 performance regression*",
            "*test*metric*baseline*current*change*threshold*note*",
            "*test_latency*latency*confirmed: held on 1 re-run*",
        ]
    )
    latency = verdicts(suite)["latency"]
    assert latency["verdict"] == "regression"
    assert "confirmed: held on 1 re-run" in latency["detail"]
    regressions = (suite.path / "r.md").read_text().split("### Regressions")[1].split("###")[0]
    assert "| Threshold | Note |" in regressions
    row = next(line for line in regressions.splitlines() if "test_latency" in line)
    assert row.endswith("| confirmed: held on 1 re-run |")


def test_regression_that_does_not_hold_on_confirm_does_not_fail(suite: pytest.Pytester) -> None:
    result = run(suite, FIRST_MS="90")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    assert (suite.path / "calls.txt").read_text() == "2"  # main loop + one re-run
    first = verdicts(suite)["first_call"]
    assert first["verdict"] != "regression"
    assert "not confirmed" in first["detail"] and "cleared on 1 re-run" in first["detail"]


def test_confirm_zero_fails_on_the_first_measurement(suite: pytest.Pytester) -> None:
    result = run(suite, "--perf-confirm", "0", FIRST_MS="90")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (suite.path / "calls.txt").read_text() == "1"
    assert "confirmed" not in verdicts(suite)["first_call"]["detail"]


def test_more_confirm_runs_stop_once_cleared(suite: pytest.Pytester) -> None:
    assert run(suite, "--perf-confirm", "3", FIRST_MS="90").ret == pytest.ExitCode.OK
    assert (suite.path / "calls.txt").read_text() == "2"  # cleared after the first re-run


def test_unstable_metric_warns_without_failing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    # Recorded runs spread +-50 % around 20 ms: a 100 % threshold cannot be told from noise.
    write_baselines(
        pytester,
        {"test_suite.py::test_latency": {"latency": entry(0.020, spread=0.010, n=5, runs=5)}},
    )
    result = run(pytester, "--perf-rule", "noise", "--perf-report", "r.md", LATENCY_MS="25")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 unstable*", "*no performance regressions*"])
    latency = verdicts(pytester)["latency"]
    assert latency["verdict"] == "unstable"
    assert "noise hides" in latency["detail"] and "rounds" in latency["detail"]
    assert "Unstable metrics" in (pytester.path / "r.md").read_text()


def test_noise_rule_still_fails_a_change_far_beyond_the_noise(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    write_baselines(
        pytester,
        {"test_suite.py::test_latency": {"latency": entry(0.020, spread=0.0005, n=5, runs=5)}},
    )
    result = run(pytester, "--perf-rule", "noise", LATENCY_MS="90")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert verdicts(pytester)["latency"]["verdict"] == "regression"


def test_estimator_sets_the_value_from_the_rounds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, time
        CALLS = []

        @pytest.mark.perf(metric="steps", rounds=3)
        def test_steps():
            CALLS.append(1)
            time.sleep(0.002 * 10 ** ((len(CALLS) - 1) % 3))
        """
    )
    # Rounds of 2, 20 and 200 ms: a sleep only overruns, and by far less than the factor of
    # ten between rounds, so each estimator's pick is told apart on a busy machine too.
    run(pytester, "--perf-estimator", "median")
    assert 0.020 <= verdicts(pytester)["steps"]["current"] < 0.200
    run(pytester, "--perf-estimator", "min")
    assert 0.002 <= verdicts(pytester)["steps"]["current"] < 0.020


def test_marked_test_without_rounds_takes_extra_calls_within_budget(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest, time
        CALLS = []

        @pytest.mark.perf
        def test_auto():
            CALLS.append(1)
            time.sleep(0.002)

        @pytest.mark.perf(rounds=2)
        def test_fixed():
            CALLS.append(2)

        def test_unmarked():
            CALLS.append(3)

        def test_counts():
            assert 3 <= CALLS.count(1) <= 20  # 2 ms calls within 0.02 s
            assert CALLS.count(2) == 2 and CALLS.count(3) == 1
        """
    )
    result = pytester.runpytest("--perf", "--perf-rounds-budget", "0.02")
    result.assert_outcomes(passed=4)
    result = pytester.runpytest("--perf", "--perf-rounds-budget", "0", "-k", "auto or unmarked")
    result.assert_outcomes(passed=2)


def test_change_point_in_history_is_named_in_the_verdict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    test = "test_suite.py::test_latency"
    db = pytester.path / "history.db"
    with History(db) as history:
        for i, value in enumerate([0.020] * 10 + [0.090] * 5):
            history.record_run(
                {"latency": (value, "s")},
                platform=PLATFORM,
                test=test,
                git_commit=f"{i:02d}" + "a" * 38,
            )
    write_baselines(pytester, {test: {"latency": entry(0.020)}})
    result = run(pytester, "--perf-db", str(db), "--perf-report", "r.md", LATENCY_MS="90")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    detail = verdicts(pytester)["latency"]["detail"]
    assert "slower since run 11, commit 10aaaaa, +350%" in detail
    report = (pytester.path / "r.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| test_suite.py::"))
    assert "slower since run 11, commit 10aaaaa, +350%" in row


def test_calibration_reports_noise_and_writes_thresholds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, time

        @pytest.mark.perf(metric="steady", rounds=2)
        def test_steady():
            time.sleep(0.005)

        def test_unmarked():
            pass
        """
    )
    result = pytester.runpytest(
        "--perf-platform", PLATFORM, "--perf-calibrate", "3", "--perf-calibrate-write"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*calibrate: 3 A/A passes*", "*test_steady*steady*2*", "*suggested thresholds written*"]
    )
    data = json.loads((pytester.path / "baselines" / "perf_baselines.json").read_text())
    steady = data["platforms"][PLATFORM]["tests"][
        "test_calibration_reports_noise_and_writes_thresholds.py::test_steady"
    ]["steady"]
    assert steady["n"] == 3 and steady["threshold"] >= 0.01
    assert steady["value"] == pytest.approx(0.005, rel=1.0)


def test_calibrate_with_xdist_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--perf-calibrate", "2", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-calibrate*-n*"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("min", "min"), ("Median", "median"), ("mean", "mean"), ("q25", "q25"), ("q05", "q5")],
)
def test_parse_estimator_accepts(text: str, value: str) -> None:
    assert parse_estimator(text) == value


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_estimator, "max"),
        (parse_estimator, "q0"),
        (parse_estimator, "q100"),
        (parse_rule, "bayes"),
        (parse_fdr, "0"),
        (parse_fdr, "1"),
        (parse_fdr, "x"),
        (parse_seconds, "-1"),
        (parse_seconds, "nan"),
    ],
)
def test_new_option_parsers_reject(parse: Any, text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse(text)


def test_confirm_defaults_to_one_rerun_when_gating() -> None:
    root = Path("/project")
    assert resolve({}, {}, {}, root).confirm_runs == 1
    assert resolve({"confirm": 0}, {}, {}, root).confirm_runs == 0
    assert resolve({}, {}, {"perf_gate": "none"}, root).confirm_runs == 0
    assert resolve({}, {"PERFGUARD_CONFIRM": "3"}, {}, root).confirm_runs == 3
    calibrating = resolve({"calibrate": 3}, {}, {}, root)
    assert calibrating.active and calibrating.confirm_runs == 0


def test_bad_new_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--perf-estimator", "max")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-estimator*'max' is not an estimator*"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFGUARD_Q", "2")
        result = pytester.runpytest("--perf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PERFGUARD_Q*between 0 and 1*"])


def test_recorded_rounds_reach_the_baselines_and_the_rank_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_rank="""
        import os, time, pytest

        @pytest.mark.perf(metric="nap", rounds=5)
        def test_nap():
            time.sleep(float(os.environ.get("NAP_MS", "5")) / 1000)
        """
    )
    db = str(pytester.path / "history.db")
    for _ in range(2):
        result = run(pytester, "--perf-record", "--perf-db", db, "--perf-update-baselines",
                     "--perf-min-runs", "2")
        assert result.ret == pytest.ExitCode.OK
    path = pytester.path / "baselines" / "perf_baselines.json"
    stored = json.loads(path.read_text())["platforms"][PLATFORM]["tests"]["test_rank.py::test_nap"]
    samples = stored["nap"]["samples"]
    assert 10 <= len(samples) <= 32 and samples == sorted(samples)
    assert all(0.004 < s < 1.0 for s in samples)

    result = run(pytester, "--perf-rule", "noise", "--perf-confirm", "0")
    assert result.ret == pytest.ExitCode.OK
    assert "interval" in verdicts(pytester)["nap"]["detail"]  # the rank test judged it

    result = run(pytester, "--perf-rule", "noise", "--perf-confirm", "0", NAP_MS="30")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    nap = verdicts(pytester)["nap"]
    assert nap["verdict"] == "regression"
    assert "interval" in nap["detail"] and "q=" in nap["detail"]
