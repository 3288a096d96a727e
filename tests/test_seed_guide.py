"""The seed project's RAG performance guide, followed as a new user would.

Every Python snippet of the guide (its ```python blocks and the `python -c "..."` commands
of its bash blocks) runs verbatim against this package, only its import lines pointed
here: `utils.performance_history` and `utils.platform_detection` become
`pytest_perfguard.seed_api`, and `utils.rag_benchmark` (the user's own benchmark code)
becomes a small stand-in. The guide's environment variables are set as it says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.seed_api import PerformanceHistory

GUIDE = Path(__file__).parent / "seed_docs" / "rag_performance_guide.md"
IMPORTS = {
    "from utils.performance_history import": "from pytest_perfguard.seed_api import",
    "from utils.platform_detection import": "from pytest_perfguard.seed_api import",
    # The user's own benchmark code, and the engine and queries the snippet leaves to them.
    "from utils.rag_benchmark import RAGBenchmark": (
        "from seed_app import RAGBenchmark, my_engine, my_test_queries"
    ),
}
SEED_APP = """
from pathlib import Path
from types import SimpleNamespace


class RAGBenchmark:
    def run_end_to_end_benchmark(self, query_engine, test_queries):
        return SimpleNamespace(
            retrieval_metrics=SimpleNamespace(avg_mrr=0.85, avg_ndcg=0.8),
            performance_metrics=SimpleNamespace(total_latency_ms=8100.0),
        )

    def save_report(self, results, path, format):
        Path(path).write_text("<html>report</html>")


my_engine = object()
my_test_queries = ["what is RAG?"]
"""
PLATFORM = "M1_Mac_16GB"
DB = "benchmarks/history/performance.db"


def snippets() -> list[tuple[str, str]]:
    """(section, code) of each Python snippet, in the guide's order."""
    text = GUIDE.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```(python|bash)\n(.*?)^```", text, re.S | re.M):
        section = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)[-1]
        if match[1] == "python":
            found.append((section, match[2]))
            continue
        for command in re.finditer(r'python -c "(.*?)(?<!\\)"', match[2], re.S):
            # What bash hands python: the double-quoted string with its \" unescaped.
            found.append((section, command[1].replace('\\"', '"')))
    return found


def adapted(code: str) -> str:
    for seed, here in IMPORTS.items():
        code = code.replace(seed, here)
    assert "utils." not in code, code
    return code


SNIPPETS = snippets()


def test_every_snippet_of_the_guide_is_found() -> None:
    sections = [section for section, _ in SNIPPETS]
    assert sections == [
        "Check Current Baselines",
        "Check Current Baselines",
        '"No baseline for platform"',
        "Dashboard Shows No Data",
        "Baseline Update Shows No Improvements",
        "Baseline Update Shows No Improvements",
        "Query Historical Data",
        "Custom Benchmark",
        "Export Data",
    ]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A seed-style project: its baselines file where the seed kept it, a git checkout,
    six recorded runs on the M1 Mac, and the seed's variables set."""
    (tmp_path / "seed_app.py").write_text(SEED_APP)
    (tmp_path / "tests").mkdir()
    baselines = {
        PLATFORM: {
            "embedding_throughput": 67.0,
            "query_latency_no_vllm": 8.0,
            "metadata": {"last_updated": "2025-01-07T10:00:00Z", "git_commit": "abc123"},
        }
    }
    (tmp_path / "tests" / "performance_baselines.json").write_text(json.dumps(baselines))
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, env=_git_env())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERFORMANCE_DB_PATH", DB)
    monkeypatch.setenv("PERFORMANCE_PLATFORM", PLATFORM)
    (tmp_path / "benchmarks" / "history").mkdir(parents=True)
    with PerformanceHistory() as history:
        for n, latency in enumerate([8.4, 8.2, 8.0, 7.9, 7.6, 7.5]):
            history.record_run(
                metrics={"query_latency_no_vllm": latency, "embedding_throughput": 66.0 + n},
                metadata={"platform": PLATFORM, "run_type": "ci", "git_commit": f"c{n}"},
            )
    return tmp_path


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip


