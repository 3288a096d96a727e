"""What one plain test's readings cost to store, by table design, counted in instructions.

    python benchmarks/bench_storage_designs.py            # about 3 minutes, needs valgrind
    python benchmarks/bench_storage_designs.py --reads    # a block design's reads, timed

Each design is a raw `sqlite3` script (no perfguard code): a SQLite history already
holding 10 runs, then one more run's rows inserted in one transaction the way the plugin
inserts them (`executemany` of tuples built in Python). The script runs twice under
``valgrind --tool=callgrind``, with and without that last insert, at two sizes of run;
the difference, per row, is the insert's cost, and the slope between the sizes is what a
test adds. Designs:

- ``text-index``: one row per test, its readings as columns, an index on (test, run_id)
  for trends (the layout since revision 0004);
- ``int-index``: the same with the test's name replaced by an integer id into a table of
  names (looked up in a Python dict; the names' own inserts are not counted: they happen
  once per test, not once per run);
- ``no-index``: one row per test and no index (no trend query could use one);
- ``block``: one row per run, each reading a column of doubles (``array('d')``), the test
  names one joined string: no per-test b-tree insert at all.

With ``--reads`` it times instead, on 1 000 000 readings (2 000 runs of 500 tests), the
trend of one test and every test's last 5 runs, from rows with the (test, run_id) index and
from per-run blocks found through a *layout* index (a test's position in a run's list of
tests, stored once for every run with that list), the value read at its offset with
``substr``.

docs/architecture.md ("History database") gives a run's figures and what they mean for
the 13 k-instructions-per-test target of `--perf-record`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DESIGNS = ("text-index", "int-index", "no-index", "block")
SIZES = (1000, 4000)
RUNS_BEFORE = 10

SCRIPT = r'''
import sqlite3, sys
from array import array

design, n, insert, path = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
runs_before = int(sys.argv[5])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
names = [
    f"tests/test_module_{i % 7}.py::test_something_{i}" + (f"[param-{i}]" if i % 2 else "")
    for i in range(n)
]
columns = "id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, marked BOOLEAN NOT NULL, " \
    "outcome VARCHAR(20) NOT NULL, duration FLOAT, cpu_time FLOAT, rss_peak_mb FLOAT"
if design == "block":
    db.execute("CREATE TABLE runs_block (run_id INTEGER PRIMARY KEY, tests TEXT, "
               "outcomes BLOB, duration BLOB, cpu_time BLOB, rss_peak_mb BLOB)")
elif design == "int-index":
    db.execute("CREATE TABLE tests (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    db.executemany("INSERT INTO tests (id, name) VALUES (?, ?)", enumerate(names))
    ids = {name: i for i, name in enumerate(names)}
    db.execute(f"CREATE TABLE t ({columns}, test INTEGER NOT NULL)")
    db.execute("CREATE INDEX ix ON t (test, run_id)")
else:
    db.execute(f"CREATE TABLE t ({columns}, test TEXT NOT NULL)")
    if design == "text-index":
        db.execute("CREATE INDEX ix ON t (test, run_id)")


def store(run):
    durations = [0.001 * i for i in range(n)]
    cpu = [0.0009 * i for i in range(n)]
    if design == "block":
        db.execute(
            "INSERT INTO runs_block VALUES (?, ?, ?, ?, ?, ?)",
            (run, "\n".join(names), bytes(n), array("d", durations).tobytes(),
             array("d", cpu).tobytes(), array("d", [30.5] * n).tobytes()),
        )
        return
    keys = [ids[name] for name in names] if design == "int-index" else names
    base = run << 32
    db.executemany(
        "INSERT INTO t (id, run_id, marked, outcome, duration, cpu_time, rss_peak_mb, test) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(base + i, run, 0, "passed", durations[i], cpu[i], 30.5, keys[i]) for i in range(n)],
    )


for run in range(1, runs_before + 1):
    db.execute("BEGIN")
    store(run)
    db.execute("COMMIT")
if insert:
    db.execute("BEGIN")
    store(runs_before + 1)
    db.execute("COMMIT")
'''


READS = r'''
import os, sqlite3, statistics, struct, sys, time
from array import array

RUNS, TESTS = 2000, 500
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
names = [
    f"tests/test_module_{i % 7}.py::test_something_{i}" + (f"[param-{i}]" if i % 2 else "")
    for i in range(TESTS)
]
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, test TEXT NOT NULL, "
           "marked BOOLEAN NOT NULL, outcome VARCHAR(20) NOT NULL, duration FLOAT, "
           "cpu_time FLOAT, rss_peak_mb FLOAT)")
db.execute("CREATE INDEX ix ON t (test, run_id)")
db.execute("CREATE TABLE layouts (id INTEGER PRIMARY KEY, tests TEXT NOT NULL)")
db.execute("CREATE TABLE layout_tests (layout_id INTEGER NOT NULL, test TEXT NOT NULL, "
           "position INTEGER NOT NULL, PRIMARY KEY (test, layout_id)) WITHOUT ROWID")
db.execute("CREATE TABLE blocks (run_id INTEGER PRIMARY KEY, layout_id INTEGER NOT NULL, "
           "outcomes BLOB, duration BLOB, cpu_time BLOB, rss_peak_mb BLOB)")
db.execute("CREATE INDEX ix_blocks_layout ON blocks (layout_id, run_id)")
db.execute("BEGIN")
db.execute("INSERT INTO layouts VALUES (1, ?)", ("\n".join(names),))
db.executemany("INSERT INTO layout_tests VALUES (1, ?, ?)", [(n, i) for i, n in enumerate(names)])
for run in range(1, RUNS + 1):
    d = [0.001 * i + run * 1e-7 for i in range(TESTS)]
    base = run << 32
    db.executemany(
        "INSERT INTO t VALUES (?,?,?,?,?,?,?,?)",
        [(base + i, run, names[i], 0, "passed", d[i], d[i], 30.5) for i in range(TESTS)],
    )
    doubles = array("d", d).tobytes()
    db.execute("INSERT INTO blocks VALUES (?, 1, ?, ?, ?, ?)",
               (run, bytes(TESTS), doubles, doubles, array("d", [30.5] * TESTS).tobytes()))
db.execute("COMMIT")
db.execute("ANALYZE")
test = names[321]


def rows_trend():
    return db.execute("SELECT run_id, duration FROM t WHERE test = ? ORDER BY run_id",
                      (test,)).fetchall()


def block_trend():
    out = []
    for layout, position in db.execute(
        "SELECT layout_id, position FROM layout_tests WHERE test = ?", (test,)
    ).fetchall():
        for run_id, raw in db.execute(
            "SELECT run_id, substr(duration, ?, 8) FROM blocks WHERE layout_id = ? "
            "ORDER BY run_id", (position * 8 + 1, layout),
        ):
            out.append((run_id, struct.unpack("d", raw)[0]))
    out.sort()
    return out


def rows_recent():
    low = (RUNS - 4) << 32
    return db.execute("SELECT test, duration FROM t WHERE id >= ?", (low,)).fetchall()


def block_recent():
    rows = db.execute(
        "SELECT run_id, layout_id, duration FROM blocks ORDER BY run_id DESC LIMIT 5"
    ).fetchall()
    return [array("d", r[2]) for r in rows]


assert rows_trend() == block_trend()
for label, read in [
    ("rows, (test, run_id) index: trend of one test (2 000 points)", rows_trend),
    ("blocks, layout index: the same", block_trend),
    ("rows: every test's last 5 runs", rows_recent),
    ("blocks: the same", block_recent),
]:
    times = []
    for _ in range(15):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    print(f"| {label} | {statistics.median(times) * 1e3:.2f} ms |")
'''


def count(script: Path, design: str, n: int, insert: bool, work: Path) -> int:
    database = work / f"{design}-{n}-{int(insert)}.db"
    out = work / f"callgrind.{design}.{n}.{int(insert)}"
    subprocess.run(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            # The interpreter itself, not a wrapper script that would exec it.
            os.path.realpath(sys.executable), str(script), design, str(n),
            "1" if insert else "0", str(database), str(RUNS_BEFORE),
        ],
        capture_output=True, check=True,
    )  # fmt: skip
    match = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(match.group(1))


def reads() -> None:
    work = Path(tempfile.mkdtemp(prefix="perfguard-storage-reads-"))
    try:
        script = work / "reads.py"
        script.write_text(READS, encoding="utf-8")
        print("| 1 000 000 readings, SQLite | median of 15 |")
        print("|---|--:|")
        sys.stdout.flush()
        subprocess.run([sys.executable, str(script), str(work / "reads.db")], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if "--reads" in sys.argv[1:]:
        reads()
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind")
    work = Path(tempfile.mkdtemp(prefix="perfguard-storage-designs-"))
    try:
        script = work / "design.py"
        script.write_text(SCRIPT, encoding="utf-8")
        print(f"| design | per row at {SIZES[0]} | per row at {SIZES[1]} | slope per test |")
        print("|---|--:|--:|--:|")
        for design in DESIGNS:
            added = {
                n: count(script, design, n, True, work) - count(script, design, n, False, work)
                for n in SIZES
            }
            small, large = SIZES
            slope = (added[large] - added[small]) / (large - small)
            print(
                f"| {design} | {added[small] / small:,.0f} | {added[large] / large:,.0f} | "
                f"{slope:,.0f} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
