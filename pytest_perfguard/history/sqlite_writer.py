"""Saving a session into a SQLite history with the standard library's sqlite3 alone.

A recording session writes once, at its end: one run and its rows. Loading SQLAlchemy, its
dialect and our models costs a session more (about 0.35 s here) than the write itself, so
a SQLite history that is fresh or already at the head revision is written here, through
sqlite3, with the same statements, values and pragmas as the SQLAlchemy store
(`tests/test_sqlite_writer.py` compares the two byte for byte). Anything else (an older
schema to migrate, a newer one, a file that is not a history) is left to the store, which
migrates or explains: :func:`save_session` then returns None having written nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_perfguard.history.errors import HistoryError
from pytest_perfguard.history.migrations import HEAD_REVISION
from pytest_perfguard.history.rows import PlainBlock, insert_sqlite_rows, session_rows
from pytest_perfguard.history.urls import mask_secrets, sqlite_path
from pytest_perfguard.results import Measurement, PlainRuns, RunInfo

BUSY_TIMEOUT_S = 30.0
# As the store: "database is locked" can still reach us past busy_timeout.
LOCK_RETRIES = 5
VERSION_TABLE = "alembic_version"

# The head schema as SQLAlchemy's create_all builds it from `models` on SQLite, then stamped
# as `alembic stamp` does (`schema._create_head_schema`); a test keeps the two identical.
HEAD_SCHEMA: tuple[str, ...] = (
    'CREATE TABLE platforms (\n\tid INTEGER NOT NULL, \n\t"key" VARCHAR(200) NOT NULL, \n\t'
    "fingerprint JSON NOT NULL, \n\tcreated_at DATETIME NOT NULL, \n\t"
    'CONSTRAINT pk_platforms PRIMARY KEY (id), \n\tCONSTRAINT uq_platforms_key UNIQUE ("key")\n)',
    "CREATE TABLE test_results (\n\tid INTEGER NOT NULL, \n\trun_id INTEGER NOT NULL, \n\t"
    "test TEXT NOT NULL, \n\tmarked BOOLEAN NOT NULL, \n\toutcome VARCHAR(20) NOT NULL, \n\t"
    "duration FLOAT, \n\tcpu_time FLOAT, \n\trss_peak_mb FLOAT, \n\t"
    "CONSTRAINT pk_test_results PRIMARY KEY (id)\n)",
    "CREATE INDEX ix_test_results_test_run ON test_results (test, run_id)",
    "CREATE TABLE test_layouts (\n\tid INTEGER NOT NULL, \n\tdigest VARCHAR(64) NOT NULL, \n\t"
    "set_digest VARCHAR(64) NOT NULL, \n\tn_tests INTEGER NOT NULL, \n\ttests TEXT NOT NULL, "
    "\n\tCONSTRAINT pk_test_layouts PRIMARY KEY (id)\n)",
    "CREATE UNIQUE INDEX ix_test_layouts_digest ON test_layouts (digest)",
    "CREATE INDEX ix_test_layouts_set_digest ON test_layouts (set_digest)",
    "CREATE TABLE layout_tests (\n\tlayout_id INTEGER NOT NULL, \n\tposition INTEGER NOT NULL, "
    "\n\ttest TEXT NOT NULL, \n\tchunk INTEGER NOT NULL, \n\t"
    "CONSTRAINT pk_layout_tests PRIMARY KEY (layout_id, position)\n)\n WITHOUT ROWID\n\n",
    "CREATE INDEX ix_layout_tests_test ON layout_tests (test, chunk)",
    "CREATE TABLE experiments (\n\tid INTEGER NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\t"
    "template VARCHAR(255) NOT NULL, \n\tmode VARCHAR(100) NOT NULL, \n\t"
    "config JSON NOT NULL, \n\tsummary JSON, \n\tcreated_at DATETIME NOT NULL, \n\t"
    "CONSTRAINT pk_experiments PRIMARY KEY (id)\n)",
    "CREATE INDEX ix_experiments_name ON experiments (name)",
    "CREATE TABLE runs (\n\tid INTEGER NOT NULL, \n\tstarted_at DATETIME NOT NULL, \n\t"
    "finished_at DATETIME, \n\tplatform_id INTEGER NOT NULL, \n\tgit_commit VARCHAR(64), \n\t"
    "git_branch VARCHAR(255), \n\tgit_dirty BOOLEAN, \n\tpython_version VARCHAR(50) NOT NULL, "
    "\n\trun_type VARCHAR(20) NOT NULL, \n\ttriggered_by VARCHAR(20) NOT NULL, \n\t"
    "host VARCHAR(255) NOT NULL, \n\targs JSON NOT NULL, \n\toutcome VARCHAR(20) NOT NULL, "
    "\n\tnotes TEXT NOT NULL, \n\tsystem_info JSON NOT NULL, \n\tsource_key VARCHAR(255), "
    "\n\ttest_type VARCHAR(50), \n\tCONSTRAINT pk_runs PRIMARY KEY (id), \n\t"
    "CONSTRAINT fk_runs_platform_id_platforms FOREIGN KEY(platform_id) "
    "REFERENCES platforms (id)\n)",
    "CREATE INDEX ix_runs_platform_started ON runs (platform_id, started_at)",
    "CREATE INDEX ix_runs_test_type ON runs (test_type)",
    "CREATE INDEX ix_runs_started_at ON runs (started_at)",
    "CREATE UNIQUE INDEX ix_runs_source_key ON runs (source_key)",
    "CREATE TABLE baseline_snapshots (\n\tid INTEGER NOT NULL, \n\t"
    "created_at DATETIME NOT NULL, \n\tplatform_id INTEGER NOT NULL, \n\t"
    "git_commit VARCHAR(64), \n\twho VARCHAR(255) NOT NULL, \n\treason TEXT NOT NULL, \n\t"
    "entries JSON NOT NULL, \n\tCONSTRAINT pk_baseline_snapshots PRIMARY KEY (id), \n\t"
    "CONSTRAINT fk_baseline_snapshots_platform_id_platforms FOREIGN KEY(platform_id) "
    "REFERENCES platforms (id)\n)",
    "CREATE INDEX ix_baseline_snapshots_platform_created "
    "ON baseline_snapshots (platform_id, created_at)",
    "CREATE TABLE results (\n\tid INTEGER NOT NULL, \n\trun_id INTEGER NOT NULL, \n\t"
    "test TEXT NOT NULL, \n\tmetric VARCHAR(255) NOT NULL, \n\tvalue FLOAT NOT NULL, \n\t"
    "unit VARCHAR(50) NOT NULL, \n\tdirection VARCHAR(10) NOT NULL, \n\t"
    "kind VARCHAR(20) NOT NULL, \n\tmarked BOOLEAN NOT NULL, \n\toutcome VARCHAR(20) NOT NULL, "
    "\n\tthreshold FLOAT, \n\tsamples JSON, \n\terror TEXT, \n\t"
    "CONSTRAINT pk_results PRIMARY KEY (id), \n\tCONSTRAINT fk_results_run_id_runs "
    "FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE\n)",
    "CREATE INDEX ix_results_run_id ON results (run_id)",
    "CREATE INDEX ix_results_test_metric_run ON results (test, metric, run_id)",
    "CREATE TABLE plain_blocks (\n\trun_id INTEGER NOT NULL, \n\tchunk INTEGER NOT NULL, "
    "\n\tlayout_id INTEGER NOT NULL, \n\tfirst_id BIGINT NOT NULL, \n\tstride INTEGER NOT NULL, "
    "\n\toutcomes TEXT NOT NULL, \n\tduration BLOB, \n\tcpu_time BLOB, \n\trss_peak_mb BLOB, "
    "\n\tCONSTRAINT pk_plain_blocks PRIMARY KEY (run_id, chunk), \n\t"
    "CONSTRAINT fk_plain_blocks_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) "
    "ON DELETE CASCADE, \n\tCONSTRAINT fk_plain_blocks_layout_id_test_layouts "
    "FOREIGN KEY(layout_id) REFERENCES test_layouts (id)\n)",
    "CREATE INDEX ix_plain_blocks_layout_chunk_run ON plain_blocks (layout_id, chunk, run_id)",
    "CREATE INDEX ix_plain_blocks_failed ON plain_blocks (run_id) "
    "WHERE outcomes LIKE '%f%' OR outcomes LIKE '%e%'",
    'CREATE TABLE run_labels (\n\trun_id INTEGER NOT NULL, \n\t"key" VARCHAR(100) NOT NULL, '
    '\n\tvalue VARCHAR(255) NOT NULL, \n\tCONSTRAINT pk_run_labels PRIMARY KEY (run_id, "key"), '
    "\n\tCONSTRAINT fk_run_labels_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) "
    "ON DELETE CASCADE\n)",
    'CREATE INDEX ix_run_labels_key_value ON run_labels ("key", value)',
    "CREATE TABLE trials (\n\tid INTEGER NOT NULL, \n\texperiment_id INTEGER NOT NULL, \n\t"
    "trial_number INTEGER NOT NULL, \n\tparams JSON NOT NULL, \n\tmetrics JSON NOT NULL, \n\t"
    "validation_passed BOOLEAN, \n\tvalidation_violations INTEGER, \n\t"
    "validation_metrics JSON, \n\textra JSON, \n\trun_id INTEGER, \n\t"
    "created_at DATETIME NOT NULL, \n\tCONSTRAINT pk_trials PRIMARY KEY (id), \n\t"
    "CONSTRAINT fk_trials_experiment_id_experiments FOREIGN KEY(experiment_id) "
    "REFERENCES experiments (id) ON DELETE CASCADE, \n\tCONSTRAINT fk_trials_run_id_runs "
    "FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE SET NULL\n)",
    "CREATE UNIQUE INDEX ix_trials_experiment_number ON trials (experiment_id, trial_number)",
    "CREATE INDEX ix_trials_run_id ON trials (run_id)",
    f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
    f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))",
)
_OWN_TABLES = frozenset({"platforms", "runs", "results", "baseline_snapshots"})
_RUN_COLUMNS = (
    "started_at", "finished_at", "platform_id", "git_commit", "git_branch", "git_dirty",
    "python_version", "run_type", "triggered_by", "host", "args", "outcome", "notes",
    "system_info", "source_key", "test_type",
)  # fmt: skip
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})"
)


class _NotHere(Exception):
    """The database is not one this module writes (see the module's docstring)."""


def save_session(
    url: str,
    run: RunInfo,
    measurements: Sequence[Measurement],
    *,
    plain: PlainRuns | None = None,
    source_key: str | None = None,
    create: bool = True,
) -> int | None:
    """Store `run` and its measurements in one transaction; the run id, or None when the
    database needs the SQLAlchemy store (not a SQLite file, not fresh and not at the head
    revision: nothing was written then).

    Raises HistoryError, with the database named, for what SQLite refuses, and when
    `source_key` (see `History.record_run`) is already stored. Without `create`, a missing
    file is left to the store, which says so.
    """
    path = sqlite_path(url)
    if path is None or not (create or path.exists()):
        return None
    wide, narrow, block = session_rows(measurements, plain)
    ensure_parent(path)
    for attempt in range(LOCK_RETRIES + 1):
        try:
            return _write(path, run, wide, narrow, block, source_key)
        except _NotHere:
            return None
        except sqlite3.IntegrityError as exc:
            if source_key is not None and _has_source_key(path, source_key):
                already = f"a run with source key {source_key!r} is already stored"
                raise HistoryError(already) from exc
            raise HistoryError(_message(url, exc)) from exc
        except sqlite3.OperationalError as exc:
            if attempt == LOCK_RETRIES or not is_lock_error(exc):
                raise HistoryError(_message(url, exc)) from exc
            time.sleep(0.05 * 2**attempt)
        except sqlite3.Error as exc:
            raise HistoryError(_message(url, exc)) from exc
        except (TypeError, ValueError) as exc:  # json.dumps of a run's args or system info
            raise HistoryError(f"history database {mask_secrets(url)}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def ensure_parent(path: Path) -> None:
    """Make the directories a new history file goes in; one line if that cannot be done."""
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" when a regular file stands where a directory goes.
        reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise HistoryError(
            f"history database {path} cannot be created: {exc.filename}: {reason}"
        ) from exc


def _write(
    path: Path,
    run: RunInfo,
    wide: list[Sequence[Any]],
    narrow: list[tuple[Any, ...]],
    block: PlainBlock | None,
    source_key: str | None,
) -> int:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        cursor = conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA cache_size = -32768")
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError:
            pass  # read-only: the write below says so
        # The write lock first: the schema read below cannot change until COMMIT.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            _check_schema(cursor)
            run_id = _insert_run(cursor, run, source_key)
            insert_sqlite_rows(cursor, run_id, wide, narrow, block)
        except BaseException:
            conn.rollback()
            raise
        cursor.execute("COMMIT")
        return run_id
    finally:
        conn.close()


def _check_schema(cursor: sqlite3.Cursor) -> None:
    """Create the head schema in a new database; raise _NotHere unless it is at the head."""
    listed = cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {row[0] for row in listed}
    if VERSION_TABLE not in tables:
        if _OWN_TABLES & tables:
            raise _NotHere  # the store explains what this file is
        for statement in HEAD_SCHEMA:
            cursor.execute(statement)
        cursor.execute(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (?)", (HEAD_REVISION,))
        return
    versions = [row[0] for row in cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
    if versions != [HEAD_REVISION]:
        raise _NotHere  # older: migrated by the store; newer or several: refused by it


def _insert_run(cursor: sqlite3.Cursor, run: RunInfo, source_key: str | None) -> int:
    platform_id = _platform_id(cursor, run.platform.key, run.platform.fingerprint)
    cursor.execute(
        _INSERT_RUN,
        (
            _timestamp(run.started_at),
            _timestamp(run.finished_at),
            platform_id,
            run.git_commit,
            run.git_branch,
            None if run.git_dirty is None else int(run.git_dirty),
            run.python_version,
            run.run_type,
            run.triggered_by,
            run.host,
            # Every way into the history (plugin, API, importers) masks these.
            json.dumps([mask_secrets(str(arg)) for arg in run.args]),
            run.outcome,
            mask_secrets(run.notes) if run.notes else run.notes,
            json.dumps(dict(run.system_info)),
            source_key,
            run.test_type,
        ),
    )
    run_id = cursor.lastrowid
    assert run_id is not None  # a single-row INSERT always sets it
    if run.labels:
        cursor.executemany(
            'INSERT INTO run_labels (run_id, "key", value) VALUES (?, ?, ?)',
            [(run_id, key, value) for key, value in run.labels.items()],
        )
    return run_id


def _platform_id(cursor: sqlite3.Cursor, key: str, fingerprint: dict[str, Any]) -> int:
    found = cursor.execute(
        'SELECT id, fingerprint FROM platforms WHERE platforms."key" = ?', (key,)
    ).fetchone()
    if found is None:
        cursor.execute(
            'INSERT INTO platforms ("key", fingerprint, created_at) VALUES (?, ?, ?)',
            (key, json.dumps(dict(fingerprint)), _timestamp(datetime.now(timezone.utc))),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid
    platform_id, stored = found
    if fingerprint and not json.loads(stored):
        cursor.execute(
            "UPDATE platforms SET fingerprint = ? WHERE platforms.id = ?",
            (json.dumps(dict(fingerprint)), platform_id),
        )
    return int(platform_id)


def _has_source_key(path: Path, source_key: str) -> bool:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        found = conn.execute("SELECT 1 FROM runs WHERE source_key = ?", (source_key,)).fetchone()
    finally:
        conn.close()
    return found is not None


def _timestamp(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy's `UTCDateTime` stores it on SQLite: naive UTC, microseconds
    always written (a naive value is taken as local time)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def is_lock_error(exc: BaseException | None) -> bool:
    """Whether a driver error is SQLite's "database is locked" / busy, worth a retry."""
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _message(url: str, exc: sqlite3.Error) -> str:
    """As the store's `engine.readable_errors` says it."""
    text = str(exc).strip()
    reason = text.splitlines()[0].strip() if text else type(exc).__name__
    return f"history database {mask_secrets(url)}: {reason}"
