"""A session's results as a block of plain tests' readings and the rows of `test_results`
and `results`, and their SQLite insert.

No SQLAlchemy here: the lean SQLite writer (`sqlite_writer`) and the SQLAlchemy store
(`layout.insert_rows`) both build what they store with :func:`session_rows`, so both ways
of saving a session store the same rows. See `layout` and `blocks` for how readers see
them.

Ids: a row written since revision 0004 has the id ``run_id * 2**32 + position``, where the
position is that of the (first) result it holds in the list given to ``save_session``.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

from pytest_perfguard.history.errors import HistoryError

try:  # hashlib's own source of it, without loading OpenSSL's bindings (2 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover
    from hashlib import blake2b
from pytest_perfguard.results import Measurement, PlainRuns, TestOutcome, packed_doubles

# The built-in readings with a column in test_results: (metric, unit, kind), in the order a
# test's rows list them. Direction is always "lower"; threshold, samples and error are None.
READINGS: tuple[tuple[str, str, str], ...] = (
    ("duration", "s", "primary"),
    ("cpu_time", "s", "system"),
    ("rss_peak_mb", "MB", "system"),
)
READING_NAMES = frozenset(name for name, _, _ in READINGS)
_SLOTS = {reading: slot for slot, reading in enumerate(READINGS)}
RUN_ID_SHIFT = 32
# Plain tests per `plain_blocks` row: a run's block is stored in chunks of this many tests,
# so that a query by test reads a small row per run. The row must stay whole on its page:
# SQLite reads a BLOB that spills onto overflow pages whole, and PostgreSQL reads an array
# moved out of its row (TOAST) whole. Three readings of 8 bytes and one outcome letter a
# test: 128 tests make a record of 3.2 kB, on its page on SQLite (up to 4 061 bytes stay on
# a 4 kB page); PostgreSQL keeps it in its row because plain_blocks' toast_tuple_target is
# a page (by default it moves values out of rows over 2 kB: from 80 tests). Each row costs
# a SQLite insert about 27 k instructions besides its bytes: 64 tests a chunk cost 545
# instructions a test, 128 cost 344. Part of the stored format (readers compute a test's
# place in its chunk, and migration 0007's downgrade cuts at it): changing it needs a
# migration.
CHUNK_TESTS = 128
# A results row's threshold, samples and error when it has none.
_NO_EXTRAS = (None, None, None)

# A test_results row as split_rows builds it: [position, test, marked, outcome, *readings].
WIDE_COLUMNS = ("id", "run_id", "test", "marked", "outcome", *(m for m, _, _ in READINGS))
# A results row as split_rows builds it, position first (see NARROW_COLUMNS).
NARROW_COLUMNS = (
    "id", "run_id", "test", "metric", "value", "unit", "direction", "kind", "marked",
    "outcome", "threshold", "samples", "error",
)  # fmt: skip


# A plain test's outcome as one letter of `plain_blocks.outcomes`.
OUTCOME_LETTERS: dict[TestOutcome, str] = {
    "passed": "p", "failed": "f", "skipped": "s", "error": "e",
}  # fmt: skip
LETTER_OUTCOMES: dict[str, TestOutcome] = {
    letter: outcome for outcome, letter in OUTCOME_LETTERS.items()
}


@dataclass(frozen=True, slots=True)
class PlainBlock:
    """A session's plain runs as one `plain_blocks` row and its layout (see the model)."""

    tests: list[str]
    digest: str
    outcomes: str
    first_position: int
    stride: int
    # One array of doubles per READINGS column, None where the runs have no such reading.
    columns: tuple[array[float] | None, ...]

    def set_digest(self) -> str:
        """What identifies the set of tests, whatever their order (xdist, random order)."""
        return layout_digest(sorted(self.tests))

    def in_order_of(self, tests: list[str], digest: str) -> PlainBlock:
        """This block with its tests in the order of `tests` (the same set), whose digest
        is `digest` (the stored layout's: not computed again, 0.85 k instructions a test)."""
        where = dict(zip(self.tests, range(len(self.tests)), strict=True))
        order = list(map(where.__getitem__, tests))
        pick = itemgetter(*order) if len(order) > 1 else lambda seq: (seq[order[0]],)
        return PlainBlock(
            tests=list(tests),
            digest=digest,
            outcomes="".join(pick(self.outcomes)),
            first_position=self.first_position,
            stride=self.stride,
            columns=tuple(
                None if column is None else _double_array(pick(column)) for column in self.columns
            ),
        )

    def column_bytes(self) -> list[bytearray | None]:
        """The columns as SQLite stores them: doubles, little-endian. Bytearrays: Python's
        sqlite3 binds one as it is, and a bytes object only after an adapter lookup that
        raises and formats an AttributeError (1.5 k instructions a value)."""
        stored = []
        for column in self.columns:
            if column is not None and sys.byteorder == "big":  # pragma: no cover
                column = array("d", column)
                column.byteswap()
            stored.append(None if column is None else bytearray(column))
        return stored

    def chunks(self, as_bytes: bool) -> list[tuple[Any, ...]]:
        """(chunk, outcome letters, one block per READINGS column or None) per chunk of
        CHUNK_TESTS tests: the blocks as SQLite stores them (`as_bytes`), else lists of
        floats."""
        size = CHUNK_TESTS
        starts = range(0, len(self.tests), size)
        columns: list[Any]
        if as_bytes:
            # Cut from each column's bytes: one copy per chunk, no array per chunk.
            columns = self.column_bytes()
            starts_at, step = range(0, len(self.tests) * 8, size * 8), size * 8
        else:
            columns = [None if column is None else column.tolist() for column in self.columns]
            starts_at, step = starts, size
        blocks = [
            repeat(None) if data is None else [data[at : at + step] for at in starts_at]
            for data in columns
        ]
        letters = [self.outcomes[at : at + size] for at in starts]
        return list(zip(range(len(starts)), letters, *blocks, strict=False))  # `repeat` is endless


