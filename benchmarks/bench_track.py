"""What one `track()` step costs, against a bare pair of `perf_counter` calls.

Two measures, side by side:

- instructions under callgrind: each mode runs in its own process at two step counts, under
  ``valgrind --tool=callgrind``; the slope between the counts is the cost per step (start-up
  and import cancel out). Exactly repeatable, whatever the machine's neighbours do.
- time: each mode times N steps in this process, modes interleaved, median of --repeats.

Modes: ``bare`` (``t0 = perf_counter(); t1 = perf_counter(); list.append(t1 - t0)``: what
timing a step by hand costs), ``track`` (``with run.step(name):`` with live=False), and
``track-data`` (``with run.step(name, k=1) as s: s.data["x"] = 2``).

    python benchmarks/bench_track.py                   # both measures
    python benchmarks/bench_track.py --no-callgrind    # times only
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("bare", "track", "track-data")


def loop(mode: str, steps: int) -> Callable[[], None]:
    """A function doing `steps` steps of `mode`, nothing else."""
    from pytest_perfguard import track

    clock = time.perf_counter

    if mode == "bare":

        def bare() -> None:
            durations = []
            for _ in range(steps):
                t0 = clock()
                t1 = clock()
                durations.append(t1 - t0)

        return bare

    def tracked() -> None:
        with track("bench", live=False) as run:
            step = run.step
            for _ in range(steps):
                with step("s"):
                    pass

    def tracked_data() -> None:
        with track("bench", live=False) as run:
            step = run.step
            for _ in range(steps):
                with step("s", k=1) as s:
                    s.data["x"] = 2

    return tracked if mode == "track" else tracked_data


def worker(mode: str, steps: int) -> None:
    loop(mode, steps)()


def callgrind_instructions(mode: str, steps: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}",
                sys.executable, __file__, "--worker", mode, "--steps", str(steps),
            ],
            check=True,
            env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        text = out.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if match is None:
        raise SystemExit(f"no instruction total in callgrind's output for {mode}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    parser.add_argument("--timed-steps", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return

    sys.path.insert(0, str(ROOT))
    print(f"python {sys.version.split()[0]}")
    if not args.no_callgrind:
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind not found (use --no-callgrind)")
        small, large = args.sizes
        print(f"instructions per step (callgrind, slope between {small} and {large} steps):")
        per_step = {}
        for mode in MODES:
            low = callgrind_instructions(mode, small)
            high = callgrind_instructions(mode, large)
            per_step[mode] = (high - low) / (large - small)
            print(f"  {mode:<11} {per_step[mode]:9.0f}")
        extra = per_step["track"] - per_step["bare"]
        print(f"  track - bare: {extra:.0f} instructions a step")

    n = args.timed_steps
    loops = {mode: loop(mode, n) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:  # interleaved: drift on the machine hits every mode alike
            start = time.perf_counter()
            loops[mode]()
            times[mode].append((time.perf_counter() - start) / n)
    print(f"time per step (median of {args.repeats} x {n} steps, modes interleaved):")
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode in MODES:
        ratio = medians[mode] / medians["bare"]
        print(f"  {mode:<11} {medians[mode] * 1e9:8.0f} ns  ({ratio:.1f}x bare)")


if __name__ == "__main__":
    main()
