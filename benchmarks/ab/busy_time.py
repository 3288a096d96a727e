"""Why A/B rounds are timed by busy time: the spread of A/A pair ratios of the same call
on wall time and on the thread's CPU time, with and without three busy loops.

    python benchmarks/ab/busy_time.py            # pinned to CPU 1, 60 calls per workload

For each workload it makes 60 calls, takes the best of each block of three (as a pair's
side does), pairs consecutive blocks (an A/A pair) and prints the interquartile range of
the pairs' ratios per clock. docs/ab.md ("Busy time") quotes one run of it.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

CALLS = 60


def sha(units: int) -> None:
    h = b"x"
    for _ in range(units):
        h = hashlib.sha256(h).digest()


BUFFER = bytearray(32 * 1024 * 1024)


def mem(units: int) -> None:
    total = 0
    for i in range(0, units * 4096, 4096):
        total += BUFFER[i % len(BUFFER)]


WORKLOADS: list[tuple[str, Callable[[int], None], int]] = [
    ("sha, about 1 ms", sha, 3000),
    ("sha, about 10 ms", sha, 30000),
    ("memory, about 2 ms", mem, 30000),
]


def spread(values: list[float]) -> float:
    blocks = [min(values[i : i + 3]) for i in range(0, len(values), 3)]
    ratios = [blocks[k + 1] / blocks[k] for k in range(0, len(blocks) - 1, 2)]
    quartiles = statistics.quantiles(ratios, n=4)
    return quartiles[2] - quartiles[0]


def measure(label: str) -> None:
    for name, workload, units in WORKLOADS:
        walls, threads = [], []
        for _ in range(CALLS):
            thread0, wall0 = time.thread_time(), time.perf_counter()
            workload(units)
            walls.append(time.perf_counter() - wall0)
            threads.append(time.thread_time() - thread0)
        print(
            f"{label:16s} {name:20s} IQR of A/A pair ratios: wall {spread(walls):.3f}, "
            f"thread CPU {spread(threads):.3f}"
        )


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    measure("quiet")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        time.sleep(1)
        measure("3 busy loops")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


if __name__ == "__main__":
    main()
