"""Are the lanes' forked copies fresh draws for memory-bound tests?

    python benchmarks/ab/lane_draws.py SUITE_DIR RUNS OUT.json   # about 10 s a run here
    python benchmarks/ab/lane_draws.py --summary OUT.json

A/A: a base and a head worker rooted in the same checkout of the verdict harness's suite
(`run.py` writes one, e.g. `<work>/base`), each with two copies, as two lanes start. In
four turns (lane 0, lane 1, lane 0 again, lane 1's copies on lane 0's CPU: `TURNS`) every
memory-bound test and two interpreter tests take up to 23 pairs; each run starts fresh
processes. A copy is forked after collection, so it shares its process's address-space
layout and hash seed, while every page it writes is its own (`worker._own_every_page`):
where a test's offset between the two sides comes from where its data lies in physical
memory, the two lanes read it differently; where it comes from the virtual layout, they
read it alike. The summary gives, per test, the spread of the offsets over runs and
between turns of a run (`summary`): lane 0 against lane 0 again is the control, what the
pairs' own noise and the time between make of the same processes; against lane 1's copies
on the same CPU, what another copy adds; lane 1 on its own CPU against lane 0's, what
another CPU adds.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_perfguard.ab import pairing
from pytest_perfguard.ab.lanes import close_workers
from pytest_perfguard.ab.series import Series, pair_series

SUITE = "test_verdict_suite.py"
TURNS = ((0, 0), (1, 1), (0, 0), (1, 0))  # (lane's copy, CPU)
TESTS = [
    *(f"mem_{size}_{kind}" for size in ("0p3ms", "1ms", "3ms") for kind in ("rounds", "auto")),
    "interp_0p3ms_auto",
    "interp_1ms_auto",
]


def _series(base: list[Any], head: list[Any]) -> list[Series]:
    return pair_series(base, head, None, True)


def measure(root: Path, runs: int) -> list[dict[str, Any]]:
    """Each test's median pair log-ratio (head over base) per turn and run."""
    args = ["--rootdir", str(root), "-p", "no:randomly", SUITE]
    rows = []
    for run in range(runs):
        base = pairing.WorkerProcess(root, sys.executable, args, copies=2)
        head = pairing.WorkerProcess(
            root, sys.executable, args, name="head worker", copies=2,
            start_lines=[copy.start_line_path for copy in base.copies],
        )  # fmt: skip
        workers = [*base.copies, *head.copies]
        try:
            for worker in workers:
                hello = worker.wait_hello()
                if hello["errors"]:
                    raise SystemExit(f"{worker.name}: {hello['errors'][0]}")
            # (copy, CPU) a turn: lane 0, lane 1, lane 0 again (the control: what the same
            # processes read again), and lane 1's copies on lane 0's CPU (a copy apart
            # from its CPU).
            for turn, (lane, cpu) in enumerate(TURNS):
                b, h = base.copies[lane], head.copies[lane]
                b.pin([cpu])
                h.pin([cpu])
                for test in TESTS:
                    # A threshold of -100 %: nothing settles as unchanged, so a test takes
                    # every look (23 pairs) unless its offset is significant (10 or 15).
                    plan = pairing.PairingPlan(
                        mode="interleave", budget=100.0, q=0.05, metrics=24, cpus=[cpu], looks=3
                    )
                    paired = pairing.pair_on_workers(
                        plan, b, h, f"{SUITE}::test_{test}", _series, lambda _: -1.0,
                        keep=True, warm_together=False,
                    )  # fmt: skip
                    s = next(s for s in _series(paired.base, paired.head) if s.gated)
                    ratios = [math.log(y / x) for x, y in zip(s.base, s.head, strict=True)]
                    offset = statistics.median(ratios)
                    rows.append(
                        {"run": run, "turn": turn, "lane": lane, "test": test,
                         "pairs": len(ratios), "logratio": offset}
                    )  # fmt: skip
                    print(run, turn, test, len(ratios), f"{math.exp(offset):.3f}")
        finally:
            close_workers(workers)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per test, the spread (sd of the median log-ratios) over runs and, within a run, from
    one turn to another: lane 0 to lane 1 (another copy on another CPU, plus the noise of
    23 pairs and the time between), lane 0 to lane 0 again (noise and time only), lane 0
    to lane 1's copy on lane 0's CPU (another copy, the same CPU), and lane 1 to its copy
    on lane 0's CPU (the same copy, another CPU)."""
    by: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for row in rows:
        by[(row["test"], row["run"])][row["turn"]] = row["logratio"]
    lines = [
        "test: over runs | lane 0 to lane 1 | lane 0 again | another copy, same CPU | "
        "same copy, another CPU"
    ]

    def apart(turns: list[dict[int, float]], a: int, b: int) -> float:
        if not all(a in t and b in t for t in turns):
            return math.nan  # a file from before that turn
        return statistics.stdev([t[b] - t[a] for t in turns]) / math.sqrt(2)

    for test in sorted({row["test"] for row in rows}):
        turns = [t for (name, _), t in sorted(by.items()) if name == test]
        spreads = [apart(turns, 0, 1), apart(turns, 0, 2), apart(turns, 0, 3), apart(turns, 1, 3)]
        lines.append(
            f"{test:18s} {statistics.stdev([t[0] for t in turns]):.3f} | "
            + " | ".join(f"{v:.3f}" for v in spreads)
        )
    return lines


def main() -> None:
    if sys.argv[1] == "--summary":
        rows = json.loads(Path(sys.argv[2]).read_text())
    else:
        if int(sys.argv[2]) < 3:
            raise SystemExit("lane_draws.py: three runs or more, for a spread")
        rows = measure(Path(sys.argv[1]).resolve(), int(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(rows))
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
