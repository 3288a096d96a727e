"""How a pair of a long call is best taken on a host whose vCPUs change speed: the spread
of A/A pair log-ratios for three designs, side by side in one process on one CPU.

    python benchmarks/ab/pair_designs.py                  # sha and interp, 30 ms, 40 pairs
    python benchmarks/ab/pair_designs.py --cpu 1 --kinds mem --ms 30 --pairs 60

Designs, each pair A/A (the same call on both sides):
- ``AB``: one call a side, in random order (what perfguard does for calls of 10 ms or more);
- ``ABBA min``: two calls a side, A B B A (first side drawn), the shorter of each side's;
- ``ABBA sum``: the same calls, each side's two added (cancels a linear drift);
- ``AB probed``: one call a side, each divided by the mean of a 0.1 ms probe of the vCPU's
  speed (sha256 of 64 bytes, 250 times) taken just before and just after it.

A pair's log-ratio is 0 on a steady machine; its spread is what the signed-rank test and
its interval have to see through. benchmarks/ab/RESULTS.md quotes one run.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # benchmarks/ab/run.py: the verdict harness's workloads

workloads = harness.load_workloads()

PROBE_UNITS = 250  # sha256 of 64 bytes: about 0.1 ms


def timed(call: Callable[[], object]) -> float:
    start = time.thread_time()
    call()
    return time.thread_time() - start


def spread(log_ratios: list[float]) -> str:
    quartiles = statistics.quantiles(log_ratios, n=4)
    return (
        f"IQR {quartiles[2] - quartiles[0]:.4f}  sd {statistics.stdev(log_ratios):.4f}  "
        f"largest {max(abs(x) for x in log_ratios):.3f}"
    )


def measure(kind: str, ms: float, pairs: int, rng: random.Random) -> dict[str, list[float]]:
    units = workloads.units(kind, ms)
    work = workloads.KINDS[kind]

    def call() -> float:
        return timed(lambda: work(units))

    def probe() -> float:
        return timed(lambda: workloads.sha(PROBE_UNITS))

    found: dict[str, list[float]] = {"AB": [], "ABBA min": [], "ABBA sum": [], "AB probed": []}
    for _ in range(pairs):
        one = {side: call() for side in rng.sample("AB", 2)}
        found["AB"].append(math.log(one["B"] / one["A"]))
        first, second = rng.sample("AB", 2)
        a1, b1, b2, a2 = call(), call(), call(), call()
        two = {first: (a1, a2), second: (b1, b2)}
        found["ABBA min"].append(math.log(min(two["B"]) / min(two["A"])))
        found["ABBA sum"].append(math.log(sum(two["B"]) / sum(two["A"])))
        probed = {}
        for side in rng.sample("AB", 2):
            before = probe()
            seconds = call()
            probed[side] = seconds / ((before + probe()) / 2)
        found["AB probed"].append(math.log(probed["B"] / probed["A"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["sha", "interp"])
    parser.add_argument("--ms", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    workloads.prepare()
    rng = random.Random(args.seed)
    for kind in args.kinds:
        for design, log_ratios in measure(kind, args.ms, args.pairs, rng).items():
            calls = "4 calls a pair" if design.startswith("ABBA") else "2 calls a pair"
            print(f"{kind:6} {args.ms:g} ms  {design:9}  {spread(log_ratios)}  ({calls})")


if __name__ == "__main__":
    main()
