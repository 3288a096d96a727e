"""What the dashboard shows, read from the history through the `History` API.

The report layer renders what it is handed and queries nothing; this is the one place the
dashboard's data is read. Every shown run's measurements (the gate judges each run) come
in one batched read, not a query per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..report.dashboard_experiments import MAX_EXPERIMENTS, MAX_TRIALS
from ..report.dashboard_series import ALL_KINDS, DashboardData

if TYPE_CHECKING:
    from ..api import History


def read_dashboard(
    history: History, *, days: int | None = 30, platforms: Sequence[str] | None = None
) -> DashboardData:
    """The dashboard's data: the runs of the last `days` (None: all the history) on
    `platforms` (None: every platform)."""
    records = [r for r in history.platforms() if platforms is None or r.key in platforms]
    keys = [r.key for r in records]
    missing = [p for p in platforms or () if p not in keys]
    snapshots = [s for s in history.baseline_snapshots() if s.platform in keys]
    kinds: dict[tuple[str, str], tuple[str, bool]] = {}
    for key in keys:
        latest = history.metric_history(key, last_runs=1, kinds=ALL_KINDS, passed_only=False)
        for name, found in latest.items():
            kinds.setdefault(name, (found.kind, found.marked))
    tests = sorted({test for key in keys for test in history.tests(platform=key)})
    only = keys[0] if len(keys) == 1 else None
    shown = set(keys)
    points = [
        point
        for test in tests
        for point in history.trend(test, platform=only, days=days)
        if point.platform in shown
    ]
    measurements = history.runs_measurements({point.run_id for point in points})
    experiments = history.experiments()[:MAX_EXPERIMENTS]
    trials = {record.id: history.trials(record.id)[:MAX_TRIALS] for record in experiments}
    return DashboardData(
        url=history.url,
        days=days,
        platforms=records,
        missing=missing,
        snapshots=snapshots,
        points=points,
        kinds=kinds,
        measurements=measurements,
        experiments=experiments,
        trials=trials,
    )
