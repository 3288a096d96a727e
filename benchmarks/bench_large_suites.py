"""Reads by test on the history of a large suite, timed as the fastest of many calls.

A history of `--runs` sessions of `--tests` plain tests each (no marker, no `perf` fixture:
stored as `plain_blocks`), one platform. The trend of one test and its baseline read one
value per run wherever the test sits in its run; reads of whole runs (`get_run`,
`compare`, `recent_runs` and its counts, `summary`) read every test of the runs. The
history is built once and kept, so two versions can be compared on histories of their
own, alternating:

    python benchmarks/bench_large_suites.py sqlite:////tmp/large-4000-new.db --tests 4000
    /path/to/other/venv/bin/python benchmarks/bench_large_suites.py \\
        sqlite:////tmp/large-4000-old.db --tests 4000
    python benchmarks/bench_large_suites.py --tests 1000 \\
        "postgresql+psycopg://postgres@127.0.0.1:5432/perfguard_test?options=-csearch_path%3Dlarge_new"

(a PostgreSQL schema must exist already: `CREATE SCHEMA large_new`). Uses only the public
API, so any version since plain runs were stored as blocks can run it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from bench_small_reads import fastest

from pytest_perfguard.api import History
from pytest_perfguard.results import PlainRuns, PlatformInfo, RunInfo

PLATFORM = "linux-x86_64"


def test_id(position: int) -> str:
    return f"tests/test_mod{position % 80}.py::test_case[{position}]"


def plain_session(n_tests: int, run_no: int) -> PlainRuns:
    """`n_tests` plain tests as the plugin hands them over: a duration, the CPU time and
    the peak RSS each, values that differ from test to test and run to run."""
    plain = PlainRuns([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    for i in range(n_tests):
        plain.ids.append(test_id(i))
        # About one run in fifty has a failure somewhere: run counts read those chunks.
        failed = run_no % 50 == 7 and i == (run_no * 37) % n_tests
        plain.outcomes.append("failed" if failed else "passed")
        jitter = ((i * 7919 + run_no * 104_729) % 1000) / 1000
        plain.durations.append(1e-4 * (1 + i % 13) * (1 + jitter / 10))
        plain.readings[0][2].append(0.9e-4 * (1 + i % 13) * (1 + jitter / 7))
        plain.readings[1][2].append(80.0 + (i % 5) + jitter)
    return plain


def build(url: str, n_runs: int, n_tests: int) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=n_runs)
    with History(url) as history:
        for r in range(n_runs):
            run = RunInfo(
                started_at=start + timedelta(hours=r),
                platform=PlatformInfo(PLATFORM, {"cpu": "bench"}),
                python_version="3.11",
                run_type="ci",
                host="bench",
            )
            history.save_session(run, [], plain=plain_session(n_tests, r))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", help="the history (built when empty)")
    parser.add_argument("--tests", type=int, default=4000, help="plain tests a run")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--whole-runs", action="store_true", help="also time reads of whole runs")
    options = parser.parse_args()
    # Three quarters of the way into the run: not in the first chunk or block page.
    test = test_id(options.tests * 3 // 4)
    with History(options.url) as history:
        if not history.recent_runs(limit=1):
            started = time.perf_counter()
            build(options.url, options.runs, options.tests)
            print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
            if not options.url.startswith("sqlite"):
                history.vacuum()  # VACUUM ANALYZE, as autovacuum would have by now
        newest = history.recent_runs(limit=2)
        n_points = len(history.trend(test, "duration"))
        print(f"{options.tests} tests a run, trend of {test}: {n_points} points", flush=True)
        reads: dict[str, Callable[[], Any]] = {
            "trend": lambda: history.trend(test, "duration"),
            "trend, last 100": lambda: history.trend(test, "duration", limit=100),
            "baseline": lambda: history.baseline(test, "duration", platform=PLATFORM),
        }
        if options.whole_runs:
            reads |= {
                "recent runs": lambda: history.recent_runs(),
                "get_run": lambda: history.get_run(newest[0].id),
                "compare": lambda: history.compare(newest[1].id, newest[0].id),
                "summary (last 20 runs)": lambda: history.summary(),
            }
        for name, read in reads.items():
            print(f"{name}: {fastest(read, options.calls) * 1000:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
