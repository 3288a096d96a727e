"""The history's small reads on 1 M results, timed as the fastest of many calls.

`bench_history.py` gives medians of a few calls, which move by a third between runs on a
busy host; reads of a millisecond or less are compared here by the fastest of `--calls`
calls instead. The history is built once (as `bench_history.py` builds it) and kept, so
two versions can be compared on histories of their own, alternating:

    python benchmarks/bench_small_reads.py sqlite:////tmp/reads-new.db
    /path/to/other/venv/bin/python benchmarks/bench_small_reads.py sqlite:////tmp/reads-old.db
    python benchmarks/bench_small_reads.py "postgresql+psycopg://postgres@127.0.0.1:5432/perfguard_test?options=-csearch_path%3Dreads_new"

(a PostgreSQL schema must exist already: `CREATE SCHEMA reads_new`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_history import TREND_METRIC, TREND_TEST, build_history

from pytest_perfguard.api import History


def fastest(call: Callable[[], Any], calls: int) -> float:
    for _ in range(2):
        call()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", help="the history (built with 1 M results when empty)")
    parser.add_argument("--calls", type=int, default=300)
    options = parser.parse_args()
    with History(options.url) as history:
        if not history.recent_runs(limit=1):
            build_history(options.url, 1_000_000)
            if not options.url.startswith("sqlite"):
                history.vacuum()  # VACUUM ANALYZE, as autovacuum would have by now
        newest = history.recent_runs(limit=2)
        reads: dict[str, Callable[[], Any]] = {
            "trend": lambda: history.trend(TREND_TEST, TREND_METRIC),
            "trend, last 100": lambda: history.trend(TREND_TEST, TREND_METRIC, limit=100),
            "baseline": lambda: history.baseline(
                TREND_TEST, TREND_METRIC, platform="linux-x86_64"
            ),
            "recent runs": lambda: history.recent_runs(),
            "get_run": lambda: history.get_run(newest[0].id),
            "compare": lambda: history.compare(newest[1].id, newest[0].id),
        }
        for name, read in reads.items():
            print(f"{name}: {fastest(read, options.calls) * 1000:.3f} ms", flush=True)
        # Whole-history counts (`perfguard stats`): tens of ms, so fewer calls.
        stats_calls = max(1, options.calls // 10)
        print(f"stats: {fastest(history.stats, stats_calls) * 1000:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
