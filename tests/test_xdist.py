"""xdist: workers measure, only the controller stores, compares and reports."""

from __future__ import annotations

import json

import pytest

from pytest_perfguard.api import History, RunDetail

pytest.importorskip("xdist")
pytest_plugins = ["pytester"]

SUITE = """
import os, time, pytest

@pytest.mark.perf(metric="latency", rounds=2)
@pytest.mark.parametrize("n", range(4))
def test_latency(n, perf):
    with perf.measure("sleep"):
        time.sleep(float(os.environ.get("SLEEP_MS", 10)) / 1000)
    perf.record("items", 10.0 + n, direction="higher")

def test_plain():
    pass
"""


def test_xdist_stores_one_run_with_the_same_rows_and_verdicts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=SUITE)
    common = ["--perf-record", "--perf-platform", "px", "-p", "no:cacheprovider"]
    serial = pytester.runpytest_subprocess(*common, "--perf-json", "serial.json")
    serial.assert_outcomes(passed=5)
    parallel = pytester.runpytest_subprocess(*common, "-n", "2", "--perf-json", "parallel.json")
    parallel.assert_outcomes(passed=5)
    db = pytester.path / ".perfguard" / "history.db"
    with History(db, create=False) as history:
        runs = history.recent_runs()
        assert len(runs) == 2
        serial_run = history.get_run(runs[1].id)
        parallel_run = history.get_run(runs[0].id)
    def rows(run: RunDetail) -> set[tuple[str, str, str, int]]:
        return {(m.test, m.metric, m.kind, len(m.samples)) for m in run.measurements}

    assert rows(serial_run) == rows(parallel_run)
    assert len(parallel_run.measurements) >= 5 * 3

    def verdicts(name: str) -> set[tuple[str, str, str]]:
        data = json.loads((pytester.path / name).read_text())
        return {(c["test"], c["metric"], c["verdict"]) for c in data["comparisons"]}

    assert verdicts("serial.json") == verdicts("parallel.json")


def test_plain_tests_share_one_layout_in_whatever_order_they_ran(
    pytester: pytest.Pytester,
) -> None:
    """Plain tests are stored as one block per run; runs under xdist (each in its own
    order) and a serial run with a report find the same layout, and read back whole."""
    import sqlalchemy as sa

    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(24))
        def test_plain(n):
            pass
        """
    )
    common = ["--perf-record", "--perf-platform", "px", "-p", "no:cacheprovider"]
    for extra in (["-n", "2"], ["-n", "2"], ["--perf-json", "report.json"]):
        pytester.runpytest_subprocess(*common, *extra).assert_outcomes(passed=24)
    db = pytester.path / ".perfguard" / "history.db"
    with History(db, create=False) as history:
        for run in history.recent_runs():
            stored = {(m.test, m.metric) for m in history.get_run(run.id).measurements}
            assert len(stored) == 24 * 3
        trend = history.trend("test_many.py::test_plain[7]", "duration")
        assert len(trend) == 3
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        count = {
            table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            for table in ("plain_blocks", "test_layouts", "layout_tests", "test_results")
        }
    engine.dispose()
    assert count == {"plain_blocks": 3, "test_layouts": 1, "layout_tests": 24, "test_results": 0}


def test_slowdown_is_caught_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=SUITE)
    common = ["--perf-platform", "px", "-p", "no:cacheprovider", "-n", "2"]
    for _ in range(2):
        pytester.runpytest_subprocess(*common, "--perf-record").assert_outcomes(passed=5)
    update = pytester.runpytest_subprocess(
        *common, "--perf-update-baselines", "--perf-min-runs", "2"
    )
    update.stdout.fnmatch_lines(["*baselines update*"])
    assert pytester.runpytest_subprocess(*common).ret == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLEEP_MS", "30")
        slow = pytester.runpytest_subprocess(*common, "--perf-report", "r.md")
    assert slow.ret == pytest.ExitCode.TESTS_FAILED
    slow.stdout.fnmatch_lines(["*4 performance regressions*"])
    assert "test_latency" in (pytester.path / "r.md").read_text()


def test_rows_travel_from_workers_as_json_lists_without_loss() -> None:
    from pytest_perfguard.results import Measurement

    rows = [
        Measurement("t.py::test_a[x|y]", "latency", 0.25, "s", "lower", "primary", True,
                    "passed", 0.1, (0.25, 0.3), None),
        Measurement("t.py::test_b", "step:load", float("nan"), "s", "lower", "step", False,
                    "failed", None, (), "boom"),
    ]  # fmt: skip
    back = [Measurement.from_row(r) for r in json.loads(json.dumps([m.to_row() for m in rows]))]
    assert back[0] == rows[0]
    assert back[1].error == "boom" and back[1].samples == () and back[1].value != back[1].value
