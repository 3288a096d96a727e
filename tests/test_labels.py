"""Labels on runs (`--perf-label KEY=VALUE`, `PERFGUARD_LABELS`, `labels=`): stored,
filtered by, and gated apart per label set."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pytest_perfguard.api import History, HistoryError
from pytest_perfguard.cli import Console, main
from pytest_perfguard.config import parse_labels
from pytest_perfguard.platform import labelled_platform
from pytest_perfguard.results import PlatformInfo

SUITE = """
import os
import pytest

@pytest.mark.perf(metric="answer_latency")
def test_answer(perf):
    perf.record("answer_latency", float(os.environ["LATENCY"]), unit="s")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("PERFGUARD_DB", "PERFORMANCE_DB_PATH", "CI", "GITHUB_ACTIONS", "PERFGUARD_LABELS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def run(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, latency: float, *args: str
) -> pytest.RunResult:
    monkeypatch.setenv("LATENCY", str(latency))
    return suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-platform", "box", "--perf-db", "h.db",
        "--perf-confirm", "0", "-o", "perf_min_runs=2", *args,
    )  # fmt: skip


def test_labelled_runs_are_gated_apart(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):  # as many as the baselines need (perf_min_runs=2)
        assert (
            run(suite, monkeypatch, 1.0, "--perf-record", "--perf-label", "model=openai").ret == 0
        )
    updated = run(
        suite, monkeypatch, 1.0, "--perf-update-baselines", "--perf-label", "model=openai"
    )
    assert updated.ret == 0, updated.stdout.str()
    baselines = json.loads((suite.path / "baselines" / "perf_baselines.json").read_text())
    assert list(baselines["platforms"]) == ["box[model=openai]"]

    # Three times slower under another label set: not compared with openai's baseline.
    gemini = run(suite, monkeypatch, 3.0, "--perf-record", "--perf-label", "model=gemini")
    assert gemini.ret == 0, gemini.stdout.str()
    # The same slowdown under openai's labels is a regression.
    openai = run(suite, monkeypatch, 3.0, "--perf", "--perf-label", "model=openai")
    assert openai.ret == 1
    openai.stdout.fnmatch_lines(["*1 performance regression*", "*answer_latency*+200.0%*"])
    # PERFGUARD_LABELS names the same label set.
    monkeypatch.setenv("PERFGUARD_LABELS", "model=openai")
    assert run(suite, monkeypatch, 3.0, "--perf").ret == 1

    with History(suite.path / "h.db") as history:
        gemini_runs = history.recent_runs(labels={"model": "gemini"})
        assert len(gemini_runs) == 1 and gemini_runs[0].platform == "box[model=gemini]"
        assert history.get_run(gemini_runs[0].id).labels == {"model": "gemini"}
        openai_runs = history.recent_runs(labels={"model": "openai"})
        assert len(openai_runs) >= 2
        assert {r.platform for r in openai_runs} == {"box[model=openai]"}
        assert history.recent_runs(labels={"model": "openai", "dataset": "v2"}) == []


def test_labels_through_the_api_and_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        history.record_run({"mrr": 0.7}, test="eval", platform="p", labels={"model": "openai"})
        history.record_run(
            {"mrr": 0.8}, test="eval", platform="p", labels={"model": "gemini", "dataset": "v2"}
        )
        history.record_run({"mrr": 0.5}, test="eval", platform="p")
        with pytest.raises(HistoryError, match="label key 'a=b'"):
            history.record_run({"mrr": 0.5}, test="eval", platform="p", labels={"a=b": "c"})
        with pytest.raises(HistoryError, match="label key"):
            history.recent_runs(labels={"": "x"})

    def cli(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = main([*args, "--db", str(db)], console=Console(stdout=out, stderr=err))
        return rc, out.getvalue(), err.getvalue()

    rc, out, _ = cli("runs", "--label", "model=gemini", "--label", "dataset=v2", "--json")
    assert rc == 0 and [r["id"] for r in json.loads(out)] == [2]
    # Recorded from the API, a label set is kept apart like one from pytest.
    assert json.loads(out)[0]["platform"] == "p[dataset=v2,model=gemini]"
    rc, out, _ = cli("show", "2")
    assert rc == 0 and "labels   dataset=v2, model=gemini" in out
    rc, out, err = cli("record", "cli-bench", "--latency", "2s", "--label", "model=local")
    assert rc == 0, err
    rc, out, _ = cli("summary", "--label", "model=local", "--json")
    assert rc == 0 and [(r["test"], r["latest"]) for r in json.loads(out)] == [("cli-bench", 2.0)]
    with History(db) as history:
        [recorded] = history.recent_runs(labels={"model": "local"})
    assert recorded.platform.endswith("[model=local]")
    rc, _, err = cli("runs", "--label", "model")
    assert rc == 2 and "is not KEY=VALUE" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model=openai", {"model": "openai"}),
        ("model=openai, dataset = v2", {"model": "openai", "dataset": "v2"}),
    ],
)
def test_parse_labels(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize("bad", ["model", "=x", "a[1]=x", "m=x]"])
def test_bad_labels_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_labels(bad)


def test_a_bad_label_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--perf-label", "model")
    assert result.ret == 4
    assert "is not KEY=VALUE" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_the_label_set_is_sorted_into_the_platform_key() -> None:
    base = PlatformInfo("box", {"cpu": "x"})
    assert labelled_platform(base, {}) is base
    labelled = labelled_platform(base, {"model": "openai", "dataset": "v2"})
    assert labelled.key == "box[dataset=v2,model=openai]"
    assert labelled.fingerprint["unlabelled_key"] == "box"
    assert labelled.fingerprint["cpu"] == "x"
