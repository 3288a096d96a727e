"""Crash safety: a writer killed with SIGKILL, and a session interrupted with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

pytest_plugins = ["pytester"]

# Writes one big session. Just before the COMMIT of the session's transaction (run row and
# every result written, nothing committed) the writer says so and blocks there, and the
# parent kills it with SIGKILL: no sleep, the kill always lands inside the write. On
# PostgreSQL the store writes and SQLAlchemy signals its commit; a SQLite file is written by
# the lean writer, whose row insert is the last step before its COMMIT.
WRITER = """
import sys
from datetime import datetime, timezone
from sqlalchemy import Engine, event
from pytest_perfguard.api import History
from pytest_perfguard.history import sqlite_writer
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

ROWS = 20_000
run = RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("crash_box"))
rows = [Measurement(f"t.py::test_{i}", "duration", 0.001 * (i % 7 + 1)) for i in range(ROWS)]

def block_if_written(written):
    if written > ROWS:  # the session's transaction, not schema setup
        print(f"committing {written}", flush=True)
        sys.stdin.readline()  # the parent kills us here

def committing(conn):
    block_if_written(conn.exec_driver_sql("SELECT count(*) FROM results").scalar())

insert_rows = sqlite_writer.insert_sqlite_rows

def inserting(cursor, *args):
    insert_rows(cursor, *args)
    block_if_written(cursor.execute("SELECT count(*) FROM results").fetchone()[0])

sqlite_writer.insert_sqlite_rows = inserting
with History(sys.argv[1]) as history:
    event.listen(Engine, "commit", committing)
    history.save_session(run, rows)
print("done", flush=True)
"""


def small_run() -> RunInfo:
    return RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("crash_box"))


def test_sigkill_while_writing_keeps_earlier_runs_and_no_partial_run(history_url: str) -> None:
    with History(history_url) as history:
        first = history.save_session(small_run(), [Measurement("t.py::test_a", "duration", 1.5)])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, history_url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    # Every result row is written inside the open transaction; only the commit is missing.
    assert writer.stdout.readline().strip() == "committing 20001"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    with History(history_url, create=False) as history:
        runs = history.recent_runs()
        assert [run.id for run in runs] == [first]
        (row,) = history.get_run(first).measurements
        assert (row.test, row.value) == ("t.py::test_a", 1.5)
        again = history.save_session(small_run(), [Measurement("t.py::test_b", "duration", 2.0)])
        assert {run.id for run in history.recent_runs()} == {first, again}
    if history_url.startswith("sqlite"):
        import sqlite3

        path = history_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_ctrl_c_stores_the_run_marked_interrupted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_first():
            pass

        def test_second():
            raise KeyboardInterrupt

        def test_never_reached():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--perf-record", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        (run,) = history.recent_runs()
        detail = history.get_run(run.id)
    assert run.outcome == "interrupted"
    tests = {m.test.split("::")[-1] for m in detail.measurements}
    assert "test_first" in tests and "test_never_reached" not in tests
