"""Where the A/A offsets between two processes come from: memory layout.

An A/A run (head = base, byte for byte) often reads one kind of work a few per cent faster
or slower in the head, the same for every pair of the run, and differently in the next
run: the *process offsets* that a confirmation in fresh processes is there to draw again.
This runs the harness's 24 tests A/A, `--runs` times in each of three settings, and prints
each test's median pair ratio (head / base) per run:

- `random`: as perfguard runs (address-space layout and hash seed drawn per process);
- `no-aslr`: `setarch -R` (no address-space randomisation, inherited by the workers);
- `fixed`: `setarch -R` and `PYTHONHASHSEED=0`: every process laid out the same way, run
  after run, except for what differs between the two checkouts (their paths).

If the offsets are layout, `fixed` repeats the same offsets in every run (a bias no fresh
process would draw again), while `random` moves them from run to run.

    python benchmarks/ab/layout_offsets.py --runs 4      # about a minute a setting here

Linux only (`setarch`); RESULTS.md quotes a run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as harness  # noqa: E402  (the A/B harness: its suite writer)

DUMP_PLUGIN = '''
import statistics, sys
from pytest_perfguard.ab import plugin as ab_plugin

_pair_in_lane = ab_plugin.ABSession._pair_in_lane

def _dump(self, lane, test):
    run = _pair_in_lane(self, lane, test)
    ratios = [h.busy_time / b.busy_time for b, h in zip(run.base, run.head)]
    if ratios:
        name = test.rpartition("::test_")[2]
        sys.__stderr__.write(f"ratio {name} {statistics.median(ratios):.4f}\\n")
    return run

ab_plugin.ABSession._pair_in_lane = _dump
'''

SETTINGS = {
    "random": ([], {}),
    "no-aslr": (["setarch", "-R"], {}),
    "fixed": (["setarch", "-R"], {"PYTHONHASHSEED": "0"}),
}


def one_run(work: Path, wrapper: list[str], extra_env: dict[str, str]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFGUARD")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra_env, PYTHONPATH=str(work))
    cmd = [
        *wrapper, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "no:randomly", "-p", "layout_dump", f"--perf-against={work / 'base'}",
        "--perf-threshold", "0.1",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=work / "head", env=env, capture_output=True, text=True)
    ratios = {}
    for line in done.stderr.splitlines():
        if line.startswith("ratio "):
            _, test, value = line.split()
            ratios[test] = float(value)
    if not ratios:
        raise SystemExit(f"no pairs (exit {done.returncode}):\n{done.stdout[-2000:]}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    if shutil.which("setarch") is None:
        raise SystemExit("needs setarch (util-linux)")
    work = Path(tempfile.mkdtemp(prefix="layout-offsets-"))
    try:
        for side in ("base", "head"):
            harness.write_suite(work / side, [], 1.0)
        (work / "layout_dump.py").write_text(DUMP_PLUGIN, encoding="utf-8")
        for name in args.settings.split(","):
            wrapper, extra_env = SETTINGS[name]
            runs = [one_run(work, wrapper, extra_env) for _ in range(args.runs)]
            tests = sorted(runs[0])
            print(f"\n{name}: median pair ratio head/base per run; the runs' spread (max - min)")
            spreads = []
            for test in tests:
                values = [r[test] for r in runs if test in r]
                spreads.append(max(values) - min(values))
                cells = " ".join(f"{v:.3f}" for v in values)
                print(f"  {test:22s} {cells}   spread {spreads[-1]:.3f}")
            print(
                f"  median spread {statistics.median(spreads):.3f}, largest {max(spreads):.3f}; "
                f"tests off by 3 % or more in every run: "
                f"{sum(all(abs(r[t] - 1) >= 0.03 for r in runs) for t in tests)}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
