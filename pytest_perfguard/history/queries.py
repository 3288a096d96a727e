"""Read queries of the history: each takes a Connection and returns plain records.

`HistoryStore.read(query, ...)` runs them; all are portable SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Integer,
    Select,
    String,
    Subquery,
    Table,
    Text,
    bindparam,
    case,
    cast,
    distinct,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    type_coerce,
    union,
    union_all,
)

from pytest_perfguard.history.blocks import (
    DOUBLE,
    LeftFirst,
    any_failed,
    block_columns,
    block_results,
    block_rows,
    chunk_tests,
    failed_at,
    has_reading,
    position_in_chunk,
    unfold_chunk,
)
from pytest_perfguard.history.layout import (
    READING_NAMES,
    READINGS,
    RECENT_FACTOR,
    Where,
    lateral_runs,
    metric_shape,
    of_runs,
    stored_results,
)
from pytest_perfguard.history.models import (
    baseline_snapshots,
    layout_tests,
    plain_blocks,
    platforms,
    results,
    run_labels,
    runs,
    test_layouts,
    test_results,
)
from pytest_perfguard.history.urls import mask_secrets
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
_S = TypeVar("_S")


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
    labels: tuple[tuple[str, str], ...] = ()  # runs carrying every one of these labels


def glob_to_like(pattern: str) -> str:
    """A shell glob (`*`, `?`) as a LIKE pattern with `\\` as escape character."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def test_matches(pattern: str, table: Table = results) -> ColumnElement[bool]:
    """Case-insensitive glob match on `table`'s test column, the same on SQLite and
    PostgreSQL; the pattern is the parameter "f_test" (see `_run_params`)."""
    if not _is_glob(pattern):
        return table.c.test == bindparam("f_test", pattern)
    return table.c.test.ilike(bindparam("f_test", glob_to_like(pattern)), escape="\\")


def _is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


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
        exists().where(
            plain_blocks.c.run_id == runs.c.id,
            plain_blocks.c.chunk == 0,  # every chunk of a run has the run's layout
            layout_tests.c.layout_id == plain_blocks.c.layout_id,
            test_matches(pattern, layout_tests),
        ),
    )


def _run_conditions(flt: RunFilter) -> list[ColumnElement[bool]]:
    """Conditions on the run for the fields `flt` sets, as parameters (see `_run_params`),
    so that a statement built once serves every filter of the same shape."""
    conditions: list[ColumnElement[bool]] = []
    if flt.platform is not None:
        conditions.append(platforms.c.key == bindparam("f_platform", flt.platform))
    if flt.since is not None:
        conditions.append(
            runs.c.started_at >= bindparam("f_since", flt.since, type_=runs.c.started_at.type)
        )
    if flt.outcome is not None:
        conditions.append(runs.c.outcome == bindparam("f_outcome", flt.outcome))
    if flt.run_type is not None:
        conditions.append(runs.c.run_type == bindparam("f_run_type", flt.run_type))
    if flt.test_type is not None:
        conditions.append(runs.c.test_type == bindparam("f_test_type", flt.test_type))
    if flt.triggered_by is not None:
        conditions.append(runs.c.triggered_by == bindparam("f_triggered_by", flt.triggered_by))
    for i, (key, value) in enumerate(flt.labels):
        conditions.append(
            exists().where(
                run_labels.c.run_id == runs.c.id,
                run_labels.c.key == bindparam(f"f_label_key_{i}", key),
                run_labels.c.value == bindparam(f"f_label_value_{i}", value),
            )
        )
    return conditions


_RUN_FIELDS = ("platform", "since", "outcome", "run_type", "test_type", "triggered_by")


def _run_shape(flt: RunFilter) -> tuple[Any, ...]:
    """What decides the statement a filter makes: which fields are set, whether the test
    is a glob, which tables its metric lives in."""
    test = None if flt.test is None else _is_glob(flt.test)
    fields = tuple(getattr(flt, name) is not None for name in _RUN_FIELDS)
    return (*fields, test, metric_shape(flt.metric), len(flt.labels))


def _run_params(flt: RunFilter) -> dict[str, Any]:
    params = {
        f"f_{name}": getattr(flt, name) for name in _RUN_FIELDS if getattr(flt, name) is not None
    }
    if flt.test is not None:
        params["f_test"] = glob_to_like(flt.test) if _is_glob(flt.test) else flt.test
    if flt.metric is not None:
        params["metric"] = flt.metric
    for i, (key, value) in enumerate(flt.labels):
        params[f"f_label_key_{i}"] = key
        params[f"f_label_value_{i}"] = value
    return params


# Statements built once per backend and shape (which filters are set, which tables a
# metric lives in) and executed with parameters: building the union of both tables' rows
# costs more than running it on a small query.
_statements: dict[tuple[Any, ...], Any] = {}


def _statement(conn: Connection, key: tuple[Any, ...], build: Callable[[], _S]) -> _S:
    full_key = (conn.dialect.name, *key)
    statement = _statements.get(full_key)
    if statement is None:
        statement = _statements[full_key] = build()
    return statement


