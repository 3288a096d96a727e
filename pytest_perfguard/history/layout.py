"""How a session's results are laid out in the tables, both ways.

Writing (`rows.session_rows`, :func:`insert_rows`): plain tests' built-in readings go into
one block per run (`blocks`); another test's built-in readings in their standard form go
into one `test_results` row, as columns; every other result is a row of `results`.
Reading (:func:`stored_results`): all three as one relation with the columns of
`results`, each `test_results` row, and each test of a block, unfolded into one row per
reading it holds.

Ids: a row written since revision 0004 has the id ``run_id * 2**32 + position``, where the
position is that of the (first) result it holds in the list given to ``save_session``; a
reading unfolded from a `test_results` row gets that row's id plus the number of readings
before it in the row. Ordering by id therefore gives a session's results back in the order
they were saved, across both tables. Rows written before 0004 keep their smaller ids.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    literal_column,
    null,
    select,
    true,
    union_all,
)

from pytest_perfguard.history.blocks import block_rows, has_reading, insert_block
from pytest_perfguard.history.models import results, runs, test_results
from pytest_perfguard.history.rows import (
    NARROW_COLUMNS,
    READING_NAMES,
    READINGS,
    RUN_ID_SHIFT,
    WIDE_COLUMNS,
    PlainBlock,
    insert_sqlite_rows,
)

__all__ = [
    "READINGS",
    "READING_NAMES",
    "insert_rows",
    "lateral_runs",
    "metric_shape",
    "of_runs",
    "stored_results",
]


def insert_rows(
    conn: Connection,
    run_id: int,
    wide: list[Sequence[Any]],
    narrow: list[tuple[Any, ...]],
    block: PlainBlock | None = None,
) -> None:
    """Insert session_rows' rows and block for `run_id`: COPY on PostgreSQL, executemany
    elsewhere.

    SQLAlchemy's per-row parameter processing (dicts, type processors) costs more than the
    database's own insert work, so the rows go to the driver as built.
    """
    base = run_id << RUN_ID_SHIFT
    if block is not None and conn.dialect.name != "sqlite":
        insert_block(conn, run_id, block)
    if conn.dialect.driver == "psycopg":
        _copy(conn, test_results, WIDE_COLUMNS, base, run_id, wide)
        _copy(conn, results, NARROW_COLUMNS, base, run_id, narrow)
        return
    if conn.dialect.name != "sqlite":
        for table, columns, rows in (
            (test_results, WIDE_COLUMNS, wide),
            (results, NARROW_COLUMNS, narrow),
        ):
            if rows:
                conn.execute(
                    table.insert(),
                    [dict(zip(columns, (base + r[0], run_id, *r[1:]), strict=True)) for r in rows],
                )
        return
    # SQLite: the rows handed to the driver as built, inside SQLAlchemy's transaction (it
    # holds the write lock).
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        insert_sqlite_rows(cursor, run_id, wide, narrow, block)
    finally:
        cursor.close()


def _copy(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    base: int,
    run_id: int,
    rows: Sequence[Sequence[Any]],
) -> None:
    """PostgreSQL: COPY is 3x faster than executemany (0.15 s vs 0.45 s for 10 000 rows)."""
    if not rows:
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row((base + row[0], run_id, *row[1:]))


# Reads of the newest values (a trend with a limit, a baseline, a baselines update) first
# look in the newest runs only, this many per value asked for: each of those runs is one
# probe of the (test, run_id) indexes instead of sorting every run that holds the test.
RECENT_FACTOR = 4

# A condition on the columns both tables share, given the table (or the rows standing for
# it in a FROM clause, see `of_runs`).
Where = Callable[[Any], list[ColumnElement[bool]]]


def _nothing(_table: Any) -> list[ColumnElement[bool]]:
    return []


def of_runs(run_ids: Any, *, lateral: bool = False) -> tuple[Any, Any, ColumnElement[bool]]:
    """(FROM clause, test_results' columns in it, condition) picking the test_results rows
    of the runs `run_ids` (a list parameter or a subquery): test_results has no run_id
    index, its ids are ranges by run. Each run found is one range scan of the primary key.

    `lateral` (PostgreSQL): the rows as a LATERAL subquery fenced by OFFSET 0. Joined
    plainly, the planner costs the range scan with its default selectivity for a range of
    unknown bounds (thousands of rows a run) and picks a hash join on run_id over a
    parallel scan of the whole table: 43 ms for 20 runs against 1 ms.
    """
    run = runs.alias("of_run")
    shift: Any = literal_column(str(2**RUN_ID_SHIFT))
    in_range = and_(
        test_results.c.id >= run.c.id * shift,
        test_results.c.id < (run.c.id + 1) * shift,
        # Implied by the range; it gives PostgreSQL's planner the right row estimate (one
        # run's tests, not a share of the table), so it keeps to a plain nested loop.
        test_results.c.run_id == run.c.id,
    )
    picked = run.c.id.in_(run_ids)
    if not lateral:
        return test_results.join(run, in_range), test_results, picked
    rows = select(test_results).where(in_range).offset(literal_column("0")).lateral("run_rows")
    return run.join(rows, true()), rows, picked


def lateral_runs(conn: Connection) -> bool:
    """Whether `of_runs` should find runs' rows through a LATERAL subquery."""
    return conn.dialect.name == "postgresql"


def stored_results(
    where: Where = _nothing,
    *,
    metric: str | None = None,
    kinds: Collection[str] | None = None,
    run_ids: Any = None,
    lateral: bool = False,
    blocks: bool = True,
    by_test: bool = False,
    name: str = "stored",
) -> Subquery:
    """Every stored result as one relation with the columns of `results` (`id` orders them).

    `where(table)` gives conditions on the columns both tables share (run_id, test,
    marked, outcome), applied inside each part so that each table's indexes serve them;
    `run_ids` (a list parameter or a subquery) picks runs, through each table's way to
    find a run's rows (see `of_runs`, which `lateral` is passed to); `metric` and `kinds`
    leave out the readings that cannot match; without `blocks`, the plain runs' blocks
    are left out (for a caller that decodes them itself); `by_test`: `where` picks a few
    tests, which the blocks' rows are found from (see `blocks.block_rows`).
    """
    narrow_conditions = where(results)
    if run_ids is not None:
        narrow_conditions.append(results.c.run_id.in_(run_ids))
    if metric is not None:
        # A parameter, so that a statement built once serves every metric of its shape
        # (see queries._statement): the caller passes "metric" when it executes it.
        narrow_conditions.append(results.c.metric == bindparam("metric", metric))
    if kinds is not None:
        narrow_conditions.append(results.c.kind.in_(sorted(set(kinds))))
    parts = [
        select(
            results.c.id,
            results.c.run_id,
            results.c.test,
            results.c.metric,
            results.c.value,
            results.c.unit,
            results.c.direction,
            results.c.kind,
            results.c.marked,
            results.c.outcome,
            results.c.threshold,
            results.c.samples,
            results.c.error,
        ).where(*narrow_conditions)
    ]
    plain = block_rows(by_test=by_test).subquery("plain_rows")
    for slot, (reading, unit, kind) in enumerate(READINGS):
        if (metric is not None and metric != reading) or (kinds is not None and kind not in kinds):
            continue
        for table in (test_results, plain) if blocks else (test_results,):
            source: Any = table
            wide: Any = table
            conditions: list[ColumnElement[bool]] = []
            if run_ids is not None:
                if table is test_results:
                    source, wide, picked = of_runs(run_ids, lateral=lateral)
                else:
                    picked = plain.c.run_id.in_(run_ids)
                conditions.append(picked)
            column = wide.c[reading]
            conditions += [has_reading(wide, reading), *where(wide)]
            position: ColumnElement[Any] = wide.c.id
            for earlier, _, _ in READINGS[:slot]:
                position = position + case((has_reading(wide, earlier), 1), else_=0)
            parts.append(
                select(
                    position.label("id"),
                    wide.c.run_id,
                    wide.c.test,
                    literal_column(f"'{reading}'").label("metric"),
                    column.label("value"),
                    literal_column(f"'{unit}'").label("unit"),
                    literal_column("'lower'").label("direction"),
                    literal_column(f"'{kind}'").label("kind"),
                    wide.c.marked,
                    wide.c.outcome,
                    null().label("threshold"),
                    null().label("samples"),
                    null().label("error"),
                )
                .select_from(source)
                .where(*conditions)
            )
    return union_all(*parts).subquery(name)


def metric_shape(metric: str | None) -> str | None:
    """What decides which parts `stored_results(metric=...)` reads: None (all), a
    reading's name, or "" (another metric: results only)."""
    if metric is None or metric in READING_NAMES:
        return metric
    return ""
