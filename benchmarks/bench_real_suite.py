"""What recording a whole real suite costs: bare pytest against ``--perf-record --perf-gate=all``.

Two public suites, taken from their source distributions on PyPI at fixed versions (or from a
directory you name): more-itertools (about 740 tests and 21 000 subtests, unittest style) and
pluggy (src layout). Each is run bare (``-p no:perfguard``) and recording every test into a
fresh SQLite history, the modes alternating, ``--repeats`` times each; the fastest wall time of
each mode is compared, as is the fastest CPU time (user + system of the pytest process, which a
busy machine inflates less than wall time). The target is a ratio of at most 1.05.

    python benchmarks/bench_real_suite.py                         # both suites, 4 runs each
    python benchmarks/bench_real_suite.py --suites more-itertools --repeats 6
    python benchmarks/bench_real_suite.py --source 68bf2b9        # the plugin as of a revision
    python benchmarks/bench_real_suite.py --suite-dir more-itertools=/path/to/checkout
    python benchmarks/bench_real_suite.py --callgrind             # instructions, one run a mode

Wall and CPU time on a shared machine spread by several per cent between runs of one
command, as much as the effect; ``--callgrind`` counts each mode's instructions instead
(the pytest process, under ``valgrind --tool=callgrind``, perfguard's own instruction
counter off so that it measures as on a real CPU). Kernel time is not in the count.

The plugin measured is a copy (the working tree as it is at the start, or ``--source REV``)
first on PYTHONPATH, so edits made during the run do not reach it. Each suite's own package
comes first too (its source directory, ``src/`` for pluggy), ahead of any installed copy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OTHER_PLUGINS_OFF = ["-p", "no:benchmark", "-p", "no:xdist", "-p", "no:hypothesispytest"]


@dataclass(frozen=True)
class Suite:
    name: str
    requirement: str  # pip requirement of the source distribution
    tests: str  # path of the tests, relative to the source root
    import_root: str  # relative path to put first on PYTHONPATH


SUITES = {
    "more-itertools": Suite("more-itertools", "more-itertools==10.5.0", "tests", "."),
    "pluggy": Suite("pluggy", "pluggy==1.5.0", "testing", "src"),
}
MODES = {
    "bare": ["-p", "no:perfguard"],
    "record": ["--perf-record", "--perf-gate=all"],
}


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def fetch_suite(suite: Suite, workdir: Path) -> Path:
    """The suite's source tree, unpacked from its source distribution on PyPI."""
    download = workdir / "downloads"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(download),
            suite.requirement,
        ],
        check=True,
    )
    name, version = suite.requirement.split("==")
    archive = next(download.glob(f"{name.replace('-', '?')}-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(workdir / "suites", filter="data")
    return workdir / "suites" / archive.name.removesuffix(".tar.gz")


def plugin_copy(revision: str | None, workdir: Path) -> tuple[Path, str]:
    target = workdir / "plugin"
    if revision is None:
        shutil.copytree(
            REPO / "pytest_perfguard",
            target / "pytest_perfguard",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return target, f"working tree at {head}"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "pytest_perfguard"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, f"git {commit[:12]}"


def environment(plugin: Path, suite_root: Path, suite: Suite, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGUARD", "PYTEST_"))}
    for seed_name in (
        "ENABLE_PERFORMANCE_RECORDING",
        "PERFORMANCE_PLATFORM",
        "PERFORMANCE_DB_PATH",
        "REGRESSION_THRESHOLD",
        "PERFORMANCE_RUN_TYPE",
        "BENCHMARK_MODE",
    ):
        env.pop(seed_name, None)
    env["PYTHONPATH"] = os.pathsep.join([str(suite_root / suite.import_root), str(plugin)])
    env["PYTHONHASHSEED"] = "0"
    # Bytecode of the measured runs comes from a cache of our own, filled by the warm-up run.
    # It must be written: with PYTHONDONTWRITEBYTECODE inherited, every run would compile
    # every module it imports from source (the prefix hides the installed bytecode), and the
    # mode importing more (the plugin's modules) would pay for it as if it were its cost.
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(
    suite_root: Path, suite: Suite, mode: str, env: dict[str, str], launcher: tuple[str, ...] = ()
) -> tuple[Timing, str]:
    history = suite_root / ".perfguard-bench" / "history.db"
    shutil.rmtree(history.parent, ignore_errors=True)
    command = [
        *launcher,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *OTHER_PLUGINS_OFF,
        suite.tests,
        *MODES[mode],
    ]
    if mode == "record":
        command += ["--perf-db", str(history)]
        if launcher:
            # Under callgrind perfguard counts each test's instructions itself (and zeroes
            # the totals between tests); blocked, it measures as on a real CPU.
            command += ["-p", "no:perfguard-instructions"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=suite_root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode not in (0, 1) or "passed" not in summary:
        raise SystemExit(
            f"{suite.name} {mode}: exit {done.returncode}: {summary}\n{done.stderr[-2000:]}"
        )
    return Timing(wall, cpu), summary


def count_instructions(
    suite_root: Path, suite: Suite, mode: str, env: dict[str, str], workdir: Path
) -> int:
    """The instructions of one run of `mode` (the pytest process), from callgrind's total."""
    out_file = workdir / f"callgrind.{suite.name}.{mode}.out"
    launcher = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}")
    run_once(suite_root, suite, mode, env, launcher)
    for line in out_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"{out_file}: no instruction total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--repeats", type=int, default=4, help="runs per mode, alternating")
    parser.add_argument("--source", metavar="REV", help="measure the plugin as of this revision")
    parser.add_argument(
        "--suite-dir",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use this source tree for a suite instead of downloading it",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count each mode's instructions under callgrind (one run each) instead of timing",
    )
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    given = dict(item.split("=", 1) for item in options.suite_dir)
    workdir = Path(tempfile.mkdtemp(prefix="perfguard-real-suite-"))
    try:
        plugin, described = plugin_copy(options.source, workdir)
        print(f"## Recording a real suite: plugin {described}; load {os.getloadavg()[0]:.2f}")
        print("\n| suite | mode | fastest wall s | fastest CPU s | summary |")
        print("|---|---|--:|--:|---|")
        ratios = []
        for name in options.suites:
            suite = SUITES[name]
            root = Path(given[name]) if name in given else fetch_suite(suite, workdir)
            env = environment(plugin, root, suite, workdir)
            for mode in MODES:  # warm-up: bytecode, rewritten assertions
                run_once(root, suite, mode, env)
            if options.callgrind:
                counts = {
                    mode: count_instructions(root, suite, mode, env, workdir) for mode in MODES
                }
                ratios.append((name, counts["record"] / counts["bare"], float("nan")))
                for mode, count in counts.items():
                    print(f"| {name} | {mode} | {count / 1e6:,.0f} M instructions | - | - |")
                continue
            timings: dict[str, list[Timing]] = {mode: [] for mode in MODES}
            summaries = {}
            for _ in range(options.repeats):
                for mode in MODES:
                    timing, summaries[mode] = run_once(root, suite, mode, env)
                    timings[mode].append(timing)
            best = {
                mode: Timing(min(t.wall for t in ts), min(t.cpu for t in ts))
                for mode, ts in timings.items()
            }
            for mode in MODES:
                print(
                    f"| {name} | {mode} | {best[mode].wall:.2f} | {best[mode].cpu:.2f} | "
                    f"{summaries[mode]} |"
                )
            ratios.append(
                (
                    name,
                    best["record"].wall / best["bare"].wall,
                    best["record"].cpu / best["bare"].cpu,
                )
            )
        print("\n| suite | wall ratio record/bare | CPU ratio record/bare |")
        print("|---|--:|--:|")
        for name, wall, cpu in ratios:
            print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
        if options.callgrind:
            print("(with --callgrind the first ratio is of instructions)")
        runs = (
            "one run per mode under callgrind"
            if options.callgrind
            else f"{options.repeats} runs per mode"
        )
        print(f"\nload at the end {os.getloadavg()[0]:.2f}; {runs}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