# A cached statement (see `_statement`) compiled once per dialect: its SQL, the order of
# its parameters (None for named ones), every parameter's value when not given, and the
# parameters' conversions. Keyed by the statement's id: cached statements live for the
# whole process, so an id is never reused.
_Compiled = tuple[str, "tuple[str, ...] | None", dict[str, Any], dict[str, Callable[[Any], Any]]]
_compiled: dict[tuple[str, int], _Compiled] = {}


def _fetch(conn: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    """The rows of a cached statement, run as the SQL it compiled to once.

    `conn.execute` works out a statement's cache key at every call, hashing its whole
    tree: for a test's values (three tables, a dozen constants) that cost more than
    SQLite's own work on the statement (0.2 M instructions of a 1.6 M baseline)."""
    key = (conn.dialect.name, id(statement))
    entry = _compiled.get(key)
    if entry is None:
        compiled = statement.compile(dialect=conn.dialect)
        order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        processors = dict(compiled._bind_processors)
        defaults = {name: bind.value for name, bind in compiled.binds.items()}
        entry = _compiled[key] = (compiled.string, order, defaults, processors)
    sql, order, defaults, processors = entry
    values = {**defaults, **params}
    for name, process in processors.items():
        if values.get(name) is not None:
            values[name] = process(values[name])
    if order is None:
        return list(conn.exec_driver_sql(sql, values).all())
    return list(conn.exec_driver_sql(sql, tuple(values[name] for name in order)).all())


def _rows_by_generic_plan(conn: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    """The rows of a statement that reads plain tests' blocks, by one plan for every test.

    PostgreSQL plans a prepared statement anew for each call while that looks cheaper than
    one plan for all parameters, and a query by test always looks cheaper so: the marked
    tests' rows (test_results) are few per test, and for a plain test the statistics say
    none. Planning the union of both with the blocks took 0.9 ms (EXPLAIN ANALYZE) of the
    1.6 to 1.9 ms a prepared call took (1 M results, fastest of 200); on the generic plan
    a call took 0.87 ms in all, so these statements are run with it. (psycopg prepares a
    statement from its fifth call on a connection; before that each is planned once as
    it runs.)

    The setting is not put back: `SET LOCAL` ends with the read's transaction
    (`HistoryStore.read` commits), and the reads that come here (`trend`, `baseline`) run
    only statements by test, for which the generic plan is what was measured best. A reset
    was one more round trip: 0.05 ms of a last-100 trend's 1.5 ms."""
    if conn.dialect.name != "postgresql":
        return _fetch(conn, statement, params)
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    return _fetch(conn, statement, params)


def _filtered_results(flt: RunFilter) -> Subquery:
    """The stored results `flt` picks by test and metric (runs are filtered by the caller)."""
    return stored_results(
        _tests_matching(flt.test), metric=flt.metric, by_test=flt.test is not None
    )


def _summary_query() -> Select[Any]:
    return select(runs, platforms.c.key.label("platform")).join(
        platforms, platforms.c.id == runs.c.platform_id
    )


def _run_counts(conn: Connection, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(results stored, tests failed) per run, for the runs a summary shows."""
    if not run_ids:
        return {}
    counts = {run_id: (0, 0) for run_id in run_ids}
    for run_id, n_results, n_failed in conn.execute(
        _statement(conn, ("run counts",), lambda: _run_counts_query(lateral_runs(conn))),
        {"run_ids": run_ids},
    ):
        counts[run_id] = (int(n_results or 0), int(n_failed or 0))
    return counts


def _run_counts_query(lateral: bool) -> Select[Any]:
    """Per run: its results (a test_results row holds one per reading) and its failed
    tests, one scan of each table's rows of those runs."""

    def failed_test(table: Any) -> Any:
        return case((table.c.outcome.in_(FAILED_OUTCOMES), table.c.test), else_=null())

    in_runs: Any = bindparam("run_ids", expanding=True)
    source, wide, picked = of_runs(in_runs, lateral=lateral)
    readings = [case((wide.c[name].is_(None), 0), else_=1) for name, _, _ in READINGS]
    both = union_all(
        select(
            results.c.run_id,
            literal_column("1").label("n"),
            failed_test(results).label("failed_test"),
        ).where(results.c.run_id.in_(in_runs)),
        select(
            wide.c.run_id,
            sum_of(readings).label("n"),
            failed_test(wide).label("failed_test"),
        )
        .select_from(source)
        .where(picked),
        # A run's blocks: their results, then one row per failed test.
        block_results()
        .add_columns(null().label("failed_test"))
        .where(plain_blocks.c.run_id.in_(in_runs)),
        select(plain_blocks.c.run_id, literal_column("0").label("n"), layout_tests.c.test)
        .select_from(plain_blocks.join(layout_tests, chunk_tests()))
        .where(
            plain_blocks.c.run_id.in_(in_runs),
            # Most chunks have no failure: their tests are not read at all.
            any_failed(),
            failed_at(plain_blocks.c.outcomes, position_in_chunk()),
        ),
    ).subquery("counted")
    return select(
        both.c.run_id, func.sum(both.c.n), func.count(distinct(both.c.failed_test))
    ).group_by(both.c.run_id)


def sum_of(terms: list[Any]) -> Any:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _summaries(
    conn: Connection, query: Select[Any], params: dict[str, Any]
) -> list[tuple[Any, dict[str, Any]]]:
    rows = list(conn.execute(query, params))
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
        "notes": mask_secrets(row.notes) if row.notes else row.notes,
        "n_results": n_results,
        "n_failed": n_failed,
        "test_type": row.test_type,
    }


def recent_runs(conn: Connection, flt: RunFilter, limit: int) -> list[RunSummary]:
    def build() -> Select[Any]:
        query = _summary_query().where(*_run_conditions(flt))
        if flt.test is not None:
            query = query.where(_has_test(flt.test))
        newest_first = query.order_by(runs.c.started_at.desc(), runs.c.id.desc())
        return newest_first.limit(bindparam("limit", type_=Integer))

    query = _statement(conn, ("recent", _run_shape(flt)), build)
    params = {**_run_params(flt), "limit": limit}
    return [RunSummary(**fields) for _, fields in _summaries(conn, query, params)]


def get_run(conn: Connection, run_id: int) -> RunDetail | None:
    query = _statement(
        conn, ("run",), lambda: _summary_query().where(runs.c.id == bindparam("run_id"))
    )
    row = conn.execute(query, {"run_id": run_id}).first()
    if row is None:
        return None
    measurements = [measurement for _, measurement in _run_rows(conn, [run_id])]
    n_failed = len({m.test for m in measurements if m.outcome in FAILED_OUTCOMES})
    return RunDetail(
        **_summary_fields(row, len(measurements), n_failed),
        host=row.host,
        python_version=row.python_version,
        # Masked again on the way out: runs stored before arguments were masked.
        args=[mask_secrets(str(arg)) for arg in row.args],
        system_info=dict(row.system_info),
        git_dirty=row.git_dirty,
        source_key=row.source_key,
        measurements=measurements,
        labels=run_labels_of(conn, run_id),
    )


# Run ids per query of `runs_measurements` (bound parameters stay well under every
# backend's limit).
_RUN_BATCH = 500


def runs_measurements(conn: Connection, run_ids: list[int]) -> dict[int, list[Measurement]]:
    """The measurements of many runs in one query per batch of ids (in each run's stored
    order); a run without any, or not stored, is absent."""
    found: dict[int, list[Measurement]] = {}
    unique = sorted(set(run_ids))
    for start in range(0, len(unique), _RUN_BATCH):
        for run_id, measurement in _run_rows(conn, unique[start : start + _RUN_BATCH]):
            if run_id in found:
                found[run_id].append(measurement)
            else:
                found[run_id] = [measurement]
    return found


def run_labels_of(conn: Connection, run_id: int) -> dict[str, str]:
    query = _statement(
        conn,
        ("run labels",),
        lambda: (
            select(run_labels.c.key, run_labels.c.value)
            .where(run_labels.c.run_id == bindparam("run_id"))
            .order_by(run_labels.c.key)
        ),
    )
    return {key: value for key, value in conn.execute(query, {"run_id": run_id})}


def _run_rows(conn: Connection, run_ids: list[int]) -> list[tuple[int, Measurement]]:
    """(run id, measurement) of every stored result of the runs, by id (each run's stored
    order).

    Each table is read by its own statement and test_results rows are unfolded here, as
    the export does: through `layout.stored_results` PostgreSQL scanned each run's
    test_results rows once per reading, and both backends sent each reading as a row of
    thirteen columns.
    """
    params = {"run_ids": run_ids}
    narrow = [
        # Unpacked by position: for thousands of rows that costs a third of reading each
        # column by name.
        (id_, run_id, Measurement(test, metric, value, unit, direction, kind, bool(marked),
                                  outcome, threshold, tuple(samples or ()), error))
        for (id_, run_id, test, metric, value, unit, direction, kind, marked, outcome,
             threshold, samples, error) in conn.execute(
            _statement(conn, ("run rows",), _narrow_run_rows), params
        )
    ]  # fmt: skip
    wide_query = _statement(conn, ("run readings",), lambda: _wide_run_rows(lateral_runs(conn)))
    unfolded = []
    in_blocks = []
    layouts: dict[int, list[str]] = {}
    for row in conn.execute(wide_query, params):
        in_block, id_, run_id, test, marked, outcome, *readings = row[: 6 + len(READINGS)]
        if not in_block:
            for (metric, unit, kind), value in zip(_READING_FIELDS, readings, strict=True):
                if value is not None:
                    measurement = Measurement(
                        test, metric, value, unit, "lower", kind, bool(marked), outcome
                    )
                    unfolded.append((id_, run_id, measurement))
                    id_ += 1  # the next reading's position (see layout.stored_results)
            continue
        for at, name, result, readings in unfold_chunk(row, layouts):
            for (metric, unit, kind), value in zip(_READING_FIELDS, readings, strict=True):
                if value is not None:
                    measurement = Measurement(
                        name, metric, value, unit, "lower", kind, False, result
                    )
                    in_blocks.append((at, run_id, measurement))
                    at += 1
    parts = [part for part in (narrow, unfolded, in_blocks) if part]
    if len(parts) <= 1:
        return [(run_id, m) for _, run_id, m in (parts[0] if parts else [])]
    merged = heapq.merge(*parts, key=itemgetter(0))
    return [(run_id, measurement) for _, run_id, measurement in merged]


# A reading's metric, unit and kind (a MetricKind) as a Measurement takes them.
_READING_FIELDS: tuple[tuple[str, str, Any], ...] = READINGS
# The results columns `_run_rows` reads: the id and run, then Measurement's fields in order.
_MEASUREMENT_COLUMNS = (
    "id", "run_id", "test", "metric", "value", "unit", "direction", "kind", "marked", "outcome",
    "threshold", "samples", "error",
)  # fmt: skip


def _narrow_run_rows() -> Select[Any]:
    in_runs: Any = bindparam("run_ids", expanding=True)
    columns = [results.c[name] for name in _MEASUREMENT_COLUMNS]
    return select(*columns).where(results.c.run_id.in_(in_runs)).order_by(results.c.id)


def _run_blocks() -> Select[Any]:
    in_runs: Any = bindparam("run_ids", expanding=True)
    return (
        select(plain_blocks.c.run_id, *block_columns())
        .join(test_layouts, test_layouts.c.id == plain_blocks.c.layout_id)
        .where(plain_blocks.c.run_id.in_(in_runs))
        .order_by(plain_blocks.c.run_id, plain_blocks.c.chunk)
    )


def _wide_run_rows(lateral: bool) -> CompoundSelect[Any]:
    """The runs' test_results rows and chunks in one statement (a round trip less on
    PostgreSQL), by id, a run's chunks in order: (in a block, id, run id, test, marked,
    outcome, its readings, then a chunk's `block_columns`)."""
    in_runs: Any = bindparam("run_ids", expanding=True)
    source, wide, picked = of_runs(in_runs, lateral=lateral)
    chunk_columns = block_columns()
    rows = (
        select(
            false().label("in_block"),
            wide.c.id, wide.c.run_id, wide.c.test, wide.c.marked, wide.c.outcome,
            *(wide.c[name] for name, _, _ in READINGS),
            # Named apart from the readings before them.
            *(null().label(f"{column.name}_block") for column in chunk_columns),
        )
        .select_from(source)
        .where(picked)
    )  # fmt: skip
    blocks = (
        select(
            true().label("in_block"),
            plain_blocks.c.first_id.label("id"), plain_blocks.c.run_id, null().label("test"),
            false().label("marked"), null().label("outcome"),
            *(null().label(name) for name, _, _ in READINGS),
            *chunk_columns,
        )
        .join(test_layouts, test_layouts.c.id == plain_blocks.c.layout_id)
        .where(plain_blocks.c.run_id.in_(in_runs))
    )  # fmt: skip
    # A run's chunks share its first id: its first chunk (with the layout's tests) first.
    return union_all(rows, blocks).order_by(literal_column("id"), literal_column("chunk_block"))


def run_exists(conn: Connection, run_id: int) -> bool:
    return bool(conn.scalar(select(exists().where(runs.c.id == run_id))))


# (run_id, started_at, platform, git_commit, test, metric, value, unit, direction, outcome)
_TestValue = tuple[int, datetime, str, "str | None", str, str, float, str, str, str]
# The readings in metric order, for a test_results row unfolded into values: a run's
# values are ordered by metric name.
_READINGS_BY_NAME = sorted(enumerate(READINGS), key=lambda item: item[1][0])


def trend(
    conn: Connection, test: str, metric: str | None, flt: RunFilter, limit: int | None
) -> list[TrendPoint]:
    values = _test_values(conn, test, metric, flt, limit, passed_only=False)
    values.reverse()
    return [TrendPoint(*value) for value in values]


def _test_values(
    conn: Connection,
    test: str,
    metric: str | None,
    flt: RunFilter,
    limit: int | None,
    *,
    passed_only: bool,
) -> list[_TestValue]:
    """`test`'s values of `metric` (all if None) in the runs `flt` picks, newest first
    (by started_at, run id, then metric), at most `limit`.

    Each table is read by its own statement and the two merged here: in one UNION the
    planners materialize both tables' rows before joining the runs (SQLite), or loop over
    them for every run (PostgreSQL). With a limit, the newest runs are read first (one
    index probe each); only when they hold fewer values than asked, every run.
    """
    params = {**_run_params(flt), "test": test, "metric": metric, "limit": limit}
    if limit is not None:
        params["recent"] = limit * RECENT_FACTOR
        values = _test_values_in(conn, metric, flt, True, passed_only, params)
        if len(values) >= limit:
            return values[:limit]
    values = _test_values_in(conn, metric, flt, False, passed_only, params)
    return values if limit is None else values[:limit]


def _test_values_in(
    conn: Connection,
    metric: str | None,
    flt: RunFilter,
    recent: bool,
    passed_only: bool,
    params: dict[str, Any],
) -> list[_TestValue]:
    limited = params["limit"] is not None
    postgres = conn.dialect.name == "postgresql"
    shape = (metric_shape(metric), _run_shape(flt), limited, recent, passed_only)
    narrow_query = _statement(
        conn,
        ("test values", *shape),
        lambda: _test_values_query(results, metric, flt, limited, recent, passed_only, postgres),
    )
    # `all()`: one fetchall, not a fetch per row.
    narrow: list[Any] = [
        (row[0], _utc(row[1]), *row[2:]) for row in _fetch(conn, narrow_query, params)
    ]
    readings = [
        (index, name, unit)
        for index, (name, unit, _) in _READINGS_BY_NAME
        if metric is None or metric == name
    ]
    if not readings:
        return narrow

    def build() -> CompoundSelect[Any]:
        # One statement for both: each part keeps its own order and limit. (A CTE of the
        # newest runs shared by both parts made PostgreSQL's trend twice as slow.)
        parts = [
            _test_values_query(table, metric, flt, limited, recent, passed_only, postgres)
            .add_columns(literal_column(str(source)).label("source"))
            .subquery(f"part_{source}")
            .select()
            for source, table in enumerate(_wide_sources(), 1)
        ]
        return union_all(*parts)

    wide_query = _statement(conn, ("test readings", *shape), build)
    sources: list[list[Any]] = [narrow] if narrow else []
    values: list[Any] = []
    last_source = 1
    unpack = DOUBLE.unpack
    wide_rows = _rows_by_generic_plan(conn, wide_query, params)
    for run_id, started_at, platform, commit, test, outcome, *cells, source in wide_rows:
        if source != last_source:  # the second part's rows
            if values:
                sources.append(values)
            values, last_source = [], source
        started_at = _utc(started_at)
        for index, name, unit in readings:
            value = cells[index]
            if value is not None:
                if type(value) is bytes:  # a block's value on SQLite (`reading_value`)
                    value = unpack(value)[0]
                values.append(
                    (run_id, started_at, platform, commit, test, name, value, unit, "lower",
                     outcome)
                )  # fmt: skip
    if values:
        sources.append(values)
    if len(sources) <= 1:
        return sources[0] if sources else []
    merged = [value for values in sources for value in values]
    # Stable sorts: by metric, then newest run first (ties keep the metric order).
    merged.sort(key=itemgetter(5))
    merged.sort(key=itemgetter(1, 0), reverse=True)
    return merged


def _run_rows_of(flt: RunFilter) -> Select[Any]:
    """The runs `flt` picks with what a test's values carry of them."""
    return (
        select(runs.c.id, runs.c.started_at, platforms.c.key, runs.c.git_commit)
        .join(platforms, platforms.c.id == runs.c.platform_id)
        .where(*_run_conditions(flt))
    )


def _newest_runs(flt: RunFilter) -> Select[Any]:
    """`_run_rows_of`, the newest "recent" of them."""
    return (
        _run_rows_of(flt)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(bindparam("recent", type_=Integer))
    )


def _utc(value: str | datetime) -> datetime:
    """A stored start time as `models.UTCDateTime` reads it (aware UTC), from the text
    SQLite stores or the naive datetime PostgreSQL's driver gives: for thousands of
    values, parsing here costs a third of SQLAlchemy's processing."""
    if type(value) is str:
        # One C call; a zero offset gives `timezone.utc` itself.
        return datetime.fromisoformat(value + "+00:00")
    assert isinstance(value, datetime)
    return value.replace(tzinfo=timezone.utc)


def _wide_sources() -> tuple[Table | Subquery, ...]:
    return (test_results, _plain_rows())


def _plain_rows() -> Subquery:
    """The plain tests' blocks as test_results rows, for reads of one test (see
    `blocks.block_rows`)."""
    return block_rows(by_test=True).subquery("plain_rows")


def _test_values_query(
    table: Table | Subquery,
    metric: str | None,
    flt: RunFilter,
    limited: bool,
    recent: bool,
    passed_only: bool,
    postgres: bool,
) -> Select[Any]:
    """One table's rows of the test "test" for `_test_values`, newest first."""
    if table is results:
        columns: list[Any] = [
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.outcome,
        ]
        conditions = [] if metric is None else [results.c.metric == bindparam("metric")]
    else:
        # Only the reading asked for: reading a block's value costs a function call.
        columns = [
            table.c.outcome,
            *(
                table.c[name] if metric in (None, name) else null().label(name)
                for name, _, _ in READINGS
            ),
        ]
        names = [name for name, _, _ in READINGS if metric in (None, name)]
        conditions = [or_(*(has_reading(table, name) for name in names))]
    if passed_only:
        conditions.append(table.c.outcome == "passed")
    # The runs with their context. The newest ones are looped over, each one probe of the
    # table's (test, run_id) index: PostgreSQL does so from a derived table (it hashes
    # the whole runs table against an IN list), SQLite from an IN list (it scans the
    # test's rows against a derived table).
    run_rows = _run_rows_of(flt)
    newest = _newest_runs(flt)
    if recent and postgres:
        run = newest.subquery("recent")
    else:
        run = run_rows.subquery("run")
        if recent:
            # The list is empty where the table does not hold the test (see `_holds_test`).
            count = case((_holds_test(table, metric), bindparam("recent", type_=Integer)), else_=0)
            newest_ids = newest.with_only_columns(runs.c.id).limit(count)
            conditions.append(table.c.run_id.in_(newest_ids))
    on_run = table.c.run_id == run.c.id
    # The blocks' rows: SQLite goes from the test to its chunks, then to their runs, as it
    # did to whole blocks. Left to itself it looped over the runs in order and found each
    # run's chunk through the test (2 000 runs of 150 tests: 4.2 ms against 3.2 ms raw),
    # and with the newest runs' list it looked each chunk up with the whole list (400
    # runs: 32 ms against 0.65 ms).
    source = run.join(table, on_run) if isinstance(table, Table) else LeftFirst(table, run, on_run)
    query = (
        # The start as the driver gives it (see `_utc`).
        select(
            table.c.run_id,
            type_coerce(run.c.started_at, String).label("started_at"),
            run.c.key,
            run.c.git_commit,
            table.c.test,
        )
        .add_columns(*columns)
        .select_from(source)
        .where(table.c.test == bindparam("test"), *conditions)
        .order_by(run.c.started_at.desc(), run.c.id.desc())
    )
    if table is results:
        query = query.order_by(results.c.metric)
    if limited:
        query = query.limit(bindparam("limit", type_=Integer))
    return query


def _holds_test(table: Table | Subquery, metric: str | None) -> ColumnElement[bool]:
    """SQLite: whether `table` holds the test "test" at all, one index probe. It sets the
    LIMIT of the newest runs' list (0 when not), which SQLite evaluates once before it
    builds the list (a WHERE condition it tests on each run it scans), so a part that
    cannot have the test reads no run instead of probing each: a plain
    test has no results or test_results rows, a marked one no block values, and each
    such part took as long as the old code's whole read of that table (1.2 M
    instructions of a last-100 trend's 11.7 M, counted under callgrind)."""
    # The blocks' rows hold the tests of the stored layouts.
    held = (table if table in (results, test_results) else layout_tests).alias("held")
    where = [held.c.test == bindparam("test")]
    if table is results and metric is not None:
        where.append(held.c.metric == bindparam("metric"))
    return exists().where(*where)


def metric_summaries(conn: Connection, flt: RunFilter, last_runs: int) -> list[MetricSummary]:
    # Two short queries instead of `IN (SELECT ... LIMIT)`: the run ids are at most
    # `last_runs`, and the second query then only touches those runs' results.
    def build_ids() -> Select[Any]:
        ids = select(runs.c.id).join(platforms, platforms.c.id == runs.c.platform_id)
        ids = ids.where(*_run_conditions(flt))
        if flt.test is not None:
            ids = ids.where(_has_test(flt.test))
        ids = ids.order_by(runs.c.started_at.desc(), runs.c.id.desc())
        return ids.limit(bindparam("last_runs", type_=Integer))

    def build_rows() -> Select[Any]:
        # No join to the runs and no ORDER BY: the runs' order is the first query's, and
        # each run's rows are put in id order here (a sort of 10 000 rows in the
        # database cost as much as the rest of the query).
        stored = stored_results(
            _tests_matching(flt.test),
            metric=flt.metric,
            run_ids=bindparam("run_ids", expanding=True),
            lateral=lateral_runs(conn),
            blocks=False,  # decoded below: a function call per value costs more
        )
        return select(
            stored.c.id,
            stored.c.run_id,
            stored.c.test,
            stored.c.metric,
            stored.c.value,
            stored.c.unit,
            stored.c.direction,
            stored.c.kind,
            stored.c.outcome,
        )

    shape, params = _run_shape(flt), _run_params(flt)
    ids = _statement(conn, ("summary runs", shape), build_ids)
    run_ids = list(conn.execute(ids, {**params, "last_runs": last_runs}).scalars())
    if not run_ids:
        return []
    query = _statement(conn, ("summary rows", shape), build_rows)
    by_run: dict[int, list[Any]] = {run_id: [] for run_id in run_ids}
    for row in conn.execute(query, {**params, "run_ids": run_ids}):
        by_run[row[1]].append(row)
    for block_row in _blocks_rows(conn, run_ids, flt):
        by_run[block_row[1]].append(block_row)
    # [values, run_ids, n_failed, unit, direction, kind] per (test, metric)
    grouped: dict[tuple[str, str], list[Any]] = {}
    for run_id in reversed(run_ids):  # oldest first
        rows = by_run[run_id]
        rows.sort(key=itemgetter(0))
        for _, _, test, metric, value, unit, direction, kind, outcome in rows:
            item = grouped.get((test, metric))
            if item is None:
                item = grouped[test, metric] = [[], [], 0, unit, direction, kind]
            else:  # the newest row's unit, direction and kind win
                item[3:] = unit, direction, kind
            if outcome in FAILED_OUTCOMES:
                item[2] += 1
            elif outcome == "passed":
                item[0].append(value)
                item[1].append(run_id)
    return [
        MetricSummary(test, metric, unit, direction, kind, values, runs_of, n_failed)
        for (test, metric), (values, runs_of, n_failed, unit, direction, kind) in sorted(
            grouped.items()
        )
    ]


def _blocks_rows(
    conn: Connection, run_ids: list[int], flt: RunFilter
) -> Iterator[tuple[int, int, str, str, float, str, str, str, str]]:
    """The runs' blocks as (id, run_id, test, metric, value, unit, direction, kind,
    outcome) per reading, for the tests and metric `flt` picks."""
    readings = [
        (index, reading)
        for index, reading in enumerate(READINGS)
        if flt.metric in (None, reading[0])
    ]
    if not readings:
        return
    picked = _picked_positions(conn, flt)
    layouts: dict[int, list[str]] = {}
    for row in conn.execute(_statement(conn, ("run blocks",), _run_blocks), {"run_ids": run_ids}):
        run_id = row[0]
        for id_, test, outcome, values in unfold_chunk(row, layouts, picked):
            for index, (metric, unit, kind) in readings:
                value = values[index]
                if value is not None:
                    # A reading's id: its test's plus the readings before it.
                    at = id_ + sum(v is not None for v in values[:index])
                    yield (at, run_id, test, metric, value, unit, "lower", kind, outcome)


def _picked_positions(conn: Connection, flt: RunFilter) -> dict[int, set[int]] | None:
    """{layout id: positions} of the tests `flt.test` matches; None when it is not set."""
    if flt.test is None:
        return None
    picked: dict[int, set[int]] = {}
    matching = select(layout_tests.c.layout_id, layout_tests.c.position).where(
        test_matches(flt.test, layout_tests)
    )
    f_test = glob_to_like(flt.test) if _is_glob(flt.test) else flt.test
    for layout_id, position in conn.execute(matching, {"f_test": f_test}):
        picked.setdefault(layout_id, set()).add(position)
    return picked


def baseline(
    conn: Connection, test: str, metric: str, platform: str | None, last_runs: int
) -> float | None:
    flt = RunFilter(platform=platform)
    if conn.dialect.name == "postgresql":
        # One statement for the newest runs (see `_recent_values_query`), the values only.
        params = {"test": test, "metric": metric, "limit": last_runs}
        params["recent"] = last_runs * RECENT_FACTOR
        if platform is not None:
            params["f_platform"] = platform
        query = _statement(
            conn,
            ("recent values", metric_shape(metric), platform is not None),
            lambda: _recent_values_query(metric, platform is not None),
        )
        rows = _rows_by_generic_plan(conn, query, params)
        if len(rows) >= last_runs:
            # The wide part's rows come first: a stable sort keeps a run's wide value
            # before its narrow one, as `_test_values` orders them.
            rows.sort(key=itemgetter(0, 1), reverse=True)
            newest: list[float] = [row[2] for row in rows[:last_runs]]
            return statistics.median(newest)
    values = _test_values(conn, test, metric, flt, last_runs, passed_only=True)
    return statistics.median(value[6] for value in values) if values else None


def _recent_values_query(metric: str, on_platform: bool) -> CompoundSelect[Any]:
    """PostgreSQL: (started_at, run_id, value) of the test "test"'s passing values of
    "metric" in the newest "recent" runs (on the platform "f_platform"), at most "limit"
    from each table, newest first: `_test_values`' first pass, for one metric, in one
    statement instead of one per table.

    Planning is most of these statements' time on PostgreSQL: one statement plans the
    newest runs once (a CTE both parts read) and the platform as a scalar subquery, not a
    join; each part keeps its own ORDER BY ... LIMIT, so neither is merged into the other.
    """
    run_rows = select(runs.c.id, runs.c.started_at)
    if on_platform:
        platform_id = select(platforms.c.id).where(platforms.c.key == bindparam("f_platform"))
        run_rows = run_rows.where(runs.c.platform_id == platform_id.scalar_subquery())
    recent = (
        run_rows.order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(bindparam("recent", type_=Integer))
        .cte("recent")
    )
    parts: list[Select[Any]] = []
    tables: list[tuple[Table | Subquery, Any, list[ColumnElement[bool]]]] = []
    if metric in READING_NAMES:
        plain = _plain_rows()
        for wide in (test_results, plain):
            tables.append((wide, wide.c[metric], [has_reading(wide, metric)]))
    tables.append((results, results.c.value, [results.c.metric == bindparam("metric")]))
    for table, value, conditions in tables:
        parts.append(
            select(recent.c.started_at, recent.c.id, value.label("value"))
            .select_from(recent.join(table, table.c.run_id == recent.c.id))
            .where(table.c.test == bindparam("test"), table.c.outcome == "passed", *conditions)
            .order_by(recent.c.started_at.desc(), recent.c.id.desc())
            .limit(bindparam("limit", type_=Integer))
        )
    return union_all(*parts)


def compare(conn: Connection, run_a: int, run_b: int) -> list[RunDiff]:
    values: dict[tuple[str, str], dict[int, Measurement]] = {}
    for run_id, measurement in _run_rows(conn, [run_a, run_b]):
        values.setdefault((measurement.test, measurement.metric), {})[run_id] = measurement
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
        )
        + int(conn.scalar(select(func.sum(block_results().subquery().c.n))) or 0),
        "n_platforms": int(conn.scalar(select(func.count()).select_from(platforms)) or 0),
        # Each table's own distinct tests come from its test index alone; joined here.
        "n_tests": len(
            {
                test
                for table in (results, test_results, layout_tests)
                for test in conn.execute(select(table.c.test).distinct()).scalars()
            }
        ),
    }


