"""A/B benchmark: `--perf-against` (duet; interleave in lanes, and in one lane) against the
stored-baseline gate, on the verdict harness's 24 fixed-work tests, under a chosen load.
See README.md.

    python benchmarks/ab/run.py --condition quiet --trials 10 --out ab.jsonl
    python benchmarks/ab/run.py --condition cpu --trials 10 --out ab.jsonl      # 3 busy loops
    python benchmarks/ab/run.py --condition mem --trials 10 --out ab.jsonl      # memory hog
    python benchmarks/ab/run.py --condition hosted --trials 10 --out ab.jsonl   # stored side
                                                # recorded quiet, every check under 3 busy loops
    python benchmarks/ab/run.py --summary ab.jsonl

Each trial is clean (head = base) or slowed (a random quarter of the tests does `--factor`
more work in the head's copy of the suite), and runs every configuration once, in random
order, so all meet the same spells. One JSON line per run is appended to `--out`, so a
stopped benchmark resumes by running again with the same `--out` and `--work`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("verdict_run", HERE.parent / "verdicts" / "run.py")
assert _spec is not None and _spec.loader is not None
verdicts = importlib.util.module_from_spec(_spec)
sys.modules["verdict_run"] = verdicts  # dataclasses look their module up
_spec.loader.exec_module(verdicts)

THRESHOLD = verdicts.THRESHOLD
SUITE = "test_verdict_suite.py"
CONFIGS = ("duet", "interleave", "interleave1", "interleave-other", "stored")
# The A/B configurations' options: the mode, and for `interleave1` one lane (the head
# process pairing with one base worker, as before lanes); the others get the default lanes.
AB_ARGS = {
    "duet": ["--perf-ab-mode", "duet"],
    "interleave": ["--perf-ab-mode", "interleave"],
    "interleave1": ["--perf-ab-mode", "interleave", "--perf-ab-lanes", "1"],
    "interleave-other": ["--perf-ab-mode", "interleave"],
}
RECORD_RUNS = 5


def load_workloads() -> Any:
    """The verdict harness's workloads module (benchmarks/verdicts/workloads.py), for the
    scripts here that time its calls directly."""
    spec = importlib.util.spec_from_file_location(
        "workloads", HERE.parent / "verdicts" / "workloads.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A result file's rows, one JSON object a line."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def append_row(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(row) + "\n")


def print_summaries(
    paths: list[Path], summarise: Callable[[list[dict[str, Any]]], list[str]]
) -> None:
    """`--summary FILE...` of the scripts here: each file's name, then its summary lines."""
    for path in paths:
        print(f"{path.name}:", *summarise(read_rows(path)), sep="\n  ")


def names() -> list[str]:
    return [name for name, *_ in verdicts.test_names()]


# A module of unmarked tests (`--unmarked`): some work at import, as a real suite's test
# modules import their project, and a few quick tests.
UNMARKED_MODULE = """
TABLE = sum(i * i for i in range(100_000))


def test_one():
    assert TABLE


def test_two():
    assert TABLE > 1


def test_three():
    pass
"""


def write_suite(directory: Path, slow: list[str], factor: float, unmarked: int = 0) -> None:
    """The verdict harness's suite with the slowdown in the code, not in the environment
    (the base worker inherits the head's environment); with `unmarked`, that many modules
    of unmarked tests beside it."""
    verdicts.write_suite(directory, "perfguard")
    for index in range(unmarked):
        module = directory / f"test_unmarked_{index:03}.py"
        if not module.exists():
            module.write_text(UNMARKED_MODULE, encoding="utf-8")
    path = directory / SUITE
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        'SLOW = set(filter(None, os.environ.get("VERDICT_SLOW", "").split(",")))',
        f"SLOW = {set(slow)!r}" if slow else "SLOW = set()",
    ).replace('FACTOR = float(os.environ.get("VERDICT_FACTOR", "1.25"))', f"FACTOR = {factor}")
    path.write_text(text, encoding="utf-8")


