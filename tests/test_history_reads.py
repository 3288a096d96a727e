"""The by-test and by-run reads give what a plain reading of every stored run gives.

`trend`, `baseline` and `summary` read the two result tables with a statement each (and,
with a limit, the newest runs first; on PostgreSQL `baseline` reads both in one); here
they are checked against a reference built in Python from `get_run` of every run, on a
history that mixes both tables for one test and metric (a test that becomes marked),
custom metrics, failures, two platforms and a run whose start is older than runs stored
before it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.records import TrendPoint
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TESTS = ("t.py::plain", "t.py::turns_marked", "t.py::custom")
N_RUNS = 14


def session(run_no: int) -> list[Measurement]:
    """One session: standard readings (test_results rows), a marked duration with samples
    and a custom metric (results rows), a failure now and then."""
    rows = []
    for number, test in enumerate(TESTS):
        value = 1.0 + run_no / 10 + number / 100
        outcome = "failed" if (run_no + number) % 5 == 0 else "passed"
        marked = test == "t.py::turns_marked" and run_no >= N_RUNS // 2
        rows.append(
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
        rows.append(Measurement(test, "cpu_time", value / 2, "s", kind="system", outcome=outcome))  # type: ignore[arg-type]
        rows.append(
            Measurement(test, "rss_peak_mb", 50 + run_no, "MB", kind="system", outcome=outcome)  # type: ignore[arg-type]
        )
        if test == "t.py::custom":
            rows.append(Measurement(test, "tokens", 100.0 + run_no, "n", kind="custom"))
    return rows


@pytest.fixture
def history(history_url: str) -> Iterator[History]:
    with History(history_url) as history:
        for run_no in range(N_RUNS):
            # Run 9 is stored after run 8 but started before run 3 (an import of an old run).
            at = T0 + timedelta(hours=2.5 if run_no == 9 else run_no)
            platform = "macos-arm64" if run_no % 3 == 0 else "linux-x86_64"
            info = RunInfo(started_at=at, platform=PlatformInfo(platform), git_commit=f"c{run_no}")
            history.save_session(info, session(run_no))
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
def test_summary_matches_every_run_read(
    history: History, platform: str | None, metric: str | None, last_runs: int
) -> None:
    points = reference(history, platform)
    runs = sorted({(p.started_at, p.run_id) for p in points})[-last_runs:]
    chosen = {run_id for _, run_id in runs}
    rows = [p for p in points if p.run_id in chosen and metric in (None, p.metric)]
    summaries = {
        (s.test, s.metric): s
        for s in history.summary(platform=platform, last_runs=last_runs, metric=metric)
    }
    assert sorted(summaries) == sorted({(p.test, p.metric) for p in rows})
    for (test, name), summary in summaries.items():
        mine = [p for p in rows if p.test == test and p.metric == name]
        passed = [p for p in mine if p.outcome == "passed"]
        assert summary.values == [p.value for p in passed]
        assert summary.run_ids == [p.run_id for p in passed]
        assert summary.n_failed == len(mine) - len(passed)
        assert summary.unit == mine[-1].unit