def find_tests(conn: Connection, flt: RunFilter) -> list[str]:
    def build() -> Select[Any]:
        if flt.metric is not None:
            stored = _filtered_results(flt)
            return (
                select(stored.c.test)
                .distinct()
                .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
                .where(*_run_conditions(flt))
                .order_by(stored.c.test)
            )
        # A test's name is on each of its rows: no need to unfold readings. The blocks'
        # tests are those of the runs' layouts, each layout read once.
        matching = _tests_matching(flt.test)
        stored = union_all(
            *(select(t.c.run_id, t.c.test).where(*matching(t)) for t in (results, test_results))
        ).subquery("stored")
        in_rows = (
            select(stored.c.test)
            .select_from(stored.join(runs, runs.c.id == stored.c.run_id).join(platforms))
            .where(*_run_conditions(flt))
        )
        layouts = (
            select(plain_blocks.c.layout_id)
            .join(runs, runs.c.id == plain_blocks.c.run_id)
            .join(platforms)
            # Every chunk of a run has the run's layout.
            .where(plain_blocks.c.chunk == 0, *_run_conditions(flt))
        )
        in_blocks = select(layout_tests.c.test).where(
            layout_tests.c.layout_id.in_(layouts), *matching(layout_tests)
        )
        both = union(in_rows, in_blocks).subquery("tests")
        return select(both.c.test).order_by(both.c.test)

    query = _statement(conn, ("tests", _run_shape(flt)), build)
    return list(conn.execute(query, _run_params(flt)).scalars())


