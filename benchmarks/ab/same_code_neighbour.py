"""Does the same code running on the other vCPU slow a call more than other work there?

A 30 ms call (a sha256 chain, or a pure-Python dict loop) is timed on CPU 0 by the
thread's CPU time, median of 25 calls, while CPU 1 is idle, runs the same call in a loop,
or runs a Python `for` busy loop; each setting three times, the median printed. Two lanes
pairing one test at once put the same code on both vCPUs (RESULTS.md, "Two ways to cut
the lanes' time").

    python benchmarks/ab/same_code_neighbour.py      # Linux, two CPUs or more; about 20 s
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # benchmarks/ab/run.py: the verdict harness's workloads

Work = Callable[[int], object]
workloads = harness.load_workloads()
# 30 ms a call in this project's machine's fast state (`workloads.UNITS_PER_MS`).
WORK: dict[str, tuple[Work, int]] = {
    kind: (workloads.KINDS[kind], workloads.units(kind, 30.0)) for kind in ("sha", "interp")
}


def neighbour(kind: str, name: str) -> None:
    os.sched_setaffinity(0, {1})
    fn, units = WORK[name]
    while True:
        if kind == "same":
            fn(units)
        else:
            for _ in range(1_000_000):
                pass


def call_time(fn: Work, units: int, calls: int = 25) -> float:
    os.sched_setaffinity(0, {0})
    fn(units)
    times = []
    for _ in range(calls):
        start = time.thread_time()
        fn(units)
        times.append(time.thread_time() - start)
    return statistics.median(times)


def main() -> None:
    for name, (fn, units) in WORK.items():
        for kind in ("idle", "same", "busy"):
            medians = []
            for _ in range(3):
                process = None
                if kind != "idle":
                    process = multiprocessing.Process(target=neighbour, args=(kind, name))
                    process.start()
                    time.sleep(0.2)
                medians.append(call_time(fn, units))
                if process is not None:
                    process.kill()
                    process.join()
            print(f"{name:7} other CPU {kind:5}: {statistics.median(medians) * 1000:7.2f} ms")


if __name__ == "__main__":
    main()
