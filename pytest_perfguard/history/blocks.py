"""Plain tests' readings stored as blocks per run (`plain_blocks`), seen as rows.

A recording session stores its plain tests' built-in readings as `plain_blocks` rows: the
tests are a *layout* (`test_layouts`, stored once for every run of the same list of
tests, with `layout_tests` saying where each test sits in it), and each reading is a block
of doubles in layout order, cut into chunks of `rows.CHUNK_TESTS` tests, one row each.
See `models.PlainBlock`.

Readers see the chunks as the `test_results` rows they stand for (:func:`block_rows`): one
row per (run, test), its readings read out of its chunk by position in SQL: on SQLite the
8 bytes cut out with `substr` (made floats where Python reads them, `reading_value`), on
PostgreSQL an array subscript. Reads of whole runs (`queries.runs_measurements`, the
export) decode chunks in Python instead (:func:`unfold_chunk`).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Join,
    LargeBinary,
    Select,
    TextClause,
    and_,
    case,
    false,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from pytest_perfguard.history.models import (
    FAILED_CHUNK,
    layout_tests,
    plain_blocks,
    test_layouts,
)
from pytest_perfguard.history.rows import (
    CHUNK_TESTS,
    LETTER_OUTCOMES,
    OUTCOME_LETTERS,
    READINGS,
    RUN_ID_SHIFT,
    PlainBlock,
    layout_of,
)
from pytest_perfguard.results import TestOutcome

SQLITE_READING_FUNCTION = "perfguard_reading"
DOUBLE = struct.Struct("<d")


# The chunk size as a constant of the statements, as RUN_ID_SHIFT is: a parameter would
# hide it from the planners.
_CHUNK: Any = literal_column(str(int(CHUNK_TESTS)), Integer)


def chunk_tests(*, by_test: bool = False) -> ColumnElement[bool]:
    """layout_tests joined to plain_blocks: each chunk's tests. From a chunk (a reader of
    runs), a range of layout_tests' primary key; from a test (`by_test`), its chunk in
    each run, one probe of plain_blocks' (layout_id, chunk, run_id) index.

    Each way states only what it seeks by: PostgreSQL takes every condition of a join for
    a filter when it estimates the rows, and with both ways' it counted a trend's values
    at one where there were 400, and hashed a scan of every chunk.
    """
    same_layout = layout_tests.c.layout_id == plain_blocks.c.layout_id
    if by_test:
        return and_(same_layout, plain_blocks.c.chunk == layout_tests.c.chunk)
    start = plain_blocks.c.chunk * _CHUNK
    return and_(
        same_layout, layout_tests.c.position >= start, layout_tests.c.position < start + _CHUNK
    )


def position_in_chunk() -> ColumnElement[int]:
    """Where a test of layout_tests sits in the plain_blocks chunk joined to it
    (`chunk_tests`): the position of its readings and outcome letter."""
    return layout_tests.c.position - plain_blocks.c.chunk * _CHUNK  # type: ignore[no-any-return]


def block_results() -> Select[Any]:
    """(run_id, n) per run that has blocks: the results they stand for, the layout's
    tests times the readings held. Read off each run's first chunk (its chunks hold the
    same readings): counting chunk by chunk read every chunk of the runs, 1.1 ms for 20
    runs of 4 000 tests against 0.02 ms."""
    present = [case((plain_blocks.c[name].is_(None), 0), else_=1) for name, _, _ in READINGS]
    readings: ColumnElement[int] = present[0]
    for term in present[1:]:
        readings = readings + term
    return (
        select(plain_blocks.c.run_id, (test_layouts.c.n_tests * readings).label("n"))
        .join(test_layouts, test_layouts.c.id == plain_blocks.c.layout_id)
        .where(plain_blocks.c.chunk == 0)
    )


class reading_at(FunctionElement[Any]):
    """The reading at a 0-based position of a reading block (NULL for a NULL block): a
    double on PostgreSQL; on SQLite its 8 bytes, which `reading_value` makes a float where
    Python reads it (a function call per value in SQL costs more than the rest of a
    trend's read)."""

    type = LargeBinary()
    name = "reading_at"
    inherit_cache = True


@compiles(reading_at, "sqlite")
def _reading_at_sqlite(element: reading_at, compiler: SQLCompiler, **kw: Any) -> str:
    block, position = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"substr({block}, ({position}) * 8 + 1, 8)"


@compiles(reading_at, "postgresql")
def _reading_at_postgresql(element: reading_at, compiler: SQLCompiler, **kw: Any) -> str:
    block, position = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({block})[{position} + 1]"


def reading_value(value: Any) -> float:
    """A value read through `reading_at` (or any stored value) as a float."""
    if type(value) is bytes:
        return DOUBLE.unpack(value)[0]  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]