def export_rows(conn: Connection, flt: RunFilter) -> Iterator[tuple[Any, ...]]:
    """Every stored value with its run's context, in storage order (see EXPORT_COLUMNS).

    Each table is read in id order (its primary key: no sort) and the two streams are
    merged here, test_results rows unfolded into one row per reading. started_at and
    marked come back as the driver gives them (see export.normalized): converting them
    once per run instead of once per row halves the export time.
    """
    shape, params = _run_shape(flt), _run_params(flt)
    narrow = conn.execute(_statement(conn, ("export", shape), lambda: _export_query(flt)), params)
    readings = [
        (index, *reading)
        for index, reading in enumerate(READINGS)
        if flt.metric is None or flt.metric == reading[0]
    ]
    if not readings:
        for row in narrow:
            yield row[1:]  # without the id the merge below orders by
        return
    wide = conn.execute(_statement(conn, ("export wide", shape), lambda: _export_wide(flt)), params)
    in_blocks: Iterator[Any] = _export_blocks(conn, flt, shape, params)
    merged = heapq.merge(
        ((row[0], 0, row) for row in narrow),
        ((row[0], 1, row) for row in wide),
        ((row[0], 1, row) for row in in_blocks),
        key=itemgetter(0),
    )
    for _, is_wide, row in merged:
        if not is_wide:
            yield row[1:]
            continue
        head, tail = row[1:8], row[8:]  # run context and test; marked, outcome, readings
        marked, outcome = tail[0], tail[1]
        for index, metric, unit, kind in readings:
            value = tail[2 + index]
            if value is not None:
                yield (*head, metric, value, unit, "lower", kind, marked, outcome, None, None, None)


