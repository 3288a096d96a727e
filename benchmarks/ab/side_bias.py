"""Does the pytest process itself, as the head side of pairs, read the head faster or
slower than a head worker does? A/A runs of the suite, one lane (`--perf-ab-lanes 1`: the
pytest process pairs with the base worker) against two (a head worker pairs), alternating.

    python benchmarks/ab/side_bias.py [--runs 8] [--hog] [--out side-bias.jsonl] [--work DIR]
    python benchmarks/ab/side_bias.py --summary side-bias.jsonl

Printed: per setting and kind of work, the geometric mean of the A/A ratios head/base
(1.000 is no bias) and its standard error. A process that read the head faster would shave
slowdowns in every pairing it took part in; RESULTS.md quotes the runs (a confirmation
paired in the pytest process was tried on 2026-12-01).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # benchmarks/ab/run.py: the suite's writer

SETTINGS = {"pytest process": ["--perf-ab-lanes", "1"], "head worker": []}


def summary(rows: list[dict]) -> list[str]:
    logs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        for metric, ratio in row["ratios"].items():
            logs[(row["setting"], metric.split("_")[0])].append(math.log(ratio))
    lines = []
    for (setting, kind), values in sorted(logs.items()):
        error = statistics.stdev(values) / len(values) ** 0.5
        lines.append(
            f"{setting:15s} {kind:7s} {len(values):4d} ratios, geometric mean "
            f"{math.exp(statistics.fmean(values)):.4f} (standard error {error:.4f})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--hog", action="store_true", help="beside the memory hog")
    parser.add_argument("--out", type=Path, default=Path("side-bias.jsonl"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/perfguard-side-bias"))
    parser.add_argument("--summary", type=Path, nargs="+", help="only summarise these files")
    args = parser.parse_args()
    if args.summary:
        harness.print_summaries(args.summary, summary)
        return
    base, head = args.work / "base", args.work / "head"
    for directory in (base, head):
        if not directory.is_dir():
            harness.write_suite(directory, [], 1.0)
    report = args.work / "report.json"
    hog = harness.Hogs("mem") if args.hog else None
    rows = []
    try:
        for run in range(args.runs):
            order = list(SETTINGS.items())
            if run % 2:
                order.reverse()
            for setting, options in order:
                rc, _, _, text = harness.pytest_run(
                    head, f"--perf-against={base}", "--perf-threshold", "0.1",
                    f"--perf-json={report}", *options,
                )  # fmt: skip
                if rc not in (0, 1):
                    raise SystemExit(f"{setting}: exit {rc}\n{text[-2000:]}")
                ratios = {
                    c["metric"]: c["ratio"]
                    for c in json.loads(report.read_text())["comparisons"]
                    if c.get("ratio")
                }
                row = {"run": run, "setting": setting, "hog": args.hog, "ratios": ratios}
                rows.append(row)
                harness.append_row(args.out, row)
                print(run, setting, flush=True)
    finally:
        if hog is not None:
            hog.stop()
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
