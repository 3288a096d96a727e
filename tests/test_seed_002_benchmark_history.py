"""The seed benchmark history's Python snippet (seed 002, "Querying Results / From Database"),
changed only in its import line, runs on `pytest_perfguard.benchmark_snapshots` over runs
that pytest sessions stored with `--perf-label model=...`.

The seed's model versions look like `openai-v1.0`: the runs carry `model=openai` and
`version=v1.0`, which the door joins into `model_version`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard import History
from pytest_perfguard.benchmark_snapshots import create_client

# "From Database", verbatim but for the import (was: from supabase import create_client).
SNIPPET = """\
from pytest_perfguard.benchmark_snapshots import create_client
import os

client = create_client(
    os.getenv('SUPABASE_URL'),
    os.getenv('SUPABASE_SERVICE_ROLE_KEY')
)

# Get latest snapshots
snapshots = client.table('benchmark_snapshots')\\
    .select('*')\\
    .eq('is_current', True)\\
    .execute()

# Get history for a model
history = client.table('benchmark_snapshots')\\
    .select('*')\\
    .eq('model_version', 'openai-v1.0')\\
    .order('snapshot_version', desc=True)\\
    .execute()
"""

REPORT = """
import json
print(json.dumps({"snapshots": snapshots.data, "history": history.data}))
"""

SUITE = """
import os
import pytest

@pytest.mark.perf(metric="answer_latency")
def test_answer(perf):
    perf.record("answer_latency", float(os.environ["LATENCY"]), unit="s")
"""

KEY = "service-role-key-that-must-not-show"


@pytest.fixture
def benchmarks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A history holding openai v1.0 (three runs), gemini v1.0 (two) and an unlabelled run."""
    for name in ("PERFGUARD_DB", "PERFORMANCE_DB_PATH", "CI", "GITHUB_ACTIONS", "PERFGUARD_LABELS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    sessions = [
        ("openai", 1.0), ("gemini", 2.0), ("openai", 1.1), ("gemini", 2.2), ("openai", 1.2),
        (None, 9.0),
    ]  # fmt: skip
    for model, latency in sessions:
        monkeypatch.setenv("LATENCY", str(latency))
        labels = ["--perf-label", f"model={model}", "--perf-label", "version=v1.0"] if model else []
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--perf-platform", "box", "--perf-db", "h.db",
            "--perf-record", *labels,
        )  # fmt: skip
        assert result.ret == 0, result.outlines[-20:]
    return pytester.path / "h.db"