def _export_blocks(
    conn: Connection, flt: RunFilter, shape: tuple[Any, ...], params: dict[str, Any]
) -> Iterator[tuple[Any, ...]]:
    """The blocks' tests as `_export_wide` rows, in id order."""
    picked = _picked_positions(conn, flt)
    query = _statement(conn, ("export blocks", shape), lambda: _export_blocks_query(flt))
    layouts: dict[int, list[str]] = {}
    for row in conn.execute(query, params):
        run_context = row[:6]
        for id_, test, outcome, readings in unfold_chunk(row, layouts, picked):
            yield (id_, *run_context, test, 0, outcome, *readings)


def _export_blocks_query(flt: RunFilter) -> Select[Any]:
    conditions = _run_conditions(flt)
    if flt.metric is not None:
        conditions.append(plain_blocks.c[flt.metric].is_not(None))
    return (
        select(*_run_context(plain_blocks), *block_columns())
        .select_from(
            plain_blocks.join(runs, runs.c.id == plain_blocks.c.run_id)
            .join(platforms)
            .join(test_layouts, test_layouts.c.id == plain_blocks.c.layout_id)
        )
        .where(*conditions)
        .order_by(plain_blocks.c.run_id, plain_blocks.c.chunk)
    )


def _export_context(table: Table) -> list[Any]:
    return [table.c.id, *_run_context(table), table.c.test]


