"""`perfguard experiments compare` over 100 experiments x 1000 trials: time and peak memory,
on SQLite and PostgreSQL.

The history is filled once per backend through `History.import_experiments` (the import's
time is printed too). Each timed run is a fresh ``perfguard experiments compare <100 ids>
--metric mrr --json`` process; it reports its own time for the command (imports excluded),
its peak RSS, and its peak RSS before the command (after importing the CLI, SQLAlchemy and
the store), so the command's own share of memory shows. The parent also times the whole
process. Median of --repeats.

    python benchmarks/bench_experiments.py                      # SQLite, and PostgreSQL if
                                                                # PERFGUARD_TEST_DATABASE_URL
    python benchmarks/bench_experiments.py --pg postgresql+psycopg://postgres@127.0.0.1/db
    python benchmarks/bench_experiments.py --experiments 10 --trials 100   # quick
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def document(n_experiments: int, n_trials: int) -> dict[str, Any]:
    """An experiments export: every trial with three params, three metrics, a validation."""
    rng = random.Random(42)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    experiments = []
    for e in range(n_experiments):
        trials = []
        for t in range(1, n_trials + 1):
            passed = rng.random() > 0.1
            trials.append(
                {
                    "trial_number": t,
                    "params": {"chunk": rng.choice([128, 256, 512]), "k": rng.randint(1, 20),
                               "model": rng.choice(["a", "b"])},
                    "metrics": {"mrr": rng.random(), "latency": rng.uniform(0.1, 2.0),
                                "recall": rng.random()},
                    "validation": {"passed": passed, "violations": 0 if passed else 2,
                                   "metrics": {"drift": rng.random()}},
                    "created_at": (start + timedelta(days=e, seconds=t)).isoformat(),
                }
            )  # fmt: skip
        experiments.append(
            {
                "name": f"sweep {e}",
                "template": "rag",
                "mode": "grid",
                "config": {"n": n_trials},
                "created_at": (start + timedelta(days=e)).isoformat(),
                "trials": trials,
            }
        )
    return {"format": "perfguard-experiments", "version": 1, "experiments": experiments}


def high_water_kb() -> int:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries the
    parent's peak over an exec into it, so a child started by a big parent reports that."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(argv: list[str]) -> None:
    """Run one CLI command in this process; print its time and memory as JSON on stderr."""
    # The library's own imports (SQLAlchemy, the store) before the "before" reading, so the
    # difference is the command's data, not its code.
    import pytest_perfguard.history.experiment_store  # noqa: F401
    from pytest_perfguard.cli import Console, main

    before = high_water_kb()
    out = io.StringIO()
    start = time.perf_counter()
    rc = main(argv, console=Console(stdout=out))
    elapsed = time.perf_counter() - start
    peak = high_water_kb()
    rows = json.loads(out.getvalue()) if rc == 0 else []
    report = {"rc": rc, "seconds": elapsed, "rss_before_kb": before, "rss_peak_kb": peak,
              "rows": len(rows)}  # fmt: skip
    print(json.dumps(report), file=sys.stderr)


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    from sqlalchemy import create_engine, make_url, text

    schema = f"perfguard_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench(name: str, url: str, doc: dict[str, Any], repeats: int) -> None:
    from pytest_perfguard.api import History

    n_trials = sum(len(e["trials"]) for e in doc["experiments"])
    with History(url) as history:
        start = time.perf_counter()
        result = history.import_experiments(doc)
        imported = time.perf_counter() - start
        ids = [str(r.id) for r in history.experiments()]
    print(f"{name}: imported {result.created} experiments, {result.trials_added} trials "
          f"in {imported:.1f} s ({imported / n_trials * 1e6:.0f} us a trial)")  # fmt: skip
    argv = ["experiments", "compare", *ids, "--metric", "mrr", "--json", "--db", url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reports = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(argv)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        total = time.perf_counter() - start
        report = json.loads(done.stderr.strip().splitlines()[-1])
        assert report["rc"] == 0 and report["rows"] == len(ids), report
        reports.append({**report, "process_seconds": total})

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in reports))

    print(
        f"  compare {len(ids)} experiments x {n_trials // len(ids)} trials: "
        f"{median('seconds'):.2f} s for the command, {median('process_seconds'):.2f} s "
        f"for the whole process; peak RSS {median('rss_peak_kb') / 1024:.0f} MiB "
        f"({median('rss_before_kb') / 1024:.0f} MiB after imports, so "
        f"+{(median('rss_peak_kb') - median('rss_before_kb')) / 1024:.1f} MiB for the "
        f"command); median of {repeats}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("PERFGUARD_TEST_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    sys.path.insert(0, str(ROOT))
    doc = document(args.experiments, args.trials)
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            bench("SQLite", f"sqlite:///{tmp}/history.db", doc, args.repeats)
    if args.pg:
        with pg_schema(args.pg) as url:
            bench("PostgreSQL", url, doc, args.repeats)
    else:
        print("PostgreSQL: skipped (set PERFGUARD_TEST_DATABASE_URL or --pg)")


if __name__ == "__main__":
    main()
