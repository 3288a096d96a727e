"""The history schema: SQLAlchemy 2 models, portable between SQLite and PostgreSQL.

Migrations (`history/migrations/versions`) must build exactly this schema; a test
compares the two with alembic's autogenerate.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar, cast

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pytest_perfguard.history.rows import OUTCOME_LETTERS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A block of readings, one per test of a chunk of a layout: SQLite stores the doubles as bytes
# (little-endian, read back by the `perfguard_reading` function `engine` registers),
# PostgreSQL as a float8[] its SQL indexes natively.
ReadingBlock = LargeBinary().with_variant(ARRAY(Float()), "postgresql")

# SQLite only auto-increments an `INTEGER PRIMARY KEY`; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), returned as aware UTC.

    A naive datetime given to us is taken as local time, like `datetime.astimezone()`.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Platform(Base):
    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_branch: Mapped[str | None] = mapped_column(String(255))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    python_version: Mapped[str] = mapped_column(String(50))
    run_type: Mapped[str] = mapped_column(String(20))
    triggered_by: Mapped[str] = mapped_column(String(20))
    host: Mapped[str] = mapped_column(String(255))
    args: Mapped[list[Any]]
    outcome: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str] = mapped_column(Text)
    system_info: Mapped[dict[str, Any]]
    # Set by `perfguard import` so importing the same file twice adds nothing.
    source_key: Mapped[str | None] = mapped_column(String(255))
    # The kind of test (`perfguard record --type inference`); None for pytest sessions.
    test_type: Mapped[str | None] = mapped_column(String(50))

    __table_args__ = (
        Index("ix_runs_platform_started", "platform_id", "started_at"),
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_source_key", "source_key", unique=True),
        Index("ix_runs_test_type", "test_type"),
    )


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    test: Mapped[str] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(50))
    direction: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(20))
    marked: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(20))
    threshold: Mapped[float | None] = mapped_column(Float)
    samples: Mapped[list[Any] | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_results_test_metric_run", "test", "metric", "run_id"),
        Index("ix_results_run_id", "run_id"),
    )


class TestResult(Base):
    """One test's built-in readings in one run, as columns of one row.

    Every test of a suite yields `duration` (its primary metric unless marked otherwise),
    `cpu_time` and `rss_peak_mb`: as three `results` rows they cost three b-tree inserts
    into the table and its two indexes each, more than the whole per-test budget. A reading
    is stored here only in its standard form (unit, direction lower, no threshold, samples
    or error; `duration` as the primary metric); any other row, and every custom metric and
    step, stays a row of `results`. Readers see both as one set of rows
    (`layout.stored_results`).

    `id` is the run id times 2**32 plus the position of the test's first reading in the
    session, as `results.id` is for rows written since revision 0004: ordering by it gives
    back each session's rows in the order they were saved, and a run's rows are one range
    of the primary key. So the table has one index besides it, (test, run_id) for trends,
    and no foreign key: each costs SQLite a b-tree search per row written, a fifth of a
    plain test's whole insert (runs are never deleted; the range finds a run's rows).
    """

    __tablename__ = "test_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    run_id: Mapped[int] = mapped_column(Integer)
    test: Mapped[str] = mapped_column(Text)
    marked: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(20))
    duration: Mapped[float | None] = mapped_column(Float)
    cpu_time: Mapped[float | None] = mapped_column(Float)
    rss_peak_mb: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_test_results_test_run", "test", "run_id"),)


class TestLayout(Base):
    """A list of tests in the order a session ran them, stored once for every run that
    ran the same tests (`digest`, or in another order `set_digest`, finds it): the key to
    a run's `plain_blocks` rows."""

    __tablename__ = "test_layouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    # The same for the tests in any order: a run of the same tests in another order (xdist,
    # a random order) stores its block in this layout's order instead of a new layout.
    set_digest: Mapped[str] = mapped_column(String(64))
    n_tests: Mapped[int] = mapped_column(Integer)
    # The test ids as a JSON list, in block order.
    tests: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_test_layouts_digest", "digest", unique=True),
        Index("ix_test_layouts_set_digest", "set_digest"),
    )


class LayoutTest(Base):
    """Where a test sits in a layout: how a query by test finds its values in the blocks
    (by the test index), and a query by run its tests (by the primary key).

    Written once per new layout, not per run: a run whose tests are those of an earlier
    run adds no row here. No rowid: the primary key is the table.
    """

    __tablename__ = "layout_tests"

    # No foreign key: written with its layout, in one transaction; checking it would cost
    # every new layout a search of test_layouts per test.
    layout_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    test: Mapped[str] = mapped_column(Text)
    # The plain_blocks chunk holding the test (position // rows.CHUNK_TESTS), stored: a
    # query by test joins its chunks on it. PostgreSQL has statistics for a column, none
    # for the division: joined on that, it estimated a last-100 trend's 400 values at 8
    # and hashed a scan of every chunk (2.4 ms against 0.45 ms).
    chunk: Mapped[int] = mapped_column(Integer)

    # The chunk in the test index: a query by test reads the index alone.
    __table_args__ = (
        Index("ix_layout_tests_test", "test", "chunk"),
        {"sqlite_with_rowid": False},
    )


