"""`perfguard` CLI benchmark: streaming export, trend and runs on large SQLite histories.

    .venv/bin/python benchmarks/bench_cli.py [--sizes 100000 1000000] [--repeat 3]

For each size a history is built with `bench_history.build_history` (runs of 500 results),
then the `perfguard` command (`pytest_perfguard.cli.main`) runs in a fresh interpreter: wall
time and that process's peak RSS (VmHWM). Export must stay flat in memory as the history grows.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_history import TREND_METRIC, TREND_TEST, build_history

from pytest_perfguard.cli import Console, main

# The `perfguard` entry point, run in a fresh interpreter that reports its own peak RSS.
# (VmHWM, not ru_maxrss from wait4: a child started by vfork/fork inherits the parent's
# high-water mark, which here is the benchmark process holding the history it built.)
CHILD = """
import sys
from pytest_perfguard.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as proc:
    hwm = next(line.split()[1] for line in proc if line.startswith("VmHWM:"))
print("VmHWM", hwm, file=sys.stderr)
sys.exit(status)
"""


def run_cli(args: Sequence[str], stdout: Path | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one `perfguard ARGS` process."""
    command = [sys.executable, "-c", CHILD, *args]
    with open(stdout or os.devnull, "wb") as out:
        start = time.perf_counter()
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, check=False)
        took = time.perf_counter() - start
    err = done.stderr.decode()
    if done.returncode != 0 or "VmHWM" not in err:
        raise SystemExit(f"perfguard {' '.join(args)} failed: {err}")
    return took, int(err.split("VmHWM")[-1].split()[0]) / 1024


def best_of(args: Sequence[str], repeat: int, stdout: Path | None = None) -> tuple[float, float]:
    """Median seconds and max peak RSS over `repeat` processes."""
    runs = [run_cli(args, stdout) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def in_process(args: Sequence[str], repeat: int) -> float:
    """Median seconds of `main(args)` in this process (no interpreter start-up)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        assert main(list(args), console=Console(stdout=io.StringIO(), stderr=io.StringIO())) == 0
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(directory: Path, n_results: int, repeat: int) -> list[tuple[str, float, str]]:
    db = directory / f"history_{n_results}.db"
    url = f"sqlite:///{db}"
    built = build_history(url, n_results)
    print(f"  built {n_results} results in {built:.1f} s ({db.stat().st_size / 2**20:.0f} MiB)")
    out = directory / "export.csv"
    rows: list[tuple[str, float, str]] = []
    base = ["--db", str(db)]
    for fmt, to_file, times in (("csv", True, repeat), ("csv", False, repeat), ("json", True, 1)):
        args = ["export", *base, "--format", fmt]
        if to_file:
            took, peak = best_of([*args, "--output", str(out)], times)
        else:
            took, peak = best_of(args, times, stdout=out)
        how = "--output FILE" if to_file else "> FILE"
        note = f"peak RSS {peak:.0f} MiB, file {out.stat().st_size / 2**20:.0f} MiB"
        rows.append((f"export --format {fmt} {how} ({n_results} rows)", took, note))
    out.unlink()
    for label, args in (
        ("trend TEST --metric M", ["trend", TREND_TEST, "--metric", TREND_METRIC]),
        ("trend TEST --metric M --limit 100", ["trend", TREND_TEST, "--metric", TREND_METRIC,
                                               "--limit", "100"]),
        ("trend TEST (all its metrics)", ["trend", TREND_TEST]),
        ("runs", ["runs"]),
        ("runs --platform P --outcome passed", ["runs", "--platform", "macos-arm64",
                                                "--outcome", "passed"]),
        ("runs --test '*case_73'", ["runs", "--test", "*case_73"]),
        ("summary (newest 20 runs)", ["summary"]),
        ("stats", ["stats"]),
    ):  # fmt: skip
        took, peak = best_of([*args, *base], repeat)
        inner = in_process([*args, *base], repeat)
        rows.append((label, took, f"in-process {inner * 1000:.0f} ms, peak RSS {peak:.0f} MiB"))
    db.unlink()
    return rows


def main_() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads peak RSS from /proc (Linux)")
    startup, startup_rss = best_of(["--version"], args.repeat)
    print(f"perfguard --version: {startup * 1000:.0f} ms, peak RSS {startup_rss:.0f} MiB")
    with tempfile.TemporaryDirectory(prefix="perfguard-bench-cli-") as tmp:
        for n in args.sizes:
            print(f"\n== {n} results ==", flush=True)
            rows = bench(Path(tmp), n, args.repeat)
            width = max(len(name) for name, _, _ in rows)
            print(f"  {'command':<{width}}  {'wall':>9}  notes")
            for name, seconds, note in rows:
                print(f"  {name:<{width}}  {seconds * 1000:>7.0f}ms  {note}", flush=True)


if __name__ == "__main__":
    main_()
