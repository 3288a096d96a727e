"""What pytest-perfguard costs per test under pytest-xdist, against the serial plugin.

Counted in instructions, like bench_overhead.py: whole-run wall times swing by +-15 % on a
shared machine, while the cost we look for is a few per cent of pytest's own. Every mode runs
a suite of trivial tests (half plain functions, half one parametrized function) at two sizes
under ``valgrind --tool=callgrind --trace-children=yes``, so the xdist workers (and the few
``git``/``uname`` children) are counted too: one out file per process, summed. The slope
between the sizes is the cost per test, the intercept the fixed cost per session. The
controller's own count is reported beside the total.

Instructions become microseconds at bare pytest's own speed here: instructions of the serial
bare run at the large size divided by its median wall time (and, second figure, by its CPU
time, which a busy machine does not inflate), measured side by side. Under xdist the result
is time on one core (the workers share the per-test work), not the session's wall time. Wall
and CPU times of every mode (median of --repeats, modes interleaved) are printed as a check.

    python benchmarks/bench_xdist.py --source HEAD            # full: ~15 min, quiet 2-core VM
    python benchmarks/bench_xdist.py --sizes 100 400          # quicker, less exact slope
    python benchmarks/bench_xdist.py --no-callgrind           # wall times only
    python benchmarks/bench_xdist.py --modes serial-bare xdist-bare xdist-perf

xdist counts are not exactly repeatable (the controller's threads interleave differently from
run to run: about 0.3 % of a run's total, i.e. +-10k instructions on the slope at 400/2000);
--callgrind-repeats takes the median of several runs and shows the spread.

Modes: ``serial-bare`` (-p no:perfguard), ``serial-perf`` (--perf), ``xdist-bare``
(-p no:perfguard -n 2), ``xdist-perf`` (-n 2 --perf), ``xdist-record`` (-n 2 --perf-record
into a fresh SQLite file); ``serial-record`` is available but not run by default
(bench_overhead.py measures it).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import environment  # the same clean environment

# Other plugins installed with the test extra would add their own cost to every mode; xdist
# stays loaded in the serial modes too (installed but unused, as in a user's serial job).
# perfguard's instruction counter switches itself on under callgrind (and refuses -n there):
# blocked, the plugin does what it does on a real CPU, where that module only answers one
# session-level hook with nothing.
OTHER_PLUGINS_OFF = [
    "-p",
    "no:benchmark",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:perfguard-instructions",
]

SERIAL_MODES: dict[str, list[str]] = {
    "serial-bare": ["-p", "no:perfguard"],
    "serial-perf": ["--perf"],
    "serial-record": ["--perf-record"],
    "serial-record-existing": ["--perf-record"],
}
XDIST_MODES: dict[str, list[str]] = {
    "xdist-bare": ["-p", "no:perfguard"],
    "xdist-perf": ["--perf"],
    "xdist-record": ["--perf-record"],
    "xdist-record-existing": ["--perf-record"],
}
ALL_MODES = [*SERIAL_MODES, *XDIST_MODES]
# Modes that record into a history an earlier (uncounted) run of the same suite created:
# the fixed cost of a session on an existing, up-to-date database.
EXISTING_HISTORY = frozenset({"serial-record-existing", "xdist-record-existing"})
DEFAULT_MODES = ["serial-bare", "serial-perf", "xdist-bare", "xdist-perf", "xdist-record"]


def bare_of(mode: str) -> str:
    return "xdist-bare" if mode.startswith("xdist") else "serial-bare"


# Under valgrind a worker can take longer than xdist's 10 s to exit and write its counts, and
# xdist kills it then (its out file has no total). Only the controller's timeout is raised.
CONFTEST = """\
def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from xdist.workermanage import NodeManager

        NodeManager.EXIT_TIMEOUT = 600
