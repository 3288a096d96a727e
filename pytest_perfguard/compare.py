"""Verdicts: one run's measurements against the baselines of its platform.

Pure: imports neither pytest nor SQLAlchemy. The decision "is this change a regression?"
is a `Rule`, so a noise-aware rule (using the samples and the baseline's spread, and
correcting for the number of metrics) can be passed to `compare` without touching the
rest; `threshold_rule` is the contract's rule.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal, Protocol, get_args

from . import stats
from .baselines import BaselineEntry, BaselineFile
from .results import (
    STEP_PREFIX,
    Direction,
    GateScope,
    Measurement,
    Verdict,
    VerdictKind,
    worse_is_positive,
)

VERDICT_KINDS: tuple[VerdictKind, ...] = get_args(VerdictKind)
ThresholdKind = Literal["regression", "improvement", "unchanged"]

# Changes within this of the threshold count as "at" it: 1.0 -> 1.1 is a change of
# 0.10000000000000009 in floating point, which must not fail a 10 % threshold.
_EPSILON = 1e-9


def relative_change(current: float, baseline: float, direction: Direction) -> float | None:
    """`(current - baseline) / baseline`, signed so that worse is positive.

    None when the baseline is 0 and the current value is not: no relative change exists.
    """
    if baseline == 0:
        return 0.0 if current == 0 else None
    return worse_is_positive((current - baseline) / baseline, direction)


def classify(change: float, threshold: float) -> ThresholdKind:
    """The contract's rule: worse by more than `threshold` is a regression."""
    if change > threshold + _EPSILON:
        return "regression"
    if change < -threshold - _EPSILON:
        return "improvement"
    return "unchanged"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a rule decides on: the current measurement (with its samples), its
    baseline entry (with spread and run count when known), the change and threshold."""

    measurement: Measurement
    baseline: BaselineEntry
    change: float
    threshold: float
    gated: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    kind: VerdictKind
    detail: str = ""


class Rule(Protocol):
    """Decides a batch of observations, one `Decision` each, in order.

    `compare` calls it once with the session's gated observations and once with the
    informational ones (steps, `--perf-gate=none`), so a rule that corrects for multiple
    comparisons counts only the metrics that can fail the session.
    """

    def __call__(self, observations: Sequence[Observation], /) -> Sequence[Decision]: ...


def threshold_rule(observations: Sequence[Observation]) -> list[Decision]:
    return [Decision(classify(o.change, o.threshold)) for o in observations]


def spread_factor(q: float, metrics: int) -> float:
    """How many baseline spreads a change must exceed under the noise rule: the one-sided
    normal quantile at q / m for m metrics (Bonferroni, which bounds the false-discovery
    rate too), never below 3, the usual control-chart limit."""
    return max(3.0, NormalDist().inv_cdf(1 - q / max(metrics, 1)))


def noise_rule(q: float = 0.05) -> Rule:
    """The noise-aware rule of issue 5 over one batch of observations (`stats.decide_session`).

    The current side is the measurement's value (its estimator over its samples); the
    baseline side is the entry's summary: value, spread (MAD of the runs it came from) and n.
    A regression must exceed the threshold and `spread_factor(q, m)` relative spreads; a
    metric whose noise hides a change of the threshold's size is `unstable` (never fails).
    Where both sides carry samples (the run's rounds, the entry's pooled `samples`) the
    stats module's rank test, BH-adjusted across the batch, decides instead.
    """

    def rule(observations: Sequence[Observation], /) -> list[Decision]:
        metrics = [_metric_samples(o) for o in observations]
        k = spread_factor(q, len(metrics))
        return [Decision(d.kind, d.detail) for d in stats.decide_session(metrics, q=q, k=k)]

    return rule


def _metric_samples(o: Observation) -> stats.MetricSamples:
    """Rounds against the baseline's pooled rounds where both sides have them (the rank
    test); otherwise the measured value against the baseline's summary (the spread rule)."""
    entry, m = o.baseline, o.measurement
    if len(m.samples) >= 2 and entry.samples is not None and len(entry.samples) >= 2:
        return stats.MetricSamples(m.samples, entry.samples, m.direction, o.threshold)
    n = entry.n or entry.runs or 1
    baseline = stats.BaselineSummary(entry.value, entry.spread or 0.0, n)
    return stats.MetricSamples((m.value,), baseline, m.direction, o.threshold)


def make_rule(name: str, q: float = 0.05) -> Rule:
    """The rule `--perf-rule` names: `threshold` (the contract's) or `noise`."""
    if name == "noise":
        return noise_rule(q)
    if name == "threshold":
        return threshold_rule
    raise ValueError(f"unknown rule {name!r}")