def session_rows(
    measurements: Sequence[Measurement], plain: PlainRuns | None = None
) -> tuple[list[Sequence[Any]], list[tuple[Any, ...]], PlainBlock | None]:
    """(test_results rows, results rows, block of plain runs) of a session's rows followed
    by its plain runs (the order they are stored in), without run ids; checks values."""
    wide, narrow = split_rows(measurements)
    block = None
    if plain:
        columns = _plain_columns(plain)
        if columns is None or not plain.has_distinct_ids():
            # Readings in an order the columns cannot hold, or a test run twice (a layout
            # holds each test once): stored as rows, order kept.
            more_wide, more_narrow = split_rows(plain.measurements(), len(measurements))
            wide.extend(more_wide)
            narrow.extend(more_narrow)
        else:
            block = _plain_block(plain, columns, len(measurements), narrow)
    return wide, narrow, block


def layout_digest(tests: list[str]) -> str:
    """What identifies a list of tests: runs of the same suite share one layout."""
    joined = "\n".join(tests)
    if joined.count("\n") != len(tests) - 1:  # an id holds a line break
        joined = json.dumps(tests)
    return blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def _plain_columns(plain: PlainRuns) -> list[list[float] | None] | None:
    """The values for each reading column of test_results (None where the runs have no
    such reading), or None when the readings that have a column do not come first, in
    column order (see `split_rows`)."""
    columns: list[list[float] | None] = [None] * (len(READINGS) - 1)
    last = 0
    for index, (metric, unit, values) in enumerate(plain.readings):
        slot = _SLOTS.get((metric, unit, "system"))
        if slot is None:
            if any(_SLOTS.get((m, u, "system")) for m, u, _ in plain.readings[index:]):
                return None
            break
        if slot <= last:
            return None
        columns[slot - 1] = values
        last = slot
    return columns


def _double_array(values: Sequence[float]) -> array[float]:
    doubles = array("d")
    doubles.frombytes(packed_doubles(values))  # see `packed_doubles`: not array("d", values)
    return doubles


