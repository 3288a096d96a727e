"""What an A/B head process that does not collect would save: an emulation, run beside
the memory hog (or quiet, or under three busy loops), against the current code in the same
spells.

    python benchmarks/ab/controller_emulation.py --emulating PYTHON --current PYTHON \\
        [--trials 6] [--load mem|cpu|quiet] [--out emulation.jsonl] [--work DIR]
    python benchmarks/ab/controller_emulation.py --summary emulation.jsonl

Today the head process collects the suite (importing every test module), the lanes' head
worker collects it again, and after the lanes the head process runs each paired test once
more for its outcome. A head process that only directs the workers and reports what they
ran (as pytest-xdist's controller does) would do neither. The emulation:

- `--emulating` is an interpreter with `prototypes/emulated-controller.diff` applied to
  pytest-perfguard (a copy of the venv): a paired test that passed in its lane is not run
  again, and with ``PERFGUARD_EMULATE_HEAD_ROOT`` the lanes' head worker is rooted at that
  checkout instead of the head process's;
- its head process runs in a *stub* checkout: the same tests and markers, with a
  workloads module that imports nothing heavy and does nothing, so its collection costs
  what a controller's start would, while the head worker pairs the real head checkout;
- `--current` is an interpreter with the code under comparison (the current commit).

Each trial runs both, in alternating order, on a clean head (a copy of the base) and on a
head with six tests +25 % slower. Printed: per kind, the emulation's wall and CPU seconds
over the current code's (geometric mean of the per-trial ratios, its rough 95 % interval,
the median). RESULTS.md quotes the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # benchmarks/ab/run.py: the suite's writer

STUB_WORKLOADS = '''"""A stub: the emulated controller's checkout imports and runs nothing heavy."""


def prepare() -> None:
    pass


def run(kind: str, ms: float, factor: float = 1.0) -> None:
    pass
'''


def prepare(work: Path, seed: str) -> dict[str, Path]:
    """The base, a clean and a slowed head, and the stub, written once into `work`."""
    dirs = {name: work / name for name in ("base", "head-clean", "head-slow", "stub")}
    if all(d.is_dir() for d in dirs.values()):
        return dirs
    slow = sorted(random.Random(seed).sample(harness.names(), 6))
    harness.write_suite(dirs["base"], [], 1.0)
    harness.write_suite(dirs["head-clean"], [], 1.0)
    harness.write_suite(dirs["head-slow"], slow, 1.25)
    harness.write_suite(dirs["stub"], [], 1.0)
    (dirs["stub"] / "workloads.py").write_text(STUB_WORKLOADS, encoding="utf-8")
    return dirs


def one_run(python: str, cwd: Path, base: Path, report: Path, env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         f"--perf-against={base}", "--perf-threshold", "0.1", f"--perf-json={report}"],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip
    secs = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode not in (0, 1):
        raise SystemExit(f"{python} in {cwd}: exit {done.returncode}\n{done.stdout[-2000:]}")
    verdicts: dict[str, int] = {}
    for row in json.loads(report.read_text())["comparisons"]:
        verdicts[row["verdict"]] = verdicts.get(row["verdict"], 0) + 1
    return {"rc": done.returncode, "secs": secs, "cpu": cpu, "verdicts": verdicts}


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for kind in ("clean", "slow"):
        walls, cpus = [], []
        for trial in sorted({r["trial"] for r in rows}):
            pair = {r["config"]: r for r in rows if r["trial"] == trial and r["kind"] == kind}
            if len(pair) == 2:
                walls.append(math.log(pair["emulated"]["secs"] / pair["current"]["secs"]))
                cpus.append(math.log(pair["emulated"]["cpu"] / pair["current"]["cpu"]))
        if len(walls) < 2:
            continue
        mean, spread = statistics.fmean(walls), 2 * statistics.stdev(walls) / len(walls) ** 0.5
        lines.append(
            f"{kind}: {len(walls)} trials, wall emulated/current {math.exp(mean):.3f} "
            f"({math.exp(mean - spread):.3f}-{math.exp(mean + spread):.3f}), median "
            f"{math.exp(statistics.median(walls)):.3f}; CPU {math.exp(statistics.fmean(cpus)):.3f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulating", help="python with the emulation applied")
    parser.add_argument("--current", help="python with the code to compare")
    parser.add_argument("--summary", type=Path, nargs="+", help="only summarise these files")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument(
        "--load", choices=("mem", "cpu", "quiet"), default="mem",
        help="the memory hog, three busy loops (the harness's), or none",
    )  # fmt: skip
    parser.add_argument("--seed", default="emulation")
    parser.add_argument("--out", type=Path, default=Path("emulation.jsonl"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/perfguard-emulation"))
    args = parser.parse_args()
    if args.summary:
        harness.print_summaries(args.summary, summary)
        return
    if not (args.emulating and args.current):
        parser.error("--emulating and --current are both needed (or --summary)")
    dirs = prepare(args.work, args.seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFGUARD")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as on a user's machine
    env["PYTHONPYCACHEPREFIX"] = str(args.work / "pycache")
    hog = None if args.load == "quiet" else harness.Hogs(args.load)
    rows: list[dict] = []
    try:
        for trial in range(args.trials):
            for kind in ("clean", "slow"):
                head = dirs[f"head-{kind}"]
                configs = [
                    ("current", args.current, head, env),
                    ("emulated", args.emulating, dirs["stub"],
                     dict(env, PERFGUARD_EMULATE_HEAD_ROOT=str(head))),
                ]  # fmt: skip
                if (trial + (kind == "slow")) % 2:
                    configs.reverse()
                for name, python, cwd, run_env in configs:
                    row = one_run(python, cwd, dirs["base"], args.work / f"{name}.json", run_env)
                    row.update(trial=trial, kind=kind, config=name, load=args.load)
                    rows.append(row)
                    harness.append_row(args.out, row)
                    print(trial, kind, name, row["rc"], f"{row['secs']:.2f} s",
                          f"{row['cpu']:.2f} CPU-s", row["verdicts"], flush=True)  # fmt: skip
    finally:
        if hog is not None:
            hog.stop()
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
