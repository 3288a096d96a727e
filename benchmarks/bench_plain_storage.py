"""What storing a plain test costs a recording session, counted in instructions.

A recording session on SQLite ends with `sqlite_writer.save_session(run, rows, plain=...)`,
the plain tests' runs as columns (`PlainRuns`). This counts that call per plain test under
``valgrind --tool=callgrind``: the slope between sessions of two sizes, less the slope of
building the same `PlainRuns` without storing them. Three cases:

- ``existing``: a history whose last run held the same tests in the same order (a suite
  recorded again: nightly, every CI run);
- ``fresh``: a new history (the suite's first recording, or a new list of tests);
- ``reordered``: the same tests in another order (xdist, pytest-randomly).

    python benchmarks/bench_plain_storage.py                    # the working tree
    python benchmarks/bench_plain_storage.py --source 247821c   # the plugin at a revision

The plugin measured is a copy (the working tree, or ``git archive`` of ``--source``) first
on PYTHONPATH. Counts do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_suite import plugin_copy

SESSION = """
import sys
from datetime import datetime, timezone
from pytest_perfguard.history import sqlite_writer
from pytest_perfguard.results import PlainRuns, PlatformInfo, RunInfo

n, path, action = int(sys.argv[1]), sys.argv[2], sys.argv[3]
plain = PlainRuns([("cpu_time", "s"), ("rss_peak_mb", "MB")])
order = range(n - 1, -1, -1) if action == "reordered" else range(n)
for i in order:
    plain.ids.append(f"tests/test_suite.py::test_param[{i}]")
    plain.outcomes.append("passed")
    plain.durations.append(1e-5 * (i % 7 + 1))
    plain.readings[0][2].append(1e-5)
    plain.readings[1][2].append(0.0)
if hasattr(plain, "has_distinct_ids"):
    plain.has_distinct_ids()  # as the session end asks before the writer (counted there)
if action != "build":
    run = RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("box"))
    sqlite_writer.save_session(f"sqlite:///{path}", run, [], plain=plain)
"""


def instructions(workdir: Path, plugin: Path, n: int, action: str) -> int:
    """Instructions of one session of `n` plain tests doing `action`."""
    script = workdir / "session.py"
    script.write_text(SESSION, encoding="utf-8")
    history = workdir / f"history-{n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{history}{suffix}").unlink(missing_ok=True)
    env = {"PYTHONPATH": str(plugin), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}
    if action in ("existing", "reordered"):  # the same tests stored once already
        subprocess.run([sys.executable, script, str(n), history, "existing"], env=env, check=True)
    out = workdir / f"callgrind.{action}.{n}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, str(script), str(n), str(history), action],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    match = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.MULTILINE)
    assert match, out
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", metavar="REV", help="the plugin as of this git revision")
    parser.add_argument("--sizes", nargs=2, type=int, default=[1000, 5000])
    options = parser.parse_args()
    small, large = sorted(options.sizes)
    with tempfile.TemporaryDirectory(prefix="perfguard-plain-storage-") as tmp:
        workdir = Path(tmp)
        plugin, described = plugin_copy(options.source, workdir)
        # Bytecode compiled and cached first: no count includes compiling the plugin.
        instructions(workdir, plugin, small, "fresh")
        slope = {
            action: (
                instructions(workdir, plugin, large, action)
                - instructions(workdir, plugin, small, action)
            )
            / (large - small)
            for action in ("build", "existing", "fresh", "reordered")
        }
    print(f"plugin: {described}; sizes {small} and {large}")
    print(f"building the PlainRuns: {slope['build']:,.0f} instructions per test (taken off)")
    for action in ("existing", "fresh", "reordered"):
        print(f"{action}: {slope[action] - slope['build']:,.0f} instructions per plain test")


if __name__ == "__main__":
    main()
