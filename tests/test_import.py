"""`perfguard import`: pytest-benchmark saved runs made by a real pytest-benchmark run, and the
seed project's results JSON; idempotent, and clear about what it took and skipped."""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard import api
from pytest_perfguard.api import History
from pytest_perfguard.cli import Console, main
from pytest_perfguard.importers import (
    ImportFormatError,
    benchmark_platform,
    import_paths,
    read_runs,
    seed_direction,
    seed_unit,
)
from pytest_perfguard.platform import detect_platform

pytest_plugins = ["pytester"]

BENCH_SUITE = """
import time

def work(n):
    return sum(range(n))

def test_small(benchmark):
    benchmark.pedantic(work, args=(1000,), rounds=7, iterations=2)

def test_sleepy(benchmark):
    benchmark.pedantic(time.sleep, args=(0.001,), rounds=5)
"""
SEED_RUNS = [
    {
        "id": 1,
        "timestamp": "2026-01-05T10:00:00",
        "git_commit": "abc123",
        "git_branch": "main",
        "platform": "M1_Mac_16GB",
        "python_version": "3.11.9",
        "run_type": "ci",
        "embedding_throughput": 67.0,
        "query_latency_no_vllm": 8.0,
        "peak_memory_gb": 3.2,
        "cache_hit_rate": None,
        "num_test_queries": 10,
        "test_duration_seconds": 95.0,
        "notes": None,
    },
    {
        "id": 2,
        "timestamp": "2026-01-06T10:00:00+00:00",
        "platform": "M1_Mac_16GB",
        "run_type": "nightly",
        "embedding_throughput": 70.0,
        "query_latency_no_vllm": 7.5,
    },
]