def pytest_run(
    directory: Path, *args: str, python: str | None = None
) -> tuple[int, float, float, str]:
    """Exit status, wall seconds, CPU seconds and output of one pytest run. The CPU seconds
    are the run's process and every process it waited for (its workers, and their copies,
    which the workers reap): what the run took from the machine, whatever the number of
    CPUs it spread over. The load processes are this harness's children too, but they are
    reaped only after the condition's last run."""
    cmd = verdicts.pytest_cmd(directory, "--perf-platform", verdicts.PLATFORM, *args)
    if python:
        cmd[0] = python
    env = verdicts.base_env()
    # Bytecode cached as on a user's machine (pytest keeps its assertion-rewritten modules
    # there): with PYTHONDONTWRITEBYTECODE inherited, every process of a run compiles
    # perfguard and rewrites the suite again, 0.65 CPU-seconds here, which an A/B run,
    # whose workers each collect, pays up to five times and the stored gate once.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(directory.parent / "pycache")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, secs, text = verdicts.timed(cmd, directory, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return rc, secs, cpu, text


def gated_verdicts(report: Path) -> dict[str, str]:
    comparisons = json.loads(report.read_text())["comparisons"]
    return {
        c["test"].rpartition("::test_")[2]: c["verdict"]
        for c in comparisons
        if c["gated"] and c["metric"] == c["test"].rpartition("::test_")[2]
    }


def notes(report: Path) -> dict[str, str]:
    """The detail of each verdict other than unchanged (ratios, pairs, confirmations)."""
    comparisons = json.loads(report.read_text())["comparisons"]
    return {
        c["test"].rpartition("::test_")[2]: c.get("detail", "")
        for c in comparisons
        if c["gated"] and c["verdict"] != "unchanged"
    }


class Hogs:
    """Background load: `cpu` = three busy loops (more than the two cores), `mem` = one
    process copying 256 MB buffers back and forth (memory bandwidth)."""

    def __init__(self, kind: str) -> None:
        # Each load process stops by itself once the harness is gone (killed, so that its
        # `finally` never ran): it checks its parent between bursts of work.
        work = {
            "cpu": "for _ in range(1_000_000): pass",
            "mem": "b = bytes(a)\n    a[:] = b",
        }[kind]
        buffer = "bytearray(256 << 20)" if kind == "mem" else "None"
        code = (
            f"import os\nparent = {os.getpid()}\na = {buffer}\n"
            f"while os.getppid() == parent:\n    {work}\n"
        )
        count = 3 if kind == "cpu" else 1
        self.processes = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def record_stored(directory: Path, log: Path, unmarked: int = 0) -> None:
    """The stored gate's baselines: RECORD_RUNS recorded runs of the base, then an update."""
    write_suite(directory, [], 1.0, unmarked)
    for _ in range(RECORD_RUNS):
        rc, _, _, text = pytest_run(directory, "--perf-record", "--perf-threshold", str(THRESHOLD))
        if rc not in (0, 1):
            raise SystemExit(f"record run failed ({rc}):\n{text}")
    pytest_run(
        directory, "--perf-update-baselines", "--perf-min-runs", str(RECORD_RUNS),
        "--perf-gate", "none",
    )  # fmt: skip
    with log.open("a") as out:
        out.write(f"recorded baselines in {directory}\n")


