"""History database benchmark: session writes, queries over 1M results, streaming export.

    .venv/bin/python benchmarks/bench_history.py [--pg URL] [--results 1000000]

SQLite runs in a temporary directory; PostgreSQL (with --pg) in a temporary schema of the
given database, dropped at the end. Prints one table per backend.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pytest_perfguard.api import History
from pytest_perfguard.history.urls import resolve_db_url
from pytest_perfguard.results import Measurement, PlainRuns, PlatformInfo, RunInfo

SESSION_RESULTS = 10_000
RESULTS_PER_RUN = 500  # 167 tests x 3 metrics
# The plugin's rows for one test: (metric, unit, kind); a marked test's duration has samples.
READINGS = (
    ("duration", "s", "primary"),
    ("cpu_time", "s", "system"),
    ("rss_peak_mb", "MB", "system"),
)
TREND_TEST, TREND_METRIC = "tests/test_mod23.py::test_case_73", "duration"

EXPORT_CHILD = """
import sys, time
from pytest_perfguard.api import History

def high_water_mib():
    # VmHWM is this process's own peak; ru_maxrss would report the parent's across exec.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

with History(sys.argv[1], create=False) as history, open(sys.argv[2], "w") as out:
    history.recent_runs(limit=1)
    before = high_water_mib()
    start = time.perf_counter()
    n = history.export("csv", out)
    took = time.perf_counter() - start
print(n, took, before, high_water_mib())
"""


def session(n: int, run_no: int = 0) -> tuple[list[Measurement], PlainRuns]:
    """About `n` results as the plugin hands them to the history: three readings per test, one
    test in ten marked (its rows, the duration with samples from several rounds), the
    others plain (their runs as columns)."""
    rows = []
    plain = PlainRuns([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    for i in range(-(-n // 3) * 3):  # whole tests: 500 results are 167 tests' 501
        test_no, (metric, unit, kind) = i // 3, READINGS[i % 3]
        test = f"tests/test_mod{test_no % 50}.py::test_case_{test_no}"
        value = 1.0 + (i % 97) / 100 + run_no / 1000
        if test_no % 10:
            if metric == "duration":
                plain.ids.append(test)
                plain.outcomes.append("passed")
                plain.durations.append(value)
            else:
                plain.readings[i % 3 - 1][2].append(value)
            continue
        rows.append(
            Measurement(
                test=test,
                metric=metric,
                value=value,
                unit=unit,
                kind=kind,  # type: ignore[arg-type]
                marked=True,
                samples=(1.0, 1.1, 1.2) if metric == "duration" else (),
            )
        )
    return rows, plain


def run_info(at: datetime, platform: str = "linux-x86_64") -> RunInfo:
    return RunInfo(
        started_at=at,
        platform=PlatformInfo(platform, {"cpu": "bench"}),
        git_commit="0123abc",
        python_version="3.11",
        run_type="ci",
        host="bench",
        args=["-q"],
        system_info={"cpus": 16},
    )


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """(median, first, median CPU) seconds over `repeat` calls. CPU time is this process's
    (on SQLite, the query's own work), which a busy machine inflates less than wall time."""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), times[0], statistics.median(cpu)


def bench_session_write(url: str) -> dict[str, float]:
    measurements, plain = session(SESSION_RESULTS)
    start = datetime.now(timezone.utc)
    with History(url) as history:
        history.save_session(run_info(start), measurements, plain=plain)  # creates the schema
        times = []
        for i in range(1, 11):
            t0 = time.perf_counter()
            history.save_session(
                run_info(start + timedelta(minutes=i)), measurements, plain=plain
            )
            times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "max": max(times)}


def build_history(url: str, n_results: int) -> float:
    """n_results rows in runs of RESULTS_PER_RUN, one save_session each (any version's)."""
    t0 = time.perf_counter()
    n_runs = n_results // RESULTS_PER_RUN
    start = datetime.now(timezone.utc) - timedelta(days=400)
    with History(url) as history:
        for r in range(n_runs):
            platform = "linux-x86_64" if r % 4 else "macos-arm64"
            rows, plain = session(RESULTS_PER_RUN, r)
            history.save_session(run_info(start + timedelta(hours=r), platform), rows, plain=plain)
    return time.perf_counter() - t0


def bench_write_into(url: str) -> dict[str, float]:
    """save_session of SESSION_RESULTS results into the big history (three times)."""
    measurements, plain = session(SESSION_RESULTS)
    start = datetime.now(timezone.utc)
    times = []
    with History(url) as history:
        history.recent_runs(limit=1)
        for i in range(3):
            t0 = time.perf_counter()
            history.save_session(
                run_info(start + timedelta(minutes=i)), measurements, plain=plain
            )
            times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "max": max(times)}


