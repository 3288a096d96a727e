"""`metric_history`: each metric's last N values on a platform, for the baselines update.

"The last N runs in which it was recorded" is a top-N per (test, metric) group. A window
function over the platform's whole history sorts every row (about 3 s for 1M results on
SQLite), so the query first looks at the newest runs only: a metric with N values there
is complete, since every other run is older. Only the remaining metrics (new, flaky or
no longer run) are ranked over the whole history, and those are few.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, func, select

from pytest_perfguard.history.models import platforms, results, runs
from pytest_perfguard.records import MetricSeries

# How many of the newest runs the first pass reads, per requested run.
RECENT_FACTOR = 4


def metric_history(
    conn: Connection, platform: str, last_runs: int, kinds: Collection[str], passed_only: bool
) -> dict[tuple[str, str], MetricSeries]:
    conditions: list[ColumnElement[bool]] = [results.c.kind.in_(sorted(set(kinds)))]
    if passed_only:
        conditions.append(results.c.outcome == "passed")
    recent_runs = (
        select(runs.c.id)
        .join(platforms, platforms.c.id == runs.c.platform_id)
        .where(platforms.c.key == platform)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(last_runs * RECENT_FACTOR)
    )
    in_recent = results.c.run_id.in_(recent_runs.scalar_subquery())
    complete = (
        select(results.c.test, results.c.metric)
        .where(in_recent, *conditions)
        .group_by(results.c.test, results.c.metric)
        .having(func.count() >= last_runs)
        .subquery()
    )
    is_complete = exists().where(
        complete.c.test == results.c.test, complete.c.metric == results.c.metric
    )
    on_platform = platforms.c.key == platform
    series: dict[tuple[str, str], MetricSeries] = {}
    for where in (and_(in_recent, is_complete), and_(on_platform, ~is_complete)):
        for row in conn.execute(_top_values(where, conditions, last_runs)):
            _add(series, row)
    return dict(sorted(series.items()))


def _top_values(
    where: ColumnElement[bool], conditions: list[ColumnElement[bool]], last_runs: int
) -> Select[Any]:
    rank = (
        func.row_number()
        .over(
            partition_by=(results.c.test, results.c.metric),
            order_by=(runs.c.started_at.desc(), runs.c.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(
            results.c.test,
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.kind,
            results.c.marked,
            results.c.run_id,
            results.c.samples,
            rank,
        )
        .select_from(results.join(runs, runs.c.id == results.c.run_id).join(platforms))
        .where(where, *conditions)
        .subquery()
    )
    return (
        select(ranked)
        .where(ranked.c.rank <= last_runs)
        .order_by(ranked.c.test, ranked.c.metric, ranked.c.rank)
    )


def _add(series: dict[tuple[str, str], MetricSeries], row: Any) -> None:
    key = (row.test, row.metric)
    if key not in series:  # the newest row carries the current unit/direction/kind
        series[key] = MetricSeries(
            test=row.test,
            metric=row.metric,
            unit=row.unit,
            direction=row.direction,
            kind=row.kind,
            marked=bool(row.marked),
            values=[],
            run_ids=[],
            samples=[],
        )
    series[key].values.append(row.value)
    series[key].run_ids.append(row.run_id)
    series[key].samples.append(tuple(row.samples or ()))
