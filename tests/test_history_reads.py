"""The by-test and by-run reads give what a plain reading of every stored run gives.

`trend`, `baseline` and `summary` read the result tables and the plain runs' blocks with a
statement each (and,
with a limit, the newest runs first; on PostgreSQL `baseline` reads both in one); here
they are checked against a reference built in Python from `get_run` of every run, on a
history that mixes both tables for one test and metric (a test that becomes marked),
custom metrics, failures, two platforms and a run whose start is older than runs stored
before it; and again with the blocks' runs holding more plain tests than a chunk, so that
the tests read sit in later chunks of their runs, at different positions from one
layout to the next.
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.history.rows import CHUNK_TESTS
from pytest_perfguard.records import TrendPoint
from pytest_perfguard.results import Measurement, PlainRuns, PlatformInfo, RunInfo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TESTS = ("t.py::plain", "t.py::turns_marked", "t.py::custom")
N_RUNS = 14


def session(run_no: int, fillers: int = 0) -> tuple[list[Measurement], PlainRuns]:
    """One session: standard readings (test_results rows, or in every other run a block
    of plain runs), a marked duration with samples and a custom metric (results rows), a
    failure now and then. The plain runs' tests change between runs (new layouts, and
    layouts used again). With `fillers`, the block's runs have about that many plain tests
    more, first (one of them failed in some runs)."""
    rows, plain_rows = _session_rows(run_no)
    if plain_rows and fillers:
        # One more in the later runs: the tests after them move to other positions.
        count = fillers + (run_no >= N_RUNS // 2)
        plain_rows = [*_fillers(run_no, count), *plain_rows]
    plain = PlainRuns([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    for index in range(0, len(plain_rows), 3):
        duration, cpu, rss = plain_rows[index : index + 3]
        plain.ids.append(duration.test)
        plain.outcomes.append(duration.outcome)
        plain.durations.append(duration.value)
        plain.readings[0][2].append(cpu.value)
        plain.readings[1][2].append(rss.value)
    return rows, plain


def _session_rows(run_no: int) -> tuple[list[Measurement], list[Measurement]]:
    rows: list[Measurement] = []
    plain: list[Measurement] = []
    extra = (f"t.py::only_in_run_{run_no % 3}",) if run_no % 4 else ()
    for number, test in enumerate((*TESTS, *extra)):
        value = 1.0 + run_no / 10 + number / 100
        outcome = "failed" if (run_no + number) % 5 == 0 else "passed"
        marked = test == "t.py::turns_marked" and run_no >= N_RUNS // 2
        in_block = run_no % 2 == 0 and not marked and test != "t.py::custom"
        test_rows = plain if in_block else rows
        test_rows.append(
            Measurement(
                test,
                "duration",
                value,
                "s",
                marked=marked,
                outcome=outcome,  # type: ignore[arg-type]
                samples=(value, value) if marked else (),
            )
        )
        test_rows.append(
            Measurement(test, "cpu_time", value / 2, "s", kind="system", outcome=outcome)  # type: ignore[arg-type]
        )
        test_rows.append(
            Measurement(test, "rss_peak_mb", 50 + run_no, "MB", kind="system", outcome=outcome)  # type: ignore[arg-type]
        )
        if test == "t.py::custom":
            rows.append(Measurement(test, "tokens", 100.0 + run_no, "n", kind="custom"))
    return rows, plain


def _fillers(run_no: int, count: int) -> list[Measurement]:
    rows = []
    for number in range(count):
        test, value = f"t.py::filler[{number}]", 0.5 + number / 1000 + run_no / 100
        outcome = "failed" if number == count - 1 and run_no % 4 == 0 else "passed"
        for metric, unit, kind, reading in (
            ("duration", "s", "primary", value),
            ("cpu_time", "s", "system", value / 3),
            ("rss_peak_mb", "MB", "system", 40.0 + run_no),
        ):
            rows.append(Measurement(test, metric, reading, unit, kind=kind, outcome=outcome))  # type: ignore[arg-type]
    return rows


# Plain tests added before the others in the blocks' runs: none, or more than two chunks.
@pytest.fixture(params=[0, 2 * CHUNK_TESTS + 5], ids=["small", "chunked"])
def history(history_url: str, request: pytest.FixtureRequest) -> Iterator[History]:
    fillers: int = request.param
    with History(history_url) as history:
        for run_no in range(N_RUNS):
            # Run 9 is stored after run 8 but started before run 3 (an import of an old run).
            at = T0 + timedelta(hours=2.5 if run_no == 9 else run_no)
            platform = "macos-arm64" if run_no % 3 == 0 else "linux-x86_64"
            info = RunInfo(started_at=at, platform=PlatformInfo(platform), git_commit=f"c{run_no}")
            rows, plain = session(run_no, fillers)
            history.save_session(info, rows, plain=plain)
        yield history


def reference(history: History, platform: str | None = None) -> list[TrendPoint]:
    """Every stored value as a trend point, oldest run first, a run's metrics by name."""
    points = []
    for summary in history.recent_runs(limit=1000, platform=platform):
        run = history.get_run(summary.id)
        for m in sorted(run.measurements, key=lambda m: m.metric, reverse=True):
            points.append(
                TrendPoint(
                    run.id,
                    run.started_at,
                    run.platform,
                    run.git_commit,
                    m.test,
                    m.metric,
                    m.value,
                    m.unit,
                    m.direction,
                    m.outcome,
                )
            )
    points.sort(key=lambda p: (p.started_at, p.run_id))  # stable: metrics stay in order
    return points


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("metric", [None, "duration", "cpu_time", "tokens"])
@pytest.mark.parametrize("platform", [None, "linux-x86_64"])
def test_trend_matches_every_run_read(
    history: History, test: str, metric: str | None, platform: str | None
) -> None:
    expected = [
        p for p in reference(history, platform) if p.test == test and metric in (None, p.metric)
    ]
    assert history.trend(test, metric, platform=platform) == expected
    for limit in (1, 2, 3, 5, 40):
        got = history.trend(test, metric, platform=platform, limit=limit)
        assert got == expected[-limit:], limit
    assert all(p.started_at.tzinfo is timezone.utc for p in history.trend(test, metric))


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("metric", ["duration", "cpu_time", "tokens"])
@pytest.mark.parametrize("platform", [None, "linux-x86_64", "macos-arm64", "no-such-platform"])
def test_baseline_matches_every_run_read(
    history: History, test: str, metric: str, platform: str | None
) -> None:
    passed = [
        p.value
        for p in reference(history, platform)
        if p.test == test and p.metric == metric and p.outcome == "passed"
    ]
    for last_runs in (1, 3, 5, 40):
        expected = statistics.median(passed[-last_runs:]) if passed else None
        assert history.baseline(test, metric, platform=platform, last_runs=last_runs) == expected


