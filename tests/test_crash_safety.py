"""Crash safety: a writer killed with SIGKILL, and a session interrupted with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

pytest_plugins = ["pytester"]

# Writes one big session; the parent kills it with SIGKILL while the transaction is open.
WRITER = """
import sys
from datetime import datetime, timezone
from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

run = RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("crash_box"))
rows = [Measurement(f"t.py::test_{i}", "duration", 0.001 * (i % 7 + 1)) for i in range(400_000)]
with History(sys.argv[1]) as history:
    print("writing", flush=True)
    history.save_session(run, rows)
print("done", flush=True)
"""


def small_run() -> RunInfo:
    return RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("crash_box"))


def test_sigkill_while_writing_keeps_earlier_runs_and_no_partial_run(history_url: str) -> None:
    with History(history_url) as history:
        first = history.save_session(small_run(), [Measurement("t.py::test_a", "duration", 1.5)])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, history_url],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(0.5)  # well inside the 400 000-row transaction
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