def run_config(
    config: str,
    work: Path,
    slow: list[str],
    factor: float,
    budget: float | None = None,
    other_python: str | None = None,
    unmarked: int = 0,
) -> dict[str, Any]:
    report = work / f"{config}.json"
    report.unlink(missing_ok=True)
    threshold = ["--perf-threshold", str(THRESHOLD), "--perf-json", str(report)]
    if config == "stored":
        directory = work / "stored"
        write_suite(directory, slow, factor, unmarked)
        rc, secs, cpu, text = pytest_run(directory, "--perf", *threshold)
    else:
        directory = work / "head"
        write_suite(directory, slow, factor, unmarked)
        budget_args = [] if budget is None else ["--perf-ab-budget", str(budget)]
        rc, secs, cpu, text = pytest_run(
            directory, f"--perf-against={work / 'base'}", *AB_ARGS[config],
            *budget_args, *threshold,
            python=other_python if config == "interleave-other" else None,
        )  # fmt: skip
    if not report.exists():
        raise SystemExit(f"{config}: no report (rc {rc}):\n{text[-3000:]}")
    return {
        "rc": rc, "secs": secs, "cpu": cpu, "verdicts": gated_verdicts(report),
        "notes": notes(report),
    }  # fmt: skip


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    log = work / "runs.log"
    write_suite(work / "base", [], 1.0, args.unmarked)
    done = read_rows(out) if out.exists() else []
    finished = {(d["condition"], d["trial"], d["config"]) for d in done}
    rng = random.Random(f"{args.seed}-{args.condition}")
    plans = [
        (trial, trial % 2 == 1, sorted(rng.sample(names(), round(0.25 * len(names())))))
        for trial in range(args.trials)
    ]
    stored_dir = work / "stored"
    hogs_kind = {"quiet": None, "cpu": "cpu", "mem": "mem", "hosted": "cpu"}[args.condition]
    if not (stored_dir / "baselines").exists():
        # hosted: baselines recorded on a quiet machine, checks under load; else same load.
        hogs = Hogs(hogs_kind) if hogs_kind and args.condition != "hosted" else None
        try:
            record_stored(stored_dir, log, args.unmarked)
        finally:
            if hogs:
                hogs.stop()
    hogs = Hogs(hogs_kind) if hogs_kind else None
    try:
        for trial, slowed, slow_set in plans:
            slow = slow_set if slowed else []
            order = list(args.configs)
            rng.shuffle(order)
            for config in order:
                if (args.condition, trial, config) in finished:
                    continue
                result = run_config(
                    config, work, slow, args.factor, args.budget, args.other_python, args.unmarked
                )
                row = {
                    "condition": args.condition,
                    "trial": trial,
                    "config": config,
                    "factor": args.factor,
                    "slow": slow,
                    "unmarked": args.unmarked,
                    "load": load_average(),
                    **result,
                }
                append_row(out, row)
                print(
                    f"{args.condition} trial {trial} {config}: rc {row['rc']} "
                    f"{row['secs']:.1f} s load {row['load']:.1f}",
                    flush=True,
                )
    finally:
        if hogs:
            hogs.stop()