def _plain_block(
    plain: PlainRuns,
    columns: list[list[float] | None],
    position: int,
    narrow: list[tuple[Any, ...]],
) -> PlainBlock:
    """The plain runs' block, and their readings without a column appended as results
    rows; positions as if the runs' rows followed from `position`."""
    for values in (plain.durations, *(v for _, _, v in plain.readings)):
        # One C-level pass per column: the sum of finite values is finite.
        if not math.isfinite(sum(values)):
            index = next(i for i, value in enumerate(values) if not math.isfinite(value))
            row = plain.measurements(tests={plain.ids[index]})
            split_rows(row)  # raises, naming the test and the metric
    per_test = 1 + len(plain.readings)
    count = len(plain)
    positions = range(position, position + count * per_test, per_test)
    block = PlainBlock(
        tests=plain.ids,
        digest=layout_digest(plain.ids),
        outcomes="".join(map(OUTCOME_LETTERS.__getitem__, plain.outcomes)),
        first_position=position,
        stride=per_test,
        columns=(
            _double_array(plain.durations),
            *(None if column is None else _double_array(column) for column in columns),
        ),
    )
    in_columns = sum(column is not None for column in columns)
    for offset, (metric, unit, values) in enumerate(plain.readings[in_columns:], 1 + in_columns):
        runs = zip(positions, plain.ids, values, plain.outcomes, strict=True)
        narrow.extend(
            (at + offset, test, metric, value, unit, "lower", "system", 0, outcome, *_NO_EXTRAS)
            for at, test, value, outcome in runs
        )
    return block


def split_rows(
    measurements: Sequence[Measurement], first_position: int = 0
) -> tuple[list[Sequence[Any]], list[tuple[Any, ...]]]:
    """(test_results rows, results rows) of a session, without run ids; checks values.

    Readings go into one test_results row when they follow each other in the list, in
    READINGS order, for the same test, marked flag and outcome (as the plugin lists them);
    anything else starts a new row or becomes a results row, so nothing changes order.
    """
    wide: list[Sequence[Any]] = []
    narrow: list[tuple[Any, ...]] = []
    current: list[Any] | None = None
    last_slot = len(READINGS)
    slots = _SLOTS
    isfinite = math.isfinite
    for position, m in enumerate(measurements, first_position):
        value = m.value
        if not isfinite(value):
            raise HistoryError(f"{m.test} {m.metric}: cannot store a non-finite value ({value})")
        slot = None
        if m.direction == "lower" and m.threshold is None and not m.samples and m.error is None:
            slot = slots.get((m.metric, m.unit, m.kind))
        if slot is None:
            current = None
            narrow.append(_narrow_row(position, m))
            continue
        # `marked` as an int: Python's sqlite3 sends a bool through its adapter lookup.
        marked = 1 if m.marked else 0
        if (
            current is None
            or slot <= last_slot
            or current[1] != m.test
            or current[2] != marked
            or current[3] != m.outcome
        ):
            current = [position, m.test, marked, m.outcome, None, None, None]
            wide.append(current)
        current[4 + slot] = float(value)
        last_slot = slot
    return wide, narrow


def _narrow_row(position: int, m: Measurement) -> tuple[Any, ...]:
    samples = None
    if m.samples:
        if not all(map(math.isfinite, m.samples)):
            raise HistoryError(f"{m.test} {m.metric}: cannot store a non-finite sample")
        # repr() of a finite float is its JSON form; json.dumps is 3x slower here.
        samples = "[" + ", ".join([repr(float(s)) for s in m.samples]) + "]"
    return (
        position, m.test, m.metric, float(m.value), m.unit, m.direction, m.kind,
        1 if m.marked else 0, m.outcome, m.threshold, samples, m.error,
    )  # fmt: skip


