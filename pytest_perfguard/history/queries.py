"""Read queries of the history: each takes a Connection and returns plain records.

`HistoryStore.read(query, ...)` runs them; all are portable SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Text,
    cast,
    distinct,
    exists,
    func,
    select,
    type_coerce,
)

from pytest_perfguard.history.models import baseline_snapshots, platforms, results, runs
from pytest_perfguard.records import (
    BaselineSnapshotRecord,
    MetricSummary,
    PlatformRecord,
    RunDetail,
    RunDiff,
    RunSummary,
    TrendPoint,
)
from pytest_perfguard.results import Measurement

FAILED_OUTCOMES = ("failed", "error")


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a query looks at; None means no restriction."""

    platform: str | None = None
    since: datetime | None = None
    test: str | None = None  # glob on the nodeid, e.g. '*rag*'
    metric: str | None = None
    outcome: str | None = None
    run_type: str | None = None
    test_type: str | None = None
    triggered_by: str | None = None  # who ran it: user / ci / automated / a name


def glob_to_like(pattern: str) -> str:
    """A shell glob (`*`, `?`) as a LIKE pattern with `\\` as escape character."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def test_matches(pattern: str) -> ColumnElement[bool]:
    """Case-insensitive glob match on results.test, the same on SQLite and PostgreSQL."""
    if "*" not in pattern and "?" not in pattern:
        return results.c.test == pattern
    return results.c.test.ilike(glob_to_like(pattern), escape="\\")


def _run_conditions(flt: RunFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.platform is not None:
        conditions.append(platforms.c.key == flt.platform)
    if flt.since is not None:
        conditions.append(runs.c.started_at >= flt.since)
    if flt.outcome is not None:
        conditions.append(runs.c.outcome == flt.outcome)
    if flt.run_type is not None:
        conditions.append(runs.c.run_type == flt.run_type)
    if flt.test_type is not None:
        conditions.append(runs.c.test_type == flt.test_type)
    if flt.triggered_by is not None:
        conditions.append(runs.c.triggered_by == flt.triggered_by)
    return conditions


def _result_conditions(flt: RunFilter) -> list[ColumnElement[bool]]:
    conditions = _run_conditions(flt)
    if flt.test is not None:
        conditions.append(test_matches(flt.test))
    if flt.metric is not None:
        conditions.append(results.c.metric == flt.metric)
    return conditions


def _summary_query() -> Select[Any]:
    # Correlated counts are evaluated only for the rows that survive ORDER BY ... LIMIT.
    n_results = select(func.count()).where(results.c.run_id == runs.c.id).scalar_subquery()
    n_failed = (
        select(func.count(distinct(results.c.test)))
        .where(results.c.run_id == runs.c.id, results.c.outcome.in_(FAILED_OUTCOMES))
        .scalar_subquery()
    )
    return select(
        runs,
        platforms.c.key.label("platform"),
        n_results.label("n_results"),
        n_failed.label("n_failed"),
    ).join(platforms, platforms.c.id == runs.c.platform_id)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "platform": row.platform,
        "git_commit": row.git_commit,
        "git_branch": row.git_branch,
        "run_type": row.run_type,
        "triggered_by": row.triggered_by,
        "outcome": row.outcome,
        "notes": row.notes,
        "n_results": int(row.n_results),
        "n_failed": int(row.n_failed),
        "test_type": row.test_type,
    }


def recent_runs(conn: Connection, flt: RunFilter, limit: int) -> list[RunSummary]:
    query = _summary_query().where(*_run_conditions(flt))
    if flt.test is not None:
        query = query.where(exists().where(results.c.run_id == runs.c.id, test_matches(flt.test)))
    query = query.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    return [RunSummary(**_summary_fields(row)) for row in conn.execute(query)]


def get_run(conn: Connection, run_id: int) -> RunDetail | None:
    row = conn.execute(_summary_query().where(runs.c.id == run_id)).first()
    if row is None:
        return None
    measured = conn.execute(
        select(results).where(results.c.run_id == run_id).order_by(results.c.id)
    )
    return RunDetail(
        **_summary_fields(row),
        host=row.host,
        python_version=row.python_version,
        args=list(row.args),
        system_info=dict(row.system_info),
        git_dirty=row.git_dirty,
        source_key=row.source_key,
        measurements=[measurement_from_row(r) for r in measured],
    )


def measurement_from_row(row: Any) -> Measurement:
    return Measurement(
        test=row.test,
        metric=row.metric,
        value=row.value,
        unit=row.unit,
        direction=row.direction,
        kind=row.kind,
        marked=bool(row.marked),
        outcome=row.outcome,
        threshold=row.threshold,
        samples=tuple(row.samples or ()),
        error=row.error,
    )


def run_exists(conn: Connection, run_id: int) -> bool:
    return bool(conn.scalar(select(exists().where(runs.c.id == run_id))))


def trend(
    conn: Connection, test: str, metric: str | None, flt: RunFilter, limit: int | None
) -> list[TrendPoint]:
    conditions = [results.c.test == test, *_run_conditions(flt)]
    if metric is not None:
        conditions.append(results.c.metric == metric)
    query = (
        select(
            results.c.run_id,
            runs.c.started_at,
            platforms.c.key,
            runs.c.git_commit,
            results.c.test,
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.outcome,
        )
        .select_from(results.join(runs, runs.c.id == results.c.run_id).join(platforms))
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc(), results.c.metric)
    )
    if limit is not None:
        query = query.limit(limit)
    points = [
        TrendPoint(
            run_id=r.run_id,
            started_at=r.started_at,
            platform=r.key,
            git_commit=r.git_commit,
            test=r.test,
            metric=r.metric,
            value=r.value,
            unit=r.unit,
            direction=r.direction,
            outcome=r.outcome,
        )
        for r in conn.execute(query)
    ]
    points.reverse()
    return points


def metric_summaries(conn: Connection, flt: RunFilter, last_runs: int) -> list[MetricSummary]:
    # Two short queries instead of `IN (SELECT ... LIMIT)`: the run ids are at most
    # `last_runs`, and the second query then only touches those runs' results.
    ids = select(runs.c.id).join(platforms, platforms.c.id == runs.c.platform_id)
    ids = ids.where(*_run_conditions(flt))
    if flt.test is not None:
        ids = ids.where(exists().where(results.c.run_id == runs.c.id, test_matches(flt.test)))
    ids = ids.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(last_runs)
    run_ids = list(conn.execute(ids).scalars())
    if not run_ids:
        return []
    conditions: list[ColumnElement[bool]] = [results.c.run_id.in_(run_ids)]
    if flt.test is not None:
        conditions.append(test_matches(flt.test))
    if flt.metric is not None:
        conditions.append(results.c.metric == flt.metric)
    query = (
        select(
            results.c.run_id,
            results.c.test,
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.kind,
            results.c.outcome,
        )
        .join(runs, runs.c.id == results.c.run_id)
        .where(*conditions)
        .order_by(runs.c.started_at, runs.c.id, results.c.id)
    )
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for row in conn.execute(query):
        item = grouped.setdefault(
            (row.test, row.metric), {"values": [], "run_ids": [], "n_failed": 0}
        )
        # The newest row's unit, direction and kind win (rows come oldest first).
        item.update(unit=row.unit, direction=row.direction, kind=row.kind)
        if row.outcome in FAILED_OUTCOMES:
            item["n_failed"] += 1
        elif row.outcome == "passed":
            item["values"].append(row.value)
            item["run_ids"].append(row.run_id)
    return [
        MetricSummary(test=test, metric=metric, **item)
        for (test, metric), item in sorted(grouped.items())
    ]


def baseline(
    conn: Connection, test: str, metric: str, platform: str | None, last_runs: int
) -> float | None:
    conditions = [results.c.test == test, results.c.metric == metric, results.c.outcome == "passed"]
    if platform is not None:
        conditions.append(platforms.c.key == platform)
    query = (
        select(results.c.value)
        .select_from(results.join(runs, runs.c.id == results.c.run_id).join(platforms))
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(last_runs)
    )
    values = list(conn.execute(query).scalars())
    return statistics.median(values) if values else None


def compare(conn: Connection, run_a: int, run_b: int) -> list[RunDiff]:
    query = select(
        results.c.run_id,
        results.c.test,
        results.c.metric,
        results.c.value,
        results.c.unit,
        results.c.direction,
    ).where(results.c.run_id.in_((run_a, run_b)))
    values: dict[tuple[str, str], dict[int, Any]] = {}
    for row in conn.execute(query):
        values.setdefault((row.test, row.metric), {})[row.run_id] = row
    diffs = []
    for (test, metric), by_run in sorted(values.items()):
        a, b = by_run.get(run_a), by_run.get(run_b)
        latest = b if b is not None else a
        assert latest is not None  # the key came from one of the two runs
        diffs.append(
            RunDiff(
                test=test,
                metric=metric,
                unit=latest.unit,
                direction=latest.direction,
                a=None if a is None else a.value,
                b=None if b is None else b.value,
            )
        )
    return diffs


def platform_records(conn: Connection) -> list[PlatformRecord]:
    # Aggregate runs first: PostgreSQL cannot GROUP BY a json column.
    per_platform = (
        select(
            runs.c.platform_id,
            func.count(runs.c.id).label("n_runs"),
            func.max(runs.c.started_at).label("last_run"),
        )
        .group_by(runs.c.platform_id)
        .subquery()
    )
    query = (
        select(
            platforms.c.key, platforms.c.fingerprint, per_platform.c.n_runs, per_platform.c.last_run
        )
        .select_from(
            platforms.outerjoin(per_platform, per_platform.c.platform_id == platforms.c.id)
        )
        .order_by(platforms.c.key)
    )
    return [
        PlatformRecord(
            key=r.key,
            fingerprint=dict(r.fingerprint),
            n_runs=int(r.n_runs or 0),
            last_run=r.last_run,
        )
        for r in conn.execute(query)
    ]


def counts(conn: Connection) -> dict[str, Any]:
    n_runs, first, last = conn.execute(
        select(func.count(runs.c.id), func.min(runs.c.started_at), func.max(runs.c.started_at))
    ).one()
    return {
        "n_runs": int(n_runs),
        "first_run": first,
        "last_run": last,
        "n_results": int(conn.scalar(select(func.count()).select_from(results)) or 0),
        "n_platforms": int(conn.scalar(select(func.count()).select_from(platforms)) or 0),
        "n_tests": int(conn.scalar(select(func.count(distinct(results.c.test)))) or 0),
    }


def find_tests(conn: Connection, flt: RunFilter) -> list[str]:
    query = (
        select(results.c.test)
        .distinct()
        .select_from(results.join(runs, runs.c.id == results.c.run_id).join(platforms))
        .where(*_result_conditions(flt))
        .order_by(results.c.test)
    )
    return list(conn.execute(query).scalars())


def export_query(flt: RunFilter) -> Select[Any]:
    """Every stored value with its run's context, in storage order (see EXPORT_COLUMNS).

    started_at and marked come back as the driver gives them (see export.normalized):
    converting them once per run instead of once per row halves the export time.
    """
    return (
        select(
            results.c.run_id,
            type_coerce(runs.c.started_at, String).label("started_at"),
            platforms.c.key.label("platform"),
            runs.c.git_commit,
            runs.c.git_branch,
            runs.c.run_type,
            results.c.test,
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.kind,
            type_coerce(results.c.marked, Integer).label("marked"),
            results.c.outcome,
            results.c.threshold,
            # The JSON text as stored: exporting needs no decode/encode round trip.
            cast(results.c.samples, Text).label("samples"),
            results.c.error,
        )
        .select_from(results.join(runs, runs.c.id == results.c.run_id).join(platforms))
        .where(*_result_conditions(flt))
        .order_by(results.c.id)
    )


def baseline_snapshot_records(
    conn: Connection, platform: str | None
) -> list[BaselineSnapshotRecord]:
    query = (
        select(baseline_snapshots, platforms.c.key)
        .join(platforms, platforms.c.id == baseline_snapshots.c.platform_id)
        .order_by(baseline_snapshots.c.created_at.desc(), baseline_snapshots.c.id.desc())
    )
    if platform is not None:
        query = query.where(platforms.c.key == platform)
    return [
        BaselineSnapshotRecord(
            id=r.id,
            created_at=r.created_at,
            platform=r.key,
            git_commit=r.git_commit,
            who=r.who,
            reason=r.reason,
            entries=dict(r.entries),
        )
        for r in conn.execute(query)
    ]
