"""A/A calibration (`pytest --perf-calibrate N`): the same tests run N times against
themselves, so all the spread is noise. Pure: measurements in, a table and baseline
entries out.

For each gated metric: its N per-pass values (each pass's estimator over its rounds), the
noise as their robust relative spread (MAD x 1.4826 / median), how many passes an A/A
comparison would have flagged at the current threshold (a pass against the median of the
others), the smallest change the noise lets the gate see (`SPREAD_FACTOR` x noise), and
suggestions: a threshold just above that, and the rounds that would bring the noise under
the current threshold (noise of a per-pass value falls about as 1/sqrt(rounds) when rounds
are independent; two-level noise falls slower, so treat it as a floor).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .baselines import BaselineEntry, BaselineFile, PlatformBaselines
from .compare import applicable_baseline, relative_change, threshold_for
from .results import Direction, GateScope, Measurement
from .stats.robust import mad, relative_spread

SPREAD_FACTOR = 3.0
MAX_SUGGESTED_ROUNDS = 100


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    test: str
    metric: str
    unit: str
    direction: Direction
    values: tuple[float, ...]  # one per pass
    rounds: int  # samples per pass (1 without rounds)
    threshold: float
    noise: float
    aa_flagged: int  # passes an A/A comparison flagged at `threshold`
    detectable: float
    suggested_threshold: float
    suggested_rounds: int

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def nice_threshold(value: float) -> float:
    """Round up to a threshold a person would write: 1 % steps to 10 %, then 5 % steps."""
    if value <= 0.10:
        return max(0.01, math.ceil(value * 100 - 1e-9) / 100)
    return math.ceil(value * 20 - 1e-9) / 20


def calibrate(
    passes: Sequence[Sequence[Measurement]],
    baselines: BaselineFile,
    platform: str,
    *,
    gate: GateScope,
    default_threshold: float,
) -> list[CalibrationRow]:
    """One row per gated metric measured in every pass, in test order."""
    scope: GateScope = "marked" if gate == "none" else gate
    series: dict[tuple[str, str], list[Measurement]] = {}
    for rows in passes:
        for m in rows:
            if m.outcome == "passed" and m.is_gated(scope) and math.isfinite(m.value):
                series.setdefault((m.test, m.metric), []).append(m)
    out = []
    for (test, metric), ms in sorted(series.items()):
        if len(ms) != len(passes) or len(ms) < 2:
            continue
        first = ms[0]
        entry = applicable_baseline(
            baselines, platform, test, metric, kind=first.kind, marked=first.marked
        )
        baseline_threshold = entry.threshold if entry is not None else None
        threshold = threshold_for(first.threshold, baseline_threshold, default_threshold)
        out.append(_row(test, metric, ms, threshold))
    return out


def _row(test: str, metric: str, ms: Sequence[Measurement], threshold: float) -> CalibrationRow:
    values = tuple(m.value for m in ms)
    direction = ms[0].direction
    rounds = max(1, len(ms[0].samples))
    noise = relative_spread(values) if statistics.median(values) != 0 else 0.0
    flagged = 0
    for i, value in enumerate(values):
        others = statistics.median(values[:i] + values[i + 1 :])
        change = relative_change(value, others, direction)
        flagged += change is not None and change > threshold + 1e-9
    detectable = SPREAD_FACTOR * noise
    if threshold > 0 and detectable > threshold:
        factor = (detectable / threshold) ** 2
        suggested_rounds = min(MAX_SUGGESTED_ROUNDS, math.ceil(rounds * factor))
    else:
        suggested_rounds = rounds
    return CalibrationRow(
        test=test,
        metric=metric,
        unit=ms[0].unit,
        direction=direction,
        values=values,
        rounds=rounds,
        threshold=threshold,
        noise=noise,
        aa_flagged=flagged,
        detectable=detectable,
        suggested_threshold=nice_threshold(detectable),
        suggested_rounds=suggested_rounds,
    )


def apply_calibration(
    file: BaselineFile, platform: str, rows: Sequence[CalibrationRow]
) -> BaselineFile:
    """A copy of `file` where each calibrated metric's entry carries the suggested threshold
    (never below 1 %); metrics without an entry get one from the calibration passes."""
    new = copy.deepcopy(file)
    section = new.platforms.setdefault(platform, PlatformBaselines())
    for row in rows:
        tests = section.tests.setdefault(row.test, {})
        entry = tests.get(row.metric)
        if entry is None:
            tests[row.metric] = BaselineEntry(
                value=_tidy(row.median),
                unit=row.unit,
                direction=row.direction,
                threshold=row.suggested_threshold,
                runs=len(row.values),
                spread=_tidy(mad(row.values)),
                n=len(row.values),
            )
        else:
            tests[row.metric] = replace(entry, threshold=row.suggested_threshold)
    return new


def _tidy(value: float) -> float:
    return float(f"{value:.12g}")


def format_calibration(rows: Sequence[CalibrationRow], passes: int) -> list[str]:
    """The calibration as a plain-text table, then one line on what it means."""
    from .formatting import format_percent, format_value, text_table

    if not rows:
        return [f"perfguard calibrate: no gated metric was measured in all {passes} passes"]
    table = text_table(
        [
            "test",
            "metric",
            "rounds",
            "median",
            "noise",
            "A/A flagged",
            "detectable",
            "suggest threshold",
            "suggest rounds",
        ],
        [
            [
                r.test,
                r.metric,
                str(r.rounds),
                format_value(r.median, r.unit),
                format_percent(r.noise),
                f"{r.aa_flagged}/{len(r.values)} at {format_percent(r.threshold)}",
                format_percent(r.detectable),
                format_percent(r.suggested_threshold),
                str(r.suggested_rounds),
            ]
            for r in rows
        ],
    )
    noisy = sum(r.detectable > r.threshold for r in rows)
    summary = (
        f"{passes} passes; noise = robust relative spread of the per-pass values; "
        f"detectable = {SPREAD_FACTOR:g} x noise; {noisy} of {len(rows)} metrics are noisier "
        "than their threshold allows"
    )
    return [*table, summary]
