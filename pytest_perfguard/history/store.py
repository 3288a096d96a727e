"""`HistoryStore`: all the SQL of the history database, portable between SQLite and PostgreSQL.

Writes are one transaction each (a session's run and all its results together), the
results bulk-inserted with the driver's executemany (SQLite) or COPY (PostgreSQL). Reads
(functions of `queries` and `series`) get one short connection each. Callers go through
`pytest_perfguard.api.History`, which validates arguments and turns errors into
`HistoryError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    CursorResult,
    Dialect,
    Engine,
    Select,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from pytest_perfguard.history import schema
from pytest_perfguard.history.engine import WRITE_OPTION, create_history_engine, is_locked
from pytest_perfguard.history.errors import HistoryError
from pytest_perfguard.history.models import baseline_snapshots, platforms, results, runs
from pytest_perfguard.history.urls import sqlite_path
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

# "database is locked" can still reach us past busy_timeout (e.g. a checkpoint on a slow
# disk); the session write is retried a few times before giving up.
LOCK_RETRIES = 5
_STREAM_BATCH = 2000
_T = TypeVar("_T")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class HistoryStore:
    """The history database behind one URL; the engine is created on first use."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.create = create
        self._engine: Engine | None = None
        self.revision: str | None = None

    @property
    def engine(self) -> Engine:
        """The engine, after checking (and if needed migrating) the schema."""
        if self._engine is None:
            engine = create_history_engine(self.url, create=self.create)
            try:
                self.revision = schema.ensure_schema(engine, create=self.create)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def upgrade(self) -> tuple[str | None, str]:
        engine = self._engine or create_history_engine(self.url, create=self.create)
        try:
            before, after = schema.upgrade(engine)
        finally:
            if self._engine is None:
                engine.dispose()
        return before, after

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def _retrying(self, write: Callable[[], int]) -> int:
        for attempt in range(LOCK_RETRIES + 1):
            try:
                return write()
            except OperationalError as exc:
                if attempt == LOCK_RETRIES or not is_locked(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def save_session(
        self, run: RunInfo, measurements: Sequence[Measurement], *, source_key: str | None = None
    ) -> int:
        """Store a run and all its results in one transaction; returns the run id."""
        rows = [_result_row(m) for m in measurements]

        def write() -> int:
            with self._write() as conn:
                run_id = _insert_run(conn, run, source_key=source_key)
                if rows:
                    _insert_results(conn, run_id, rows)
                return run_id

        try:
            return self._retrying(write)
        except IntegrityError as exc:
            if source_key is not None and self.has_run_with_source_key(source_key):
                raise HistoryError(
                    f"a run with source key {source_key!r} is already stored"
                ) from exc
            raise

    def save_baseline_snapshot(
        self,
        platform: str,
        entries: Mapping[str, Any],
        *,
        reason: str,
        git_commit: str | None,
        who: str,
    ) -> int:
        def write() -> int:
            with self._write() as conn:
                platform_id = platform_id_for(conn, PlatformInfo(platform))
                inserted = conn.execute(
                    baseline_snapshots.insert().values(
                        created_at=_utcnow(),
                        platform_id=platform_id,
                        git_commit=git_commit,
                        who=who,
                        reason=reason,
                        entries=dict(entries),
                    )
                )
                return _new_id(inserted)

        return self._retrying(write)

    def rename_platform(self, old: str, new: str) -> int:
        """Give platform `old`'s runs and baseline snapshots to `new` (created, or merged
        into when it exists), in one transaction; returns how many runs moved."""

        def write() -> int:
            with self._write() as conn:
                source = find_platform(conn, old)
                if source is None:
                    return 0
                moved = int(
                    conn.scalar(select(func.count()).where(runs.c.platform_id == source.id)) or 0
                )
                target = find_platform(conn, new)
                if target is None:
                    conn.execute(
                        platforms.update().where(platforms.c.id == source.id).values(key=new)
                    )
                    return moved
                for table in (runs, baseline_snapshots):
                    conn.execute(
                        table.update()
                        .where(table.c.platform_id == source.id)
                        .values(platform_id=target.id)
                    )
                conn.execute(platforms.delete().where(platforms.c.id == source.id))
                return moved

        return self._retrying(write)

    def has_run_with_source_key(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.scalar(select(exists().where(runs.c.source_key == key))))

    def read(self, query: Callable[..., _T], *args: Any) -> _T:
        """Run a read function (of `queries` or `series`) on a fresh connection."""
        with self.engine.connect() as conn:
            return query(conn, *args)

    def iter_rows(self, query: Select[Any]) -> Iterator[Any]:
        """Rows of a large query, streamed: a server-side cursor where the backend has one."""
        with self.engine.connect() as conn:
            conn.execution_options(stream_results=True, yield_per=_STREAM_BATCH)
            yield from conn.execute(query)

    def db_size_bytes(self) -> int | None:
        path = sqlite_path(self.url)
        if path is None:
            return None
        return sum(
            p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        )

    def vacuum(self) -> None:
        engine = self.engine
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
            finally:
                raw.close()
        else:
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text("VACUUM ANALYZE"))


def platform_id_for(conn: Connection, info: PlatformInfo) -> int:
    """The platform's id, inserting it if new; safe against a concurrent insert."""
    row = find_platform(conn, info.key)
    if row is None:
        try:
            with conn.begin_nested():
                inserted = conn.execute(
                    platforms.insert().values(
                        key=info.key, fingerprint=dict(info.fingerprint), created_at=_utcnow()
                    )
                )
                return _new_id(inserted)
        except IntegrityError:
            # Another writer inserted the same key between our SELECT and INSERT; only the
            # SAVEPOINT is rolled back, so PostgreSQL's transaction stays usable.
            row = find_platform(conn, info.key)
            if row is None:
                raise
    if not row.fingerprint and info.fingerprint:
        conn.execute(
            platforms.update()
            .where(platforms.c.id == row.id)
            .values(fingerprint=dict(info.fingerprint))
        )
    return int(row.id)


