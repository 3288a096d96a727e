"""The early futility looks replayed on recorded pairings: which tests would stop at 3 and
at 4 pairs (the t interval of the mean log-ratio, `paired.mean_ratio_interval`) and which at
6 (the exact signed-rank interval), clean and slowed apart.

    python benchmarks/ab/futility_replay.py [pairings.jsonl]

`pairings-2026-12-01.jsonl`: every first pairing of 60 runs of the harness's suite taken
on 2026-12-01, 17:35 UTC (a copy of one trial's base as head, and a slowed trial's head
with six tests +25 %; quiet, under three busy loops and beside the memory hog), one line a
pairing with the pairs' log-ratios head/base (busy time). RESULTS.md quotes the output.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from pytest_perfguard import paired

THRESHOLD = 0.10


def stops(log_ratios: list[float], pairs: int) -> bool:
    """Whether a futility look at `pairs` pairs finds the metric unchanged."""
    base, head = [1.0] * pairs, [math.exp(d) for d in log_ratios[:pairs]]
    a = paired.assess_pairs(base, head, share=0.0)
    return a.reach <= THRESHOLD and a.change >= -THRESHOLD


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "pairings-2026-12-01.jsonl"
    )
    # tests, stopped at 3, at 4, at 6, at 3 or 4 (a look at 3 was tried: RESULTS.md), at 4 not 3
    counts: dict[tuple[str, bool], list[int]] = defaultdict(lambda: [0] * 6)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        d = row["log_ratios"]
        if len(d) < 6:
            continue
        cell = counts[(row["condition"], row["slowed"])]
        at3, at4, at6 = stops(d, 3), stops(d, 4), stops(d, 6)
        for index, value in enumerate((True, at3, at4, at6, at3 or at4, at4 and not at3)):
            cell[index] += value
    print(
        "| condition | tests | pairings | stopped at 3 (t) | at 4 (t) | at 6 (exact) "
        "| at 3 or 4 | at 4, not at 3 |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for (condition, slowed), cell in sorted(counts.items()):
        kind = "slowed +25 %" if slowed else "clean"
        print(f"| {condition} | {kind} | " + " | ".join(str(value) for value in cell) + " |")


if __name__ == "__main__":
    main()
