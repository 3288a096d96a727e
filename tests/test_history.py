"""The history database through `History`, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pytest_perfguard.api import History, HistoryError, SchemaTooNewError
from pytest_perfguard.history import store as store_module
from pytest_perfguard.history.migrations import HEAD_REVISION
from pytest_perfguard.history.urls import mask_secrets, resolve_db_url
from pytest_perfguard.records import EXPORT_COLUMNS
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def make_run(platform: str = "linux-x86_64", *, at: datetime = T0, **fields: Any) -> RunInfo:
    return RunInfo(started_at=at, platform=PlatformInfo(platform, {"cpu": "test"}), **fields)


def m(test: str, metric: str = "duration", value: float = 1.0, **fields: Any) -> Measurement:
    return Measurement(test=test, metric=metric, value=value, **fields)


@pytest.fixture
def history(history_url: str) -> Iterator[History]:
    with History(history_url) as h:
        yield h


def test_session_round_trip(history: History) -> None:
    run = make_run(
        at=T0,
        finished_at=T0 + timedelta(seconds=42),
        git_commit="abc123",
        git_branch="main",
        git_dirty=True,
        python_version="3.11.7",
        run_type="ci",
        triggered_by="ci",
        host="runner-1",
        args=["-x", "--perf-record"],
        outcome="failed",
        notes="nightly",
        system_info={"cpu_count": 8, "gpu": None},
    )
    measurements = [
        m("tests/test_rag.py::test_query", "query_latency", 8.25, unit="s", marked=True,
          threshold=0.1, samples=(8.0, 8.25, 9.5)),
        m("tests/test_rag.py::test_query", "cpu_time", 7.0, kind="system"),
        m("tests/test_rag.py::test_tput", "tokens", 41.5, unit="tok/s", direction="higher",
          kind="custom", outcome="failed", error="boom"),
    ]  # fmt: skip
    run_id = history.save_session(run, measurements)

    detail = history.get_run(run_id)
    assert detail.measurements == measurements
    assert detail.started_at == T0
    assert detail.finished_at == T0 + timedelta(seconds=42)
    assert (detail.git_commit, detail.git_branch, detail.git_dirty) == ("abc123", "main", True)
    assert (detail.run_type, detail.triggered_by, detail.outcome) == ("ci", "ci", "failed")
    assert detail.args == ["-x", "--perf-record"]
    assert detail.system_info == {"cpu_count": 8, "gpu": None}
    assert (detail.host, detail.python_version, detail.notes) == ("runner-1", "3.11.7", "nightly")
    assert (detail.platform, detail.n_results, detail.n_failed) == ("linux-x86_64", 3, 1)


def plain(
    test: str, duration: float, cpu: float = 0.5, rss: float = 0.0, **fields: Any
) -> list[Measurement]:
    """A plain test's rows as the plugin lists them: its built-in readings."""
    return [
        m(test, "duration", duration, unit="s", **fields),
        m(test, "cpu_time", cpu, unit="s", kind="system", **fields),
        m(test, "rss_peak_mb", rss, unit="MB", kind="system", **fields),
    ]