@dataclass(slots=True)
class Comparison:
    """All verdicts of a run. Step verdicts (`step:<name>`) are informational."""

    platform: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def metric_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.metric.startswith(STEP_PREFIX)]

    @property
    def step_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.metric.startswith(STEP_PREFIX)]

    def of_kind(self, kind: VerdictKind) -> list[Verdict]:
        return [v for v in self.metric_verdicts if v.kind == kind]

    @property
    def regressions(self) -> list[Verdict]:
        return self.of_kind("regression")

    @property
    def improvements(self) -> list[Verdict]:
        return self.of_kind("improvement")

    @property
    def failed(self) -> bool:
        """Whether a gated metric regressed (the session should fail)."""
        return any(v.fails for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        """Verdicts of the non-step metrics by kind, every kind present (0 when none)."""
        counts: dict[str, int] = dict.fromkeys(VERDICT_KINDS, 0)
        for verdict in self.metric_verdicts:
            counts[verdict.kind] += 1
        return counts

    def find(self, test: str, metric: str) -> Verdict | None:
        for verdict in self.verdicts:
            if verdict.test == test and verdict.metric == metric:
                return verdict
        return None


def compare(
    measurements: Sequence[Measurement],
    baselines: BaselineFile,
    platform: str,
    *,
    gate: GateScope,
    default_threshold: float,
    selected_tests: Collection[str] | None = None,
    rule: Rule = threshold_rule,
) -> Comparison:
    """Judge every gated metric of `measurements` against `baselines` on `platform`.

    - Gated metrics (`Measurement.is_gated(gate)`) get a verdict that can fail the run.
      With `gate="none"` the metrics `marked` would gate are still judged, but never fail.
    - Step metrics of those tests are judged, informationally, when the baseline has them.
    - A test that failed or errored gets `skipped_failed`, never a regression.
    - With `selected_tests`, baseline entries of selected tests that produced no
      measurement of that metric are `missing` (reported, never a failure).
    Thresholds: the measurement's own (marker / `perf.record`) > the baseline entry's >
    `default_threshold`. A baseline of 0 gives `unchanged` when the value is 0 too, else
    `new` (no relative change exists).
    """
    scope: GateScope = "marked" if gate == "none" else gate
    # Under the default scope only marked tests are judged: filter first, as most of a
    # suite's rows are plain tests' (this runs over every row of the session).
    judged = measurements if scope == "all" else [m for m in measurements if m.marked]
    latest: dict[tuple[str, str], Measurement] = {}
    for m in judged:
        if m.outcome != "skipped" and math.isfinite(m.value):
            latest[(m.test, m.metric)] = m  # a re-run of the same test: the last one counts
    judged_tests = {m.test for m in latest.values() if m.is_gated(scope)}

    items: list[Verdict | Observation] = []
    for m in latest.values():
        if m.is_gated(scope):
            by_name = m.kind == "custom" or m.marked
            entry = baselines.lookup(platform, m.test, m.metric, by_name=by_name)
            items.append(_observe(m, entry, default_threshold, gated=m.is_gated(gate)))
        elif m.kind == "step" and m.test in judged_tests and m.outcome == "passed":
            entry = baselines.lookup(platform, m.test, m.metric, by_name=False)
            if entry is not None:
                items.append(_observe(m, entry, default_threshold, gated=False))

    decided: dict[int, Decision] = {}
    for gated in (True, False):
        batch = {
            i: o for i, o in enumerate(items) if isinstance(o, Observation) and o.gated is gated
        }
        if batch:
            decided.update(zip(batch, rule(list(batch.values())), strict=True))
    comparison = Comparison(platform=platform)
    comparison.verdicts = [
        item if isinstance(item, Verdict) else _decided(item, decided[i])
        for i, item in enumerate(items)
    ]

    section = baselines.platforms.get(platform)
    if selected_tests is not None and section is not None and section.tests:
        baselined = section.tests
        measured = {
            (m.test, m.metric)
            for m in measurements
            if m.test in baselined and m.outcome != "skipped" and math.isfinite(m.value)
        }
        for test in selected_tests:
            for metric, entry in sorted(baselined.get(test, {}).items()):
                if (test, metric) not in measured:
                    comparison.verdicts.append(
                        _missing(test, metric, entry, default_threshold, gated=gate != "none")
                    )
    return comparison


def _observe(
    m: Measurement, entry: BaselineEntry | None, default_threshold: float, *, gated: bool
) -> Verdict | Observation:
    """The verdict when no rule is needed (failed test, no baseline), else what to decide."""
    threshold = _threshold(m.threshold, entry, default_threshold)
    if m.outcome in ("failed", "error"):
        return _verdict(
            m, entry, threshold, gated, "skipped_failed", detail=f"test {m.outcome}: not compared"
        )
    if entry is None:
        return _verdict(m, entry, threshold, gated, "new", detail="no baseline on this platform")
    change = relative_change(m.value, entry.value, m.direction)
    if change is None:
        return _verdict(
            m,
            entry,
            threshold,
            gated,
            "new",
            detail="baseline is 0: no relative change; update the baseline",
        )
    return Observation(m, entry, change, threshold, gated)


def _decided(o: Observation, decision: Decision) -> Verdict:
    detail = decision.detail
    if o.baseline.direction is not None and o.baseline.direction != o.measurement.direction:
        note = f"baseline was recorded with direction {o.baseline.direction!r}"
        detail = f"{detail}; {note}" if detail else note
    return _verdict(
        o.measurement,
        o.baseline,
        o.threshold,
        o.gated,
        decision.kind,
        change=o.change,
        detail=detail,
    )


def _verdict(
    m: Measurement,
    entry: BaselineEntry | None,
    threshold: float,
    gated: bool,
    kind: VerdictKind,
    *,
    change: float | None = None,
    detail: str = "",
) -> Verdict:
    return Verdict(
        test=m.test,
        metric=m.metric,
        kind=kind,
        direction=m.direction,
        unit=m.unit or (entry.unit if entry is not None else ""),
        threshold=threshold,
        current=m.value,
        baseline=entry.value if entry is not None else None,
        change=change,
        detail=detail,
        gated=gated,
    )


def _missing(
    test: str, metric: str, entry: BaselineEntry, default_threshold: float, *, gated: bool
) -> Verdict:
    return Verdict(
        test=test,
        metric=metric,
        kind="missing",
        direction=entry.direction or "lower",
        unit=entry.unit,
        threshold=_threshold(None, entry, default_threshold),
        baseline=entry.value,
        detail="baseline exists but the test produced no measurement of this metric",
        gated=gated and not metric.startswith(STEP_PREFIX),
    )


def _threshold(own: float | None, entry: BaselineEntry | None, default: float) -> float:
    if own is not None:
        return own
    if entry is not None and entry.threshold is not None:
        return entry.threshold
    return default
