"""End to end: `perf.measure` steps inside pytest — their records (start, end, error, data),
the terminal's step breakdown, and step gating (`step:<name>` baselines, `step_threshold=`).

Speeds are set by the clock (sleeps), never by CPU work: a slowed step sleeps 3x as long as
its baseline, and the thresholds leave a step that is not slowed 100 % of room for a busy
machine's oversleeping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.measure import PerfRecorder
from pytest_perfguard.results import Measurement

pytest_plugins = ["pytester"]

PLATFORM = "steps_box"
PIPELINE = "test_suite.py::test_pipeline"
COMMON = ("--perf-platform", PLATFORM, "--perf-threshold", "1.0", "-p", "no:cacheprovider")

SUITE = """
import os, time, pytest

def sleep_ms(name, default):
    time.sleep(float(os.environ.get(name, default)) / 1000)

@pytest.mark.perf(metric="pipeline"{marker})
def test_pipeline(perf):
    with perf.measure("embed", model="mini") as step:
        sleep_ms("EMBED_MS", 50)
        step.data["tokens"] = 812
    with perf.measure("generate"):
        sleep_ms("GENERATE_MS", 120)

def test_unmarked_with_steps(perf):
    with perf.measure("unmarked step"):
        pass
"""


def write_suite(pytester: pytest.Pytester, marker: str = "") -> None:
    pytester.makepyfile(test_suite=SUITE.format(marker=f", {marker}" if marker else ""))


def write_baselines(pytester: pytest.Pytester, steps: dict[str, dict[str, float]]) -> Path:
    """Baselines of the pipeline's steps only (its own metric has none: it is `new`)."""
    entries = {f"step:{name}": {"unit": "s", **entry} for name, entry in steps.items()}
    path = pytester.path / "baselines.json"
    path.write_text(
        json.dumps({"schema": 1, "platforms": {PLATFORM: {"tests": {PIPELINE: entries}}}})
    )
    return path


def run(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return pytester.runpytest(*COMMON, *args)


def test_the_terminal_lists_the_step_breakdown_of_marked_tests(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    result = run(pytester, "--perf")
    assert result.ret == 0
    out = result.stdout.str()
    assert f"steps of {PIPELINE} (total " in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("embed ", "generate "))
    }
    assert set(rows) == {"embed", "generate"}
    shares = {name: float(cells[3].rstrip("%")) for name, cells in rows.items()}
    # The steps are the test: their shares of its total add up to nearly all of it.
    assert 90 <= shares["embed"] + shares["generate"] <= 100.5
    assert shares["generate"] > shares["embed"]
    assert re.search(r"slowest step: generate \(\d+(\.\d+)?% of total\)", out)
    # An unmarked test's steps are stored, not listed.
    assert "unmarked step" not in out and "test_unmarked_with_steps (total" not in out


def test_a_slowed_step_fails_the_session_and_the_reports_name_it(
    pytester: pytest.Pytester,
) -> None:
    write_suite(pytester)
    baselines = write_baselines(pytester, {"embed": {"value": 0.050}, "generate": {"value": 0.120}})
    args = ("--perf", "--perf-baselines", str(baselines))
    assert run(pytester, *args).ret == 0

    report = pytester.path / "report.md"
    result = run(pytester, *args, "--perf-report", str(report), EMBED_MS="150")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)  # the tests passed; the step's time failed the session
    out = result.stdout.str()
    assert "1 regressed step:" in out  # no metric regressed: the step alone
    assert re.search(r"test_pipeline\s+step:embed\s+50\.0 ms\s+1\d\d ms\s+\+\d+\.\d%\s+100%", out)
    assert re.search(r"regressed step: embed \(\+\d+\.\d%, threshold 100%\)", out)
    assert "regressed step: generate" not in out
    assert "slowest step: embed" in out  # 150 ms against generate's 120 ms

    markdown = report.read_text()
    assert "## ❌ 1 regressed step\n" in markdown
    assert "1 new · 1 regressed step" in markdown
    assert re.search(r"Regressed step: \*\*embed\*\*, 50\.0 ms → 1\d\d ms", markdown)
    assert "Slowest step: **embed**" in markdown
    assert "| embed ❌ regressed |" in markdown
    assert "| generate |" in markdown


