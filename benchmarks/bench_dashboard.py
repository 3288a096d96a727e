"""Dashboard rendering time, this tree against an older revision, side by side.

    .venv/bin/python benchmarks/bench_dashboard.py [--base 68bf2b9] [--rounds 7]
        [--tests 10] [--metrics 5] [--runs 100]

The base revision is unpacked (`git archive`) into a temporary directory. Each side builds
its own SQLite history with its own code from the same seeded values (`--tests` x
`--metrics` marked metrics, `--runs` runs on one platform; 3 % noise, or with `--step` a
30 % step in the last quarter, which gives change-point detection more to do; a
baselines update holds every metric's first value, so bands are drawn and runs judged), since
a history written by a newer schema is refused by older code. Then each round renders the
dashboard once per side, in a fresh interpreter, the sides alternating (which one goes
first alternates too), so that a busy machine slows both alike. The time is the read and
render call alone (imports and start-up excluded): `render_dashboard(history, ...)` on
the base, `render_dashboard(read_dashboard(history, ...), ...)` here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Writes the history with the side's own code; the values come from a seeded generator.
BUILD = """
import random, sys
from datetime import datetime, timedelta, timezone
from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo
path, n_tests, n_metrics, n_runs, step = sys.argv[1], *map(int, sys.argv[2:6])
rng = random.Random(17)
start = datetime(2026, 11, 1, tzinfo=timezone.utc)
with History(path) as history:
    for i in range(n_runs):
        info = RunInfo(
            started_at=start + timedelta(hours=3 * i),
            platform=PlatformInfo("Linux_x86_64_bench", {"cpu_model": "bench"}),
            git_commit=f"{i:04d}feedface",
            run_type="ci",
        )
        slow = 1.3 if step and i >= n_runs * 3 // 4 else 1.0
        measurements = [
            Measurement(f"tests/test_m{t // 10}.py::test_case_{t}", f"metric_{m}",
                        0.001 * (1 + t % 7) * slow * (1 + rng.gauss(0, 0.03)), "s", marked=True)
            for t in range(n_tests) for m in range(n_metrics)
        ]
        history.save_session(info, measurements)
        if i == 0:  # every metric's baseline: its first value, as a baselines update stores it
            entries = {}
            for m in measurements:
                entries.setdefault(m.test, {})[m.metric] = {"value": m.value, "unit": "s"}
            history.save_baseline_snapshot(
                "Linux_x86_64_bench", entries, reason="new", git_commit=None, who="bench"
            )
"""

# One timed read + render in a fresh interpreter; prints seconds.
RENDER = """
import sys, time
from pytest_perfguard.api import History
from pytest_perfguard.report.dashboard import render_dashboard
try:
    from pytest_perfguard.cli.dashboard_data import read_dashboard
except ImportError:
    read_dashboard = None
with History(sys.argv[1], create=False) as history:
    history.platforms()  # opens the database: not part of what is timed
    start = time.perf_counter()
    if read_dashboard is None:
        page = render_dashboard(history, days=None)
    else:
        page = render_dashboard(read_dashboard(history, days=None))
    took = time.perf_counter() - start
assert "perfguard-data" in page
print(took)
"""


def unpack(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "pytest_perfguard"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run(code: str, tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=tree
    )
    if done.returncode != 0:
        raise SystemExit(f"failed in {tree}: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="68bf2b9")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--metrics", type=int, default=1, help="metrics per test")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument(
        "--step", action="store_true", help="every metric 30 %% slower in the last quarter"
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        sides = {"base": unpack(args.base, Path(tmp) / "base"), "head": ROOT}
        dbs = {}
        for name, tree in sides.items():
            dbs[name] = str(Path(tmp) / f"{name}.db")
            sizes = (str(args.tests), str(args.metrics), str(args.runs), str(int(args.step)))
            run(BUILD, tree, dbs[name], *sizes)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for i in range(args.rounds):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(float(run(RENDER, sides[name], dbs[name])))
    result = {
        "base": args.base,
        "shape": f"{args.tests} tests x {args.metrics} metrics x {args.runs} runs"
        + (", a step" if args.step else ", 3 % noise"),
        **{f"{name}_s": [round(t, 3) for t in found] for name, found in times.items()},
        "base_median_s": round(statistics.median(times["base"]), 3),
        "head_median_s": round(statistics.median(times["head"]), 3),
        "head_over_base": round(
            statistics.median(h / b for h, b in zip(times["head"], times["base"], strict=True)), 3
        ),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['shape']}, {args.rounds} rounds alternating, read + render only")
    for name in sides:
        label = f"{args.base} (base)" if name == "base" else "this tree"
        found = times[name]
        print(f"  {label:<16} median {statistics.median(found):.3f} s  "
              f"min {min(found):.3f}  max {max(found):.3f}")  # fmt: skip
    print(f"  head / base, per round (median): {result['head_over_base']:.3f}")


if __name__ == "__main__":
    main()
