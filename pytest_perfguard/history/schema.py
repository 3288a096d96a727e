"""Schema revision checks and migrations.

Opening an up-to-date database costs one small query and never imports alembic; neither
does creating a fresh one (the models' schema, stamped). Alembic is imported only when the
database is older than this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from pytest_perfguard.history.engine import WRITE_OPTION
from pytest_perfguard.history.errors import HistoryError, SchemaTooNewError
from pytest_perfguard.history.migrations import HEAD_REVISION, KNOWN_REVISIONS, SCRIPT_LOCATION
from pytest_perfguard.history.urls import mask_secrets

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"
OWN_TABLES = frozenset({"platforms", "runs", "results", "baseline_snapshots"})
# pg_advisory_xact_lock key ("perfguard" in ASCII, truncated): one migrator at a time.
_PG_LOCK_KEY = 0x706572666775


def read_revision(conn: Connection) -> str | None:
    """The database's schema revision; None when it has no perfguard schema yet.

    A database holding perfguard's tables without a version table, or several
    revisions (an alembic branch we never ship), is refused.
    """
    # One catalog query: on PostgreSQL each statement sees the latest commits, so asking
    # twice could catch a concurrent first migration half-way (tables, no version yet).
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in tables:
        found = OWN_TABLES & tables
        if found:
            raise HistoryError(
                f"history database {_masked(conn.engine)} has tables "
                f"{', '.join(sorted(found))} but no {VERSION_TABLE}: not a perfguard history"
            )
        return None
    versions = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if len(versions) > 1:
        raise SchemaTooNewError(_too_new_message(conn.engine, ", ".join(sorted(versions))))
    return versions[0] if versions else None


def check_known(engine: Engine, revision: str | None) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise SchemaTooNewError(_too_new_message(engine, revision))


def _too_new_message(engine: Engine, revision: str) -> str:
    return (
        f"history database {_masked(engine)} has "
        f"schema revision {revision!r}, unknown to this pytest-perfguard (newest known "
        f"{HEAD_REVISION!r}): upgrade pytest-perfguard; the database was not modified"
    )


def _masked(engine: Engine) -> str:
    return mask_secrets(engine.url.render_as_string(hide_password=False))


def ensure_schema(engine: Engine, *, create: bool) -> str:
    """Check the schema and bring it to the head revision; returns that revision.

    A fresh database gets the schema only when `create`; a newer or unknown revision
    raises SchemaTooNewError before anything is written.
    """
    with engine.connect() as conn:
        revision = read_revision(conn)
    check_known(engine, revision)
    if revision == HEAD_REVISION:
        return revision
    if revision is None and not create:
        raise HistoryError(f"history database {_masked(engine)} has no perfguard history yet")
    upgrade(engine)
    return HEAD_REVISION


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the head revision under a lock; returns (from, to)."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            # Read again under the lock: another process may have migrated meanwhile.
            revision = read_revision(conn)
            check_known(engine, revision)
            if revision is None:
                _create_head_schema(conn)
            elif revision != HEAD_REVISION:
                _run_alembic_upgrade(conn)
    return revision, HEAD_REVISION


def _create_head_schema(conn: Connection) -> None:
    """A fresh database gets the head schema straight from the models, stamped with the
    head revision: what running every migration builds (tests compare the two, and migrate
    such a database down to nothing), without importing alembic, which costs a first
    recording more than everything else it does once."""
    from pytest_perfguard.history.models import Base

    Base.metadata.create_all(conn)
    # Alembic's own version table, as `alembic stamp` creates it.
    conn.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    conn.execute(
        text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"),
        {"revision": HEAD_REVISION},
    )


def _run_alembic_upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")


def alembic_config(conn: Connection) -> Config:
    """An alembic Config running our migrations on `conn` (inside its transaction)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = conn
    return config
