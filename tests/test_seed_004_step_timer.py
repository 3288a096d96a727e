"""The seed step timer's README snippet (seed 004), changed only in its import line, runs on
`pytest_perfguard.performance_tracker` and writes the seed's report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pytest_perfguard import History

# Seed 004, "Basic Usage", verbatim but for the import line
# (was: from performance_tracking.performance_tracker import ...).
SEED_BASIC_USAGE = """\
from pytest_perfguard.performance_tracker import create_tracker, track_vision_analysis

# Create a tracker
tracker = create_tracker()
tracker.start_pipeline(fast_mode=False)

# Track individual steps
with track_vision_analysis(tracker):
    # Your vision analysis code here
    pass

# End tracking
tracker.end_pipeline(success=True, product_count=5)
tracker.save_performance_report()
tracker.print_summary()
"""


def run_script(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, env=env, timeout=60
    )


def test_the_seed_snippet_runs_and_writes_the_seed_report(tmp_path: Path) -> None:
    done = run_script(SEED_BASIC_USAGE, tmp_path)
    assert done.returncode == 0, done.stderr
    [report_path] = (tmp_path / "performance_tracking").glob("performance_report_*.json")
    report = json.loads(report_path.read_text())
    assert report_path.name == f"performance_report_{report['session_id']}.json"
    # The seed's keys, with its context (fast_mode, product_count) at the top level.
    assert report["fast_mode"] is False and report["product_count"] == 5
    assert report["success"] is True
    assert isinstance(report["total_duration"], float) and report["timestamp"]
    [step] = report["steps"]
    assert step["step_name"] == "Vision Analysis" and step["success"] is True
    assert step["error_message"] is None and step["additional_data"] == {}
    assert step["end_time"] >= step["start_time"] and step["duration"] >= 0
    # Live lines and the summary on stderr, nothing on stdout, no colour under NO_COLOR.
    assert done.stdout == ""
    assert "  > Vision Analysis" in done.stderr and "  ok Vision Analysis" in done.stderr
    assert "labels: fast_mode=False, product_count=5" in done.stderr
    assert "slowest step: Vision Analysis (" in done.stderr
    assert "\x1b[" not in done.stderr


def test_a_failing_step_in_the_seed_api_is_recorded_and_raised(tmp_path: Path) -> None:
    code = """\
from pytest_perfguard.performance_tracker import create_tracker, track_product_search

tracker = create_tracker(history="h.db", live=False)
tracker.start_pipeline(fast_mode=True)
try:
    with track_product_search(tracker, workers=8):
        raise TimeoutError("serpapi")
except TimeoutError:
    pass
tracker.end_pipeline(success=False, product_count=0)
print(tracker.save_performance_report())
print(tracker.get_step_durations())
"""
    done = run_script(code, tmp_path)
    assert done.returncode == 0, done.stderr
    report_path = Path(done.stdout.splitlines()[0])
    report = json.loads((tmp_path / report_path).read_text())
    assert report["success"] is False
    [step] = report["steps"]
    assert step["error_message"] == "TimeoutError: serpapi"
    assert step["additional_data"] == {"workers": 8}
    assert "'Product Search':" in done.stdout
    with History(tmp_path / "h.db") as history:
        [run] = history.recent_runs()
        detail = history.get_run(run.id)
    assert detail.outcome == "failed"
    assert detail.labels == {"fast_mode": "True", "product_count": "0"}
    # Only the labels the pipeline started with form its label set.
    assert detail.platform.endswith("[fast_mode=True]")
    assert {m.metric for m in detail.measurements} == {"duration", "step:Product Search"}
