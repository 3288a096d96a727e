"""`track()`: steps timed in application code, stored in the history like a test run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_perfguard import History, track
from pytest_perfguard.tracking import TrackedRun, TrackUsageError

SEED_REPORT_KEYS = {"session_id", "total_duration", "success", "timestamp", "steps"}
SEED_STEP_KEYS = [
    "step_name", "start_time", "end_time", "duration", "success", "error_message",
    "additional_data",
]  # fmt: skip


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def busy_until(deadline: float) -> None:
    while time.perf_counter() < deadline:
        pass


@pytest.fixture(autouse=True)
def fixed_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFGUARD_PLATFORM", "track-box")
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_steps_keep_start_end_duration_success_error_and_data() -> None:
    with track("pipe", live=False) as run:
        with run.step("load", style="modern") as step:
            step.data["tokens"] = 812
            busy_until(time.perf_counter() + 0.02)
        with pytest.raises(KeyError), run.step("search"):
            raise KeyError("sku")
    load, search = run.steps
    assert load.duration is not None and load.duration >= 0.02
    assert load.end_time is not None and load.end_time - load.start_time == pytest.approx(
        load.duration, abs=1e-6
    )
    assert load.success and load.error is None
    assert load.data == {"style": "modern", "tokens": 812}
    assert search.start_time >= load.end_time
    assert not search.success and search.error == "KeyError: 'sku'"
    # A step that failed makes the run failed, even when the block went on.
    assert run.success is False
    assert run.failed_steps() == [search]
    assert run.slowest_step() is load
    total = run.total_duration
    assert total is not None and total >= load.duration


def test_report_follows_the_seed_structure(tmp_path: Path) -> None:
    run = track("design", labels={"fast_mode": False, "model": "openai"}, live=False)
    with run, run.step("Vision Analysis", design_style="modern"):
        pass
    path = run.report(tmp_path / "out" / "report.json")
    report = json.loads(path.read_text())
    assert set(report) >= SEED_REPORT_KEYS
    # The run's context sits at the top level, as the seed's `fast_mode` did.
    assert report["fast_mode"] is False and report["model"] == "openai"
    assert report["labels"] == {"fast_mode": False, "model": "openai"}
    assert report["success"] is True and report["run_id"] is None
    [step] = report["steps"]
    assert list(step) == SEED_STEP_KEYS
    assert step["additional_data"] == {"design_style": "modern"}
    assert step["duration"] == pytest.approx(step["end_time"] - step["start_time"], abs=2e-6)
    assert not list(tmp_path.glob("out/.*.tmp"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_step_that_raises_is_stored_the_run_saved_and_the_exception_propagates(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    stream = io.StringIO()
    run = track("rag", history=url, labels={"model": "gemini"}, stream=stream)
    with pytest.raises(RuntimeError, match="model down"), run:
        with run.step("retrieve", k=5):
            pass
        with run.step("generate"):
            raise RuntimeError("model down")
    assert run.run_id is not None
    with History(url) as history:
        detail = history.get_run(run.run_id)
    # The label set is part of the platform the run is kept under (baselines apart).
    assert detail.outcome == "failed" and detail.platform == "track-box[model=gemini]"
    assert detail.notes == "track: rag"
    assert detail.labels == {"model": "gemini"}
    stored_steps = detail.system_info["track"]["steps"]
    assert [s["step_name"] for s in stored_steps] == ["retrieve", "generate"]
    assert stored_steps[1]["error_message"] == "RuntimeError: model down"
    assert stored_steps[0]["additional_data"] == {"k": 5}
    rows = {m.metric: m for m in detail.measurements}
    assert set(rows) == {"duration", "step:retrieve", "step:generate"}
    assert all(m.test == "rag" for m in rows.values())
    assert rows["step:generate"].kind == "step" and rows["step:generate"].outcome == "failed"
    assert rows["step:generate"].error == "RuntimeError: model down"
    assert rows["step:retrieve"].error is None and rows["step:retrieve"].outcome == "passed"
    assert rows["duration"].kind == "primary" and rows["duration"].outcome == "failed"
    assert rows["duration"].value >= rows["step:retrieve"].value + rows["step:generate"].value
    assert "FAILED generate" in stream.getvalue()


def test_saved_runs_are_read_back_like_test_runs(sqlite_url: str) -> None:
    for _ in range(2):
        with track("etl", history=sqlite_url, live=False) as run:
            with run.step("extract"):
                pass
            with run.step("extract"):  # a repeated step adds up
                pass
    with History(sqlite_url) as history:
        points = history.trend("etl", "step:extract")
        assert len(points) == 2
        detail = history.get_run(points[-1].run_id)
    [extract] = [m for m in detail.measurements if m.metric == "step:extract"]
    assert extract.value == pytest.approx(sum(s.duration or 0 for s in run.steps))
    assert detail.outcome == "passed"


def test_a_history_object_is_used_and_left_open(sqlite_url: str) -> None:
    with History(sqlite_url) as history:
        with track("a", history=history, live=False) as run, run.step("s"):
            pass
        assert run.run_id is not None
        assert history.get_run(run.run_id).measurements


def test_live_lines_go_to_stderr_and_live_false_silences_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with track("loud") as run, run.step("one"):
        pass
    err = capsys.readouterr()
    assert err.out == ""
    assert "  > one" in err.err and "  ok one (" in err.err and "'loud' passed in" in err.err
    with track("quiet", live=False) as run, run.step("one"):
        pass
    assert capsys.readouterr() == ("", "")
    # The summary is asked for, so it prints with live=False too.
    run.print_summary()
    summary = capsys.readouterr().err
    assert "slowest step: one (" in summary and "of total)" in summary


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing_run(stream: io.StringIO) -> TrackedRun:
        with pytest.raises(ValueError), track("c", stream=stream) as run, run.step("bad"):
            raise ValueError("x")
        run.print_summary(stream)
        return run

    terminal = FakeTerminal()
    failing_run(terminal)
    assert "\x1b[31m" in terminal.getvalue()
    plain = io.StringIO()
    failing_run(plain)
    assert "\x1b[" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = FakeTerminal()
    failing_run(terminal)
    assert "\x1b[" not in terminal.getvalue() and "FAILED bad" in terminal.getvalue()


def test_summary_names_shares_the_slowest_and_failed_steps() -> None:
    with track("s", live=False) as run:
        with run.step("fast"):
            pass
        with run.step("slow"):
            busy_until(time.perf_counter() + 0.02)
        with pytest.raises(OSError), run.step("io"):
            raise OSError("disk")
    lines = run.summary_lines()
    assert lines[0].startswith("perfguard: s - ") and ", failed" in lines[0]
    assert "slowest step: slow (" in "\n".join(lines)
    assert "failed step: io: OSError: disk" in lines
    slow_row = next(line for line in lines if line.startswith("slow "))
    assert "%" in slow_row and slow_row.rstrip().endswith("ok")


def test_misuse_is_one_clear_error() -> None:
    run = track("m", live=False)
    with pytest.raises(TrackUsageError, match="has not started"):
        run.step("x")
    with run:
        pass
    with pytest.raises(TrackUsageError, match="has ended"):
        run.step("x")
    with pytest.raises(TrackUsageError, match="already ended"):
        run.end()
    with pytest.raises(TrackUsageError, match="non-empty string"):
        track("  ")


def test_a_save_that_fails_does_not_hide_the_applications_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    stream = io.StringIO()
    run = track("x", history=blocked / "sub" / "h.db", stream=stream)
    with pytest.raises(ZeroDivisionError), run, run.step("d"):
        _ = 1 / 0
    assert "was not saved" in stream.getvalue()
    assert run.run_id is None


def test_a_save_that_fails_after_a_clean_run_raises(tmp_path: Path) -> None:
    from pytest_perfguard.api import HistoryError

    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(HistoryError), track("x", history=blocked / "h.db", live=False):
        pass


def test_import_is_light() -> None:
    """`from pytest_perfguard import track` in application code pulls in no SQLAlchemy."""
    code = (
        "import sys; from pytest_perfguard import track; "
        "assert callable(track) and track.__module__ == 'pytest_perfguard.tracking'; "
        "import pytest_perfguard.performance_tracker; "
        "from pytest_perfguard import track as again; assert again is track; "
        "print(sorted(m for m in ('sqlalchemy', 'pytest', 'pydantic') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