def test_built_in_readings_take_one_row_per_test(history: History, history_url: str) -> None:
    """Plain tests' readings go into test_results, everything else into results; reading
    them back gives the session's rows, in its order, whatever table they went to."""
    measurements = [
        *plain("t.py::a", 0.25, rss=1.5),
        m("t.py::b", "duration", 0.5, unit="s", marked=True, samples=(0.5, 0.6)),
        *plain("t.py::b", 0.5, marked=True)[1:],
        m("t.py::b", "tokens", 41.0, unit="tok/s", direction="higher", kind="custom"),
        *plain("t.py::c", 0.75, outcome="failed"),
        # Out of the plugin's order: a row each; not in standard form: rows of results.
        m("t.py::d", "rss_peak_mb", 2.0, unit="MB", kind="system"),
        m("t.py::d", "cpu_time", 0.1, unit="s", kind="system"),
        m("t.py::e", "duration", 1.0, unit="ms"),
        m("t.py::e", "duration", 1.0, unit="s", kind="system"),
        *plain("t.py::a", 0.3)[:2],  # the same test again: a row of its own
    ]
    run_id = history.save_session(make_run(), measurements)
    detail = history.get_run(run_id)
    assert detail.measurements == measurements
    assert (detail.n_results, detail.n_failed) == (len(measurements), 1)
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        wide = conn.execute(
            sa.text("SELECT test, duration, cpu_time, rss_peak_mb FROM test_results ORDER BY id")
        ).all()
        narrow = conn.execute(sa.text("SELECT test, metric FROM results ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in wide] == [
        ("t.py::a", 0.25, 0.5, 1.5), ("t.py::b", None, 0.5, 0.0),
        ("t.py::c", 0.75, 0.5, 0.0), ("t.py::d", None, None, 2.0),
        ("t.py::d", None, 0.1, None), ("t.py::a", 0.3, 0.5, None),
    ]  # fmt: skip
    assert [tuple(r) for r in narrow] == [
        ("t.py::b", "duration"), ("t.py::b", "tokens"), ("t.py::e", "duration"),
        ("t.py::e", "duration"),
    ]  # fmt: skip

    later = history.save_session(
        make_run(at=T0 + timedelta(hours=1)), [*plain("t.py::a", 0.5), *plain("t.py::c", 1.0)]
    )
    assert [(p.metric, p.value) for p in history.trend("t.py::a", "cpu_time")] == [
        ("cpu_time", 0.5), ("cpu_time", 0.5), ("cpu_time", 0.5),
    ]  # fmt: skip
    assert [p.value for p in history.trend("t.py::c")] == [0.0, 0.75, 0.5, 0.0, 1.0, 0.5]
    assert history.baseline("t.py::a", "duration") == 0.3
    diffs = {(d.test, d.metric): (d.a, d.b) for d in history.compare(run_id, later)}
    assert diffs[("t.py::c", "duration")] == (0.75, 1.0)
    assert diffs[("t.py::b", "tokens")] == (41.0, None)
    assert [r.n_results for r in history.recent_runs()] == [6, len(measurements)]
    assert history.tests("*.py::[ab]*") == [] and history.tests("t.py::?") == [
        "t.py::a", "t.py::b", "t.py::c", "t.py::d", "t.py::e",
    ]  # fmt: skip
    stats = history.stats()
    assert (stats.n_results, stats.n_tests) == (len(measurements) + 6, 5)
    out = io.StringIO()
    assert history.export("csv", out) == len(measurements) + 6
    exported = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["test"], r["metric"], float(r["value"])) for r in exported] == [
        *((x.test, x.metric, x.value) for x in measurements),
        *((x.test, x.metric, x.value) for x in [*plain("t.py::a", 0.5), *plain("t.py::c", 1.0)]),
    ]
    series = history.metric_history("linux-x86_64", last_runs=5, kinds=("primary", "system"))
    assert sorted(series[("t.py::a", "duration")].values) == [0.25, 0.3, 0.5]  # a tie in run 1
    assert series[("t.py::a", "rss_peak_mb")].values == [0.0, 1.5]
    assert series[("t.py::c", "duration")].values == [1.0]  # failed in the first run
    summary = {(s.test, s.metric): s for s in history.summary(metric="cpu_time")}
    assert summary[("t.py::a", "cpu_time")].values == [0.5, 0.5, 0.5]


def test_local_naive_times_are_stored_as_utc(history: History) -> None:
    aware = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    run_id = history.save_session(make_run(at=aware), [m("t::a")])
    assert history.get_run(run_id).started_at == aware
    assert history.get_run(run_id).started_at.tzinfo == timezone.utc


def test_sessions_append(history: History) -> None:
    first = history.save_session(make_run(at=T0), [m("t::a"), m("t::b")])
    second = history.save_session(make_run(at=T0 + timedelta(hours=1)), [m("t::a", value=2.0)])
    runs = history.recent_runs()
    assert [r.id for r in runs] == [second, first]
    assert [r.n_results for r in runs] == [1, 2]
    assert [p.value for p in history.trend("t::a")] == [1.0, 2.0]
    assert history.stats().n_runs == 2
    assert history.stats().n_results == 3