def run_snippet(tmp: Path, url: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "query_snapshots.py"
    script.write_text(SNIPPET + REPORT, encoding="utf-8")
    env = {**os.environ, "SUPABASE_URL": url, "SUPABASE_SERVICE_ROLE_KEY": KEY}
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_the_seed_snippet_reads_current_snapshots_and_one_models_history(
    benchmarks: Path, tmp_path: Path
) -> None:
    with History(benchmarks) as history:
        runs = history.recent_runs(limit=10)  # newest first
    ids = {run.id: run for run in runs}
    openai_ids = [r.id for r in runs if r.platform == "box[model=openai,version=v1.0]"]
    gemini_ids = [r.id for r in runs if r.platform == "box[model=gemini,version=v1.0]"]
    assert len(openai_ids) == 3 and len(gemini_ids) == 2 and len(ids) == 6

    result = run_snippet(tmp_path, str(benchmarks))
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    got = json.loads(result.stdout)

    # Latest snapshots: the newest run of each label set, and no unlabelled run.
    current = {row["model_version"]: row for row in got["snapshots"]}
    assert sorted(current) == ["gemini-v1.0", "openai-v1.0"]
    assert len(got["snapshots"]) == 2
    assert current["openai-v1.0"]["snapshot_version"] == openai_ids[0]
    assert current["gemini-v1.0"]["snapshot_version"] == gemini_ids[0]
    latency = "test_suite.py::test_answer::answer_latency"
    assert current["openai-v1.0"]["metrics"][latency] == 1.2
    assert current["gemini-v1.0"]["metrics"][latency] == 2.2
    # With the plugin's own metrics of the test (duration, cpu_time, ...).
    assert "test_suite.py::test_answer::duration" in current["gemini-v1.0"]["metrics"]
    assert current["gemini-v1.0"]["labels"] == {"model": "gemini", "version": "v1.0"}
    assert all(row["is_current"] is True for row in got["snapshots"])

    # One model's history, newest snapshot first; only the newest is current.
    history_rows = got["history"]
    assert [row["snapshot_version"] for row in history_rows] == sorted(openai_ids, reverse=True)
    assert [row["is_current"] for row in history_rows] == [True, False, False]
    latencies = [row["metrics"][latency] for row in history_rows]
    assert latencies == [1.2, 1.1, 1.0]
    assert {row["model"] for row in history_rows} == {"openai"}
    assert {row["platform"] for row in history_rows} == {"box[model=openai,version=v1.0]"}


def test_model_version_is_the_model_label_alone_without_a_version(history_url: str) -> None:
    with History(history_url) as history:
        old = history.record_run({"accuracy": 0.90}, platform="box", labels={"model": "gemini"})
        new = history.record_run({"accuracy": 0.93}, platform="box", labels={"model": "gemini"})
        elsewhere = history.record_run(
            {"accuracy": 0.92}, platform="mac", labels={"model": "gemini"}
        )
        history.record_run({"accuracy": 0.80}, platform="box", labels={"model": "openai"})
        history.record_run({"accuracy": 0.10}, platform="box")  # no model: not a snapshot
    client = create_client(history_url, "ignored")
    rows = client.table("benchmark_snapshots").select("snapshot_version, is_current, metrics")
    got = rows.eq("model_version", "gemini").eq("platform", "box[model=gemini]")
    assert got.order("snapshot_version").execute().data == [
        {"snapshot_version": old, "is_current": False, "metrics": {"accuracy": 0.90}},
        {"snapshot_version": new, "is_current": True, "metrics": {"accuracy": 0.93}},
    ]
    # Current per platform and label set: the same model on another machine has its own.
    current = client.table("benchmark_snapshots").select("snapshot_version, platform")
    assert current.eq("is_current", True).order("platform").execute().data == [
        {"snapshot_version": new, "platform": "box[model=gemini]"},
        {"snapshot_version": new + 2, "platform": "box[model=openai]"},
        {"snapshot_version": elsewhere, "platform": "mac[model=gemini]"},
    ]
    # Filters compare by text, as PostgREST's do; limit keeps the first rows.
    one = client.table("benchmark_snapshots").select("model").eq("snapshot_version", str(new))
    assert one.execute().data == [{"model": "gemini"}]
    newest = client.table("benchmark_snapshots").select("model_version")
    assert newest.order("snapshot_version", desc=True).limit(1).execute().data == [
        {"model_version": "openai"}
    ]
    stale = client.table("benchmark_snapshots").select("*").eq("is_current", False).execute()
    assert [row["snapshot_version"] for row in stale.data] == [old]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (lambda c: c.table("benchmark_results"), "table 'benchmark_results' does not exist"),
        (lambda c: c.table("benchmark_snapshots").select("id"), "has no column 'id'"),
        (lambda c: c.table("benchmark_snapshots").eq("modelversion", "x"), "has no column"),
        (lambda c: c.table("benchmark_snapshots").order("rank", desc=True), "has no column"),
        (lambda c: c.table("benchmark_snapshots").eq("metrics", {}), "cannot filter on 'metrics'"),
        (lambda c: c.table("benchmark_snapshots").limit(-1), "limit: give a count"),
    ],
)
def test_unknown_tables_and_columns_are_one_clear_error(
    tmp_path: Path, query: Any, message: str
) -> None:
    client = create_client(str(tmp_path / "h.db"), KEY)
    with pytest.raises(ValueError, match=message) as raised:
        query(client)
    assert "\n" not in str(raised.value)


def test_a_supabase_web_address_is_refused_and_the_key_never_shown() -> None:
    with pytest.raises(ValueError, match="SUPABASE_URL holds a web address") as raised:
        create_client("https://abc.supabase.co", KEY)
    assert KEY not in str(raised.value)


def test_an_empty_history_has_no_snapshots_and_a_missing_file_is_not_created(
    tmp_path: Path,
) -> None:
    from pytest_perfguard.api import HistoryError

    missing = tmp_path / "none.db"
    with pytest.raises(HistoryError):
        create_client(str(missing), KEY).table("benchmark_snapshots").select("*").execute()
    assert not missing.exists()
    with History(tmp_path / "empty.db") as history:
        history.record_run({"x": 1.0}, platform="box")  # no model label: not a snapshot
    rows = create_client(str(tmp_path / "empty.db")).table("benchmark_snapshots").execute().data
    assert rows == []
