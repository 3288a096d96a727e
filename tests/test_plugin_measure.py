"""End to end: what the plugin measures and what lands in the history database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement
from pytest_perfguard.runlog import reads_cached_node_ids

pytest_plugins = ["pytester"]


def stored(pytester: pytest.Pytester) -> dict[str, dict[str, Measurement]]:
    """The latest run's measurements as {test name: {metric: measurement}}."""
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        runs = history.recent_runs(limit=1)
        detail = history.get_run(runs[0].id)
    by_test: dict[str, dict[str, Measurement]] = {}
    for row in detail.measurements:
        by_test.setdefault(row.test.split("::")[-1], {})[row.metric] = row
    return by_test


def test_inactive_plugin_writes_nothing_and_prints_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.perf(rounds=3)
        def test_marked(perf):
            perf.record("x", 1.0)
            assert perf.benchmark(lambda: 42) == 42

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert "perfguard:" not in result.stdout.str()
    assert not (pytester.path / ".perfguard").exists()


def test_record_stores_every_test_with_system_metrics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one():
            sum(range(1000))

        def test_two():
            pass
        """
    )
    result = pytester.runpytest("--perf-record")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["perfguard: *, platform *", "*stored run 1 (*results*"])
    rows = stored(pytester)
    assert set(rows) == {"test_one", "test_two"}
    one = rows["test_one"]
    assert {"duration", "cpu_time", "rss_peak_mb"} <= set(one)
    assert one["duration"].kind == "primary" and one["duration"].unit == "s"
    assert one["duration"].direction == "lower" and not one["duration"].marked
    assert one["cpu_time"].kind == "system" and one["rss_peak_mb"].unit == "MB"
    assert 0 < one["duration"].value < 5


def test_marker_rounds_warmup_and_samples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, time
        CALLS = []

        @pytest.fixture(scope="module")
        def setups():
            CALLS.append("setup")
            return CALLS

        @pytest.mark.perf(metric="query_latency", rounds=4, warmup=2, threshold=0.1, unit="s")
        def test_query(setups):
            setups.append("call")
            time.sleep(0.002)

        def test_counts():
            assert CALLS.count("setup") == 1
            assert CALLS.count("call") == 6
        """
    )
    # --perf-confirm 0: a recording session otherwise re-runs tests without a baseline.
    result = pytester.runpytest("--perf-record", "--perf-confirm", "0")
    result.assert_outcomes(passed=2)
    query = stored(pytester)["test_query"]
    latency = query["query_latency"]
    assert latency.kind == "primary" and latency.marked and latency.threshold == 0.1
    assert len(latency.samples) == 4
    assert all(s >= 0.002 for s in latency.samples)
    assert latency.value == min(latency.samples)  # the default --perf-estimator
    assert query["duration"].kind == "system"


def test_fixture_record_measure_benchmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.perf(metric="tokens_per_s", direction="higher", unit="tok/s")
        def test_custom(perf):
            perf.record("tokens_per_s", 1200.0, unit="tok/s", direction="higher")
            perf.record("mrr", 0.8, unit="", direction="higher", threshold=0.05)
            with perf.measure("retrieve"):
                time.sleep(0.003)
            with perf.measure("generate"):
                time.sleep(0.006)

        @pytest.mark.perf(metric="parse_time")
        def test_bench(perf):
            assert perf.benchmark(sorted, [3, 1, 2]) == [1, 2, 3]

        @pytest.mark.perf(metric="wall")
        def test_plain_duration():
            time.sleep(0.004)
        """
    )
    result = pytester.runpytest("--perf-record")
    result.assert_outcomes(passed=3)
    rows = stored(pytester)
    custom = rows["test_custom"]
    assert custom["tokens_per_s"].value == 1200.0
    assert custom["tokens_per_s"].direction == "higher"
    assert custom["tokens_per_s"].kind == "primary"
    assert custom["mrr"].kind == "custom" and custom["mrr"].threshold == 0.05
    assert custom["step:retrieve"].kind == "step"
    assert custom["step:generate"].value > custom["step:retrieve"].value >= 0.003
    bench = rows["test_bench"]["parse_time"]
    assert len(bench.samples) >= 5
    assert bench.value < 0.001  # one call of sorted() on three items, not the whole loop
    assert rows["test_plain_duration"]["wall"].value >= 0.004


def test_failed_test_is_stored_as_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_bad():
            assert False

        def test_skip():
            pytest.skip("not here")
        """
    )
    result = pytester.runpytest("--perf-record")
    result.assert_outcomes(failed=1, skipped=1)
    rows = stored(pytester)
    assert rows["test_bad"]["duration"].outcome == "failed"
    assert "test_skip" not in rows