def _sqlite_reading(value: bytes | None) -> float | None:
    """A double from its 8 little-endian bytes (None for NULL)."""
    return None if value is None else reading_value(value)


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Make `perfguard_reading(bytes)` callable in SQL on a sqlite3 connection: a double
    from its 8 bytes, for SQL that needs values as numbers (the downgrade of 0007, and
    anyone querying blocks by hand: `perfguard_reading(substr(block, p * 8 + 1, 8))`)."""
    dbapi_connection.create_function(
        SQLITE_READING_FUNCTION, 1, _sqlite_reading, deterministic=True
    )


def _constant(value: str | int) -> Any:
    """A constant written into the statement: as a bound parameter, each is processed in
    Python at every execution (the outcome CASE alone had twelve)."""
    return literal_column(f"'{value}'" if isinstance(value, str) else str(value))


def _letter_at(outcomes: Any, position: Any) -> Any:
    return func.substr(outcomes, position + _constant(1), _constant(1))


def outcome_at(outcomes: Any, position: Any) -> ColumnElement[str]:
    """The outcome of the test at `position`, from a block's outcome letters."""
    # A simple CASE: the letter is cut out once, not once per outcome.
    whens = {_constant(letter): _constant(outcome) for letter, outcome in LETTER_OUTCOMES.items()}
    return case(whens, value=_letter_at(outcomes, position), else_=_constant("error"))


FAILED_LETTERS = (OUTCOME_LETTERS["failed"], OUTCOME_LETTERS["error"])


def failed_at(outcomes: Any, position: Any) -> ColumnElement[bool]:
    """Whether the test at `position` failed or errored."""
    letter: ColumnElement[str] = _letter_at(outcomes, position)
    return letter.in_([_constant(letter) for letter in FAILED_LETTERS])


def any_failed() -> TextClause:
    """Whether a plain_blocks chunk holds a test that failed or errored: the condition of
    its index of such chunks (`models.FAILED_CHUNK`)."""
    return text(f"({FAILED_CHUNK})")


class LeftFirst(Join):
    """A join whose left side SQLite must loop over outside the right (a CROSS JOIN with
    its ON clause; a plain join elsewhere): how a query by test makes it start from the
    test (see `block_rows`)."""

    inherit_cache = True