def insert_sqlite_rows(
    cursor: Any,
    run_id: int,
    wide: list[Sequence[Any]],
    narrow: list[tuple[Any, ...]],
    block: PlainBlock | None = None,
) -> None:
    """Insert split_rows' rows for `run_id` through a sqlite3 cursor, inside the caller's
    write transaction.

    Ids and the run id are computed by the statement, and the rows go to the driver's
    executemany as built. Most results rows (a marked test's primary metric) have no
    threshold, samples or error: inserted without those columns, which default to NULL,
    since Python's sqlite3 binds a None only after a failed adapter lookup that raises and
    formats an AttributeError.
    """
    base = run_id << RUN_ID_SHIFT
    if block is not None:
        _insert_sqlite_block(cursor, run_id, block)
    if wide:
        cursor.executemany(_insert("test_results", WIDE_COLUMNS, base, run_id), wide)
    short, full = [], []
    for row in narrow:
        if row[-1] is None and row[-2] is None and row[-3] is None:
            short.append(row[:-3])
        else:
            full.append(row)
    if short:
        cursor.executemany(_insert("results", NARROW_COLUMNS[:-3], base, run_id), short)
    if full:
        cursor.executemany(_insert("results", NARROW_COLUMNS, base, run_id), full)


def _insert(table: str, columns: tuple[str, ...], base: int, run_id: int) -> str:
    # Both numbers are ints computed here: safe to inline.
    values = ", ".join([f"? + {int(base)}", str(int(run_id)), *("?" * (len(columns) - 2))])
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def _insert_sqlite_block(cursor: Any, run_id: int, block: PlainBlock) -> None:
    def find(column: str, digest: str) -> tuple[int, str, str] | None:
        # `column` is one of two names given here.
        query = (
            f"SELECT id, tests, digest FROM test_layouts WHERE {column} = ? ORDER BY id LIMIT 1"
        )
        found: tuple[int, str, str] | None = cursor.execute(query, (digest,)).fetchone()
        return found

    layout_id, block = layout_of(block, find, lambda: _new_sqlite_layout(cursor, block))
    # What every chunk of the run shares: ints computed here, safe to inline.
    shared = (run_id, layout_id, (run_id << RUN_ID_SHIFT) + block.first_position, block.stride)
    run, layout, first_id, stride = (str(int(value)) for value in shared)
    cursor.executemany(
        "INSERT INTO plain_blocks (run_id, chunk, layout_id, first_id, stride, outcomes,"
        f" {', '.join(name for name, _, _ in READINGS)})"
        f" VALUES ({run}, ?, {layout}, {first_id}, {stride}, ?, {', '.join('?' * len(READINGS))})",
        block.chunks(as_bytes=True),
    )


def _new_sqlite_layout(cursor: Any, block: PlainBlock) -> int:
    cursor.execute(
        "INSERT INTO test_layouts (digest, set_digest, n_tests, tests) VALUES (?, ?, ?, ?)",
        (block.digest, block.set_digest(), len(block.tests), json.dumps(block.tests)),
    )
    layout_id: int = cursor.lastrowid
    cursor.executemany(
        "INSERT INTO layout_tests (layout_id, position, test, chunk)"
        f" VALUES ({int(layout_id)}, ?1, ?2, ?1 / {int(CHUNK_TESTS)})",
        enumerate(block.tests),
    )
    return layout_id


def layout_of(
    block: PlainBlock,
    find: Callable[[str, str], tuple[int, str, str] | None],
    store_new: Callable[[], int],
) -> tuple[int, PlainBlock]:
    """(layout id, the block in that layout's order): the layout of the same tests in the
    same order (the usual case: a suite run again), else one of the same tests in another
    order (xdist, a random order), the block reordered to it, else a new one (`store_new`).

    `find(column, digest)` gives the (id, tests, digest) of the first layout with that
    digest in `column`.
    """
    found = find("digest", block.digest)
    if found is not None:
        return int(found[0]), block
    found = find("set_digest", block.set_digest())
    if found is not None:
        return int(found[0]), block.in_order_of(json.loads(found[1]), found[2])
    return int(store_new()), block
