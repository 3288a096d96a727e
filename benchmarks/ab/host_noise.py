"""How a host's CPU speed moves, as the two A/B modes meet it: the numbers behind the
default mode (docs/ab.md, "Which mode").

    python benchmarks/ab/host_noise.py            # about 15 s, needs two CPUs to pin

The same fixed amount of work (chained SHA-256 of 32 bytes: interpreter and C calls, no
memory traffic) is timed by the thread's CPU clock, so what other processes are given
does not count, only how fast the CPU ran the call:
- **on one CPU**, calls back to back: the spread of the call's time, and how alike
  neighbouring calls are (the correlation of log times at lags of 1, 4 and 30 calls).
  Interleave compares calls taken moments apart on one CPU: a high correlation at small
  lags is what it relies on;
- **on two CPUs at once**, one process per CPU, calls started together every 40 ms: how
  alike the two CPUs' simultaneous calls are. Duet compares calls taken at the same moment
  on two CPUs: a correlation near 0 means each pair carries the two CPUs' momentary
  difference.
On a calm host the spreads are a few per cent and which mode is used matters little; on a
shared host they show which one can still see a 10 % change.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import subprocess
import sys
import time

UNITS = {"about 0.2 ms": 300, "about 1 ms": 1200, "about 25 ms": 36000}
SIMULTANEOUS_UNITS = 15000  # about 10 ms
SLOT = 0.040


def sha(units: int) -> None:
    h = b"x"
    for _ in range(units):
        h = hashlib.sha256(h).digest()


def timed(units: int) -> float:
    start = time.thread_time()
    sha(units)
    return time.thread_time() - start


def one_cpu(label: str, units: int, seconds: float = 3.0) -> None:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        times.append(timed(units))
    logs = [math.log(t) for t in times]
    deciles = statistics.quantiles(times, n=10)
    median = deciles[4]

    def lag(k: int) -> str:
        if len(logs) <= k + 2:
            return "  -  "
        return f"{statistics.correlation(logs[:-k], logs[k:]):5.2f}"

    print(
        f"one CPU, {label:13s} {len(times):6d} calls  p10 {deciles[0] / median:.2f}  "
        f"p90 {deciles[8] / median:.2f} of the median  "
        f"correlation at lag 1 {lag(1)}, 4 {lag(4)}, 30 {lag(30)}"
    )


def child(cpu: int, start: float) -> None:
    os.sched_setaffinity(0, {cpu})
    out = []
    k = 0
    while True:
        slot = start + k * SLOT
        now = time.time()
        if now > start + 5:
            break
        if now < slot:
            time.sleep(slot - now)
        out.append(f"{k} {timed(SIMULTANEOUS_UNITS)!r}")
        k += 1
    print("\n".join(out))


def two_cpus(cpus: list[int]) -> None:
    start = time.time() + 0.5
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(cpu), repr(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for cpu in cpus
    ]
    seen = []
    for process in children:
        lines = process.communicate()[0].split("\n")
        seen.append(dict((int(k), float(t)) for k, t in (line.split() for line in lines if line)))
    slots = sorted(set(seen[0]) & set(seen[1]))
    first = [math.log(seen[0][k]) for k in slots]
    second = [math.log(seen[1][k]) for k in slots]
    ratios = sorted(math.exp(b - a) for a, b in zip(first, second, strict=True))
    deciles = statistics.quantiles(ratios, n=10)
    print(
        f"two CPUs ({cpus[0]} and {cpus[1]}) at once, about 10 ms: {len(slots)} pairs  "
        f"correlation {statistics.correlation(first, second):5.2f}  "
        f"ratio p10 {deciles[0]:.2f} p90 {deciles[8]:.2f}"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), float(sys.argv[3]))
        return
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("needs os.sched_setaffinity (Linux)")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs this process may pin")
    os.sched_setaffinity(0, {cpus[-1]})
    for label, units in UNITS.items():
        one_cpu(label, units)
    os.sched_setaffinity(0, set(cpus))
    two_cpus(cpus[-2:])


if __name__ == "__main__":
    main()
