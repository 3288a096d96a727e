"""Per-test and per-session cost of pytest-perfguard, counted in instructions.

Wall time of a whole pytest run swings by +-15 % here, while the per-test cost we care about
is under 1 % of what pytest itself spends on a trivial test. So we count instructions with
``valgrind --tool=callgrind`` (the same count for the same run, whatever else the machine is
doing), at two suite sizes, and take the slope: instructions per test. The intercept
difference is the fixed cost per session. Instructions are converted to microseconds with
bare pytest's own speed on this machine (its wall time per test / its instructions per
test). Only the pytest process is counted (callgrind does not follow children).

    python benchmarks/bench_overhead.py              # full: callgrind + timings
    python benchmarks/bench_overhead.py --quick      # smaller suites
    python benchmarks/bench_overhead.py --sizes 200 1200 --kinds mixed   # the issue's suites
    python benchmarks/bench_overhead.py --no-callgrind
    python benchmarks/bench_overhead.py --sizes 200 1200 --linux-collectors   # see below
    python benchmarks/bench_overhead.py --sizes 200 1200 --counts 5 --modes bare record-existing
    python benchmarks/bench_overhead.py ... --source 35be8eb   # a revision, in this venv

Modes: ``bare`` (plugin disabled with -p no:perfguard), ``inactive`` (installed, no flag),
``perf`` (--perf: measure and compare), ``record`` (--perf-record into a fresh SQLite DB),
``record-existing`` (--perf-record into a history that already holds runs: the fixed cost
the issue's target names).

The per-test figures are also given without the garbage collector's share: where a full
collection falls between the two suite sizes moves a slope by up to ~15 k instructions a
test either way (a bigger heap also makes full collections rarer), so the collector's
share is read from callgrind (``gc_collect_main``, inclusive) and shown apart.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_real_suite import plugin_copy
from linux_collectors import LINUX_COLLECTORS_CONFTEST

# Other plugins installed with the test extra would add their own per-test cost to every mode.
OTHER_PLUGINS_OFF = ["-p", "no:benchmark", "-p", "no:xdist", "-p", "no:hypothesispytest"]

MODES: dict[str, list[str]] = {
    "bare": ["-p", "no:perfguard"],
    "inactive": [],
    "perf": ["--perf"],
    "record": ["--perf-record"],
    "record-existing": ["--perf-record"],
}


def write_suite(directory: Path, n_tests: int, kind: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    if kind == "plain":
        body = "\n".join(f"def test_{i}():\n    pass\n" for i in range(n_tests))
    elif kind == "mixed":  # the suite: half plain tests, half one parametrized test
        half = n_tests // 2
        body = "\n".join(f"def test_{i}():\n    pass\n" for i in range(half)) + (
            "\nimport pytest\n\n"
            f"@pytest.mark.parametrize('n', range({n_tests - half}))\n"
            "def test_param(n):\n    pass\n"
        )
    else:
        body = (
            "import pytest\n\n"
            f"@pytest.mark.parametrize('n', range({n_tests}))\n"
            "def test_param(n):\n    pass\n"
        )
    (directory / "test_suite.py").write_text(body, encoding="utf-8")
    if LINUX_COLLECTORS:
        (directory / "conftest.py").write_text(LINUX_COLLECTORS_CONFTEST, encoding="utf-8")


LINUX_COLLECTORS = "--linux-collectors" in sys.argv


def pytest_command(directory: Path, mode: str) -> list[str]:
    """The pytest run of `directory` in `mode`, to be run in `directory`: `python -m`
    puts the working directory first on sys.path, and from a checkout of this repository
    that would import its `pytest_perfguard` in place of the installed one."""
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *OTHER_PLUGINS_OFF,
        str(directory),
        *MODES[mode],
    ]
    if mode != "bare":
        # perfguard's instruction counter switches itself on under callgrind; blocked, the
        # plugin does what it does on a real CPU (bench_xdist.py does the same).
        args += ["-p", "no:perfguard-instructions"]
    if mode == "record":
        args += ["--perf-db", str(directory / "history.db")]
    if mode == "record-existing":
        args += ["--perf-db", str(directory / "existing.db")]
    return args


# Bytecode comes from a cache of the benchmark's own, filled by a warm-up run of each suite
# and mode (`prepare`), as a user's second run finds it. pytest rewrites the asserts of every
# module of a plugin's distribution, perfguard's included, and caches the result next to
# the normal bytecode; where it cannot write (PYTHONDONTWRITEBYTECODE), every run parses
# and compiles every perfguard module it imports again, which would count as perfguard's
# fixed cost what is a cold cache's (docs/architecture.md gives both).
# `--cold-bytecode` measures that case instead: no cache and nothing written.
PYCACHE = Path(tempfile.mkdtemp(prefix="perfguard-overhead-pycache-"))
COLD = "--cold-bytecode" in sys.argv
# `--source`: the plugin measured is a copy first on PYTHONPATH (a revision, or the working
# tree), so that two versions run in one venv.
PLUGIN_PATH: Path | None = None


def environment(*, warm_up: bool = False, seed: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGUARD", "PYTEST_"))}
    env.pop("ENABLE_PERFORMANCE_RECORDING", None)
    env["PYTHONHASHSEED"] = str(seed)
    if PLUGIN_PATH is not None:
        env["PYTHONPATH"] = str(PLUGIN_PATH)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if warm_up and not COLD:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def clean(directory: Path) -> None:
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        (directory / name).unlink(missing_ok=True)


_warmed: set[tuple[Path, str]] = set()


def prepare(directory: Path, mode: str) -> None:
    """Bytecode cached for this suite and mode; a fresh history for `record`, one holding
    a run already for `record-existing`."""
    if (directory, mode) not in _warmed:
        _warmed.add((directory, mode))
        subprocess.run(
            pytest_command(directory, mode),
            capture_output=True,
            env=environment(warm_up=True),
            check=False,
            cwd=directory,
        )
    clean(directory)


def count_instructions(
    directory: Path, mode: str, out_dir: Path, seed: int = 0
) -> tuple[int, int, int]:
    """(instructions of the whole pytest process, those spent in garbage collection, those
    spent on misses of CPython's type cache), with hash seed `seed`."""
    prepare(directory, mode)
    out_file = out_dir / f"callgrind.{directory.name}.{mode}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        *pytest_command(directory, mode),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment(seed=seed), check=False,
        cwd=directory,
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"{mode} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    text = out_file.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"no instruction total in {out_file}")
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(out_file)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    def inclusive(function: str) -> int:
        found = re.search(rf"^\s*([\d,]+) .*:{function} ", annotated, re.MULTILINE)
        return int(found.group(1).replace(",", "")) if found else 0

    return int(match.group(1)), inclusive("gc_collect_main"), inclusive("find_name_in_mro")


def wall_time(directory: Path, mode: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        prepare(directory, mode)
        start = time.perf_counter()
        subprocess.run(
            pytest_command(directory, mode),
            capture_output=True,
            env=environment(),
            check=False,
            cwd=directory,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb(directory: Path, mode: str) -> float:
    prepare(directory, mode)
    code = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], capture_output=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *pytest_command(directory, mode)],
        capture_output=True,
        text=True,
        env=environment(),
        check=False,
        cwd=directory,
    )
    return int(done.stdout.strip().splitlines()[-1]) / 1024


