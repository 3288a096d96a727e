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
    Subquery,
    Table,
    Text,
    cast,
    distinct,
    exists,
    func,
    or_,
    select,
    type_coerce,
    union,
)

from pytest_perfguard.history.layout import READINGS, Where, stored_results
from pytest_perfguard.history.models import (
    baseline_snapshots,
    platforms,
    results,
    runs,
    test_results,
)
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


def test_matches(pattern: str, table: Table = results) -> ColumnElement[bool]:
    """Case-insensitive glob match on `table`'s test column, the same on SQLite and
    PostgreSQL."""
    if "*" not in pattern and "?" not in pattern:
        return table.c.test == pattern
    return table.c.test.ilike(glob_to_like(pattern), escape="\\")


def _tests_matching(pattern: str | None) -> Where:
    """A `stored_results` condition: the test matches `pattern` (None: any test)."""

    def where(table: Table) -> list[ColumnElement[bool]]:
        return [] if pattern is None else [test_matches(pattern, table)]

    return where


def _has_test(pattern: str) -> ColumnElement[bool]:
    """The run stored a result of a test matching `pattern`."""
    return or_(
        exists().where(results.c.run_id == runs.c.id, test_matches(pattern, results)),
        exists().where(test_results.c.run_id == runs.c.id, test_matches(pattern, test_results)),
    )


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


def _filtered_results(flt: RunFilter) -> Subquery:
    """The stored results `flt` picks by test and metric (runs are filtered by the caller)."""
    return stored_results(_tests_matching(flt.test), metric=flt.metric)


def _summary_query() -> Select[Any]:
    return select(runs, platforms.c.key.label("platform")).join(
        platforms, platforms.c.id == runs.c.platform_id
    )