"""


def write_suite(directory: Path, n_tests: int, *, linux_collectors: bool = False) -> None:
    """Half plain test functions, half one function parametrized (two node kinds)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    conftest = CONFTEST
    if linux_collectors:
        from linux_collectors import LINUX_COLLECTORS_CONFTEST

        conftest += "\n" + LINUX_COLLECTORS_CONFTEST
    (directory / "conftest.py").write_text(conftest, encoding="utf-8")
    n_plain = n_tests // 2
    plain = "\n".join(f"def test_{i}():\n    pass\n" for i in range(n_plain))
    (directory / "test_plain.py").write_text(plain, encoding="utf-8")
    (directory / "test_param.py").write_text(
        "import pytest\n\n"
        f"@pytest.mark.parametrize('n', range({n_tests - n_plain}))\n"
        "def test_param(n):\n    pass\n",
        encoding="utf-8",
    )


def pytest_command(directory: Path, mode: str, workers: int) -> list[str]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *OTHER_PLUGINS_OFF]
    if mode in XDIST_MODES:
        args += ["-n", str(workers), *XDIST_MODES[mode]]
    else:
        args += SERIAL_MODES[mode]
    if "record" in mode:
        args += ["--perf-db", f"sqlite:///{directory / 'history.db'}"]
    return [*args, str(directory)]


def run_pytest(
    directory: Path, mode: str, workers: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pytest_command(directory, mode, workers),
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def clean(directory: Path) -> None:
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / ".perfguard", ignore_errors=True)


def plugin_snapshot(revision: str | None, workdir: Path, workers: int, env: dict[str, str]) -> str:
    """Put a copy of the plugin first on PYTHONPATH (in `env`); say which code is measured.

    The copy is the working tree's as it is now, or `revision`'s: edits made while the benchmark
    runs do not reach it. PYTHONPATH comes before the editable install's finder, in the workers
    too. Warm-up runs leave the bytecode, and pytest's assertion-rewritten modules (pytest
    rewrites the modules of installed plugins: perfguard's, xdist's), that an installation has
    after its first run: the measured runs write no bytecode (PYTHONDONTWRITEBYTECODE) and would
    otherwise count compiling and rewriting them in every process as fixed cost."""
    repo = Path(__file__).resolve().parents[1]
    target = workdir / "source"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    if revision is None:
        shutil.copytree(
            repo / "pytest_perfguard",
            target / "pytest_perfguard",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        dirty = git("status", "--porcelain", "--", "pytest_perfguard")
        state = "with uncommitted changes" if dirty else "clean"
        described = f"working tree at {git('rev-parse', '--short', 'HEAD')} ({state})"
    else:
        commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", commit, "pytest_perfguard"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        described = f"git {commit[:12]}"
    env["PYTHONPATH"] = str(target)
    # All bytecode, pytest's rewritten modules included, goes to and comes from a cache of our
    # own: nothing is written into the virtual environment, and no measured run compiles.
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    warm_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    warmup = workdir / "warmup"
    write_suite(warmup, 4)
    for mode in ("serial-bare", "xdist-bare", "serial-record", "xdist-record"):
        clean(warmup)
        check(run_pytest(warmup, mode, workers, warm_env), f"warm-up {mode}", 4)
    imported = subprocess.run(
        [sys.executable, "-c", "import pytest_perfguard; print(pytest_perfguard.__file__)"],
        env=env,
        cwd=warmup,  # as the runs: from a suite directory, never the repository
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not imported.startswith(str(target)):
        raise SystemExit(f"pytest_perfguard imported from {imported}, not the copy in {target}")
    return f"{described}, copied to {target}"


def check(done: subprocess.CompletedProcess[str], mode: str, n_tests: int) -> None:
    if done.returncode != 0 or f"{n_tests} passed" not in done.stdout:
        raise SystemExit(
            f"{mode} ({n_tests} tests) failed, exit {done.returncode}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


@dataclass(frozen=True)
class Count:
    """Instructions of one run under callgrind."""

    total: int  # every process
    controller: int  # the pytest process started (the xdist controller)
    processes: int  # out files summed, git/uname children included
    spread: int = 0  # max - min of the totals over repeated runs
    # Spent on misses of CPython's type cache (`find_name_in_mro`, inclusive), every process:
    # a draw of each process's memory layout (bench_overhead.py explains), 4-12 k a test.
    misses: int = 0
    gc: int = 0  # in the garbage collector (`gc_collect_main`, inclusive), every process
    steady: int = 0  # total - misses - gc (per field median over repeated runs)


def prepare_history(directory: Path, mode: str, workers: int, env: dict[str, str]) -> None:
    """No history for a mode that records into a fresh one; one earlier run's for the others."""
    if mode not in EXISTING_HISTORY:
        clean(directory)
    elif not (directory / "history.db").exists():
        run_pytest(directory, mode, workers, env)


def count_instructions(
    directory: Path, mode: str, n_tests: int, workers: int, out: Path, env: dict[str, str]
) -> Count:
    prepare_history(directory, mode, workers, env)
    out.mkdir(parents=True)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={out}/callgrind.out.%p",
        *pytest_command(directory, mode, workers),
    ]
    process = subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate()
    check(subprocess.CompletedProcess(command, process.returncode, stdout, stderr), mode, n_tests)
    total = controller = misses = collected = 0
    files = sorted(out.glob("callgrind.out.*"))
    parts = [path.name for path in files if not re.fullmatch(r"callgrind\.out\.\d+", path.name)]
    if parts:
        # Client requests (zero, dump) inside the run split a process's count into parts.
        raise SystemExit(f"{mode}: callgrind dump parts {parts[:3]} in {out}; not whole counts")
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE) or re.search(
            r"^totals:\s+(\d+)", text, re.MULTILINE
        )
        if not match:
            raise SystemExit(f"no instruction total in {path}")
        instructions = int(match.group(1))
        total += instructions
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(path)],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        missed = re.search(r"^\s*([\d,]+) .*:find_name_in_mro ", annotated, re.MULTILINE)
        misses += int(missed.group(1).replace(",", "")) if missed else 0
        in_gc = re.search(r"^\s*([\d,]+) .*:gc_collect_main ", annotated, re.MULTILINE)
        collected += int(in_gc.group(1).replace(",", "")) if in_gc else 0
        # valgrind runs the program in its own process: the controller's pid is ours.
        if path.name == f"callgrind.out.{process.pid}":
            controller = instructions
    if not controller:
        raise SystemExit(f"no out file for the controller (pid {process.pid}) in {out}")
    return Count(
        total, controller, len(files), misses=misses, gc=collected,
        steady=total - misses - collected,
    )  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """Medians of one mode at one size, in seconds."""

    wall: float
    cpu: float  # user + system of the run and every process it waited for (xdist workers)