KINDS = ("mixed", "plain", "parametrized")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller suites (200/600)")
    parser.add_argument("--sizes", nargs=2, type=int, metavar=("SMALL", "LARGE"),
                        help="suite sizes; a wider gap averages out garbage-collection timing")
    parser.add_argument("--no-callgrind", action="store_true", help="timings only")
    parser.add_argument("--cold-bytecode", action="store_true",
                        help="no bytecode cache (PYTHONDONTWRITEBYTECODE, nothing cached)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--linux-collectors", action="store_true",
                        help="count the Linux collector (getrusage and clear_refs), which "
                        "valgrind otherwise makes the plugin skip")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--counts", type=int, default=1,
                        help="callgrind counts of each mode and size; medians are shown "
                        "(a slope of identical code moves by several thousand "
                        "instructions a test from one run to the next)")
    parser.add_argument("--kinds", nargs="+", default=["mixed"], choices=KINDS,
                        help="suites: mixed (half plain, half parametrized: the issue's), "
                        "plain, parametrized")
    parser.add_argument(
        "--source", metavar="REV",
        help="the plugin as of this git revision ('worktree': the working tree), a copy first "
        "on PYTHONPATH, instead of the installed one",
    )  # fmt: skip
    options = parser.parse_args()
    small, large = (200, 600) if options.quick else (500, 2000)
    if options.sizes:
        small, large = options.sizes
    workdir = Path(tempfile.mkdtemp(prefix="perfguard-overhead-"))
    global PLUGIN_PATH
    if options.source:
        revision = None if options.source == "worktree" else options.source
        PLUGIN_PATH, described = plugin_copy(revision, workdir)
        print(f"plugin: {described}")
    try:
        for kind in options.kinds:
            suites = {}
            for size in (small, large):
                suites[size] = workdir / f"{kind}_{size}"
                write_suite(suites[size], size, kind)
            print(f"\n## {kind} tests ({small} and {large} per suite)")
            timings = {
                m: {s: wall_time(suites[s], m, options.repeats) for s in suites}
                for m in options.modes
            }
            bare_time = (
                (timings["bare"][large] - timings["bare"][small]) / (large - small)
                if "bare" in timings
                else None
            )
            if not options.no_callgrind and shutil.which("valgrind"):
                print_counts(
                    options.modes, suites, small, large, bare_time, workdir, options.counts
                )
            print(
                "\n| mode | wall s (small) | wall s (large) | wall us/test (slope) | "
                "peak RSS MB (large) |"
            )
            print("|---|---|---|---|---|")
            for mode in options.modes:
                t = timings[mode]
                per_test = (t[large] - t[small]) / (large - small) * 1e6
                print(
                    f"| {mode} | {t[small]:.3f} | {t[large]:.3f} | {per_test:.0f} | "
                    f"{peak_rss_mb(suites[large], mode):.1f} |"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(PYCACHE, ignore_errors=True)


def print_counts(
    modes: list[str],
    suites: dict[int, Path],
    small: int,
    large: int,
    bare_time: float | None,
    workdir: Path,
    counts: int,
) -> None:
    slopes: dict[str, list[float]] = {m: [] for m in modes}
    gc_slopes: dict[str, list[float]] = {m: [] for m in modes}
    cache_slopes: dict[str, list[float]] = {m: [] for m in modes}
    fixeds: dict[str, list[float]] = {m: [] for m in modes}
    for count in range(counts):
        # Each count in directories of new random names and with its own hash seed: the
        # slope of identical code moves by several thousand instructions a test with where
        # objects land in memory. CPython's type cache (4 096 slots) is indexed by a type's
        # version tag and the *address* of the attribute's name, so which of pytest's
        # per-test lookups collide and miss it (each miss walks the type's MRO: about 300
        # instructions) is a draw of the process's layout: 4 to 18 k instructions a test
        # for the same code, counted apart as "type-cache misses". Counts under one layout
        # would repeat one draw of that.
        here = suites
        if count:
            here = {
                size: Path(shutil.copytree(
                    suite, Path(tempfile.mkdtemp(dir=workdir)) / suite.name
                ))
                for size, suite in suites.items()
            }  # fmt: skip
        for m in modes:
            c = {s: count_instructions(here[s], m, workdir, seed=count) for s in here}
            one = (c[large][0] - c[small][0]) / (large - small)
            slopes[m].append(one)
            gc_slopes[m].append((c[large][1] - c[small][1]) / (large - small))
            cache_slopes[m].append((c[large][2] - c[small][2]) / (large - small))
            fixeds[m].append(c[small][0] - one * small)
    slope = {m: statistics.median(v) for m, v in slopes.items()}
    gc_slope = {m: statistics.median(v) for m, v in gc_slopes.items()}
    # Each count's slope less its own collections and misses, then the median.
    steady_slope = {
        m: statistics.median(
            s - g - c for s, g, c in zip(slopes[m], gc_slopes[m], cache_slopes[m], strict=True)
        )
        for m in modes
    }
    cache_slope = {m: statistics.median(v) for m, v in cache_slopes.items()}
    fixed = {m: statistics.median(v) for m, v in fixeds.items()}
    if counts > 1:
        print(f"Medians of {counts} counts a mode and size; each count's slope a test:")
        for m in modes:
            print(f"- {m}: " + ", ".join(f"{v:,.0f}" for v in slopes[m]))
            print(
                "  GC, type-cache misses: "
                + ", ".join(
                    f"{g:,.0f} {c:,.0f}" for g, c in zip(gc_slopes[m], cache_slopes[m], strict=True)
                )
            )
        print()
    ns_per_instruction = (bare_time * 1e9 / slope["bare"]) if bare_time else None
    print(
        "| mode | instr/test | added instr/test | added, GC apart | added, GC and type-cache "
        "misses apart | added us/test | added fixed instr | added fixed ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode in modes:
        added = slope[mode] - slope["bare"]
        added_gc = gc_slope[mode] - gc_slope["bare"]
        added_steady = steady_slope[mode] - steady_slope["bare"]
        added_cache = cache_slope[mode] - cache_slope["bare"]
        added_fixed = fixed[mode] - fixed["bare"]
        us = added * ns_per_instruction / 1000 if ns_per_instruction else float("nan")
        ms = added_fixed * ns_per_instruction / 1e6 if ns_per_instruction else float("nan")
        print(
            f"| {mode} | {slope[mode]:,.0f} | {added:,.0f} | "
            f"{added - added_gc:,.0f} + GC {added_gc:,.0f} | "
            f"{added_steady:,.0f} (misses {added_cache:+,.0f}) | {us:.2f} | "
            f"{added_fixed:,.0f} | {ms:.1f} |"
        )
    if ns_per_instruction and bare_time:
        print(
            f"bare pytest: {bare_time * 1e6:.0f} us/test wall, "
            f"{1 / ns_per_instruction:.2f} instructions/ns"
        )


if __name__ == "__main__":
    main()