def test_a_plain_test_run_twice_keeps_its_last_run(pytester: pytest.Pytester) -> None:
    # As a rerun plugin does: the protocol again for a test that failed; the stored run
    # is the last one, once, beside tests that ran once.
    pytester.makeconftest(
        """
        from _pytest.runner import runtestprotocol

        attempts = {}

        def pytest_runtest_protocol(item, nextitem):
            if item.name != "test_flaky":
                return None
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            for attempt in range(2):
                attempts[item.nodeid] = attempt
                reports = runtestprotocol(item, nextitem=nextitem, log=False)
            for report in reports:
                item.ihook.pytest_runtest_logreport(report=report)
            return True
        """
    )
    pytester.makepyfile(
        """
        import conftest

        def test_before():
            pass

        def test_flaky(request):
            assert conftest.attempts[request.node.nodeid] == 1

        def test_after():
            pass
        """
    )
    result = pytester.runpytest("--perf-record", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    rows = stored(pytester)
    assert set(rows) == {"test_before", "test_flaky", "test_after"}
    assert rows["test_flaky"]["duration"].outcome == "passed"
    assert {"cpu_time", "rss_peak_mb"} <= set(rows["test_flaky"])
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        detail = history.get_run(history.recent_runs(limit=1)[0].id)
    flaky = [r.metric for r in detail.measurements if r.test.endswith("::test_flaky")]
    assert sorted(flaky) == ["cpu_time", "duration", "rss_peak_mb"]
    assert sum(r.metric == "duration" for r in detail.measurements) == 3


def test_plain_runs_keep_no_object_per_test_for_the_garbage_collector(
    pytester: pytest.Pytester,
) -> None:
    """Objects the garbage collector tracks, counted from the first test's call to the
    last one's with the collector off (so nothing is untracked on the way): a recording
    session keeps as many as pytest alone, whatever the number of tests."""
    from pytest_perfguard.collectors import RusageCollector

    collector = RusageCollector.open()
    if collector is None:
        pytest.skip("no resettable peak RSS here: plain runs are kept as rows")
    collector.close()
    pytester.makeconftest(
        """
        import gc

        counts = []

        def pytest_configure(config):
            gc.collect()
            gc.disable()

        def pytest_runtest_teardown(item):
            counts.append(len(gc.get_objects()))

        def pytest_unconfigure(config):
            gc.enable()
            print("tracked growth:", counts[-1] - counts[0])
        """
    )
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('n', range(400))\n"
        "def test_param(n):\n    pass\n"
    )

    def growth(*args: str) -> int:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *args)
        result.assert_outcomes(passed=400)
        line = next(x for x in result.outlines if x.startswith("tracked growth:"))
        return int(line.split(":")[1])

    bare = growth("-p", "no:perfguard")
    recording = growth("--perf-record")
    assert recording - bare < 40, (bare, recording)  # 0.1 an object a test at most


def test_measured_plain_items_leave_no_object_for_the_garbage_collector(
    pytester: pytest.Pytester,
) -> None:
    """Plain items are measured through their class's `runtest` (`RunLog._measure_class`),
    so a recording session keeps no object per item for every full collection to walk:
    between 100 and 400 collected items its tracked objects grow as pytest's alone do
    (one more an item while a method binding each item was set on it, two when each
    item's attributes were also made a dict object by `vars(item)`)."""
    pytester.makeconftest(
        """
        import gc
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(session):
            gc.collect()
            print("tracked:", len(gc.get_objects()))
        """
    )
    for name, size in (("test_small", 100), ("test_large", 400)):
        pytester.makepyfile(
            **{name: f"import pytest\n\n@pytest.mark.parametrize('n', range({size}))\n"
               "def test_param(n):\n    pass\n"}
        )  # fmt: skip

    def tracked(path: str, *args: str) -> int:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--co", path, *args)
        line = next(x for x in result.outlines if x.startswith("tracked:"))
        return int(line.split(":")[1])

    def growth(*args: str) -> int:
        return tracked("test_large.py", *args) - tracked("test_small.py", *args)

    bare, recording = growth("-p", "no:perfguard"), growth("--perf-record")
    assert recording - bare <= 30, (bare, recording)  # 0.1 an object an item at most