@pytest.fixture(autouse=True)
def no_perfguard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*api.DB_ENV_VARS, "PERFGUARD", "PERFGUARD_PLATFORM", "PERFORMANCE_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Result:
    rc: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    def run(*args: str, cwd: Path = tmp_path) -> Result:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.chdir(cwd)
        rc = main(list(args), console=Console(stdout=out, stderr=err))
        return Result(rc, out.getvalue(), err.getvalue())

    return run


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def benchmarks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`.benchmarks/` of two real pytest-benchmark runs in a git checkout: the first saved
    with every sample (`--benchmark-save-data`), the second with statistics only."""
    # pytest-benchmark switches itself off when it sees an xdist worker's environment,
    # which the inner run would inherit when this suite runs with -n.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_bench=BENCH_SUITE)
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "test_bench.py")
    git(pytester.path, "commit", "-q", "-m", "bench")
    for extra in (["--benchmark-save-data"], []):
        result = pytester.runpytest_subprocess(
            "-p", "benchmark", "--benchmark-autosave", "-p", "no:cacheprovider", *extra
        )
        result.assert_outcomes(passed=2)
    return pytester.path / ".benchmarks"


def saved(benchmarks: Path) -> list[dict[str, Any]]:
    files = sorted(benchmarks.rglob("*.json"))
    assert len(files) == 2
    return [json.loads(f.read_text()) for f in files]


def test_pytest_benchmark_runs_import_with_their_medians_and_samples(
    benchmarks: Path, cli: Cli, pytester: pytest.Pytester
) -> None:
    result = cli("import", ".benchmarks", cwd=pytester.path)
    assert result.rc == 0, result.err
    assert result.out.count("imported  .benchmarks/") == 2
    assert result.out.endswith("2 run(s) imported with 4 result(s); 0 skipped\n")

    with History(pytester.path / ".perfguard" / "history.db") as history:
        runs = sorted(history.recent_runs(), key=lambda r: r.id)
        details = [history.get_run(r.id) for r in runs]
    head = git(pytester.path, "rev-parse", "HEAD")
    for data, run in zip(saved(benchmarks), details, strict=True):
        assert run.git_commit == head == data["commit_info"]["id"]
        assert run.git_branch == "main"
        assert run.git_dirty == data["commit_info"]["dirty"]
        assert run.started_at == datetime.fromisoformat(data["datetime"])
        assert run.python_version == data["machine_info"]["python_version"]
        assert run.platform == benchmark_platform(data["machine_info"], None).key
        assert run.system_info["machine_info"] == data["machine_info"]
        assert run.source_key is not None and run.source_key.startswith("pytest-benchmark:")
        by_test = {m.test: m for m in run.measurements}
        assert set(by_test) == {b["fullname"] for b in data["benchmarks"]}
        for bench in data["benchmarks"]:
            m = by_test[bench["fullname"]]
            assert (m.metric, m.unit, m.direction, m.kind, m.marked) == (
                "duration", "s", "lower", "primary", True
            )  # fmt: skip
            assert m.value == bench["stats"]["median"]
            assert list(m.samples) == bench["stats"].get("data", [])
            if m.samples:
                assert statistics.median(m.samples) == pytest.approx(m.value)
    assert sorted(len(m.samples) for m in details[0].measurements) == [5, 7]
    assert [len(m.samples) for m in details[1].measurements] == [0, 0]


def test_importing_twice_adds_nothing(
    benchmarks: Path, cli: Cli, pytester: pytest.Pytester
) -> None:
    assert cli("import", str(benchmarks), cwd=pytester.path).rc == 0
    db = pytester.path / ".perfguard" / "history.db"
    with History(db) as history:
        before = history.stats()
    again = cli("import", str(benchmarks), cwd=pytester.path)
    assert again.rc == 0, again.err
    assert again.out.count(": already imported") == 2
    assert again.out.endswith("0 run(s) imported with 0 result(s); 2 skipped\n")
    with History(db) as history:
        after = history.stats()
    assert (after.n_runs, after.n_results) == (before.n_runs, before.n_results) == (2, 4)


def test_import_platform_override_and_dry_run(
    benchmarks: Path, cli: Cli, pytester: pytest.Pytester
) -> None:
    dry = cli("import", ".benchmarks", "--dry-run", cwd=pytester.path)
    assert dry.rc == 0 and dry.out.count(": would import, 2 result(s)") == 2
    assert "2 run(s) would be imported (dry run)" in dry.out
    assert not (pytester.path / ".perfguard").exists()
    done = cli("import", ".benchmarks", "--platform", "bench_box", "--json", cwd=pytester.path)
    report = json.loads(done.out)
    assert {o["platform"] for o in report["outcomes"]} == {"bench_box"}
    assert all(isinstance(o["run_id"], int) for o in report["outcomes"])


def test_platform_of_a_foreign_machine() -> None:
    machine_info = {
        "node": "build-7",
        "machine": "x86_64",
        "system": "Linux",
        "release": "6.1.0",
        "python_implementation": "CPython",
        "python_version": "3.12.1",
        "cpu": {"brand_raw": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "count": 8},
    }
    info = benchmark_platform(machine_info, None)
    assert info.key == "Linux_x86_64_Xeon_Platinum_8375C_8c"  # no memory size: not saved
    assert info.fingerprint["cpu_count"] == 8 and info.fingerprint["hostname"] == "build-7"
    assert info.fingerprint["source"] == "pytest-benchmark"
    assert benchmark_platform(machine_info, "ci_box").key == "ci_box"


def test_platform_of_a_run_saved_on_this_machine() -> None:
    here = detect_platform()
    fp = here.fingerprint
    machine_info = {
        "node": fp["hostname"],
        "machine": fp["arch"],
        "system": fp["os"],
        "cpu": {"brand_raw": fp["cpu_model"], "count": fp["cpu_count"]},
    }
    # The same key the plugin records here, so the imported history continues it.
    assert benchmark_platform(machine_info, None) == here


def write_seed(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_seed_results_json(cli: Cli, tmp_path: Path) -> None:
    write_seed(tmp_path / "results.json", SEED_RUNS)
    result = cli("import", "results.json")
    assert result.rc == 0, result.err
    assert result.out.splitlines() == [
        "imported  results.json[0]: run 1, 3 result(s) (seed results, platform M1_Mac_16GB)",
        "imported  results.json[1]: run 2, 2 result(s) (seed results, platform M1_Mac_16GB)",
        "2 run(s) imported with 5 result(s); 0 skipped",
    ]
    with History(tmp_path / ".perfguard" / "history.db") as history:
        first, second = history.get_run(1), history.get_run(2)
    local = datetime(2026, 1, 5, 10, 0).astimezone()  # the seed wrote local time
    assert first.started_at == local
    assert second.started_at == datetime(2026, 1, 6, 10, 0, tzinfo=timezone.utc)
    assert (first.git_commit, first.git_branch, first.run_type) == ("abc123", "main", "ci")
    assert (second.run_type, second.triggered_by) == ("nightly", "automated")
    by_metric = {m.metric: m for m in first.measurements}
    assert set(by_metric) == {"embedding_throughput", "query_latency_no_vllm", "peak_memory_gb"}
    assert by_metric["embedding_throughput"].direction == "higher"
    assert by_metric["query_latency_no_vllm"].direction == "lower"
    assert (by_metric["peak_memory_gb"].direction, by_metric["peak_memory_gb"].unit) == (
        "lower", "GB"
    )  # fmt: skip
    assert {m.test for m in first.measurements} == {api.NO_TEST}
    assert first.system_info["num_test_queries"] == 10
    assert first.system_info["test_duration_seconds"] == 95.0

    again = cli("import", "results.json")
    assert again.out.endswith("0 run(s) imported with 0 result(s); 2 skipped\n")


def test_seed_run_with_metrics_and_metadata(tmp_path: Path) -> None:
    path = write_seed(
        tmp_path / "one.json",
        {
            "metrics": {"tokens_per_second": 41.5, "mrr": {"value": 0.8, "direction": "higher"}},
            "metadata": {"platform": "gpu_box", "git_commit": "def", "timestamp": "2026-02-01"},
            "test_name": "rag_eval",
            "success": False,
        },
    )
    [run] = read_runs(path)
    assert run.label == str(path) and run.run.platform.key == "gpu_box"
    assert run.run.outcome == "failed" and run.run.git_commit == "def"
    assert {(m.test, m.metric, m.value, m.direction, m.outcome) for m in run.measurements} == {
        ("rag_eval", "tokens_per_second", 41.5, "higher", "failed"),
        ("rag_eval", "mrr", 0.8, "higher", "failed"),
    }
    [override] = read_runs(path, platform="other")
    assert override.run.platform.key == "other"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON (line 1, column 2"),
        ('{"a": 1}', "not a pytest-benchmark saved run nor a results JSON"),
        ("[]", "not a pytest-benchmark saved run nor a results JSON"),
        ('{"platform": "p", "metrics": {"x": "fast"}}', "x: 'fast' is not a finite number"),
        ('{"platform": "p", "metrics": {"x": {"value": 1, "direction": "up"}}}', "x.direction"),
        ('{"timestamp": "yesterday", "x": 1}', "'yesterday' is not an ISO 8601 time"),
    ],
)
def test_unreadable_files_are_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ImportFormatError, match=re.escape(message)) as raised:
        read_runs(path)
    assert str(raised.value).startswith(f"{path}")


def test_a_bad_file_named_on_the_command_line_imports_nothing(cli: Cli, tmp_path: Path) -> None:
    write_seed(tmp_path / "good.json", SEED_RUNS)
    (tmp_path / "bad.json").write_text("{")
    result = cli("import", "good.json", "bad.json")
    assert result.rc == 2 and result.out == ""
    assert result.err.startswith("perfguard: error: ") and "bad.json: not valid JSON" in result.err
    assert result.err.count("\n") == 1
    assert not (tmp_path / ".perfguard").exists()


def test_walked_directories_skip_other_json(cli: Cli, tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "nested").mkdir(parents=True)
    write_seed(results / "nested" / "run.json", SEED_RUNS[1])
    (results / "package.json").write_text('{"name": "not ours"}')
    (results / "broken.json").write_text("{")
    (results / "notes.txt").write_text("ignored: not JSON by name")
    result = cli("import", "results")
    assert result.rc == 0, result.err
    assert result.out.splitlines() == [
        "skipped   results/broken.json: not valid JSON (line 1, column 2: "
        "Expecting property name enclosed in double quotes)",
        "imported  results/nested/run.json: run 1, 2 result(s) "
        "(seed results, platform M1_Mac_16GB)",
        "skipped   results/package.json: not a pytest-benchmark saved run nor a results JSON "
        "(a run object or a list of them, with a timestamp, platform or metrics)",
        "1 run(s) imported with 2 result(s); 2 skipped",
    ]


def test_a_run_stored_meanwhile_by_another_import_is_skipped(tmp_path: Path) -> None:
    path = write_seed(tmp_path / "r.json", SEED_RUNS[1])

    class Racing(History):
        calls = 0

        def has_run_with_source_key(self, key: str) -> bool:
            self.calls += 1
            if self.calls == 1:  # not yet... then another process stores it
                other = History(self._url)
                other.save_session(*_as_session(path), source_key=key)
                other.close()
                return False
            return super().has_run_with_source_key(key)

    with Racing(tmp_path / "h.db") as history:
        report = import_paths(history, [path])
        assert [o.skipped for o in report.outcomes] == ["already imported"]
        assert history.stats().n_runs == 1


def _as_session(path: Path) -> tuple[Any, Any]:
    [run] = read_runs(path)
    return run.run, run.measurements


@pytest.mark.parametrize(
    ("name", "direction", "unit"),
    [
        ("query_latency", "lower", ""),
        ("peak_memory_gb", "lower", "GB"),
        ("embedding_throughput", "higher", ""),
        ("tokens_per_second", "higher", ""),
        ("cache_hit_rate", "higher", ""),
        ("test_duration_seconds", "lower", "s"),
        ("render_ms", "lower", "ms"),
        ("avg_mrr", "higher", ""),
    ],
)
def test_seed_metric_conventions(name: str, direction: str, unit: str) -> None:
    assert (seed_direction(name), seed_unit(name)) == (direction, unit)


def test_import_paths_are_relative_to_the_current_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_seed(tmp_path / "sub" / "r.json", SEED_RUNS[1])
    result = cli("import", os.path.join("..", "sub", "r.json"), cwd=tmp_path / "sub")
    assert result.rc == 0, result.err
    assert "run 1, 2 result(s)" in result.out
