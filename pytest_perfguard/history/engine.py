"""Opening a history database: engine options per backend, and SQL errors made readable."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from pytest_perfguard.history.blocks import register_sqlite_functions
from pytest_perfguard.history.errors import HistoryError
from pytest_perfguard.history.sqlite_writer import ensure_parent, is_lock_error
from pytest_perfguard.history.urls import mask_secrets, sqlite_path

BUSY_TIMEOUT_S = 30.0
# Execution option asking for a write transaction: SQLite then takes the write lock at
# BEGIN, so a read-then-write transaction can never fail half-way with "locked".
WRITE_OPTION = "perfguard_write"


def create_history_engine(url: str, *, create: bool) -> Engine:
    """An engine for `url`; a missing SQLite file is created only when `create`."""
    masked = mask_secrets(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HistoryError(f"--perf-db: {masked!r} is not a valid database URL or path") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is None:
            kwargs["poolclass"] = StaticPool  # one in-memory database, not one per connection
        elif not path.exists():
            if not create:
                raise HistoryError(f"history database not found: {path}")
            ensure_parent(path)
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    try:
        engine = create_engine(url, **kwargs)
    except ImportError as exc:
        if backend == "postgresql":
            raise HistoryError(
                f"{masked}: PostgreSQL needs psycopg 3: install pytest-perfguard[postgres]"
            ) from exc
        raise HistoryError(f"{masked}: the database driver is not installed ({exc})") from exc
    except (ArgumentError, NoSuchModuleError) as exc:
        raise HistoryError(
            f"--perf-db: {masked!r} is not a supported database URL ({first_line(exc)})"
        ) from exc
    if backend == "sqlite":
        _install_sqlite_listeners(engine, wal=sqlite_path(url) is not None)
    return engine


def _install_sqlite_listeners(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: stop sqlite3 from deciding when transactions begin, and
        # emit BEGIN ourselves (below); this makes SAVEPOINT and transactional DDL work.
        dbapi_connection.isolation_level = None
        register_sqlite_functions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # 32 MiB page cache (allocated only as used): session writes touch many index pages.
            cursor.execute("PRAGMA cache_size = -32768")
            if wal:
                try:
                    cursor.execute("PRAGMA journal_mode = WAL")
                    # Safe with WAL (no corruption on power loss) and no fsync per commit.
                    cursor.execute("PRAGMA synchronous = NORMAL")
                except sqlite3.OperationalError:
                    pass  # read-only file or directory: reads still work
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def first_line(exc: BaseException) -> str:
    """The first line of an error's own message, without SQLAlchemy's SQL echo."""
    source: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        source = exc.orig
    text = str(source).strip()
    return text.splitlines()[0].strip() if text else type(source).__name__


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's "database is locked" / busy, worth a retry."""
    return isinstance(exc, DBAPIError) and is_lock_error(exc.orig)


@contextmanager
def readable_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into a one-line HistoryError naming the DB."""
    try:
        yield
    except HistoryError:
        raise
    except SQLAlchemyError as exc:
        raise HistoryError(f"history database {mask_secrets(url)}: {first_line(exc)}") from exc
    except Exception as exc:
        # Driver errors that bypass SQLAlchemy: sqlite3 (VACUUM), psycopg (COPY).
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
            raise HistoryError(f"history database {mask_secrets(url)}: {first_line(exc)}") from exc
        raise