def test_call_ends_that_store_nothing_or_a_failure(pytester: pytest.Pytester) -> None:
    """Every way a call phase can end: the measured call is closed each time, and the next
    test is measured as usual (the plain test after each one)."""
    pytester.makepyfile(
        """
        import pytest

        def test_xfail_inside():
            pytest.xfail("known")

        def test_after_xfail():
            pass

        @pytest.mark.xfail(reason="known bug")
        def test_xfail_marker():
            raise ValueError

        def test_after_xfail_marker():
            pass

        calls = []

        @pytest.mark.perf(rounds=3)
        def test_fails_in_second_round():
            calls.append(1)
            assert len(calls) < 2

        @pytest.mark.perf
        def test_marked_auto_rounds_skip():
            pytest.skip("not here")

        def test_last_skips():
            pytest.skip("the session ends with an open call")
        """
    )
    result = pytester.runpytest("--perf-record")
    result.assert_outcomes(passed=2, failed=1, skipped=2, xfailed=2)
    rows = stored(pytester)
    stored_tests = {"test_after_xfail", "test_after_xfail_marker", "test_fails_in_second_round"}
    assert set(rows) == stored_tests
    assert rows["test_after_xfail"]["duration"].outcome == "passed"
    assert {m.outcome for m in rows["test_fails_in_second_round"].values()} == {"failed"}
    assert rows["test_after_xfail"]["cpu_time"].value >= 0


def test_perf_asked_for_inside_a_plain_test(pytester: pytest.Pytester) -> None:
    """A test that is plain at collection and asks for `perf` in its body or its setup:
    what it records is stored, and the plain tests around it are stored as usual."""
    pytester.makepyfile(
        """
        import pytest

        def test_before():
            pass

        def test_asks_in_body(request):
            request.getfixturevalue("perf").record("tokens_per_s", 5.0, direction="higher")

        @pytest.fixture
        def uses_perf(request):
            return request.getfixturevalue("perf")

        def test_asks_in_setup(request):
            request.getfixturevalue("uses_perf").record("mrr", 0.5, direction="higher")

        def test_after():
            pass
        """
    )
    pytester.runpytest("--perf-record").assert_outcomes(passed=4)
    rows = stored(pytester)
    assert rows["test_asks_in_body"]["tokens_per_s"].value == 5.0
    assert rows["test_asks_in_setup"]["mrr"].value == 0.5
    assert rows["test_after"]["duration"].outcome == "passed"
    assert rows["test_before"]["cpu_time"].value >= 0
    assert "tokens_per_s" not in rows["test_after"]


def test_markers_on_classes_modules_and_params(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_module="""
        import pytest

        pytestmark = pytest.mark.perf(metric="module_metric")

        def test_in_marked_module():
            pass
        """,
        test_classes="""
        import pytest

        @pytest.mark.perf(metric="class_metric")
        class TestMarked:
            def test_in_class(self):
                pass

        @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.perf(metric="p2"))])
        def test_param(n):
            pass
        """,
    )
    pytester.runpytest("--perf-record").assert_outcomes(passed=4)
    rows = stored(pytester)
    assert rows["test_in_marked_module"]["module_metric"].marked
    assert rows["test_in_class"]["class_metric"].marked
    assert rows["test_param[2]"]["p2"].marked
    assert not rows["test_param[1]"]["duration"].marked