def _run_context(table: Table) -> list[Any]:
    """A stored value's run, as the export gives it (the table joined to runs and
    platforms)."""
    return [
        table.c.run_id,
        type_coerce(runs.c.started_at, String).label("started_at"),
        platforms.c.key.label("platform"),
        runs.c.git_commit,
        runs.c.git_branch,
        runs.c.run_type,
    ]


def _export_query(flt: RunFilter) -> Select[Any]:
    conditions = [*_run_conditions(flt), *_tests_matching(flt.test)(results)]
    if flt.metric is not None:
        conditions.append(results.c.metric == bindparam("metric"))
    return (
        select(
            *_export_context(results),
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
        .where(*conditions)
        .order_by(results.c.id)
    )


def _export_wide(flt: RunFilter) -> Select[Any]:
    conditions = [*_run_conditions(flt), *_tests_matching(flt.test)(test_results)]
    if flt.metric is not None:
        conditions.append(test_results.c[flt.metric].is_not(None))
    return (
        select(
            *_export_context(test_results),
            type_coerce(test_results.c.marked, Integer).label("marked"),
            test_results.c.outcome,
            *(test_results.c[name] for name, _, _ in READINGS),
        )
        .select_from(test_results.join(runs, runs.c.id == test_results.c.run_id).join(platforms))
        .where(*conditions)
        .order_by(test_results.c.id)
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