@pytest.mark.parametrize("platform", [None, "macos-arm64"])
@pytest.mark.parametrize("metric", [None, "duration", "tokens"])
@pytest.mark.parametrize("last_runs", [1, 4, 40])
@pytest.mark.parametrize("test", [None, "*PLAIN", "t.py::only_in_run_1"])
def test_summary_matches_every_run_read(
    history: History, platform: str | None, metric: str | None, last_runs: int, test: str | None
) -> None:
    def picked(name: str) -> bool:
        return test is None or fnmatch.fnmatch(name.lower(), test.lower())

    points = [p for p in reference(history, platform) if picked(p.test)]
    runs = sorted({(p.started_at, p.run_id) for p in points})[-last_runs:]
    chosen = {run_id for _, run_id in runs}
    rows = [p for p in points if p.run_id in chosen and metric in (None, p.metric)]
    summaries = {
        (s.test, s.metric): s
        for s in history.summary(platform=platform, last_runs=last_runs, metric=metric, test=test)
    }
    assert sorted(summaries) == sorted({(p.test, p.metric) for p in rows})
    for (test, name), summary in summaries.items():
        mine = [p for p in rows if p.test == test and p.metric == name]
        passed = [p for p in mine if p.outcome == "passed"]
        assert summary.values == [p.value for p in passed]
        assert summary.run_ids == [p.run_id for p in passed]
        assert summary.n_failed == len(mine) - len(passed)
        assert summary.unit == mine[-1].unit


@pytest.mark.parametrize("platform", ["linux-x86_64", "macos-arm64"])
@pytest.mark.parametrize("last_runs", [1, 3, 40])
@pytest.mark.parametrize("passed_only", [True, False])
def test_metric_history_matches_every_run_read(
    history: History, platform: str, last_runs: int, passed_only: bool
) -> None:
    kinds = ("primary", "system", "custom")
    points = [
        p
        for p in reference(history, platform)
        if not passed_only or p.outcome == "passed"
    ]
    got = history.metric_history(
        platform, last_runs=last_runs, kinds=kinds, passed_only=passed_only
    )
    expected = {}
    for test, metric in sorted({(p.test, p.metric) for p in points}):
        mine = [p for p in points if (p.test, p.metric) == (test, metric)][::-1][:last_runs]
        expected[test, metric] = ([p.value for p in mine], [p.run_id for p in mine])
    assert {key: (s.values, s.run_ids) for key, s in got.items()} == expected