def find_platform(conn: Connection, key: str) -> Any:
    """The (id, fingerprint) row of a platform, or None."""
    query = select(platforms.c.id, platforms.c.fingerprint).where(platforms.c.key == key)
    return conn.execute(query).first()


def _new_id(inserted: CursorResult[Any]) -> int:
    key = inserted.inserted_primary_key
    assert key is not None  # a single-row INSERT always has one
    return int(key[0])


def _insert_run(conn: Connection, run: RunInfo, *, source_key: str | None) -> int:
    platform_id = platform_id_for(conn, run.platform)
    inserted = conn.execute(
        runs.insert().values(
            started_at=run.started_at,
            finished_at=run.finished_at,
            platform_id=platform_id,
            git_commit=run.git_commit,
            git_branch=run.git_branch,
            git_dirty=run.git_dirty,
            python_version=run.python_version,
            run_type=run.run_type,
            triggered_by=run.triggered_by,
            host=run.host,
            args=list(run.args),
            outcome=run.outcome,
            notes=run.notes,
            system_info=dict(run.system_info),
            source_key=source_key,
            test_type=run.test_type,
        )
    )
    return _new_id(inserted)


# Columns of a results row as built by _result_row, run_id first.
_RESULT_COLUMNS = (
    "run_id", "test", "metric", "value", "unit", "direction", "kind", "marked", "outcome",
    "threshold", "samples", "error",
)  # fmt: skip
# Most rows (every plain test's) have no threshold, samples or error. On SQLite they are
# inserted without those columns, which then default to NULL: Python's sqlite3 binds a None
# only after a failed adapter lookup that raises and formats an AttributeError, three per
# row, a fifth of the whole insert. Rows are numbered first, so their ids keep the session's
# order across the two statements.
_SHORT_COLUMNS = ("id", *_RESULT_COLUMNS[:-3])
_LONG_COLUMNS = ("id", *_RESULT_COLUMNS)
_insert_sql_cache: dict[tuple[str, int], str] = {}


def _insert_sql(dialect: Dialect, columns: tuple[str, ...]) -> str:
    """The results INSERT of `columns`, in that order, compiled for `dialect` (qmark)."""
    cached = _insert_sql_cache.get((dialect.name, len(columns)))
    if cached is None:
        compiled = results.insert().compile(dialect=dialect, column_keys=list(columns))
        assert compiled.positiontup is not None and tuple(compiled.positiontup) == columns
        cached = _insert_sql_cache[(dialect.name, len(columns))] = str(compiled)
    return cached


def _insert_results(conn: Connection, run_id: int, rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert: PostgreSQL through COPY, SQLite through executemany.

    SQLAlchemy compiles the statement (so it stays portable) but the parameters are built
    here: its per-row processing (dicts, JSON and type processors) cost more than SQLite's
    own insert work, about 0.15 s of 0.3 s for a 10 000-result session.
    """
    if conn.dialect.driver == "psycopg":
        _copy_results(conn, run_id, rows)
        return
    if conn.dialect.name != "sqlite":
        conn.execute(
            results.insert(),
            [dict(zip(_RESULT_COLUMNS, (run_id, *row), strict=True)) for row in rows],
        )
        return
    # This transaction already inserted the run, so it holds SQLite's write lock: no other
    # session can take ids between this read and the inserts.
    next_id = (conn.exec_driver_sql("SELECT max(id) FROM results").scalar() or 0) + 1
    short: list[tuple[Any, ...]] = []
    full: list[tuple[Any, ...]] = []
    for row_id, row in enumerate(rows, next_id):
        if row[-1] is None and row[-2] is None and row[-3] is None:
            short.append((row_id, run_id, *row[:-3]))
        else:
            full.append((row_id, run_id, *row))
    if short:
        conn.exec_driver_sql(_insert_sql(conn.dialect, _SHORT_COLUMNS), short)
    if full:
        conn.exec_driver_sql(_insert_sql(conn.dialect, _LONG_COLUMNS), full)


def _copy_results(conn: Connection, run_id: int, rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY is 3x faster than executemany (0.15 s vs 0.45 s for 10 000 rows)."""
    columns = ", ".join(_RESULT_COLUMNS)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {results.name} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((run_id, *row))


def _result_row(m: Measurement) -> tuple[Any, ...]:
    """A results row without its run_id (see _RESULT_COLUMNS), JSON already encoded."""
    samples = None
    if m.samples:
        # repr() of a finite float is its JSON form; json.dumps is 3x slower here.
        samples = "[" + ", ".join([repr(float(s)) for s in m.samples]) + "]"
    if not math.isfinite(m.value) or (samples is not None and not _all_finite(m.samples)):
        raise HistoryError(f"{m.test} {m.metric}: cannot store a non-finite value ({m.value})")
    # `marked` as an int, not a bool: Python's sqlite3 binds exact ints directly but sends a
    # bool through its adapter lookup, which fails with a formatted AttributeError per row
    # (a third of the insert's cost). SQLAlchemy's Boolean reads 0/1 back as False/True.
    return (
        m.test, m.metric, float(m.value), m.unit, m.direction, m.kind, 1 if m.marked else 0,
        m.outcome, m.threshold, samples, m.error,
    )  # fmt: skip


def _all_finite(values: Sequence[float]) -> bool:
    return all(map(math.isfinite, values))