def bench_queries(url: str) -> dict[str, tuple[float, float, float]]:
    with History(url) as history:
        runs = history.recent_runs(limit=2)  # connect and check the schema once
        out = {
            "trend, one metric (all runs)": timed(
                lambda: history.trend(TREND_TEST, TREND_METRIC), 7
            ),
            "trend, one metric, last 100": timed(
                lambda: history.trend(TREND_TEST, TREND_METRIC, limit=100), 7
            ),
            "recent runs (20)": timed(lambda: history.recent_runs(), 7),
            "recent runs (20, one platform)": timed(
                lambda: history.recent_runs(platform="macos-arm64"), 7
            ),
            "baseline (median of 5)": timed(
                lambda: history.baseline(TREND_TEST, TREND_METRIC, platform="linux-x86_64"), 7
            ),
            "metric_history (platform, last 5)": timed(
                lambda: history.metric_history("linux-x86_64", last_runs=5), 3
            ),
            "stats": timed(history.stats, 3),
            "dashboard: metric_history (platform, last 1, all kinds)": timed(
                lambda: history.metric_history(
                    "linux-x86_64",
                    last_runs=1,
                    kinds=("primary", "custom", "step", "system"),
                    passed_only=False,
                ),
                3,
            ),
            "dashboard: tests (platform)": timed(lambda: history.tests(platform="linux-x86_64"), 3),
            "summary (last 20 runs)": timed(lambda: history.summary(), 3),
            "get_run (500 results)": timed(lambda: history.get_run(runs[0].id), 7),
            "compare (two runs)": timed(lambda: history.compare(runs[1].id, runs[0].id), 7),
        }
        n_points = len(history.trend(TREND_TEST, TREND_METRIC))
    print(f"  (trend returns {n_points} points)")
    return out


def bench_export(url: str, directory: Path) -> tuple[int, float, float, float, float]:
    """Export to a CSV file in a fresh process: (rows, seconds, RSS before, peak RSS, MiB)."""
    out = directory / "export.csv"
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_CHILD, url, str(out)],
        cwd=directory,  # `-c` puts the working directory first on sys.path
        check=True,
        capture_output=True,
        text=True,
    )
    n, took, rss_before, rss_peak = result.stdout.split()
    size_mb = out.stat().st_size / 2**20
    out.unlink()
    return int(n), float(took), float(rss_before), float(rss_peak), size_mb


def report(backend: str, write_url: str, big_url: str, n_results: int, directory: Path) -> None:
    print(f"\n== {backend} == (load {os.getloadavg()[0]:.1f})", flush=True)
    write = bench_session_write(write_url)
    build = build_history(big_url, n_results)
    if backend == "postgresql":
        with History(big_url) as history:
            history.vacuum()  # VACUUM ANALYZE: statistics as autovacuum would have them by now
    queries = bench_queries(big_url)
    n, took, rss_before, rss_peak, size_mb = bench_export(big_url, directory)
    into_big = bench_write_into(big_url)
    rows = [
        (f"save_session, {SESSION_RESULTS} results", write["median"], f"max {write['max']:.3f} s"),
        (f"build history, {n_results} results", build, "one save_session per run"),
        (
            f"save_session, {SESSION_RESULTS} results into {n_results}",
            into_big["median"],
            f"max {into_big['max']:.3f} s",
        ),
    ]
    rows += [
        (name, med, f"first call {first * 1000:.1f} ms, CPU {cpu * 1000:.1f} ms")
        for name, (med, first, cpu) in queries.items()
    ]
    rows.append(
        (
            f"export csv, {n} rows",
            took,
            f"RSS {rss_before:.0f} MiB before, peak {rss_peak:.0f} MiB; file {size_mb:.0f} MiB",
        )
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"  {'operation':<{width}}  {'median':>10}  notes")
    for name, seconds, note in rows:
        print(f"  {name:<{width}}  {seconds * 1000:>8.1f}ms  {note}")


@contextmanager
def pg_schema(base_url: str) -> Iterator[tuple[str, str]]:
    """Two URLs (write benchmark, big history) in temporary schemas of `base_url`."""
    import sqlalchemy as sa

    base = resolve_db_url(base_url, Path.cwd())
    names = [f"perfguard_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    urls = [
        sa.make_url(base)
        .update_query_dict({"options": f"-csearch_path={name}"})
        .render_as_string(hide_password=False)
        for name in names
    ]
    try:
        yield urls[0], urls[1]
    finally:
        with admin.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", help="PostgreSQL URL to benchmark too (in temporary schemas)")
    parser.add_argument("--results", type=int, default=1_000_000, help="size of the big history")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfguard-bench-") as tmp:
        directory = Path(tmp)
        if not args.skip_sqlite:
            write_url, big_url = (f"sqlite:///{directory / n}" for n in ("write.db", "big.db"))
            report("sqlite", write_url, big_url, args.results, directory)
        if args.pg:
            with pg_schema(args.pg) as (write_url, big_url):
                report("postgresql", write_url, big_url, args.results, directory)


if __name__ == "__main__":
    main()
