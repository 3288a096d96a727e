"""What the dashboard shows, read from the history through the `History` API.

The report layer renders what it is handed and queries nothing; this is the one place the
dashboard's data is read. Every shown run's measurements (the gate judges each run) come
in one batched read, not a query per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..records import TrendPoint
from ..report.dashboard_experiments import MAX_EXPERIMENTS, MAX_TRIALS
from ..report.dashboard_series import DashboardData

if TYPE_CHECKING:
    from ..api import History


def read_dashboard(
    history: History, *, days: int | None = 30, platforms: Sequence[str] | None = None
) -> DashboardData:
    """The dashboard's data: the runs of the last `days` (None: all the history) on
    `platforms` (None: every platform)."""
    every = history.platforms()
    records = [r for r in every if platforms is None or r.key in platforms]
    keys = [r.key for r in records]
    missing = [p for p in platforms or () if p not in keys]
    snapshots = [s for s in history.baseline_snapshots() if s.platform in keys]
    # One read of the window's runs and one batched read of their measurements: the
    # charts' points, each metric's kind and the gate's verdicts all come from these
    # (a query per test, per platform or per run made rendering slower than drawing).
    only = keys[0] if len(keys) == 1 else None
    shown = set(keys)
    # Every run in the window: runs of other platforms count against the limit too.
    at_most = max(1, sum(r.n_runs for r in (records if only else every)))
    runs = [
        run
        for run in history.recent_runs(platform=only, days=days, limit=at_most)
        if run.platform in shown
    ]
    measurements = history.runs_measurements([run.id for run in runs])
    kinds: dict[tuple[str, str], tuple[str, bool]] = {}
    for key in keys:  # each metric's kind and marker as its newest run on a platform has them
        newest: dict[tuple[str, str], tuple[str, bool]] = {}
        for run in runs:  # newest first
            if run.platform == key:
                for m in measurements.get(run.id, ()):
                    newest.setdefault((m.test, m.metric), (m.kind, m.marked))
        for name, found in newest.items():
            kinds.setdefault(name, found)
    points = [
        TrendPoint(
            run_id=run.id,
            started_at=run.started_at,
            platform=run.platform,
            git_commit=run.git_commit,
            test=m.test,
            metric=m.metric,
            value=m.value,
            unit=m.unit,
            direction=m.direction,
            outcome=m.outcome,
        )
        for run in sorted(runs, key=lambda run: (run.started_at, run.id))
        for m in measurements.get(run.id, ())
    ]
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
