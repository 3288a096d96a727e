"""Verdicts: one run's measurements against the baselines of its platform.

Pure: imports neither pytest nor SQLAlchemy. The decision "is this change a regression?"
is a `Rule`, so a noise-aware rule (using the samples and the baseline's spread) can be
passed to `compare` without touching the rest; `threshold_rule` is the contract's rule.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from .baselines import BaselineEntry, BaselineFile
from .results import (
    STEP_PREFIX,
    Direction,
    GateScope,
    Measurement,
    Verdict,
    VerdictKind,
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
    change = (current - baseline) / baseline
    return change if direction == "lower" else -change


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


@dataclass(frozen=True, slots=True)
class Decision:
    kind: VerdictKind
    detail: str = ""


class Rule(Protocol):
    def __call__(self, observation: Observation, /) -> Decision: ...


def threshold_rule(observation: Observation) -> Decision:
    return Decision(classify(observation.change, observation.threshold))


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
    latest: dict[tuple[str, str], Measurement] = {}
    for m in measurements:
        if m.outcome != "skipped" and math.isfinite(m.value):
            latest[(m.test, m.metric)] = m  # a re-run of the same test: the last one counts
    judged_tests = {m.test for m in latest.values() if m.is_gated(scope)}

    comparison = Comparison(platform=platform)
    for m in latest.values():
        if m.is_gated(scope):
            by_name = m.kind == "custom" or m.marked
            entry = baselines.lookup(platform, m.test, m.metric, by_name=by_name)
            verdict = _judge(m, entry, default_threshold, rule, gated=m.is_gated(gate))
        elif m.kind == "step" and m.test in judged_tests and m.outcome == "passed":
            entry = baselines.lookup(platform, m.test, m.metric, by_name=False)
            if entry is None:
                continue
            verdict = _judge(m, entry, default_threshold, rule, gated=False)
        else:
            continue
        comparison.verdicts.append(verdict)

    section = baselines.platforms.get(platform)
    if selected_tests is not None and section is not None:
        for test in selected_tests:
            for metric, entry in sorted(section.tests.get(test, {}).items()):
                if (test, metric) not in latest:
                    comparison.verdicts.append(
                        _missing(test, metric, entry, default_threshold, gated=gate != "none")
                    )
    return comparison


def _judge(
    m: Measurement,
    entry: BaselineEntry | None,
    default_threshold: float,
    rule: Rule,
    *,
    gated: bool,
) -> Verdict:
    threshold = _threshold(m.threshold, entry, default_threshold)
    baseline = entry.value if entry is not None else None

    def verdict(kind: VerdictKind, change: float | None = None, detail: str = "") -> Verdict:
        return Verdict(
            test=m.test,
            metric=m.metric,
            kind=kind,
            direction=m.direction,
            unit=m.unit or (entry.unit if entry is not None else ""),
            threshold=threshold,
            current=m.value,
            baseline=baseline,
            change=change,
            detail=detail,
            gated=gated,
        )

    if m.outcome in ("failed", "error"):
        return verdict("skipped_failed", detail=f"test {m.outcome}: not compared")
    if entry is None:
        return verdict("new", detail="no baseline on this platform")
    change = relative_change(m.value, entry.value, m.direction)
    if change is None:
        return verdict("new", detail="baseline is 0: no relative change; update the baseline")
    decision = rule(Observation(measurement=m, baseline=entry, change=change, threshold=threshold))
    detail = decision.detail
    if entry.direction is not None and entry.direction != m.direction:
        note = f"baseline was recorded with direction {entry.direction!r}"
        detail = f"{detail}; {note}" if detail else note
    return verdict(decision.kind, change, detail)


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
