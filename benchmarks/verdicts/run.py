"""Verdict benchmark: false alarms on clean runs and detections of a known +25 % slowdown,
pytest-perfguard against pytest-benchmark on the same workloads. See README.md.

    python benchmarks/verdicts/run.py --quick          # a few minutes
    python benchmarks/verdicts/run.py                  # the full benchmark (about half an hour)
    python benchmarks/verdicts/run.py --configs default,plain --tools perfguard

Each configuration gets its own fresh suite directory: record runs, baselines updated from
them, then clean runs and runs where a random quarter of the metrics does 25 % more work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = ("sha", "interp", "mem")
SIZES_MS = (0.3, 1.0, 3.0, 30.0)
ROUNDS = 7
PLATFORM = "verdict_bench"
THRESHOLD = 0.10
SLOW_SHARE = 0.25

# name -> extra pytest arguments; every configuration gates at THRESHOLD.
CONFIGS: dict[str, list[str]] = {
    # what a user gets with no options
    "default": [],
    "noise-rule": ["--perf-rule", "noise"],
    "median+confirm": ["--perf-estimator", "median"],
    "q25+confirm": ["--perf-estimator", "q25"],
    "confirm3": ["--perf-confirm", "3"],
    "min-no-confirm": ["--perf-confirm", "0"],
    # the gating issue's plain rule: median of back-to-back rounds, threshold, no re-runs
    "plain": ["--perf-estimator", "median", "--perf-confirm", "0", "--perf-rounds-budget", "0"],
    # pytest under valgrind's callgrind: gates each test's instruction count (LAUNCHERS)
    "callgrind": [],
}
# Configurations whose pytest runs under another program: the command before python.
LAUNCHERS: dict[str, list[str]] = {
    "callgrind": ["valgrind", "--tool=callgrind", "--instr-atstart=no", "-q"],
}
# What a launcher's runs need in their environment: a fixed hash seed, so that dict and set
# layouts, and with them instruction counts, do not change from run to run.
LAUNCHER_ENV: dict[str, dict[str, str]] = {"callgrind": {"PYTHONHASHSEED": "0"}}


def test_names() -> list[tuple[str, str, float, bool]]:
    names = []
    for with_rounds in (True, False):
        for kind in KINDS:
            for ms in SIZES_MS:
                size = f"{ms:g}".replace(".", "p")
                name = f"{kind}_{size}ms_{'rounds' if with_rounds else 'auto'}"
                names.append((name, kind, ms, with_rounds))
    return names


HEADER = """import os
import pytest
import workloads

workloads.prepare()
SLOW = set(filter(None, os.environ.get("VERDICT_SLOW", "").split(",")))
FACTOR = float(os.environ.get("VERDICT_FACTOR", "1.25"))


def factor(name):
    return FACTOR if name in SLOW else 1.0