def summary(path: Path) -> str:
    rows = read_rows(path)
    table: dict[tuple[str, float, str], dict[str, Any]] = {}
    kinds: dict[tuple[str, float, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        key = (row["condition"], row["factor"], row["config"])
        cell = table.setdefault(
            key,
            {"clean": 0, "failing": 0, "fa": 0, "n": 0, "det": 0, "inj": 0, "secs": [],
             "unstable": 0, "load": []},
        )  # fmt: skip
        slow = set(row["slow"])
        cell["secs"].append(row["secs"])
        cell["load"].append(row["load"])
        if not slow:
            cell["clean"] += 1
            cell["failing"] += row["rc"] == 1
        for name in names():
            verdict = row["verdicts"].get(name, "missing")
            flagged = verdict == "regression"
            cell["unstable"] += verdict == "unstable"
            kind = kinds[(*key, name.split("_")[0])]
            if name in slow:
                cell["inj"] += 1
                cell["det"] += flagged
                kind[2] += flagged
                kind[3] += 1
            elif not slow:
                cell["n"] += 1
                cell["fa"] += flagged
                kind[0] += flagged
                kind[1] += 1
    lines = [
        "| condition | slowdown | config | false alarms | failing clean runs | detected | "
        "unstable | s/run | load | sha fa, det | interp fa, det | mem fa, det |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    for (condition, factor, config), c in sorted(table.items()):
        by_kind = [
            "{}/{}, {}/{}".format(*kinds[(condition, factor, config, kind)])
            for kind in ("sha", "interp", "mem")
        ]
        secs = sum(c["secs"]) / len(c["secs"])
        load = sum(c["load"]) / len(c["load"])
        lines.append(
            f"| {condition} | +{factor - 1:.0%} | {config} | {c['fa']}/{c['n']} "
            f"({c['fa'] / max(c['n'], 1):.1%}) | {c['failing']}/{c['clean']} | "
            f"{c['det']}/{c['inj']} ({c['det'] / max(c['inj'], 1):.0%}) | {c['unstable']} | "
            f"{secs:.1f} | {load:.1f} | {' | '.join(by_kind)} |"
        )
    return "\n".join([*lines, "", *time_ratios(rows)])


def time_ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Per configuration and condition: each trial's A/B seconds over the stored gate's in
    the same trial (c clean, s slowed), their median, the ratio of the sums, the medians of
    the clean and the slowed trials apart, and (rows since 2026-12-01, 16:00) the same
    medians of the CPU seconds' ratios."""
    trials: dict[tuple[str, float, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        trials[(row["condition"], row["factor"], row["trial"])][row["config"]] = row
    series: dict[tuple[str, float, str], list[tuple[dict[str, Any], dict[str, Any]]]]
    series = defaultdict(list)
    for (condition, factor, _), configs in sorted(trials.items()):
        stored = configs.get("stored")
        if stored is None:
            continue
        for config, row in configs.items():
            if config != "stored":
                series[(condition, factor, config)].append((row, stored))
    lines = []
    for (condition, factor, config), runs in sorted(series.items()):
        ratios = [row["secs"] / stored["secs"] for row, stored in runs]
        each = ", ".join(
            f"{ratio:.2f}{'s' if row['slow'] else 'c'}"
            for ratio, (row, _) in zip(ratios, runs, strict=True)
        )
        total = sum(row["secs"] for row, _ in runs) / sum(stored["secs"] for _, stored in runs)
        apart = _clean_and_slowed(runs, "secs")
        line = (
            f"- {condition} +{factor - 1:.0%} {config}: x stored {each}; median "
            f"{statistics.median(ratios):.2f}x, sums {total:.2f}x; {apart}"
        )
        if all("cpu" in row and "cpu" in stored for row, stored in runs):
            line += f"; CPU seconds: {_clean_and_slowed(runs, 'cpu')}"
        lines.append(line)
    return lines


def _clean_and_slowed(runs: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> str:
    """The median ratio to the stored gate of `key` in the clean trials and in the slowed."""
    parts = []
    for label, slowed in (("clean", False), ("slowed", True)):
        ratios = [row[key] / stored[key] for row, stored in runs if bool(row["slow"]) == slowed]
        if ratios:
            parts.append(f"{label} {statistics.median(ratios):.2f}x")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--condition", choices=("quiet", "cpu", "mem", "hosted"), default="quiet")
    parser.add_argument("--trials", type=int, default=10, help="half clean, half slowed")
    parser.add_argument("--factor", type=float, default=1.25)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", default="ab-results.jsonl")
    parser.add_argument("--work", default=None, help="kept between runs (resume); default: temp")
    parser.add_argument("--seed", default="ab")
    parser.add_argument(
        "--unmarked",
        type=int,
        default=0,
        help="modules of unmarked tests beside the suite (3 tests each, 5 ms of work at "
        "import), as in a real suite; the A/B configurations pair only the marked tests",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="--perf-ab-budget for the A/B configurations (default: the plugin's)",
    )
    parser.add_argument(
        "--other-python",
        metavar="PYTHON",
        help="the interpreter of config interleave-other: another version of "
        "pytest-perfguard installed in a venv of its own, side by side",
    )
    parser.add_argument("--summary", metavar="JSONL", help="print the table of a results file")
    args = parser.parse_args()
    if args.summary:
        print(summary(Path(args.summary)))
        return
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; choose from {CONFIGS}")
    if "interleave-other" in args.configs and not args.other_python:
        raise SystemExit("config interleave-other needs --other-python")
    temporary = args.work is None
    if temporary:
        args.work = tempfile.mkdtemp(prefix="ab-bench-")
    try:
        run(args)
    finally:
        if temporary:
            shutil.rmtree(args.work, ignore_errors=True)
    print(summary(Path(args.out)))


if __name__ == "__main__":
    main()