# PostgreSQL keeps a plain_blocks row whole up to a page, instead of moving its arrays out
# of it over 2 kB: a chunk's row is 3.2 kB (see `rows.CHUNK_TESTS`). Migration 0007 sets
# the same.
PLAIN_BLOCKS_STORAGE = "ALTER TABLE plain_blocks SET (toast_tuple_target = 8160)"

# A plain_blocks chunk that holds a failed or errored test, as SQL: the condition of the
# index of such chunks, and `blocks.any_failed` word for word (SQLite uses a partial index
# only for a query that states its condition).
FAILED_CHUNK = " OR ".join(
    f"outcomes LIKE '%{OUTCOME_LETTERS[outcome]}%'" for outcome in ("failed", "error")
)


class PlainBlock(Base):
    """A chunk of a run's plain tests' built-in readings: the tests of layout `layout_id`
    from position ``chunk * rows.CHUNK_TESTS``, at most that many, one block per
    reading (see `ReadingBlock`) and one outcome letter per test (`rows.OUTCOME_LETTERS`).

    Plain tests are most of a suite: stored as a few rows per run, their readings cost a
    session no b-tree insert per test (`test_results` and `results` rows cost one per
    index each). Readers see each (run, test) as a `test_results` row
    (`blocks.block_rows`). The test at layout position p has the id
    ``first_id + p * stride`` (the run's first id, the same in each of its chunks), as its
    `test_results` row would have (the stride counts its readings in the session's list).

    Chunks, not one block per run: a query by test reads one value of each run, and a
    block that does not fit its row's page is read whole (SQLite follows its overflow
    pages, PostgreSQL detoasts it). A chunk of `rows.CHUNK_TESTS` tests keeps the row
    inline on both. The (layout_id, chunk, run_id) index is the by-test path: a test's
    layout position gives its chunk.
    """

    __tablename__ = "plain_blocks"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    layout_id: Mapped[int] = mapped_column(ForeignKey("test_layouts.id"))
    first_id: Mapped[int] = mapped_column(BigInteger)
    stride: Mapped[int] = mapped_column(Integer)
    outcomes: Mapped[str] = mapped_column(Text)
    duration: Mapped[Any] = mapped_column(ReadingBlock, nullable=True)
    cpu_time: Mapped[Any] = mapped_column(ReadingBlock, nullable=True)
    rss_peak_mb: Mapped[Any] = mapped_column(ReadingBlock, nullable=True)

    __table_args__ = (
        Index("ix_plain_blocks_layout_chunk_run", "layout_id", "chunk", "run_id"),
        # The few chunks with a failure: a run's failed tests without reading its chunks
        # (20 runs of 4 000 tests: 0.02 ms against 0.66 ms on SQLite).
        Index(
            "ix_plain_blocks_failed",
            "run_id",
            sqlite_where=text(FAILED_CHUNK),
            postgresql_where=text(FAILED_CHUNK),
        ),
    )


class BaselineSnapshot(Base):
    """One applied baselines update: what was written, when, by whom and why."""

    __tablename__ = "baseline_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime]
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    who: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    entries: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_baseline_snapshots_platform_created", "platform_id", "created_at"),)


class RunLabel(Base):
    """One label of a run (`--perf-label model=openai`): the dimension runs are filtered
    and kept apart by. Indexed by (key, value) for "the runs with model=openai"."""

    __tablename__ = "run_labels"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))

    __table_args__ = (Index("ix_run_labels_key_value", "key", "value"),)


class ExperimentRow(Base):
    """An experiment (a parameter sweep, an optimisation): the seed experiment tracker's
    table. Names need not be unique; `History.experiment(name)` opens the newest."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_experiments_name", "name"),)


class TrialRow(Base):
    """One trial of an experiment: its params, metrics and validation outcome; `run_id`
    links a trial that was a pytest run (`--perf-experiment`)."""

    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    trial_number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    validation_passed: Mapped[bool | None] = mapped_column(Boolean)
    validation_violations: Mapped[int | None] = mapped_column(Integer)
    validation_metrics: Mapped[dict[str, Any] | None]
    extra: Mapped[dict[str, Any] | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_trials_experiment_number", "experiment_id", "trial_number", unique=True),
        Index("ix_trials_run_id", "run_id"),
    )


# Core tables: the store writes and queries through these (bulk inserts, no ORM objects).
platforms = cast(Table, Platform.__table__)
runs = cast(Table, Run.__table__)
results = cast(Table, Result.__table__)
test_results = cast(Table, TestResult.__table__)
test_layouts = cast(Table, TestLayout.__table__)
layout_tests = cast(Table, LayoutTest.__table__)
plain_blocks = cast(Table, PlainBlock.__table__)
baseline_snapshots = cast(Table, BaselineSnapshot.__table__)
event.listen(
    plain_blocks,
    "after_create",
    DDL(PLAIN_BLOCKS_STORAGE).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
)
experiments = cast(Table, ExperimentRow.__table__)
trials = cast(Table, TrialRow.__table__)
run_labels = cast(Table, RunLabel.__table__)