def test_mixed_rows_keep_the_session_order(history: History) -> None:
    """Rows with and without threshold/samples/error take different INSERTs on SQLite;
    the stored order (and every value, NULLs included) is still the session's."""
    measurements = [
        m(f"t::{i}", metric, float(i), marked=i % 2 == 0, threshold=0.2 if i == 3 else None,
          samples=(1.0, 2.0) if metric == "duration" and i % 2 else (),
          error="boom" if i == 4 else None)
        for i in range(6)
        for metric in ("duration", "cpu_time")
    ]  # fmt: skip
    first = history.save_session(make_run(), measurements)
    second = history.save_session(make_run(), measurements[:3])
    stored = history.get_run(first).measurements
    assert [(s.test, s.metric, s.value) for s in stored] == [
        (x.test, x.metric, x.value) for x in measurements
    ]
    assert [(s.threshold, s.samples, s.error, s.marked) for s in stored] == [
        (x.threshold, x.samples, x.error, x.marked) for x in measurements
    ]
    assert len(history.get_run(second).measurements) == 3


def test_session_without_measurements(history: History) -> None:
    run_id = history.save_session(make_run(outcome="interrupted"), [])
    assert history.get_run(run_id).measurements == []
    assert history.get_run(run_id).outcome == "interrupted"


def test_unknown_run(history: History) -> None:
    history.save_session(make_run(), [m("t::a")])
    with pytest.raises(HistoryError, match=r"^run 42 not found$"):
        history.get_run(42)
    with pytest.raises(HistoryError, match="run 42 not found"):
        history.compare(1, 42)


def test_non_finite_values_are_refused(history: History) -> None:
    with pytest.raises(HistoryError, match="t::a duration: cannot store a non-finite value"):
        history.save_session(make_run(), [m("t::a", value=float("nan"))])
    with pytest.raises(HistoryError, match="non-finite"):
        history.save_session(make_run(), [m("t::a", samples=(1.0, float("inf")))])
    assert history.recent_runs() == []