def median_count(runs: Sequence[Count]) -> Count:
    """Per field median; the spread is the max - min of the totals."""
    return Count(
        int(statistics.median(c.total for c in runs)),
        int(statistics.median(c.controller for c in runs)),
        max(c.processes for c in runs),
        max(c.total for c in runs) - min(c.total for c in runs),
        int(statistics.median(c.misses for c in runs)),
        int(statistics.median(c.gc for c in runs)),
        int(statistics.median(c.steady for c in runs)),
    )


def wall_times(
    suites: dict[int, Path],
    modes: Sequence[str],
    workers: int,
    repeats: int,
    env: dict[str, str],
) -> dict[str, dict[int, Timing]]:
    """Median times per mode and size; modes interleaved so drifts in load spread evenly."""
    samples: dict[str, dict[int, list[tuple[float, float]]]] = {
        m: {s: [] for s in suites} for m in modes
    }
    for _ in range(repeats):
        for mode in modes:
            for size, directory in suites.items():
                prepare_history(directory, mode, workers, env)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                done = run_pytest(directory, mode, workers, env)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                samples[mode][size].append((wall, cpu))
                check(done, mode, size)
    return {
        m: {
            s: Timing(statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for s, v in by_size.items()
        }
        for m, by_size in samples.items()
    }


def slope_and_fixed(
    small: int, large: int, at_small: float, at_large: float
) -> tuple[float, float]:
    slope = (at_large - at_small) / (large - small)
    return slope, at_small - slope * small


def report_callgrind(
    counts: dict[str, dict[int, Count]],
    modes: Sequence[str],
    small: int,
    large: int,
    rates: tuple[float, float] | None,
) -> None:
    """`rates`: bare pytest's instructions per us by wall time and by CPU time."""

    def us(instructions: float, scale: float = 1.0) -> str:
        if not rates:
            return "n/a"
        by_wall, by_cpu = (instructions / rate / scale for rate in rates)
        digits = 1 if scale > 1 else 2
        return f"{by_wall:.{digits}f} / {by_cpu:.{digits}f}"

    def ms(instructions: float) -> str:
        return us(instructions, 1000.0)

    print("\n### Raw instruction totals (all processes / controller alone)\n")
    print(
        f"| mode | all, {small} tests | all, {large} tests | controller, {small} | "
        f"controller, {large} | processes | spread of all, {small} / {large} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        c = counts[mode]
        print(
            f"| {mode} | {c[small].total:,} | {c[large].total:,} | {c[small].controller:,} | "
            f"{c[large].controller:,} | {c[large].processes} | "
            f"{c[small].spread:,} / {c[large].spread:,} |"
        )

    fit = {
        m: {
            "all": slope_and_fixed(small, large, c[small].total, c[large].total),
            "controller": slope_and_fixed(small, large, c[small].controller, c[large].controller),
            "steady": slope_and_fixed(small, large, c[small].steady, c[large].steady),
        }
        for m, c in counts.items()
    }
    print("\n### Per test (slope) and per session (intercept), all processes\n")
    print(
        "| mode | instr/test | us/test | controller instr/test | fixed instr/session | "
        "fixed ms/session |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode in modes:
        per_test, fixed = fit[mode]["all"]
        print(
            f"| {mode} | {per_test:,.0f} | {us(per_test)} | {fit[mode]['controller'][0]:,.0f} | "
            f"{fixed:,.0f} | {ms(fixed)} |"
        )

    added = [m for m in modes if m != bare_of(m) and bare_of(m) in counts]
    if added:
        print("\n### Added by perfguard, against bare pytest in the same mode\n")
        print(
            "| mode | added instr/test | GC and type-cache misses apart | added us/test | "
            "of which controller | added fixed instr/session | added fixed ms/session |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mode in added:
            bare = fit[bare_of(mode)]
            per_test = fit[mode]["all"][0] - bare["all"][0]
            steady = fit[mode]["steady"][0] - bare["steady"][0]
            fixed = fit[mode]["all"][1] - bare["all"][1]
            on_controller = fit[mode]["controller"][0] - bare["controller"][0]
            print(
                f"| {mode} | {per_test:,.0f} | {steady:,.0f} | {us(per_test)} | "
                f"{on_controller:,.0f} | {fixed:,.0f} | {ms(fixed)} |"
            )
    if "serial-bare" in counts and "xdist-bare" in counts:
        per_test = fit["xdist-bare"]["all"][0] - fit["serial-bare"]["all"][0]
        fixed = fit["xdist-bare"]["all"][1] - fit["serial-bare"]["all"][1]
        print(
            f"\nxdist itself (xdist-bare - serial-bare): {per_test:,.0f} instr/test "
            f"({us(per_test)} us), {fixed:,.0f} instr/session ({ms(fixed)} ms)"
        )
    if rates:
        print(
            f"\nus and ms at bare pytest's speed here, by wall time / by CPU time: "
            f"{rates[0]:,.0f} / {rates[1]:,.0f} instructions per us (serial-bare, {large} tests; "
            "the two differ when the machine is busy: wall time then includes waiting for a core)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs=2,
        type=int,
        default=[400, 2000],
        metavar=("SMALL", "LARGE"),
        help="suite sizes (default 400 2000)",
    )
    parser.add_argument("--modes", nargs="+", default=DEFAULT_MODES, choices=ALL_MODES)
    parser.add_argument("--workers", type=int, default=2, help="-n for the xdist modes")
    parser.add_argument("--repeats", type=int, default=3, help="wall-time runs per mode/size")
    parser.add_argument(
        "--callgrind-repeats",
        type=int,
        default=1,
        help="callgrind runs per mode/size, median taken (xdist counts vary by ~0.3 %%)",
    )
    parser.add_argument("--no-callgrind", action="store_true", help="wall times only")
    parser.add_argument(
        "--jobs", type=int, default=1, help="callgrind runs at a time (counts do not depend on it)"
    )
    parser.add_argument(
        "--source",
        metavar="REV",
        help="measure pytest_perfguard as of this git revision (default: the working tree as it "
        "is at the start; either way a copy, first on PYTHONPATH)",
    )
    parser.add_argument(
        "--linux-collectors",
        action="store_true",
        help="measure with getrusage and clear_refs as on Linux (bench_overhead.py explains "
        "why valgrind otherwise makes the plugin use its portable collectors)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the suites and callgrind out files (path printed)"
    )
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    small, large = sorted(options.sizes)
    modes = [m for m in ALL_MODES if m in options.modes]
    callgrind = not options.no_callgrind
    if callgrind and not shutil.which("valgrind"):
        raise SystemExit("valgrind not found: install it or pass --no-callgrind")
    workdir = Path(tempfile.mkdtemp(prefix="perfguard-xdist-"))
    try:
        suites = {size: workdir / f"suite_{size}" for size in (small, large)}
        for size, directory in suites.items():
            write_suite(directory, size, linux_collectors=options.linux_collectors)
        env = environment()
        print(f"## xdist overhead: {small} and {large} trivial tests, -n {options.workers}")
        plugin = plugin_snapshot(options.source, workdir, options.workers, env)
        print(f"plugin: {plugin}")
        for mode in modes:
            command = pytest_command(Path("SUITE"), mode, options.workers)
            print(f"- {mode}: `pytest {' '.join(command[3:])}`")
        timings = wall_times(suites, modes, options.workers, options.repeats, env)

        if callgrind:

            def one(job: tuple[str, int, int]) -> tuple[str, int, Count]:
                mode, size, repeat = job
                # Separate suite copies per job: concurrent runs must not share a DB file.
                directory = workdir / f"{mode}_{size}_{repeat}"
                write_suite(directory, size, linux_collectors=options.linux_collectors)
                start = time.perf_counter()
                out = workdir / f"cg_{mode}_{size}_{repeat}"
                # Each repeat with its own hash seed: another draw of the processes' layout.
                seeded = {**env, "PYTHONHASHSEED": str(repeat)}
                count = count_instructions(directory, mode, size, options.workers, out, seeded)
                print(
                    f"  callgrind {mode} {size}: {count.total:,} instructions "
                    f"({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                return mode, size, count

            jobs = [
                (m, s, r)
                for r in range(options.callgrind_repeats)
                for m in modes
                for s in (small, large)
            ]
            runs: dict[str, dict[int, list[Count]]] = {m: {small: [], large: []} for m in modes}
            with ThreadPoolExecutor(max_workers=options.jobs) as pool:
                for mode, size, count in pool.map(one, jobs):
                    runs[mode][size].append(count)
            counts = {
                m: {s: median_count(c) for s, c in by_size.items()} for m, by_size in runs.items()
            }
            rates = None
            if "serial-bare" in counts:
                bare, timing = counts["serial-bare"][large].total, timings["serial-bare"][large]
                rates = (bare / (timing.wall * 1e6), bare / (timing.cpu * 1e6))
            report_callgrind(counts, modes, small, large, rates)

        print(f"\n### Wall and CPU time, median of {options.repeats} (a check: +-15 % here)\n")
        print(
            f"| mode | wall s, {small} | wall s, {large} | wall us/test | "
            f"CPU s, {small} | CPU s, {large} | CPU us/test |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mode in modes:
            t = timings[mode]
            wall = (t[large].wall - t[small].wall) / (large - small) * 1e6
            cpu = (t[large].cpu - t[small].cpu) / (large - small) * 1e6
            print(
                f"| {mode} | {t[small].wall:.2f} | {t[large].wall:.2f} | {wall:.0f} | "
                f"{t[small].cpu:.2f} | {t[large].cpu:.2f} | {cpu:.0f} |"
            )
    finally:
        if options.keep:
            print(f"\nkept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