def _run_counts(conn: Connection, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(results stored, tests failed) per run, for the runs a summary shows."""
    if not run_ids:
        return {}
    n_results: dict[int, int] = dict.fromkeys(run_ids, 0)
    narrow = (
        select(results.c.run_id, func.count())
        .where(results.c.run_id.in_(run_ids))
        .group_by(results.c.run_id)
    )
    readings = [func.count(test_results.c[name]) for name, _, _ in READINGS]
    wide = (
        select(test_results.c.run_id, sum_of(readings))
        .where(test_results.c.run_id.in_(run_ids))
        .group_by(test_results.c.run_id)
    )
    for query in (narrow, wide):
        for run_id, count in conn.execute(query):
            n_results[run_id] += int(count)
    failed = stored_results(
        lambda t: [t.c.run_id.in_(run_ids), t.c.outcome.in_(FAILED_OUTCOMES)], name="failed"
    )
    query = select(failed.c.run_id, func.count(distinct(failed.c.test))).group_by(failed.c.run_id)
    n_failed = {int(run_id): int(count) for run_id, count in conn.execute(query)}
    return {run_id: (n, n_failed.get(run_id, 0)) for run_id, n in n_results.items()}


def sum_of(terms: list[Any]) -> Any:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _summaries(conn: Connection, query: Select[Any]) -> list[tuple[Any, dict[str, Any]]]:
    rows = list(conn.execute(query))
    counts = _run_counts(conn, [row.id for row in rows])
    return [(row, _summary_fields(row, *counts[row.id])) for row in rows]


def _summary_fields(row: Any, n_results: int, n_failed: int) -> dict[str, Any]:
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
        "n_results": n_results,
        "n_failed": n_failed,
        "test_type": row.test_type,
    }


def recent_runs(conn: Connection, flt: RunFilter, limit: int) -> list[RunSummary]:
    query = _summary_query().where(*_run_conditions(flt))
    if flt.test is not None:
        query = query.where(_has_test(flt.test))
    query = query.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    return [RunSummary(**fields) for _, fields in _summaries(conn, query)]


def get_run(conn: Connection, run_id: int) -> RunDetail | None:
    found = _summaries(conn, _summary_query().where(runs.c.id == run_id))
    if not found:
        return None
    ((row, fields),) = found
    stored = stored_results(lambda t: [t.c.run_id == run_id])
    measured = conn.execute(select(stored).order_by(stored.c.id))
    return RunDetail(
        **fields,
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
    stored = stored_results(lambda t: [t.c.test == test], metric=metric)
    query = (
        select(
            stored.c.run_id,
            runs.c.started_at,
            platforms.c.key,
            runs.c.git_commit,
            stored.c.test,
            stored.c.metric,
            stored.c.value,
            stored.c.unit,
            stored.c.direction,
            stored.c.outcome,
        )
        .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
        .where(*_run_conditions(flt))
        .order_by(runs.c.started_at.desc(), runs.c.id.desc(), stored.c.metric)
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
        ids = ids.where(_has_test(flt.test))
    ids = ids.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(last_runs)
    run_ids = list(conn.execute(ids).scalars())
    if not run_ids:
        return []
    matching = _tests_matching(flt.test)
    stored = stored_results(
        lambda t: [t.c.run_id.in_(run_ids), *matching(t)], metric=flt.metric
    )
    query = (
        select(
            stored.c.run_id,
            stored.c.test,
            stored.c.metric,
            stored.c.value,
            stored.c.unit,
            stored.c.direction,
            stored.c.kind,
            stored.c.outcome,
        )
        .join(runs, runs.c.id == stored.c.run_id)
        .order_by(runs.c.started_at, runs.c.id, stored.c.id)
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
    stored = stored_results(lambda t: [t.c.test == test, t.c.outcome == "passed"], metric=metric)
    conditions = [] if platform is None else [platforms.c.key == platform]
    query = (
        select(stored.c.value)
        .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(last_runs)
    )
    values = list(conn.execute(query).scalars())
    return statistics.median(values) if values else None


def compare(conn: Connection, run_a: int, run_b: int) -> list[RunDiff]:
    stored = stored_results(lambda t: [t.c.run_id.in_((run_a, run_b))])
    query = select(
        stored.c.run_id,
        stored.c.test,
        stored.c.metric,
        stored.c.value,
        stored.c.unit,
        stored.c.direction,
    )
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
        "n_results": int(conn.scalar(select(func.count()).select_from(results)) or 0)
        + int(
            conn.scalar(select(sum_of([func.count(test_results.c[m]) for m, _, _ in READINGS])))
            or 0
        ),
        "n_platforms": int(conn.scalar(select(func.count()).select_from(platforms)) or 0),
        "n_tests": int(conn.scalar(select(func.count()).select_from(_all_tests())) or 0),
    }


def _all_tests() -> Subquery:
    """Every stored test id, once."""
    return union(select(results.c.test), select(test_results.c.test)).subquery("tests")


def find_tests(conn: Connection, flt: RunFilter) -> list[str]:
    stored = _filtered_results(flt)
    query = (
        select(stored.c.test)
        .distinct()
        .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
        .where(*_run_conditions(flt))
        .order_by(stored.c.test)
    )
    return list(conn.execute(query).scalars())


def export_query(flt: RunFilter) -> Select[Any]:
    """Every stored value with its run's context, in storage order (see EXPORT_COLUMNS).

    started_at and marked come back as the driver gives them (see export.normalized):
    converting them once per run instead of once per row halves the export time.
    """
    stored = _filtered_results(flt)
    return (
        select(
            stored.c.run_id,
            type_coerce(runs.c.started_at, String).label("started_at"),
            platforms.c.key.label("platform"),
            runs.c.git_commit,
            runs.c.git_branch,
            runs.c.run_type,
            stored.c.test,
            stored.c.metric,
            stored.c.value,
            stored.c.unit,
            stored.c.direction,
            stored.c.kind,
            type_coerce(stored.c.marked, Integer).label("marked"),
            stored.c.outcome,
            stored.c.threshold,
            # The JSON text as stored: exporting needs no decode/encode round trip.
            cast(stored.c.samples, Text).label("samples"),
            stored.c.error,
        )
        .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
        .where(*_run_conditions(flt))
        .order_by(stored.c.id)
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