def test_listings_and_counts_see_every_stored_value(history: History) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(history.url)
    with engine.connect() as conn:
        # Every kind of storage holds some of the values read here.
        counts = {
            table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            for table in ("plain_blocks", "test_layouts", "test_results", "results")
        }
        # The even runs, in three chunks each with the fillers.
        assert counts["plain_blocks"] in (7, 7 * 3)
        assert counts["test_layouts"] == 5  # two of them ran the same tests
        assert counts["test_results"] and counts["results"]
    engine.dispose()
    points = reference(history)
    assert history.tests() == sorted({p.test for p in points})
    assert history.tests("*only_in*") == sorted({p.test for p in points if "only_in" in p.test})
    assert history.tests(platform="macos-arm64") == sorted(
        {p.test for p in points if p.platform == "macos-arm64"}
    )
    stats = history.stats()
    assert (stats.n_results, stats.n_tests) == (len(points), len({p.test for p in points}))
    for run in history.recent_runs(limit=100):
        mine = [p for p in points if p.run_id == run.id]
        failed = {p.test for p in mine if p.outcome == "failed"}
        assert (run.n_results, run.n_failed) == (len(mine), len(failed))
    assert {r.id for r in history.recent_runs(limit=100, test="t.py::only_in_run_1")} == {
        p.run_id for p in points if p.test == "t.py::only_in_run_1"
    }
    first, second = (run.id for run in history.recent_runs(limit=2))
    diffs = {(d.test, d.metric): (d.a, d.b) for d in history.compare(first, second)}
    by_run = {(p.run_id, p.test, p.metric): p.value for p in points}
    assert diffs == {
        (p.test, p.metric): tuple(by_run.get((run, p.test, p.metric)) for run in (first, second))
        for p in points
        if p.run_id in (first, second)
    }


@pytest.mark.parametrize("test", [None, "t.py::plain", "*only_in*"])
@pytest.mark.parametrize("metric", [None, "cpu_time", "tokens"])
def test_export_gives_every_stored_value_in_storage_order(
    history: History, test: str | None, metric: str | None
) -> None:
    import csv
    import fnmatch
    import io

    out = io.StringIO()
    history.export("csv", out, test=test, metric=metric)
    exported = [
        (int(row["run_id"]), row["test"], row["metric"], float(row["value"]), row["outcome"])
        for row in csv.DictReader(io.StringIO(out.getvalue()))
    ]
    expected = [
        (run_id, m.test, m.metric, m.value, m.outcome)
        for run_id in sorted(r.id for r in history.recent_runs(limit=100))
        for m in history.get_run(run_id).measurements
        if (test is None or fnmatch.fnmatch(m.test, test)) and metric in (None, m.metric)
    ]
    assert exported == expected


def test_repeated_reads_on_postgresql_keep_their_prepared_statements(pg_url: str) -> None:
    """A read ends with a commit, so psycopg keeps the statements it prepared (it drops
    them at a rollback), and the reads of plain tests' blocks run on one generic plan
    instead of being planned at every call."""
    from sqlalchemy import text

    with History(pg_url) as history:
        for run_no in range(4):
            info = RunInfo(started_at=T0 + timedelta(hours=run_no), platform=PlatformInfo("p"))
            rows, plain = session(run_no)
            history.save_session(info, rows, plain=plain)
        expected = history.trend("t.py::plain", "duration", limit=2)
        for _ in range(8):  # psycopg prepares a statement at its fifth call
            assert history.trend("t.py::plain", "duration", limit=2) == expected
            history.baseline("t.py::plain", "duration", platform="p")
        with history._store.engine.connect() as conn:  # type: ignore[union-attr]
            prepared = conn.execute(
                text("SELECT statement, generic_plans FROM pg_prepared_statements")
            ).all()
    generic = [plans for statement, plans in prepared if "plain_blocks" in statement]
    # The trend's union (newest runs first, then all) and the baseline's statement.
    assert len(generic) >= 2
    assert all(plans >= 3 for plans in generic)
    # The generic plan is set for the read's transaction only: the next read on the
    # pooled connection plans as PostgreSQL chooses.
    mode = history._store.read(  # type: ignore[union-attr]
        lambda conn: conn.exec_driver_sql("SHOW plan_cache_mode").scalar()
    )
    assert mode == "auto"


@pytest.mark.parametrize("limit", [None, 2, 40])
def test_trend_and_summary_keep_only_runs_since_the_cut(
    history_url: str, limit: int | None
) -> None:
    """`days` becomes a datetime parameter of the cached statements (converted for each
    backend as they were compiled); runs on both sides of the cut, in both tables."""
    now = datetime.now(timezone.utc)
    with History(history_url) as history:
        for run_no in range(8):
            at = now - timedelta(days=7 - run_no, minutes=30)  # a run a day, the last 30 min ago
            platform = PlatformInfo("linux-x86_64")
            info = RunInfo(started_at=at, platform=platform, git_commit=f"c{run_no}")
            rows, plain = session(run_no)
            history.save_session(info, rows, plain=plain)
        cut = now - timedelta(days=3)
        recent = [p for p in reference(history) if p.started_at >= cut]
        assert 0 < len(recent) < len(reference(history))
        for test in TESTS:
            expected = [p for p in recent if p.test == test]
            if limit is not None:
                expected = expected[-limit * 3 :]
            got = history.trend(test, days=3, limit=None if limit is None else limit * 3)
            assert got == expected, test
        summaries = history.summary(days=3, last_runs=limit or 40)
        chosen = sorted({(p.started_at, p.run_id) for p in recent})[-(limit or 40) :]
        run_ids = {run_id for _, run_id in chosen}
        assert {(s.test, s.metric) for s in summaries} == {
            (p.test, p.metric) for p in recent if p.run_id in run_ids
        }