"""


def write_suite(directory: Path, tool: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "workloads.py", directory / "workloads.py")
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    body = [HEADER]
    for name, kind, ms, with_rounds in test_names():
        call = f'workloads.run("{kind}", {ms}, factor("{name}"))'
        if tool == "perfguard":
            rounds = f", rounds={ROUNDS}" if with_rounds else ""
            body.append(
                f'\n@pytest.mark.perf(metric="{name}"{rounds})\ndef test_{name}():\n    {call}\n'
            )
        else:
            body.append(
                f'\ndef test_{name}(benchmark):\n    benchmark(workloads.run, "{kind}", '
                f'{ms}, factor("{name}"))\n'
            )
    (directory / "test_verdict_suite.py").write_text("\n".join(body), encoding="utf-8")


@dataclass
class Score:
    name: str
    clean_runs: int = 0
    clean_verdicts: int = 0
    false_alarms: int = 0
    failing_clean_runs: int = 0
    slow_runs: int = 0
    injected: int = 0
    detected: int = 0
    unstable: int = 0
    slow_false_alarms: int = 0
    slow_clean_verdicts: int = 0
    seconds: list[float] = field(default_factory=list)
    # The largest change of an untouched metric from its baseline, either way (perfguard).
    largest_clean_change: float = 0.0
    by_group: dict[str, list[int]] = field(default_factory=dict)  # group -> [fa, n, det, inj]

    def line(self) -> str:
        fa = self.false_alarms / max(self.clean_verdicts, 1)
        det = self.detected / max(self.injected, 1)
        secs = sum(self.seconds) / max(len(self.seconds), 1)
        return (
            f"{self.name:16s} false alarms {self.false_alarms:3d}/{self.clean_verdicts:4d} "
            f"= {fa:6.2%}  failing clean runs {self.failing_clean_runs:2d}/{self.clean_runs:2d}"
            f"  detected {self.detected:3d}/{self.injected:3d} = {det:6.1%}"
            f"  unstable {self.unstable:3d}  {secs:5.1f} s/run"
            + (
                f"  largest clean change {self.largest_clean_change:.3%}"
                if self.largest_clean_change
                else ""
            )
        )

    def count(self, name: str, flagged: bool, slowed: bool) -> None:
        group = "rounds" if name.endswith("_rounds") else "auto"
        group = f"{name.split('_')[0]}/{group}"
        cell = self.by_group.setdefault(group, [0, 0, 0, 0])
        if slowed:
            cell[2] += flagged
            cell[3] += 1
        else:
            cell[0] += flagged
            cell[1] += 1


def pytest_cmd(directory: Path, *args: str, launcher: Sequence[str] = ()) -> list[str]:
    return [
        *launcher,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        str(directory),
        *args,
    ]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGUARD", "VERDICT_"))}
    env.pop("CI", None)
    env.pop("GITHUB_ACTIONS", None)
    return env


def slow_sets(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    names = [n for n, *_ in test_names()]
    return [sorted(rng.sample(names, round(SLOW_SHARE * len(names)))) for _ in range(count)]


class Perfguard:
    """One perfguard configuration: its own suite directory, baselines and score."""

    def __init__(self, config: str, work: Path, log: Path) -> None:
        self.config = config
        self.directory = work / f"perfguard-{config}"
        write_suite(self.directory, "perfguard")
        self.common = [
            "--perf-platform",
            PLATFORM,
            "--perf-threshold",
            str(THRESHOLD),
            *CONFIGS[config],
        ]
        self.log = log
        self.scores = [Score(f"perfguard {config}")]
        self.launcher = LAUNCHERS.get(config, [])
        args = CONFIGS[config]
        self.record_key = tuple(
            f"{flag}={args[i + 1]}"
            for i, flag in enumerate(args)
            if flag in ("--perf-estimator", "--perf-rounds-budget")
        ) + ((config,) if self.launcher else ())

    def copy_baselines(self, other: Perfguard) -> None:
        shutil.copytree(other.directory / "baselines", self.directory / "baselines")

    def _run(self, *args: str, slow: Sequence[str] = ()) -> tuple[int, float, str]:
        env = {**base_env(), **LAUNCHER_ENV.get(self.config, {}), "VERDICT_SLOW": ",".join(slow)}
        cmd = pytest_cmd(self.directory, *self.common, *args, launcher=self.launcher)
        rc, secs, text = timed(cmd, self.directory, env)
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- {self.config} {' '.join(args)} slow={slow} rc={rc}\n{text}")
        # Callgrind leaves a profile per counted test (~100 KB each): read, not kept.
        for dump in self.directory.glob("callgrind.out.*"):
            dump.unlink()
        return rc, secs, text

    def record(self) -> None:
        rc, _, text = self._run("--perf-record")
        if rc not in (0, 1):
            raise SystemExit(f"record run failed ({rc}):\n{text}")

    def update(self, runs: int) -> None:
        self._run("--perf-update-baselines", "--perf-min-runs", str(runs), "--perf-gate", "none")

    def measure(self, slow: list[str]) -> None:
        report = self.directory / "r.json"
        report.unlink(missing_ok=True)
        rc, secs, _ = self._run("--perf", "--perf-json", str(report), slow=slow)
        comparisons = json.loads(report.read_text())["comparisons"]
        # By test: each test's gated metric is named after it, except under callgrind,
        # where every test's is `instructions`.
        verdicts = {
            c["test"].rpartition("::test_")[2]: c["verdict"] for c in comparisons if c["gated"]
        }
        changes = [
            abs(c["change"])
            for c in comparisons
            if c["gated"]
            and c["change"] is not None
            and c["test"].rpartition("::test_")[2] not in slow
        ]
        score = self.scores[0]
        score.largest_clean_change = max([score.largest_clean_change, *changes])
        score.seconds.append(secs)
        _score(score, verdicts, set(slow), failed=rc == 1)


def _score(score: Score, verdicts: dict[str, str], slow: set[str], *, failed: bool) -> None:
    names = [n for n, *_ in test_names()]
    if not slow:
        score.clean_runs += 1
        score.failing_clean_runs += failed
    else:
        score.slow_runs += 1
    for name in names:
        verdict = verdicts.get(name, "missing")
        flagged = verdict == "regression"
        score.unstable += verdict == "unstable"
        score.count(name, flagged, name in slow)
        if name in slow:
            score.injected += 1
            score.detected += flagged
        elif slow:
            score.slow_clean_verdicts += 1
            score.slow_false_alarms += flagged
        else:
            score.clean_verdicts += 1
            score.false_alarms += flagged


class Benchmark:
    """pytest-benchmark: one autosaved baseline run, then compared runs. Its compare-fail
    rule (current stat > baseline stat x 1.1) is applied to each run's JSON for both fields,
    and checked against its own exit status for the field given on the command line."""

    def __init__(self, work: Path, log: Path) -> None:
        self.directory = work / "pytest-benchmark"
        write_suite(self.directory, "benchmark")
        self.common = [
            "-p",
            "no:perfguard",
            "--benchmark-storage",
            str(self.directory / ".benchmarks"),
        ]
        self.log = log
        self.by_field = {f: Score(f"benchmark {f}:10%") for f in ("median", "min")}
        self.scores = list(self.by_field.values())
        self.mismatches = 0
        self.baseline: dict[str, dict[str, float]] = {}

    def _run(self, *args: str, slow: Sequence[str] = ()) -> tuple[int, float, str]:
        env = {**base_env(), "VERDICT_SLOW": ",".join(slow)}
        rc, secs, text = timed(pytest_cmd(self.directory, *self.common, *args), self.directory, env)
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- benchmark {' '.join(args)} slow={slow} rc={rc}\n{text[-3000:]}")
        return rc, secs, text

    def record(self) -> None:
        self._run("--benchmark-autosave")
        saved = sorted((self.directory / ".benchmarks").rglob("*.json"))[-1]
        self.baseline = _bench_stats(saved)

    def measure(self, slow: list[str]) -> None:
        current = self.directory / "current.json"
        rc, secs, _ = self._run(
            "--benchmark-compare",
            "--benchmark-compare-fail=median:10%",
            "--benchmark-json",
            str(current),
            slow=slow,
        )
        stats = _bench_stats(current)
        for stat, score in self.by_field.items():
            verdicts = {
                name: "regression"
                if stats[name][stat] > self.baseline[name][stat] * 1.1
                else "unchanged"
                for name in stats
            }
            failed = any(v == "regression" for v in verdicts.values())
            if stat == "median" and failed != (rc == 1):
                self.mismatches += 1
            score.seconds.append(secs)
            _score(score, verdicts, set(slow), failed=failed)


def _bench_stats(path: Path) -> dict[str, dict[str, float]]:
    data = json.loads(path.read_text())
    return {b["name"].removeprefix("test_"): b["stats"] for b in data["benchmarks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a few minutes)")
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated perfguard configurations: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--tools", default="perfguard,benchmark")
    parser.add_argument("--record", type=int, default=5, help="recorded runs for baselines")
    parser.add_argument("--clean", type=int, default=None, help="clean runs per configuration")
    parser.add_argument("--slow", type=int, default=None, help="runs with injected slowdowns")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="where to write results.json")
    parser.add_argument("--keep", action="store_true", help="keep the suite directories")
    options = parser.parse_args()
    quick = options.quick
    clean = options.clean if options.clean is not None else (6 if quick else 20)
    slow = options.slow if options.slow is not None else (6 if quick else 20)
    default_configs = (
        "default,plain" if quick else "default,confirm3,noise-rule,median+confirm,plain"
    )
    configs = (options.configs or default_configs).split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown[0]!r}; choose from {', '.join(CONFIGS)}")
    for config in configs:
        launcher = LAUNCHERS.get(config)
        if launcher and shutil.which(launcher[0]) is None:
            raise SystemExit(f"configuration {config!r} needs {launcher[0]}: not installed")
    tools = options.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="perfguard-verdicts-"))
    log = work / "runs.log"
    print(
        f"work directory {work}; {clean} clean + {slow} slowed runs per configuration, "
        f"threshold {THRESHOLD:.0%}",
        flush=True,
    )
    started = time.perf_counter()
    tools_: list[Perfguard | Benchmark] = []
    if "perfguard" in tools:
        tools_ += [Perfguard(config, work, log) for config in configs]
    bench = Benchmark(work, log) if "benchmark" in tools else None
    # Every configuration runs once per round, in turn, so all of them see the same spells
    # of a shared machine; pytest-benchmark (about 30 s a run) takes part in fewer rounds.
    bench_every = 1 if not quick else 2
    try:
        # Configurations that differ only in how they judge (rule, confirm) share one set of
        # baselines, so their scores differ by the rule alone; the estimator and the rounds
        # budget change what is stored, so those record their own.
        recorders: dict[tuple[str, ...], Perfguard] = {}
        for tool in tools_:
            if isinstance(tool, Perfguard):
                recorders.setdefault(tool.record_key, tool)
        for _ in range(options.record):
            for tool in recorders.values():
                tool.record()
        for tool in recorders.values():
            tool.update(options.record)
        for tool in tools_:
            if isinstance(tool, Perfguard) and recorders[tool.record_key] is not tool:
                tool.copy_baselines(recorders[tool.record_key])
        if bench is not None:
            bench.record()
        plan: list[list[str]] = [[] for _ in range(clean)] + slow_sets(slow, options.seed)
        random.Random(options.seed).shuffle(plan)
        for index, slowed in enumerate(plan):
            for tool in tools_:
                tool.measure(slowed)
            if bench is not None and index % bench_every == 0:
                bench.measure(slowed)
            print(f"round {index + 1}/{len(plan)} done", flush=True)
            if options.out:  # the scores so far, should a long run be cut short
                options.out.write_text(json.dumps(_all_scores(tools_, bench), indent=2) + "\n")
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    scores = [score for tool in tools_ for score in tool.scores]
    if bench is not None:
        scores += bench.scores
        if bench.mismatches:
            print(
                f"warning: {bench.mismatches} runs where pytest-benchmark's exit status "
                "disagreed with the median:10% rule computed here",
                file=sys.stderr,
            )
    print()
    for score in scores:
        print(score.line())
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print("\nper group (kind/rounds: false alarms, detections):")
    for score in scores:
        cells = "  ".join(
            f"{g} {fa}/{n} {det}/{inj}" for g, (fa, n, det, inj) in sorted(score.by_group.items())
        )
        print(f"{score.name:22s} {cells}")
    if options.out:
        options.out.write_text(json.dumps(_all_scores(tools_, bench), indent=2) + "\n")


def _all_scores(tools: Sequence[Perfguard | Benchmark], bench: Benchmark | None) -> list[Any]:
    scores = [score for tool in tools for score in tool.scores]
    if bench is not None:
        scores += bench.scores
    return [asdict(score) for score in scores]


if __name__ == "__main__":
    main()
