"""Replay the confirmations recorded in this directory's result files under three rules.

    python benchmarks/ab/confirm_replay.py [FILES...]   # default: results-*.jsonl here

Every A/B run of the harness keeps the note of each verdict other than "unchanged"; a
regression that its confirmation in fresh processes did not bear out reads
``ratio R1 [L1, H1], N1 pairs, ...; not confirmed in fresh processes: ratio R2 [L2, H2],
N2 pairs``. Two kinds of them:

- a **clean test's flag** (a test of a clean run, or one the slowed run did not slow): the
  first pairing's processes differed, the confirmation said so. Confirming it would have
  been a false alarm.
- a **lost detection** (a slowed test, +25 %): the confirmation's fresh processes, or its
  noise, hid the slowdown.

For each, whether the confirmation would have borne the regression out under

- the rule until 2026-12-01, 15:30: estimate past the threshold and the interval's lower
  bound past half of it (as a first pairing needs);
- the rule since (the code's): estimate past the threshold and the head slower by the
  confirmation's own test (the interval's lower bound above 1: at the interval's
  confidence, ``1 - 2 q w``, the same as the look-adjusted p-value at most q);
- a rule measured on 2026-12-02 and not kept (RESULTS.md, "A confirmation sized over
  both draws"): the head slower by the confirmation's own test, its
  interval's upper bound at or past the threshold (it does not exclude a change of the
  threshold's size), and the geometric mean of the first pairing's estimate and the
  confirmation's past the threshold.

The confirmations' looks stop as they did (an estimate past the threshold and the test
at q is borne out under the rule since 15:30 and under the rule not kept), so those rules
judge the same pairs.

The intervals are the ones recorded at the confirmation's last look; under a rule that
settles sooner the confirmation would have stopped at an earlier look, so this replays the
rule's verdict on the pairs taken, not the pairs it would have taken. Each note was
judged by the code of its day (some by Benjamini-Hochberg among the confirmations, before
each was judged on its own), which is why the first rule keeps a few. Only runs at the
harness's +25 % (the `factor` of each row) and its 10 % threshold.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.10
NOTE = re.compile(
    r"^ratio ([\d.]+) \[([\d.]+), ([\d.]+)\], (\d+) pairs.*?"
    r"not confirmed in fresh processes: ratio ([\d.]+) \[([\d.]+), ([\d.]+)\], (\d+) pairs"
)

# The first pairing's estimate; the confirmation's estimate, lower and upper bound.
Confirmation = tuple[float, float, float, float]
RULES: dict[str, Callable[[Confirmation], bool]] = {
    "until 2026-12-01 15:30 (lower bound past half the threshold)": lambda c: (
        c[1] > 1 + THRESHOLD and c[2] > 1 + THRESHOLD / 2
    ),
    "since 2026-12-01 15:30 (lower bound above 1)": lambda c: c[1] > 1 + THRESHOLD and c[2] > 1,
    "both draws, not kept (lower bound above 1, upper bound at the threshold or past it, "
    "both pairings past the threshold)": lambda c: (
        math.sqrt(c[0] * c[1]) > 1 + THRESHOLD and c[2] > 1 and c[3] >= 1 + THRESHOLD
    ),
}


def main(paths: list[Path]) -> None:
    """Print, for every rule, the clean flags it would confirm and the detections it keeps."""
    clean_verdicts = clean_runs = slowed = 0
    flags: list[tuple[str, str, Confirmation]] = []
    lost: list[tuple[str, str, Confirmation]] = []
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["config"] == "stored" or "notes" not in row or row["factor"] != 1.25:
                continue
            slow = set(row["slow"])
            if slow:
                slowed += len(slow)
            else:
                clean_runs += 1
                clean_verdicts += len(row["verdicts"])
            for test, note in row["notes"].items():
                found = NOTE.search(note)
                if found is None:
                    continue
                numbers = [float(g) for g in found.groups()]
                where = f"{path.name} trial {row['trial']}"
                entry = (where, test, (numbers[0], numbers[4], numbers[5], numbers[6]))
                (lost if test in slow else flags).append(entry)
    print(
        f"{len(paths)} files: {clean_runs} clean runs, {clean_verdicts} clean verdicts, "
        f"{slowed} slowed metrics; {len(flags)} clean tests' flags and {len(lost)} slowed "
        "tests not confirmed in fresh processes"
    )
    for name, rule in RULES.items():
        alarms = [entry for entry in flags if rule(entry[2])]
        kept = [entry for entry in lost if rule(entry[2])]
        print(f"- {name}: {len(alarms)} false alarms, {len(kept)} of {len(lost)} detections kept")
        for where, test, (first, estimate, low, high) in alarms:
            print(
                f"    false alarm: {where} {test} {first:.3f}, then {estimate:.3f} "
                f"[{low:.3f}, {high:.3f}]"
            )


if __name__ == "__main__":
    given = [Path(arg) for arg in sys.argv[1:]]
    main(given or sorted(HERE.glob("results-*.jsonl")))