def run_snippet(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", adapted(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *sys.path])},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# What each snippet prints (or leaves behind) with the project's six runs.
EXPECTED = {
    0: ['"embedding_throughput": 67.0'],
    1: ["Total runs: 6", "Platforms: 1", "Date range: 20"],
    2: ["Total runs: 6"],
    3: ["Total runs: 6", "Platforms: ['M1_Mac_16GB']"],
    4: ["Recent runs: 6"],
    5: ["Run 1: 7.5s", "Run 5: 8.2s"],
    6: ["Trend points: 6", "Baseline: 67.00 chunks/sec", "Regressions: 0", "Improvements: 0"],
}


@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=lambda i: f"{i}-{SNIPPETS[i][0]}")
def test_the_snippet_runs_verbatim_and_gives_what_the_guide_says(project: Path, index: int) -> None:
    out = run_snippet(SNIPPETS[index][1], project)
    for line in EXPECTED.get(index, []):
        assert line in out, out
    if index == 7:  # Custom Benchmark: the run is stored, typed custom, with git metadata
        assert (project / "my_benchmark.html").exists()
        with PerformanceHistory() as history:
            (run,) = history.get_recent_runs(PLATFORM, limit=1)
        assert (run["run_type"], run["avg_mrr"], run["avg_ndcg"]) == ("custom", 0.85, 0.8)
        assert run["query_latency_no_vllm"] == 8.1
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        assert run["git_commit"] == head
        with History(DB) as stored:
            assert stored.recent_runs(limit=1, test_type="custom")[0].run_type == "manual"
    if index == 8:  # Export Data: both files hold the six runs, newest first
        exported = json.loads((project / "m1_performance.json").read_text())
        manual = json.loads((project / "performance_export.json").read_text())
        assert exported == manual
        assert [r["query_latency_no_vllm"] for r in exported] == [7.5, 7.6, 7.9, 8.0, 8.2, 8.4]


def test_compare_to_baseline_gives_each_metric_its_change_and_status(project: Path) -> None:
    with PerformanceHistory() as history:
        result = history.compare_to_baseline(
            {"embedding_throughput": 50.0, "query_latency_no_vllm": 6.0, "tokens_per_second": 15.0},
            PLATFORM,
        )
    metrics = result["metrics"]
    assert metrics["embedding_throughput"]["status"] == "regression"  # higher is better
    assert metrics["embedding_throughput"]["change_percent"] == pytest.approx(-25.37, abs=0.01)
    assert metrics["query_latency_no_vllm"]["status"] == "improvement"  # lower is better
    assert metrics["tokens_per_second"]["status"] == "new"
    assert [m["metric"] for m in result["regressions"]] == ["embedding_throughput"]
    assert [m["metric"] for m in result["improvements"]] == ["query_latency_no_vllm"]
    assert result["threshold"] == 0.2


def test_compare_to_baseline_takes_regression_threshold(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGRESSION_THRESHOLD", "0.30")
    with PerformanceHistory() as history:
        result = history.compare_to_baseline({"embedding_throughput": 50.0}, PLATFORM)
    assert (result["threshold"], result["regressions"]) == (0.3, [])


def test_the_history_reads_runs_the_plugin_recorded(pytester: pytest.Pytester) -> None:
    """`ENABLE_PERFORMANCE_RECORDING=1 pytest ...` (the guide's Quick Start) stores runs
    the seed API reads back under the metric names of the marked tests."""
    pytester.makepyfile(
        test_performance_regression="""
        import pytest

        @pytest.mark.perf(metric="embedding_throughput", direction="higher")
        def test_embedding(perf):
            perf.record("embedding_throughput", 67.5, direction="higher")

        @pytest.mark.perf(metric="query_latency_no_vllm")
        def test_query():
            pass
        """
    )
    env = {"ENABLE_PERFORMANCE_RECORDING": "1", "PERFORMANCE_PLATFORM": PLATFORM}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        mp.chdir(pytester.path)
        with PerformanceHistory() as history:
            (run,) = history.get_recent_runs(PLATFORM, limit=10)
            assert run["embedding_throughput"] == 67.5
            assert run["query_latency_no_vllm"] >= 0
            assert history.get_available_platforms() == [PLATFORM]
            assert history.get_stats()["total_runs"] == 1


def test_compare_to_baseline_takes_the_stored_direction(project: Path) -> None:
    """A name the seed's rule would read as higher-is-better, stored as lower-is-better."""
    with History(DB) as history:
        for depth in (10.0, 10.0, 10.0):
            history.record_run({"queue_depth": depth}, platform=PLATFORM,
                               directions={"queue_depth": "lower"})  # fmt: skip
    with PerformanceHistory() as history:
        result = history.compare_to_baseline({"queue_depth": 20.0}, PLATFORM)
    assert result["metrics"]["queue_depth"]["direction"] == "lower"
    assert [m["metric"] for m in result["regressions"]] == ["queue_depth"]