@compiles(LeftFirst)
def _left_first(element: LeftFirst, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.visit_join(element, **kw)  # type: ignore[no-untyped-call,no-any-return]


@compiles(LeftFirst, "sqlite")
def _left_first_sqlite(element: LeftFirst, compiler: SQLCompiler, **kw: Any) -> str:
    assert element.onclause is not None  # built with one
    side = {**kw, "asfrom": True}
    left, right = compiler.process(element.left, **side), compiler.process(element.right, **side)
    return f"{left} CROSS JOIN {right} ON {compiler.process(element.onclause, **kw)}"


def block_rows(*, by_test: bool = False) -> Select[Any]:
    """Every (run, test) of the stored chunks as the `test_results` row it stands for: the
    columns of test_results, in their order, then each reading's block (`has_reading`).

    A condition on `test` is one probe of layout_tests' test index per layout holding the
    test, then one of plain_blocks' (layout_id, chunk, run_id) index per run; on `run_id`,
    one range of plain_blocks' primary key, each chunk's tests a range of layout_tests'
    (see `chunk_tests`). Planners flatten this select into the query using it.

    `by_test`: the query picks a few tests, and SQLite is made to find them first. Without
    statistics its planner takes both ways for equally cheap and may start from each run,
    reading all the run's chunks to find the one holding the test: with 4 000 tests a run,
    the trend of one test over 300 runs took 22 ms that way against 0.4 ms (raw SQL).
    """
    position = layout_tests.c.position
    at = position_in_chunk()
    return select(
        (plain_blocks.c.first_id + position * plain_blocks.c.stride).label("id"),
        plain_blocks.c.run_id,
        layout_tests.c.test,
        false().label("marked"),
        outcome_at(plain_blocks.c.outcomes, at).label("outcome"),
        *(reading_at(plain_blocks.c[name], at).label(name) for name, _, _ in READINGS),
        # Whether a reading is there is the block's, not the test's: asked of the block
        # (see `has_reading`), it costs no read of a value.
        *(plain_blocks.c[name].label(f"{name}_block") for name, _, _ in READINGS),
    ).select_from(
        LeftFirst(layout_tests, plain_blocks, chunk_tests(by_test=True))
        if by_test
        else plain_blocks.join(layout_tests, chunk_tests())
    )


def has_reading(wide: Any, name: str) -> ColumnElement[bool]:
    """Whether a row of test_results, or of `block_rows`, holds the reading `name`."""
    block = f"{name}_block"
    if block in wide.c:
        return wide.c[block].is_not(None)  # type: ignore[no-any-return]
    return wide.c[name].is_not(None)  # type: ignore[no-any-return]


def insert_block(conn: Connection, run_id: int, block: PlainBlock) -> None:
    """Store a run's block in its chunks, and its layout when new (every backend but
    SQLite, which `rows.insert_sqlite_rows` writes)."""

    def find(column: str, digest: str) -> tuple[int, str, str] | None:
        query = (
            select(test_layouts.c.id, test_layouts.c.tests, test_layouts.c.digest)
            .where(test_layouts.c[column] == digest)
            .order_by(test_layouts.c.id)
            .limit(1)
        )
        row = conn.execute(query).first()
        return None if row is None else (row[0], row[1], row[2])

    layout_id, block = layout_of(block, find, lambda: _new_layout(conn, block))
    shared = {
        "run_id": run_id,
        "layout_id": layout_id,
        "first_id": (run_id << RUN_ID_SHIFT) + block.first_position,
        "stride": block.stride,
    }
    names = ("chunk", "outcomes", *(name for name, _, _ in READINGS))
    conn.execute(
        plain_blocks.insert(),
        [
            dict(shared, **dict(zip(names, chunk, strict=True)))
            for chunk in block.chunks(as_bytes=False)
        ],
    )


def _new_layout(conn: Connection, block: PlainBlock) -> int:
    values = {
        "digest": block.digest,
        "set_digest": block.set_digest(),
        "n_tests": len(block.tests),
        "tests": json.dumps(block.tests),
    }
    if conn.dialect.name == "postgresql":
        # A concurrent session storing the same new layout: its insert wins, ours waits
        # for its commit and then finds it.
        inserted = conn.execute(
            postgresql.insert(test_layouts)
            .values(values)
            .on_conflict_do_nothing(index_elements=["digest"])
            .returning(test_layouts.c.id)
        ).scalar()
        if inserted is None:
            found = conn.scalar(
                select(test_layouts.c.id).where(test_layouts.c.digest == block.digest)
            )
            assert found is not None  # the conflicting row is committed
            return int(found)
    else:
        inserted = conn.execute(
            test_layouts.insert().values(values).returning(test_layouts.c.id)
        ).scalar()
    assert inserted is not None
    _insert_layout_tests(conn, int(inserted), block.tests)
    return int(inserted)


def _insert_layout_tests(conn: Connection, layout_id: int, tests: list[str]) -> None:
    positions = range(len(tests))
    rows = zip(tests, repeat(layout_id), positions, (at // CHUNK_TESTS for at in positions))
    if conn.dialect.driver == "psycopg":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        statement = "COPY layout_tests (test, layout_id, position, chunk) FROM STDIN"
        with cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.execute(
        layout_tests.insert(),
        [
            {"test": test, "layout_id": lid, "position": at, "chunk": chunk}
            for test, lid, at, chunk in rows
        ],
    )


def decoded(block: bytes | list[float] | None) -> list[float] | None:
    """A stored reading block as its values (bytes on SQLite, a list on PostgreSQL)."""
    if block is None or isinstance(block, list):
        return block
    values = array("d")
    values.frombytes(block)
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values.tolist()


def unfolded(
    first_id: int,
    stride: int,
    tests: list[str],
    outcomes: str,
    blocks: Iterable[bytes | list[float] | None],
) -> list[tuple[int, str, TestOutcome, list[float | None]]]:
    """A block (or a chunk of one, `first_id` its first test's id) as (id, test, outcome,
    [reading or None per READINGS column]) per test, in layout order (ids ascending)."""
    columns = [decoded(block) for block in blocks]
    values = zip(*(repeat(None) if column is None else column for column in columns), strict=False)
    outcome_of = LETTER_OUTCOMES.get
    return [
        (first_id + position * stride, test, outcome_of(letter, "error"), list(readings))
        for position, (test, letter, readings) in enumerate(
            zip(tests, outcomes, values, strict=False)  # `values` has no length
        )
    ]


def block_columns() -> list[Any]:
    """What a reader of whole runs' chunks selects last (`unfold_chunk` reads them from a
    row's end): layout id, the run's first id, stride, chunk, outcome letters, the
    layout's tests (JSON, in each run's first chunk only: sent once per run, not once per
    chunk), the reading blocks. The caller joins test_layouts on plain_blocks.layout_id and
    reads each run's chunks in order."""
    return [
        plain_blocks.c.layout_id,
        plain_blocks.c.first_id,
        plain_blocks.c.stride,
        plain_blocks.c.chunk,
        plain_blocks.c.outcomes,
        case((plain_blocks.c.chunk == 0, test_layouts.c.tests)).label("tests"),
        *(plain_blocks.c[name] for name, _, _ in READINGS),
    ]


_CHUNK_COLUMNS = 6 + len(READINGS)


def unfold_chunk(
    row: Any, layouts: dict[int, list[str]], picked: dict[int, set[int]] | None = None
) -> list[tuple[int, str, TestOutcome, list[float | None]]]:
    """`unfolded` of a row whose last columns are `block_columns()`: its tests, or only
    those at the layout positions `picked[layout id]` when `picked` is given.

    `layouts` holds each layout's tests once read (by layout id): a run's first chunk
    carries them, so a reader passes every row of a run here, in chunk order.
    """
    layout_id, first_id, stride, chunk, outcomes, tests, *blocks = row[-_CHUNK_COLUMNS:]
    names = layouts.get(layout_id)
    if names is None:
        names = layouts[layout_id] = json.loads(tests)
    start = chunk * CHUNK_TESTS
    end = start + len(outcomes)
    if picked is not None:
        wanted = sorted(p - start for p in picked.get(layout_id, ()) if start <= p < end)
        if not wanted:
            return []
    tests_of_chunk = unfolded(first_id + start * stride, stride, names[start:end], outcomes, blocks)
    return tests_of_chunk if picked is None else [tests_of_chunk[at] for at in wanted]