def test_rss_peak_sees_memory_freed_before_the_test_returns(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_alloc_and_free():
            block = bytearray(50 * 1024 * 1024)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            del block

        def test_nothing():
            pass

        def test_alloc_then_fail():
            block = bytearray(50 * 1024 * 1024)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            del block  # not in the failure's report: its repr would take more memory
            assert False

        def test_spin_then_fail():
            import time
            deadline = time.process_time() + 0.1
            while time.process_time() < deadline:
                pass
            assert False
        """
    )
    pytester.runpytest("--perf-record").assert_outcomes(passed=2, failed=2)
    rows = stored(pytester)
    assert 45 <= rows["test_alloc_and_free"]["rss_peak_mb"].value <= 70
    assert rows["test_nothing"]["rss_peak_mb"].value < 5
    # A failure ends its measurement elsewhere (the plugin's failure hook): the same readings.
    assert 45 <= rows["test_alloc_then_fail"]["rss_peak_mb"].value <= 70
    assert rows["test_alloc_then_fail"]["duration"].outcome == "failed"
    assert 0.1 <= rows["test_spin_then_fail"]["cpu_time"].value < 1.0
    assert rows["test_spin_then_fail"]["rss_peak_mb"].value < 5


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("direction='sideways'", "*test_x*direction='sideways' is invalid*'lower' or 'higher'*"),
        ("rounds=0", "*test_x*rounds=0 must be a whole number >= 1*"),
        ("color='red'", "*test_x*unknown argument 'color'*"),
        ("threshold=-1", "*test_x*threshold=-1 is invalid*"),
    ],
)
def test_bad_marker_arguments_are_collection_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.perf({marker})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("--perf")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting*", message])
    assert "Traceback" not in result.stdout.str()


def test_a_bad_marker_errors_its_own_test_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_good():
            pass

        @pytest.mark.perf(rounds=-1)
        def test_bad():
            pass
        """
    )
    result = pytester.runpytest("--perf", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting*", "*::test_bad: *rounds=-1 must be*"])
    assert pytester.runpytest("--perf").ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize(
    ("args", "env", "ini", "message"),
    [
        (["--perf-threshold", "abc"], {}, "", "*--perf-threshold*'abc' is not a number*"),
        (["--perf-threshold=-0.5"], {}, "", "*--perf-threshold*must be a finite number >= 0*"),
        (["--perf-gate", "some"], {}, "", "*--perf-gate*'some' is not one of marked, all, none*"),
        (["--perf"], {"PERFGUARD_THRESHOLD": "x"}, "", "*PERFGUARD_THRESHOLD*'x' is not a number*"),
        (["--perf"], {"REGRESSION_THRESHOLD": "-2"}, "", "*REGRESSION_THRESHOLD*>= 0*"),
        (["--perf"], {}, "perf_gate = everything", "*perf_gate*'everything' is not one of*"),
        (["--perf-record", "--perf-db", "nosuchdb://u:secret@host/db"], {}, "", "*--perf-db*"),
    ],
)
def test_bad_settings_are_usage_errors(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    ini: str,
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()
    assert "secret" not in result.stderr.str()


def test_gpu_metrics_through_pynvml(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        pynvml="""
        import os
        from types import SimpleNamespace
        USED = [1024 * 1024 * 100]
        def _log(what):
            with open(os.environ["FAKE_NVML_LOG"], "a") as log:
                log.write(what + "\\n")
        def nvmlInit(): _log("init")
        def nvmlShutdown(): _log("shutdown")
        def nvmlDeviceGetCount(): return 1
        def nvmlDeviceGetHandleByIndex(i): return i
        def nvmlDeviceGetName(h): return "NVIDIA GeForce RTX 4090"
        def nvmlDeviceGetMemoryInfo(h):
            return SimpleNamespace(total=24 * 1024**3, used=USED[0])
        """,
        test_gpu="""
        import pynvml, time

        def test_alloc_gpu():
            pynvml.USED[0] += 300 * 1024 * 1024
            time.sleep(0.05)
            pynvml.USED[0] -= 300 * 1024 * 1024

        def test_a(): pass
        def test_b(): pass
        """,
    )
    log = pytester.path / "nvml.log"
    pytester.syspathinsert()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_NVML_LOG", str(log))
        mp.delitem(__import__("sys").modules, "pynvml", raising=False)
        result = pytester.runpytest_subprocess("--perf-record", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    rows = stored(pytester)
    assert rows["test_alloc_gpu"]["gpu_mem_peak_mb"].value == pytest.approx(300, abs=1)
    assert rows["test_a"]["gpu_mem_peak_mb"].value == 0
    inits = log.read_text().split().count("init")
    assert 1 <= inits <= 2  # collector + platform detection, never per test
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        (platform,) = history.platforms()
    assert platform.key.endswith("RTX_4090_24GB")
    assert platform.fingerprint["gpus"] == [{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24576}]


def test_no_pynvml_means_no_gpu_metric(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(pynvml="raise ImportError('no NVML here')", test_cpu="def test_cpu(): pass")
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--perf-record")
    result.assert_outcomes(passed=1)
    assert "gpu_mem_peak_mb" not in stored(pytester)["test_cpu"]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--perf-platform", "ci_box_1"], {}),
        ([], {"PERFGUARD_PLATFORM": "ci_box_1"}),
        ([], {"PERFORMANCE_PLATFORM": "ci_box_1"}),
    ],
)
def test_platform_override(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--perf-record", *args)
    result.stdout.fnmatch_lines(["perfguard: *, platform ci_box_1"])
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        assert [p.key for p in history.platforms()] == ["ci_box_1"]
        assert history.recent_runs()[0].platform == "ci_box_1"


def test_third_party_collector_through_the_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        class WidgetCollector:
            def start(self):
                self.started = True
            def stop(self, rounds):
                return [("widgets", 7.0 * rounds, "widgets")]
            def describe(self):
                return {"widget_method": "counting"}

        @pytest.hookimpl
        def pytest_perfguard_collectors(config):
            return [WidgetCollector()]
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.perf(rounds=2)
        def test_one():
            pass
        """
    )
    pytester.runpytest("--perf-record").assert_outcomes(passed=1)
    row = stored(pytester)["test_one"]["widgets"]
    assert (row.value, row.unit, row.kind) == (14.0, "widgets", "system")
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        run = history.get_run(1)
    assert run.system_info["widget_method"] == "counting"
    assert run.system_info["rss_method"] in ("clear_refs", "lifetime_peak_delta")


def test_sessions_append_and_env_alias_records(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_ok(): pass")
    pytester.runpytest("--perf-record", "--perf-notes", "first").assert_outcomes(passed=1)
    monkeypatch.setenv("ENABLE_PERFORMANCE_RECORDING", "1")
    pytester.runpytest().assert_outcomes(passed=1)
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        runs = history.recent_runs()
    assert [run.id for run in runs] == [2, 1]
    assert runs[1].notes == "first"
    assert all(run.n_results >= 3 for run in runs)


def test_perf_alone_measures_but_writes_no_history(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--perf")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["perfguard: *, platform *"])
    assert not (pytester.path / ".perfguard").exists()


def test_custom_db_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")
    target = Path(pytester.path / "data" / "perf.sqlite")
    pytester.runpytest("--perf-record", "--perf-db", "data/perf.sqlite").assert_outcomes(passed=1)
    with History(target, create=False) as history:
        assert len(history.recent_runs()) == 1


def test_inactive_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    """Inactive costs nothing: no heavy import (time at start, and GC time on every test)."""
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            heavy = [m for m in ("pydantic", "sqlalchemy", "jinja2", "psutil", "alembic")
                     if m in sys.modules]
            print("HEAVY:", ",".join(heavy) or "none")
        """
    )
    pytester.makepyfile("def test_ok(perf): perf.record('x', 1.0)")
    result = pytester.runpytest_subprocess("-s", "-p", "no:benchmark", "-p", "no:hypothesispytest",
                                           "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HEAVY: none*"])


def test_a_runtest_another_plugin_set_on_the_item_is_the_one_measured(
    pytester: pytest.Pytester,
) -> None:
    """perfguard wraps an item's `runtest` at collection; one that another plugin put on
    the item before (not on its class) is what the wrapper calls, and its time is what
    is measured: a marked test with rounds calls it once per round."""
    pytester.makeconftest(
        """
        import time

        calls = []

        def pytest_itemcollected(item):
            own = item.runtest

            def runtest():
                calls.append(item.name)
                time.sleep(0.02)
                own()

            item.runtest = runtest

        def pytest_unconfigure(config):
            print("own runtest calls:", len(calls))
        """
    )
    pytester.makepyfile(
        """
        import pytest

        def test_plain():
            pass

        @pytest.mark.perf(rounds=3)
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--perf-record")
    result.assert_outcomes(passed=2)
    # 1 plain, and 3 rounds of the marked test twice: a recording takes a second pass
    # of a marked test that has no baseline yet.
    result.stdout.fnmatch_lines(["own runtest calls: 7"])
    rows = stored(pytester)
    assert rows["test_plain"]["duration"].value >= 0.02
    assert rows["test_marked"]["duration"].value >= 0.02


def test_plain_tests_are_stored_under_their_items_ids(pytester: pytest.Pytester) -> None:
    """A plain test's id is read where pytest 9 keeps it built (`reads_cached_node_ids`);
    an item class with a `nodeid` of its own is read through that instead."""
    pytester.makeconftest(
        """
        import pytest

        class Renamed(pytest.Function):
            @property
            def nodeid(self):
                return "renamed::" + self.name

        def pytest_pycollect_makeitem(collector, name, obj):
            if name == "test_renamed":
                return [Renamed.from_parent(collector, name=name, callobj=obj)]

        def pytest_collection_finish(session):
            with open("ids.txt", "w", encoding="utf-8") as ids:
                ids.writelines(item.nodeid + "\\n" for item in session.items)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", ["a b", "ü", 3])
        def test_param(n):
            pass

        def test_renamed():
            pass

        class TestGroup:
            def test_method(self):
                pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-record")
    result.assert_outcomes(passed=5)
    reported = set((pytester.path / "ids.txt").read_text(encoding="utf-8").splitlines())
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        detail = history.get_run(history.recent_runs(limit=1)[0].id)
    assert {row.test for row in detail.measurements} == reported
    assert "renamed::test_renamed" in reported


def test_reads_cached_node_ids_only_where_pytest_keeps_them(pytester: pytest.Pytester) -> None:
    items, _ = pytester.inline_genitems(pytester.makepyfile("def test_one(): pass"))
    assert reads_cached_node_ids(items[0]) is hasattr(items[0], "_id")

    class Elsewhere(pytest.Item):
        nodeid = "elsewhere"

        def runtest(self) -> None:
            pass

    assert not reads_cached_node_ids(Elsewhere.__new__(Elsewhere))


def test_plain_items_are_measured_through_their_class_only_for_their_session(
    pytester: pytest.Pytester,
) -> None:
    """A recording session replaces `pytest.Function.runtest` while it runs and puts it
    back at its end. An in-process session inside one of its tests (pytester's) shares
    that class: its items pass through to the original unmeasured, or are measured by its
    own run log when it measures plain tests itself; the outer test is measured as usual."""
    original = pytest.Function.__dict__["runtest"]
    pytester.makepyfile(
        test_outer="""
        import json

        import pytest

        pytest_plugins = "pytester"

        INNER = "def test_a():\\n    pass\\n\\n\\ndef test_b():\\n    pass\\n"


        def test_outer(pytester):
            pytester.makepyfile(test_inner=INNER)
            unmeasured = pytester.runpytest("-p", "no:cacheprovider")
            unmeasured.assert_outcomes(passed=2)
            measured = pytester.runpytest(
                "-p", "no:cacheprovider", "--perf-gate=all", "--perf-json", "inner.json"
            )
            measured.assert_outcomes(passed=2)
            rows = json.loads((pytester.path / "inner.json").read_text())["comparisons"]
            durations = {row["test"]: row["current"] for row in rows if row["metric"] == "duration"}
            assert sorted(durations) == ["test_inner.py::test_a", "test_inner.py::test_b"]
            assert all(value > 0 for value in durations.values())
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--perf-gate=all", "--perf-json", "outer.json"
    )
    result.assert_outcomes(passed=1)
    rows = json.loads((pytester.path / "outer.json").read_text())["comparisons"]
    assert [row["test"] for row in rows if row["metric"] == "duration"] == [
        "test_outer.py::test_outer"
    ]
    assert pytest.Function.__dict__["runtest"] is original


def test_an_extra_call_that_raises_keeps_the_first_calls_outcome(
    pytester: pytest.Pytester,
) -> None:
    """Without `rounds=`, the extra calls within the rounds budget are perfguard's: one that
    raises (the test asserts on what `caplog` captured, so it passes once only) ends them,
    the test passes as its first call did, and what the failed call recorded is not
    stored. With `rounds=`, asked for by the test, a failing round fails it."""
    pytester.makepyfile(
        """
        import logging
        import pytest

        @pytest.mark.perf
        def test_logs_once(caplog, perf):
            perf.record("items", 7.0 + len(caplog.records), direction="higher")
            with perf.measure("log"):
                logging.getLogger("x").warning("w")
            assert len(caplog.records) == 1

        @pytest.mark.perf(rounds=2)
        def test_asks_for_two(caplog):
            logging.getLogger("x").warning("w")
            assert len(caplog.records) == 1
        """
    )
    # No confirm re-run, which would pool a second run's samples into these.
    result = pytester.runpytest("--perf-record", "--perf-rounds-budget", "1", "--perf-confirm", "0")
    result.assert_outcomes(passed=1, failed=1)
    rows = stored(pytester)
    once = rows["test_logs_once"]
    assert once["duration"].outcome == "passed"
    # One call counted: a single value is stored without a samples list.
    assert once["duration"].samples == ()
    assert (once["items"].value, once["items"].samples) == (7.0, ())
    assert once["step:log"].samples == ()
    assert {m.outcome for m in rows["test_asks_for_two"].values()} == {"failed"}
