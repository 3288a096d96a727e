"""`HistoryStore`: all the SQL of the history database, portable between SQLite and PostgreSQL.

Writes are one transaction each (a session's run and all its results together), the
results laid out and bulk-inserted by `layout` (executemany on SQLite, COPY on
PostgreSQL). Reads (functions of `queries` and `series`) get one short connection each.
Callers go through `pytest_perfguard.api.History`, which validates arguments and turns
errors into `HistoryError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from pytest_perfguard.history import schema
from pytest_perfguard.history.engine import WRITE_OPTION, create_history_engine, is_locked
from pytest_perfguard.history.errors import HistoryError
from pytest_perfguard.history.layout import insert_rows
from pytest_perfguard.history.models import baseline_snapshots, platforms, run_labels, runs
from pytest_perfguard.history.rows import session_rows
from pytest_perfguard.history.urls import mask_secrets, sqlite_path
from pytest_perfguard.results import Measurement, PlainRuns, PlatformInfo, RunInfo

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
        self,
        run: RunInfo,
        measurements: Sequence[Measurement],
        *,
        plain: PlainRuns | None = None,
        source_key: str | None = None,
    ) -> int:
        """Store a run and all its results in one transaction; returns the run id."""
        wide, narrow, block = session_rows(measurements, plain)

        def write() -> int:
            with self._write() as conn:
                run_id = _insert_run(conn, run, source_key=source_key)
                insert_rows(conn, run_id, wide, narrow, block)
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
            result = query(conn, *args)
            # Ended by a commit: psycopg forgets its prepared statements at a rollback (the
            # pool's reset when a transaction is still open), so a read repeated on a
            # connection would be parsed and planned anew every time.
            conn.commit()
            return result

    def stream(self, query: Callable[..., Iterator[_T]], *args: Any) -> Iterator[_T]:
        """The rows a read function (e.g. `queries.export_rows`) yields, its queries
        streamed: server-side cursors where the backend has them."""
        with self.engine.connect() as conn:
            conn.execution_options(stream_results=True, yield_per=_STREAM_BATCH)
            yield from query(conn, *args)

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
            # Every way into the history (plugin, API, importers) passes here.
            args=[mask_secrets(str(arg)) for arg in run.args],
            outcome=run.outcome,
            notes=mask_secrets(run.notes) if run.notes else run.notes,
            system_info=dict(run.system_info),
            source_key=source_key,
            test_type=run.test_type,
        )
    )
    run_id = _new_id(inserted)
    if run.labels:
        conn.execute(
            run_labels.insert(),
            [{"run_id": run_id, "key": k, "value": v} for k, v in run.labels.items()],
        )
    return run_id