def test_platform_insert_or_get_from_racing_threads(history_url: str) -> None:
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            with History(history_url) as h:
                h.recent_runs()  # schema ready before the race starts
                barrier.wait()
                h.save_session(make_run("racing-platform"), [m(f"t::{i}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with History(history_url) as h:
        [platform] = h.platforms()
        assert (platform.key, platform.n_runs) == ("racing-platform", n)


def test_platform_inserted_meanwhile_is_reselected(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SELECT misses, the INSERT hits the unique key: the SAVEPOINT path recovers.

    The store's path: a History that has read through SQLAlchemy writes through it too (a
    fresh one writes a SQLite file with the lean writer, under SQLite's write lock from the
    first statement, where no other writer can insert meanwhile)."""
    history.save_session(make_run("p1"), [m("t::a")])
    assert [p.key for p in history.platforms()] == ["p1"]
    real_find = store_module.find_platform
    missed: list[bool] = []

    def find_missing_once(conn: sa.Connection, key: str) -> Any:
        if not missed:
            missed.append(True)
            return None
        return real_find(conn, key)

    monkeypatch.setattr(store_module, "find_platform", find_missing_once)
    run_id = history.save_session(make_run("p1"), [m("t::b")])
    assert missed == [True]
    assert history.get_run(run_id).platform == "p1"
    assert [(p.key, p.n_runs) for p in history.platforms()] == [("p1", 2)]


def test_platform_fingerprint_filled_in_later(history: History) -> None:
    history.save_baseline_snapshot("p1", {}, reason="r", git_commit=None, who="me")
    assert history.platforms()[0].fingerprint == {}
    history.save_session(make_run("p1"), [m("t::a")])
    assert history.platforms()[0].fingerprint == {"cpu": "test"}


def test_recent_runs_filters(history: History) -> None:
    now = datetime.now(timezone.utc)
    old = history.save_session(make_run("p1", at=now - timedelta(days=30)), [m("t::rag_q")])
    ci = history.save_session(
        make_run("p1", at=now - timedelta(hours=2), run_type="ci", outcome="failed"),
        [m("tests/test_RAG.py::test_q", outcome="failed"), m("t::other")],
    )
    other = history.save_session(make_run("p2", at=now - timedelta(hours=1)), [m("t::other")])

    def ids(**kwargs: Any) -> list[int]:
        return [r.id for r in history.recent_runs(**kwargs)]

    assert ids() == [other, ci, old]
    assert ids(platform="p1") == [ci, old]
    assert ids(days=7) == [other, ci]
    assert ids(test="*rag*") == [ci, old]  # glob, case-insensitive
    assert ids(test="t::rag_q") == [old]
    assert ids(test="t::rag%") == []  # SQL wildcards are literal
    assert ids(outcome="failed") == [ci]
    assert ids(run_type="ci") == [ci]
    assert ids(limit=1) == [other]
    assert history.recent_runs(run_type="ci")[0].n_failed == 1
    with pytest.raises(HistoryError, match="limit must be a positive integer"):
        history.recent_runs(limit=0)
    with pytest.raises(HistoryError, match="days must be a positive number"):
        history.recent_runs(days=-1)


def test_trend(history: History) -> None:
    for i, platform in enumerate(["p1", "p2", "p1", "p1"]):
        history.save_session(
            make_run(platform, at=T0 + timedelta(days=i), git_commit=f"c{i}"),
            [m("t::a", "latency", float(i), unit="ms"), m("t::a", "cpu_time", 10.0 + i)],
        )
    points = history.trend("t::a", "latency")
    assert [p.value for p in points] == [0.0, 1.0, 2.0, 3.0]  # oldest first
    assert [p.git_commit for p in points] == ["c0", "c1", "c2", "c3"]
    assert points[0].unit == "ms"
    assert [p.value for p in history.trend("t::a", "latency", platform="p1")] == [0.0, 2.0, 3.0]
    assert [p.value for p in history.trend("t::a", "latency", limit=2)] == [2.0, 3.0]
    assert {p.metric for p in history.trend("t::a")} == {"latency", "cpu_time"}
    assert len(history.trend("t::a")) == 8
    assert history.trend("t::missing") == []


def test_metric_history(history: History) -> None:
    for i in range(5):
        measurements = [
            m("t::a", "latency", float(i), marked=True),
            m("t::a", "step:load", 0.5 + i, kind="step"),
            m("t::a", "cpu_time", 1.0, kind="system"),
        ]
        if i != 3:  # t::b is missing from one run: series count runs where it was recorded
            measurements.append(m("t::b", "tps", 100.0 + i, direction="higher", kind="custom"))
        if i == 4:
            measurements.append(m("t::c", "duration", 9.0, outcome="failed"))
        history.save_session(make_run("p1", at=T0 + timedelta(days=i)), measurements)
    history.save_session(make_run("p2", at=T0 + timedelta(days=9)), [m("t::a", "latency", 99.0)])

    series = history.metric_history("p1", last_runs=3)
    assert set(series) == {("t::a", "latency"), ("t::a", "step:load"), ("t::b", "tps")}
    assert series["t::a", "latency"].values == [4.0, 3.0, 2.0]  # newest first
    assert series["t::a", "latency"].marked is True
    assert series["t::b", "tps"].values == [104.0, 102.0, 101.0]
    assert series["t::b", "tps"].direction == "higher"
    assert len(set(series["t::b", "tps"].run_ids)) == 3
    assert set(history.metric_history("p1", last_runs=2, kinds=["system"])) == {
        ("t::a", "cpu_time")
    }
    everything = history.metric_history("p1", last_runs=10, passed_only=False)
    assert everything["t::c", "duration"].values == [9.0]
    assert len(everything["t::a", "latency"].values) == 5


def test_metric_history_beyond_the_newest_runs(history: History) -> None:
    """Metrics missing from the newest runs (dead or flaky tests) still get their last values."""
    for day in [*range(2, 13), 1]:  # day 1 stored last, as an import would: time order counts
        measurements = [m("t::always", value=float(day))]
        if day <= 3:
            measurements.append(m("t::dead", value=float(day)))
        if day in (1, 2, 12):
            measurements.append(m("t::flaky", value=float(day)))
        history.save_session(make_run("p1", at=T0 + timedelta(days=day)), measurements)
    series = history.metric_history("p1", last_runs=2)
    assert {key[0]: s.values for key, s in series.items()} == {
        "t::always": [12.0, 11.0],
        "t::dead": [3.0, 2.0],
        "t::flaky": [12.0, 2.0],
    }
    assert list(series) == sorted(series)


def test_baseline_and_compare(history: History) -> None:
    ids = [
        history.save_session(
            make_run(at=T0 + timedelta(days=i)),
            [m("t::a", "latency", v), m("t::a", "tps", 10.0 * (i + 1), direction="higher")],
        )
        for i, v in enumerate([5.0, 1.0, 2.0, 3.0, 100.0])
    ]
    history.save_session(
        make_run(at=T0 + timedelta(days=9)), [m("t::a", "latency", 1e6, outcome="failed")]
    )
    assert history.baseline("t::a", "latency", last_runs=3) == 3.0
    assert history.baseline("t::a", "latency") == 3.0
    assert history.baseline("t::a", "latency", platform="elsewhere") is None
    last = history.save_session(make_run(at=T0 + timedelta(days=10)), [m("t::new", "x", 1.0)])

    diffs = {(d.test, d.metric): d for d in history.compare(ids[0], ids[1])}
    assert diffs["t::a", "latency"].change == pytest.approx(-0.8)
    assert diffs["t::a", "latency"].worse_change == pytest.approx(-0.8)
    assert diffs["t::a", "tps"].change == pytest.approx(1.0)
    assert diffs["t::a", "tps"].worse_change == pytest.approx(-1.0)
    only = history.compare(ids[0], last)
    assert [(d.test, d.a is None, d.b is None, d.change) for d in only] == [
        ("t::a", False, True, None),
        ("t::a", False, True, None),
        ("t::new", True, False, None),
    ]


def test_stats_platforms_tests(history: History) -> None:
    empty = history.stats()
    assert (empty.n_runs, empty.n_results, empty.first_run) == (0, 0, None)
    history.save_session(make_run("p1", at=T0), [m("t::a"), m("t::b")])
    history.save_session(make_run("p2", at=T0 + timedelta(days=1)), [m("t::a")])
    stats = history.stats()
    assert (stats.n_runs, stats.n_results, stats.n_platforms, stats.n_tests) == (2, 3, 2, 2)
    assert (stats.first_run, stats.last_run) == (T0, T0 + timedelta(days=1))
    assert stats.schema_revision == HEAD_REVISION
    assert stats.url == history.url
    if stats.url.startswith("sqlite"):
        assert stats.db_size_bytes and stats.db_size_bytes > 0
    else:
        assert stats.db_size_bytes is None
    assert [(p.key, p.n_runs, p.last_run) for p in history.platforms()] == [
        ("p1", 1, T0),
        ("p2", 1, T0 + timedelta(days=1)),
    ]
    assert history.tests() == ["t::a", "t::b"]
    assert history.tests("*B") == ["t::b"]
    assert history.tests(platform="p2") == ["t::a"]


def test_baseline_snapshots(history: History) -> None:
    entries = {"t::a": {"latency": {"value": 8.0, "unit": "s", "runs": 5}}}
    first = history.save_baseline_snapshot("p1", entries, reason="update", git_commit="abc",
                                           who="ci")  # fmt: skip
    second = history.save_baseline_snapshot("p2", {}, reason="init", git_commit=None, who="me")
    snapshots = history.baseline_snapshots()
    assert [s.id for s in snapshots] == [second, first]
    [p1] = history.baseline_snapshots("p1")
    assert (p1.platform, p1.entries, p1.reason, p1.git_commit, p1.who) == (
        "p1", entries, "update", "abc", "ci"
    )  # fmt: skip


def test_source_key_makes_imports_idempotent(history: History) -> None:
    assert not history.has_run_with_source_key("file.json#1")
    history.record_run({"x": 1.0}, platform="p1", source_key="file.json#1")
    assert history.has_run_with_source_key("file.json#1")
    with pytest.raises(HistoryError, match=re.escape("source key 'file.json#1' is already stored")):
        history.record_run({"x": 2.0}, platform="p1", source_key="file.json#1")
    assert len(history.recent_runs()) == 1


def _seed_export(history: History) -> None:
    for i in range(3):
        history.save_session(
            make_run("p1" if i < 2 else "p2", at=T0 + timedelta(days=i), git_commit=f"c{i}"),
            [m("t::a", "latency", 1.5 + i, unit="s", samples=(1.0, 2.0)),
             m("t::b", "tps", 3.0, direction="higher", marked=True, threshold=0.1)],
        )  # fmt: skip


def test_export_csv(history: History) -> None:
    _seed_export(history)
    out = io.StringIO()
    assert history.export("csv", out) == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    first = rows[0]
    assert (first["test"], first["metric"], float(first["value"])) == ("t::a", "latency", 1.5)
    assert json.loads(first["samples"]) == [1.0, 2.0]
    assert first["started_at"] == T0.isoformat()
    assert (rows[1]["marked"], rows[1]["threshold"], rows[1]["samples"]) == ("true", "0.1", "")
    out = io.StringIO()
    assert history.export("csv", out, platform="p2") == 2


def test_export_json(history: History) -> None:
    _seed_export(history)
    out = io.StringIO()
    assert history.export("json", out, platform="p1") == 4
    data = json.loads(out.getvalue())
    assert len(data) == 4
    assert data[0]["samples"] == [1.0, 2.0]
    assert data[0]["platform"] == "p1"
    assert data[1]["marked"] is True
    empty = io.StringIO()
    assert history.export("json", empty, platform="nowhere") == 0
    assert json.loads(empty.getvalue()) == []
    with pytest.raises(HistoryError, match="unknown format"):
        history.export("xml", io.StringIO())  # type: ignore[arg-type]


class CountingWriter(io.StringIO):
    """Records how much the history had written each time a row arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_export_streams_row_by_row(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    history.save_session(make_run(), [m(f"t::{i}", value=float(i)) for i in range(5000)])
    options: list[dict[str, Any]] = []
    real_execution_options = sa.Connection.execution_options

    def spy(self: sa.Connection, **kwargs: Any) -> sa.Connection:
        options.append(kwargs)
        return real_execution_options(self, **kwargs)

    monkeypatch.setattr(sa.Connection, "execution_options", spy)
    out = CountingWriter()
    assert history.export("csv", out) == 5000
    assert out.writes > 5000  # one write per row, not one big string
    assert {"stream_results": True, "yield_per": 2000} in options


def test_to_dataframe_needs_pandas(history: History) -> None:
    history.save_session(make_run(), [m("t::a", samples=(1.0,))])
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(HistoryError, match="pip install pandas"):
            history.to_dataframe()
    else:
        frame = history.to_dataframe()
        assert list(frame.columns) == list(EXPORT_COLUMNS)
        assert frame["samples"][0] == [1.0]


def test_vacuum_and_upgrade_when_current(history: History) -> None:
    history.save_session(make_run(), [m("t::a")])
    history.vacuum()
    assert history.upgrade() == (HEAD_REVISION, HEAD_REVISION)
    assert len(history.recent_runs()) == 1


# -- opening databases ----------------------------------------------------------------------


def test_create_false_never_creates(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.db"
    history = History(path, create=False)
    with pytest.raises(HistoryError, match=f"^{re.escape(f'history database not found: {path}')}$"):
        history.recent_runs()
    assert not path.parent.exists()


def test_create_makes_parent_directories_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "history.db"
    with History(path) as history:
        history.save_session(make_run(), [m("t::a")])
    assert path.exists()
    with History(path, create=False) as history:
        assert len(history.recent_runs()) == 1
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_create_false_on_empty_database(history_url: str) -> None:
    sa.create_engine(history_url).connect().close()  # an empty SQLite file exists
    with pytest.raises(HistoryError, match="has no perfguard history yet"):
        History(history_url, create=False).recent_runs()


def _stamp(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_newer_schema_is_refused_and_not_written(history_url: str) -> None:
    with History(history_url) as history:
        history.save_session(make_run(), [m("t::a")])
    _stamp(history_url, "9999_from_the_future")
    with History(history_url) as history:
        with pytest.raises(SchemaTooNewError, match="schema revision '9999_from_the_future'"):
            history.save_session(make_run(), [m("t::b")])
        with pytest.raises(SchemaTooNewError, match="upgrade pytest-perfguard"):
            history.recent_runs()
        with pytest.raises(SchemaTooNewError):
            history.upgrade()
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM results")).scalar() == 1
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "9999_from_the_future"
        )
    engine.dispose()


def test_foreign_tables_are_refused(history_url: str) -> None:
    engine = sa.create_engine(history_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()
    with pytest.raises(HistoryError, match="has tables runs but no alembic_version"):
        History(history_url).recent_runs()


def test_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with History(path) as history:
        history.save_session(make_run(), [m("t::a")])
    code = (
        "import sys\n"
        "from pytest_perfguard.api import History\n"
        f"h = History({str(path)!r}, create=False)\n"
        "assert 'sqlalchemy' not in sys.modules, 'History() must not connect'\n"
        "assert len(h.recent_runs()) == 1\n"
        "assert 'alembic' not in sys.modules, sorted(m for m in sys.modules if 'alembic' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unreadable_database_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError) as info:
        History(path).recent_runs()
    assert str(info.value).startswith(f"history database sqlite:///{path}: file is not a database")
    assert "\n" not in str(info.value)


def test_unreachable_server_message_masks_the_password() -> None:
    history = History("postgresql://perf:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in repr(history)
    with pytest.raises(HistoryError) as info:
        history.recent_runs()
    message = str(info.value)
    assert message.startswith("history database postgresql+psycopg://perf:***@127.0.0.1:1/")
    assert "s3cret" not in message
    assert "\n" not in message


def test_missing_psycopg_is_explained(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from pytest_perfguard.api import History, HistoryError\n"
        "try:\n"
        "    History('postgresql://u:pw@localhost/db')\n"
        "except HistoryError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "--perf-db: postgresql+psycopg://u:***@localhost/db: PostgreSQL needs psycopg 3: "
        "install pytest-perfguard[postgres]"
    )


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "sqlite:////root/.perfguard/history.db"),
        ("db/h.db", "sqlite:////root/db/h.db"),
        ("/abs/h.db", "sqlite:////abs/h.db"),
        ("sqlite:///rel.db", "sqlite:///rel.db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_resolve_db_url(value: str | None, expected: str) -> None:
    assert resolve_db_url(value, Path("/root")) == expected


@pytest.mark.parametrize("value", ["not a scheme://x", "://nothing", "  "])
def test_resolve_db_url_rejects(value: str) -> None:
    with pytest.raises(HistoryError, match=r"^--perf-db: .* not a valid database URL or path$"):
        resolve_db_url(value, Path("/root"))


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://u:secret@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql://u:p%40ss@h:5432/db?x=1", "postgresql://u:***@h:5432/db?x=1"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_secrets(url) == masked


def test_unknown_dialect_is_refused_up_front() -> None:
    with pytest.raises(HistoryError) as info:
        resolve_db_url("nosuchdb://u:hunter2@h/db", Path("/root"))
    assert str(info.value) == (
        "--perf-db: 'nosuchdb://u:***@h/db' is not a supported database URL "
        "(no SQLAlchemy dialect 'nosuchdb')"
    )


def test_missing_driver_is_refused_up_front() -> None:
    with pytest.raises(
        HistoryError, match=r"^--perf-db: mysql://u:\*\*\*@h/db: the database driver"
    ):
        resolve_db_url("mysql://u:pw@h/db", Path("/root"))


# -- concurrent writers ---------------------------------------------------------------------

WRITER = """
import sys
from datetime import datetime, timezone
from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

url, worker, n_runs, per_run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with History(url) as history:
    for r in range(n_runs):
        run = RunInfo(started_at=datetime.now(timezone.utc),
                      platform=PlatformInfo(f"p{worker % 3}"), notes=f"w{worker}r{r}")
        history.save_session(run, [Measurement(test=f"t::w{worker}", metric=f"m{i}",
                                               value=float(r)) for i in range(per_run)])
"""


def _run_writers(url: str, writers: int, n_runs: int, per_run: int, timeout: float) -> None:
    """`writers` processes, all starting on a fresh database (so they race to create it)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), str(n_runs), str(per_run)],
                         stderr=subprocess.PIPE, text=True)
        for w in range(writers)
    ]  # fmt: skip
    failures = [p.communicate(timeout=timeout)[1] for p in procs if p.wait(timeout=timeout) != 0]
    assert failures == []
    with History(url, create=False) as history:
        stats = history.stats()
        assert stats.n_runs == writers * n_runs
        assert stats.n_results == writers * n_runs * per_run
        assert stats.n_platforms == min(writers, 3)
        runs = history.recent_runs(limit=writers * n_runs)
        assert {r.notes for r in runs} == {
            f"w{w}r{r}" for w in range(writers) for r in range(n_runs)
        }
        assert {r.n_results for r in runs} == {per_run}


def test_concurrent_writer_processes(history_url: str) -> None:
    _run_writers(history_url, writers=4, n_runs=10, per_run=50, timeout=60)


@pytest.mark.stress
def test_concurrent_writer_processes_stress(history_url: str) -> None:
    _run_writers(history_url, writers=8, n_runs=1000, per_run=10, timeout=120)


def test_threads_sharing_one_history(history_url: str) -> None:
    with History(history_url) as history:

        def write(worker: int) -> None:
            for r in range(10):
                history.save_session(make_run(notes=f"{worker}-{r}"), [m(f"t::{worker}")] * 3)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert history.stats().n_runs == 40
        assert history.stats().n_results == 120


# -- SQLite locking -------------------------------------------------------------------------


def test_writer_waits_for_a_held_lock(tmp_path: Path) -> None:
    """busy_timeout: a session write waits for another writer instead of failing."""
    path = tmp_path / "h.db"
    with History(path) as history:
        history.save_session(make_run(), [m("t::a")])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        done = threading.Event()

        def write() -> None:
            history.save_session(make_run(), [m("t::b")])
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)  # blocked behind the other writer
        other.execute("COMMIT")
        thread.join(10)
        assert done.is_set()
        assert history.stats().n_runs == 2
        other.close()


def test_locked_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    store = store_module.HistoryStore("sqlite://")
    monkeypatch.setattr("pytest_perfguard.history.store.time.sleep", lambda seconds: None)
    attempts: list[int] = []

    def flaky_write() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return 7

    assert store._retrying(flaky_write) == 7
    assert len(attempts) == 3

    def broken_write() -> int:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

    with pytest.raises(OperationalError):
        store._retrying(broken_write)


def test_summary(history: History) -> None:
    now = datetime.now(timezone.utc)
    for i, (platform, value) in enumerate([("p1", 4.0), ("p1", 2.0), ("p2", 9.0), ("p1", 3.0)]):
        history.save_session(
            make_run(platform, at=now - timedelta(hours=10 - i), run_type="nightly" if i else "ci"),
            [
                m("t::a", "latency", value, unit="s"),
                m("t::a", "tps", 10.0 * (i + 1), direction="higher"),
                m("t::b", value=1.0, outcome="failed" if i == 3 else "passed"),
            ],
        )
    by_key = {(s.test, s.metric): s for s in history.summary()}
    latency = by_key[("t::a", "latency")]
    assert latency.values == [4.0, 2.0, 9.0, 3.0]  # oldest first
    assert (latency.latest, latency.median, latency.unit) == (3.0, 3.5, "s")
    assert latency.change == pytest.approx((3.0 - 4.0) / 4.0)  # vs the median before it
    assert latency.worse_change == latency.change
    tps = by_key[("t::a", "tps")]
    assert tps.change == pytest.approx((40.0 - 20.0) / 20.0) and tps.worse_change == -tps.change
    failed = by_key[("t::b", "duration")]
    assert (failed.values, failed.n_failed) == ([1.0, 1.0, 1.0], 1)

    def values(**kwargs: Any) -> dict[tuple[str, str], list[float]]:
        return {(s.test, s.metric): s.values for s in history.summary(**kwargs)}

    assert values(platform="p1", metric="latency") == {("t::a", "latency"): [4.0, 2.0, 3.0]}
    assert values(last_runs=2, test="*A") == {
        ("t::a", "latency"): [9.0, 3.0], ("t::a", "tps"): [30.0, 40.0]
    }  # fmt: skip
    assert values(run_type="ci", metric="latency") == {("t::a", "latency"): [4.0]}
    assert values(outcome="failed") == {} and values(test="nothing") == {}
    assert values(days=1, metric="tps")[("t::a", "tps")] == [10.0, 20.0, 30.0, 40.0]
    with pytest.raises(HistoryError, match="last_runs must be a positive integer"):
        history.summary(last_runs=0)


def test_save_session_with_a_source_key(history: History) -> None:
    run_id = history.save_session(make_run(), [m("t::a")], source_key="bench.json#sha")
    assert history.get_run(run_id).source_key == "bench.json#sha"
    with pytest.raises(HistoryError, match=re.escape("key 'bench.json#sha' is already stored")):
        history.save_session(make_run(), [m("t::a")], source_key="bench.json#sha")
    assert len(history.recent_runs()) == 1


def test_exists_opens_nothing(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", create=False)
    assert not history.exists() and not (tmp_path / "h.db").exists()
    with History(tmp_path / "h.db") as created:
        created.record_run({"x": 1.0}, platform="p")
    assert history.exists()
    assert History("postgresql://u:p@nowhere/db").exists()  # a server: connecting tells
