"""`--perf-experiment NAME --perf-param KEY=VALUE`: a pytest run logged as a trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.config import parse_params

SUITE = """
import os
import pytest

@pytest.mark.perf(metric="mrr", direction="higher")
def test_retrieval(perf):
    perf.record("mrr", 0.5 + int(os.environ.get("CHUNK", "256")) / 10000, direction="higher")

@pytest.mark.perf(metric="latency")
def test_latency(perf):
    perf.record("latency", 0.2)
    assert not os.environ.get("BREAK")

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("PERFGUARD_DB", "PERFORMANCE_DB_PATH", "CI", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_runs_become_trials(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    args = ["-p", "no:cacheprovider", f"--perf-db={db}", "--perf-experiment", "chunk sweep"]
    monkeypatch.setenv("CHUNK", "512")
    first = suite.runpytest_subprocess(*args, "--perf-param", "chunk=512", "--perf-param",
                                       "model=gpt-4o,temperature=0.5")  # fmt: skip
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(["*trial 1 of experiment 'chunk sweep' logged (2 metric(s))*"])
    monkeypatch.setenv("CHUNK", "1024")
    monkeypatch.setenv("BREAK", "1")
    second = suite.runpytest_subprocess(*args, "--perf-record", "--perf-param", "chunk=1024")
    assert second.ret == 1
    second.stdout.fnmatch_lines(["*trial 2 of experiment 'chunk sweep' logged (1 metric(s))*"])

    with History(db) as history:
        exp = history.get_experiment("chunk sweep")
        one, two = exp.trials()
        assert one.params == {"chunk": 512, "model": "gpt-4o", "temperature": 0.5}
        assert one.metrics == {"mrr": pytest.approx(0.5512), "latency": 0.2}
        assert one.validation is not None and one.validation.passed
        assert one.run_id is None  # not recorded: the trial alone is stored
        # The failed test's latency is left out; the run itself was recorded and linked.
        assert two.params == {"chunk": 1024}
        assert two.metrics == {"mrr": pytest.approx(0.6024)}
        assert two.validation is not None and not two.validation.passed
        assert two.validation.violations == 1
        assert two.run_id is not None and history.get_run(two.run_id).outcome == "failed"
        best = exp.best("mrr", passed_only=True)
        assert best is not None and best.trial_number == 1


def test_environment_and_ini_name_the_experiment(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    suite.makeini("[pytest]\nperf_param = chunk=128\n")
    monkeypatch.setenv("PERFGUARD_EXPERIMENT", "from env")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--perf-db", str(db))
    assert result.ret == 0, result.stdout.str()
    with History(db) as history:
        [trial] = history.get_experiment("from env").trials()
    assert trial.params == {"chunk": 128}


@pytest.mark.parametrize("bad", ["chunk", "=3", "a=1,b"])
def test_a_bad_param_is_a_usage_error(suite: pytest.Pytester, bad: str, tmp_path: Path) -> None:
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-db", str(tmp_path / "h.db"),
        "--perf-experiment", "x", "--perf-param", bad,
    )  # fmt: skip
    assert result.ret == 4
    assert "is not KEY=VALUE" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_params_without_an_experiment_are_a_usage_error(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--perf-param", "chunk=1")
    assert result.ret == 4
    assert "--perf-param: name the trial's experiment with --perf-experiment NAME" in (
        result.stderr.str()
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chunk=256", {"chunk": 256}),
        ("lr=0.001,model=gpt-4o", {"lr": 0.001, "model": "gpt-4o"}),
        ("flag=true,none=null", {"flag": True, "none": None}),
        ("name= spaced out ", {"name": "spaced out"}),
    ],
)
def test_parse_params(text: str, expected: dict[str, object]) -> None:
    assert parse_params(text) == expected


def test_parse_params_keeps_nan_and_lists_as_text() -> None:
    assert parse_params("x=NaN") == {"x": "NaN"}
    assert parse_params("x=[1]") == {"x": "[1]"}
    # Commas separate pairs, so "2]" is a pair without "=".
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_params("x=[1,2]")
