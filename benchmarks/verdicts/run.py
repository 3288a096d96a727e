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
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
}


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


def pytest_cmd(directory: Path, *args: str) -> list[str]:
    return [
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


def run_perfguard(
    config: str,
    args: list[str],
    work: Path,
    n_record: int,
    n_clean: int,
    n_slow: int,
    seed: int,
    log: Path,
) -> Score:
    directory = work / f"perfguard-{config}"
    write_suite(directory, "perfguard")
    env = base_env()
    common = ["--perf-platform", PLATFORM, "--perf-threshold", str(THRESHOLD), *args]
    score = Score(f"perfguard {config}")
    with log.open("a", encoding="utf-8") as out:
        for _ in range(n_record):
            rc, _, text = timed(pytest_cmd(directory, *common, "--perf-record"), directory, env)
            out.write(text)
            if rc not in (0, 1):
                raise SystemExit(f"record run failed ({rc}):\n{text}")
        rc, _, text = timed(
            pytest_cmd(
                directory,
                *common,
                "--perf-update-baselines",
                "--perf-min-runs",
                str(n_record),
                "--perf-gate",
                "none",
            ),
            directory,
            env,
        )
        out.write(text)
        runs = [[] for _ in range(n_clean)] + slow_sets(n_slow, seed)
        for i, slow in enumerate(runs):
            report = directory / "r.json"
            report.unlink(missing_ok=True)
            run_env = {**env, "VERDICT_SLOW": ",".join(slow)}
            rc, secs, text = timed(
                pytest_cmd(directory, *common, "--perf", "--perf-json", str(report)),
                directory,
                run_env,
            )
            out.write(f"--- {config} run {i} slow={slow} rc={rc}\n{text}")
            score.seconds.append(secs)
            comparisons = json.loads(report.read_text())["comparisons"]
            verdicts = {c["metric"]: c["verdict"] for c in comparisons if c["gated"]}
            _score(score, verdicts, set(slow), failed=rc == 1)
    return score


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


def run_benchmark(work: Path, n_clean: int, n_slow: int, seed: int, log: Path) -> list[Score]:
    """pytest-benchmark: one autosaved baseline run, then compared runs; its compare-fail
    rule (current stat > baseline stat x 1.1) is applied to the saved JSON for each field,
    and checked against its own exit status for the field given on the command line."""
    directory = work / "pytest-benchmark"
    write_suite(directory, "benchmark")
    env = base_env()
    common = ["-p", "no:perfguard", "--benchmark-storage", str(directory / ".benchmarks")]
    scores = {f: Score(f"benchmark {f}:10%") for f in ("median", "min")}
    with log.open("a", encoding="utf-8") as out:
        rc, _, text = timed(pytest_cmd(directory, *common, "--benchmark-autosave"), directory, env)
        out.write(text)
        saved = sorted((directory / ".benchmarks").rglob("*.json"))[-1]
        baseline = _bench_stats(saved)
        runs = [[] for _ in range(n_clean)] + slow_sets(n_slow, seed)
        mismatches = 0
        for i, slow in enumerate(runs):
            current = directory / "current.json"
            run_env = {**env, "VERDICT_SLOW": ",".join(slow)}
            rc, secs, text = timed(
                pytest_cmd(
                    directory,
                    *common,
                    "--benchmark-compare",
                    "--benchmark-compare-fail=median:10%",
                    "--benchmark-json",
                    str(current),
                ),
                directory,
                run_env,
            )
            out.write(f"--- benchmark run {i} slow={slow} rc={rc}\n{text[-3000:]}")
            stats = _bench_stats(current)
            for stat, score in scores.items():
                verdicts = {
                    name: "regression"
                    if stats[name][stat] > baseline[name][stat] * 1.1
                    else "unchanged"
                    for name in stats
                }
                failed = any(v == "regression" for v in verdicts.values())
                if stat == "median" and failed != (rc == 1):
                    mismatches += 1
                score.seconds.append(secs)
                _score(score, verdicts, set(slow), failed=failed)
        if mismatches:
            print(
                f"warning: {mismatches} runs where pytest-benchmark's exit status disagreed "
                "with the median:10% rule computed here",
                file=sys.stderr,
            )
    return list(scores.values())


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
    default_configs = "default,plain" if quick else ",".join(CONFIGS)
    configs = (options.configs or default_configs).split(",")
    tools = options.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="perfguard-verdicts-"))
    log = work / "runs.log"
    print(
        f"work directory {work}; {clean} clean + {slow} slowed runs per configuration, "
        f"threshold {THRESHOLD:.0%}",
        flush=True,
    )
    scores: list[Score] = []
    started = time.perf_counter()
    try:
        if "perfguard" in tools:
            for config in configs:
                score = run_perfguard(
                    config, CONFIGS[config], work, options.record, clean, slow, options.seed, log
                )
                print(score.line(), flush=True)
                scores.append(score)
        if "benchmark" in tools:
            bench_clean = clean if not quick else min(clean, 4)
            bench_slow = slow if not quick else min(slow, 4)
            for score in run_benchmark(work, bench_clean, bench_slow, options.seed, log):
                print(score.line(), flush=True)
                scores.append(score)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print("\nper group (kind/rounds: false alarms, detections):")
    for score in scores:
        cells = "  ".join(
            f"{g} {fa}/{n} {det}/{inj}" for g, (fa, n, det, inj) in sorted(score.by_group.items())
        )
        print(f"{score.name:22s} {cells}")
    if options.out:
        options.out.write_text(json.dumps([asdict(s) for s in scores], indent=2) + "\n")


if __name__ == "__main__":
    main()