def test_warn_only_and_gate_none_keep_a_slowed_step_from_failing(
    pytester: pytest.Pytester,
) -> None:
    write_suite(pytester)
    baselines = write_baselines(pytester, {"embed": {"value": 0.050}})
    args = ("--perf", "--perf-baselines", str(baselines))
    assert run(pytester, *args, "--perf-gate", "none", EMBED_MS="150").ret == 0
    result = run(pytester, *args, "--perf-warn-only", EMBED_MS="150")
    assert result.ret == 0
    assert "regressed step: embed" in result.stdout.str()


def test_the_markers_step_threshold_wins_over_the_baselines_entrys(
    pytester: pytest.Pytester,
) -> None:
    # The entry allows 5x; the step is 3x slower: only the marker's 100 % catches it.
    baselines = write_baselines(pytester, {"embed": {"value": 0.050, "threshold": 5.0}})
    args = ("--perf", "--perf-baselines", str(baselines))
    write_suite(pytester)
    unmarked = run(pytester, *args, EMBED_MS="150")
    assert unmarked.ret == 0
    assert "regressed step" not in unmarked.stdout.str()

    for marker in ("step_threshold=1.0", "step_threshold={'embed': 1.0}"):
        write_suite(pytester, marker)
        result = run(pytester, *args, EMBED_MS="150")
        assert result.ret == pytest.ExitCode.TESTS_FAILED, marker
        assert "regressed step: embed (" in result.stdout.str()
        assert "threshold 100%" in result.stdout.str()

    # A dict names its steps: one it leaves out keeps the entry's threshold.
    write_suite(pytester, "step_threshold={'generate': 0.5}")
    assert run(pytester, *args, EMBED_MS="150").ret == 0


@pytest.mark.parametrize(
    ("marker", "shown"),
    [
        ("step_threshold='fast'", "step_threshold='fast' is invalid"),
        ("step_threshold=-0.1", "step_threshold=-0.1 is invalid"),
        ("step_threshold=True", "step_threshold=True is invalid"),
        ("step_threshold={}", "step_threshold={} is invalid"),
        ("step_threshold={'embed': -1}", "step_threshold={'embed': -1} is invalid"),
        ("step_threshold={'': 0.1}", "step_threshold={'': 0.1} is invalid"),
        ("step_threshold=[0.1]", "step_threshold=[0.1] is invalid"),
    ],
)
def test_a_bad_step_threshold_is_a_collection_error(
    pytester: pytest.Pytester, marker: str, shown: str
) -> None:
    write_suite(pytester, marker)
    result = run(pytester, "--perf")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "ERROR collecting" in out
    line = next(line for line in out.splitlines() if shown in line)
    assert "test_suite.py::test_pipeline" in line and "number >= 0" in line
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_a_step_that_raises_stores_its_error_and_the_test_fails(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_raising="""
        import pytest

        @pytest.mark.perf
        def test_load(perf):
            with perf.measure("parse"):
                pass
            with perf.measure("load", source="s3") as step:
                step.data["rows"] = 3
                raise ValueError("bucket gone")
        """
    )
    result = pytester.runpytest(*COMMON, "--perf-record")
    result.assert_outcomes(failed=1)
    assert "ValueError: bucket gone" in result.stdout.str()  # pytest's own report of it
    out = result.stdout.str()
    assert "failed step: load: ValueError: bucket gone" in out

    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        detail = history.get_run(history.recent_runs(limit=1)[0].id)
    rows: dict[str, Measurement] = {m.metric: m for m in detail.measurements}
    assert rows["step:load"].error == "ValueError: bucket gone"
    assert rows["step:load"].kind == "step" and rows["step:load"].outcome == "failed"
    assert rows["step:parse"].error is None


def test_perf_measure_yields_the_step_record_of_track() -> None:
    from pytest_perfguard.tracking import Step

    recorder = PerfRecorder()
    with recorder.measure("embed", model="mini") as step:
        step.data["tokens"] = 812
    with pytest.raises(KeyError), recorder.measure("lookup"):
        raise KeyError("k")
    first, second = recorder.step_records
    assert isinstance(first, Step.__mro__[1])  # the same record type as track()'s steps
    assert first.name == "embed" and first.success and first.error is None
    assert first.data == {"model": "mini", "tokens": 812}
    assert first.end is not None and first.duration == first.end - first.start
    assert second.start >= first.end
    assert not second.success and second.error == "KeyError: 'k'"
    assert recorder.step_errors == {"lookup": "KeyError: 'k'"}
    record = first.to_dict(wall0=1000.0, origin=first.start)
    assert record["start_time"] == 1000.0 and record["step_name"] == "embed"
    assert record["additional_data"] == {"model": "mini", "tokens": 812}
    assert recorder.steps["embed"] == [pytest.approx(first.duration)]
