"""Pool several result files of `run.py` by condition: each A/B configuration's time as a
multiple of the stored gate's in the same trial (median trial, clean and slowed trials
apart, sums), and `interleave` over `interleave-other` per trial (geometric mean), with
false alarms and detections.

    python benchmarks/ab/pooled.py benchmarks/ab/results-*-controller-*.jsonl
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from run import read_rows  # type: ignore[import-not-found]


def _geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def _by_kind(runs: list[dict[str, dict[str, Any]]], config: str) -> str:
    """Detections by kind of work (the tests' name prefix), and false alarms among every
    test not slowed, clean runs and slowed runs alike."""
    caught: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    alarms = unslowed = 0
    for r in runs:
        row = r[config]
        for test, verdict in row["verdicts"].items():
            if test in row["slow"]:
                counts = caught[test.split("_")[0]]
                counts[0] += verdict == "regression"
                counts[1] += 1
            else:
                alarms += verdict == "regression"
                unslowed += 1
    kinds = ", ".join(f"{kind} {a}/{b}" for kind, (a, b) in sorted(caught.items()))
    return f"by kind {kinds}; false alarms among all unslowed tests {alarms}/{unslowed}"


def pooled(rows: list[dict[str, Any]]) -> list[str]:
    """One line per condition and configuration (see the module docstring)."""
    trials: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        trials[(row["condition"], row["file"], row["trial"])][row["config"]] = row
    lines = []
    for condition in sorted({key[0] for key in trials}):
        runs = [runs for key, runs in trials.items() if key[0] == condition and "stored" in runs]
        configs = sorted({c for r in runs for c in r} - {"stored"})
        for config in configs:
            both = [r for r in runs if config in r]
            ratio = [r[config]["secs"] / r["stored"]["secs"] for r in both]
            clean = [x for x, r in zip(ratio, both, strict=True) if not r[config]["slow"]]
            slowed = [x for x, r in zip(ratio, both, strict=True) if r[config]["slow"]]
            sums = sum(r[config]["secs"] for r in both) / sum(r["stored"]["secs"] for r in both)
            false_alarms = sum(
                v == "regression"
                for r in both
                if not r[config]["slow"]
                for v in r[config]["verdicts"].values()
            )
            clean_verdicts = sum(len(r[config]["verdicts"]) for r in both if not r[config]["slow"])
            detected = sum(
                r[config]["verdicts"].get(test) == "regression"
                for r in both
                for test in r[config]["slow"]
            )
            slowed_tests = sum(len(r[config]["slow"]) for r in both)
            lines.append(
                f"{condition} {config}: {len(both)} trials, x stored median "
                f"{statistics.median(ratio):.2f}x (clean {statistics.median(clean):.2f}x, "
                f"slowed {statistics.median(slowed):.2f}x, sums {sums:.2f}x); "
                f"false alarms {false_alarms}/{clean_verdicts}, detected {detected}/{slowed_tests}"
                f"; {_by_kind(both, config)}"
            )
        paired = [r for r in runs if "interleave" in r and "interleave-other" in r]
        if paired:
            per_trial = [r["interleave"]["secs"] / r["interleave-other"]["secs"] for r in paired]
            cpu = [r["interleave"]["cpu"] / r["interleave-other"]["cpu"] for r in paired]
            lines.append(
                f"{condition} interleave / interleave-other per trial (geometric mean): "
                f"time {_geomean(per_trial):.3f}, CPU seconds {_geomean(cpu):.3f}"
            )
    return lines


def main(paths: list[str]) -> None:
    rows = []
    for path in paths:
        for row in read_rows(Path(path)):
            row["file"] = path
            rows.append(row)
    print("\n".join(pooled(rows)))


if __name__ == "__main__":
    main(sys.argv[1:])
