"""Verdicts: one run's measurements against the baselines of its platform.

Pure: imports neither pytest nor SQLAlchemy. The one home of the verdict policy: the
relative change (signed so that worse is positive), which threshold applies, which baseline
entry applies, and what a change means (`classify`, and `classify_assessment` for the noise
rule). The decision "is this change a regression?" is a `Rule`, so a noise-aware rule (using
the samples and the baseline's spread, and correcting for the number of metrics) can be
passed to `compare` without touching the rest; `threshold_rule` is the contract's rule.

The noise rule (issue 5): with samples on both sides, a **regression** needs the estimated
change (worse positive) above the threshold, the (BH-adjusted) one-sided p-value at most q,
and the interval's better bound above half the threshold. Otherwise (a single value on one
side, or too few rounds for the rank test to ever reach significance), the change of the
medians must exceed both the threshold and `k` times the relative spread (k = 3: about a
0.1 % one-sided false-alarm rate for normal noise, the usual control-chart limit).
**Unstable** when the minimum detectable effect exceeds the threshold and nothing was shown:
noise makes "no change" unreliable, not a change that was shown despite it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, get_args

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

# The noise rule's statistics load when that rule runs: the default threshold rule needs
# none of them, and importing them costs every session that compares.
if TYPE_CHECKING:
    from .stats.assessment import Assessment, BaselineSummary

VERDICT_KINDS: tuple[VerdictKind, ...] = get_args(VerdictKind)
ThresholdKind = Literal["regression", "improvement", "unchanged"]

# Changes within this of the threshold count as "at" it: 1.0 -> 1.1 is a change of
# 0.10000000000000009 in floating point, which must not fail a 10 % threshold.
_EPSILON = 1e-9


def relative_difference(current: float, baseline: float) -> float | None:
    """`(current - baseline) / |baseline|`: how the value moved, up positive, whatever the
    metric's direction (what a reader of a table expects from "+12%").

    0 when both are 0; None when only the baseline is 0 (no relative change exists).
    """
    if baseline == 0:
        return 0.0 if current == 0 else None
    return (current - baseline) / abs(baseline)


def relative_change(current: float, baseline: float, direction: Direction | str) -> float | None:
    """`relative_difference` signed so that worse is positive for the metric's direction:
    the change the gate judges."""
    difference = relative_difference(current, baseline)
    return None if difference is None else worse_is_positive(difference, direction)


def threshold_for(own: float | None, baseline_threshold: float | None, default: float) -> float:
    """Which threshold applies: the measurement's own > the baseline entry's > the default
    (`perf_threshold`). A metric's own is the marker's `threshold=` or `perf.record`'s; a
    step's (`step:<name>`) is the marker's `step_threshold=` (one number for every step,
    or the step's entry of its dict), never the marker's `threshold=`, which is the test's
    own metric's."""
    if own is not None:
        return own
    if baseline_threshold is not None:
        return baseline_threshold
    return default


def uses_platform_wide_baseline(kind: str, marked: bool) -> bool:
    """Whether a platform-wide (flat format) baseline of a metric's name applies to it:
    to a marked test's own metric and to `perf.record` metrics, never to the duration of
    an unmarked test, to steps or to system metrics."""
    return kind == "custom" or (kind == "primary" and marked)


def applicable_baseline(
    baselines: BaselineFile, platform: str, test: str, metric: str, *, kind: str, marked: bool
) -> BaselineEntry | None:
    """The baseline entry a metric is judged against on `platform`: the test's own entry,
    else a platform-wide one where `uses_platform_wide_baseline`."""
    by_name = uses_platform_wide_baseline(kind, marked)
    return baselines.lookup(platform, test, metric, by_name=by_name)


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
    """A rule's verdict on one observation. The noise rule adds what it decided on: the
    assessment, the BH-adjusted p-value and, when unstable, the rounds per side that would
    do."""

    kind: VerdictKind
    detail: str = ""
    assessment: Assessment | None = None
    q_value: float | None = None
    rounds_needed: int | None = None


class Rule(Protocol):
    """Decides a batch of observations, one `Decision` each, in order.

    `compare` calls it once with the session's gated observations (steps with a baseline
    included) and once with the informational ones (`--perf-gate=none`), so a rule that
    corrects for multiple comparisons counts only the metrics that can fail the session.
    """

    def __call__(self, observations: Sequence[Observation], /) -> Sequence[Decision]: ...


def threshold_rule(observations: Sequence[Observation]) -> list[Decision]:
    return [Decision(classify(o.change, o.threshold)) for o in observations]


def spread_factor(q: float, metrics: int) -> float:
    """How many baseline spreads a change must exceed under the noise rule: the one-sided
    normal quantile at q / m for m metrics (Bonferroni, which bounds the false-discovery
    rate too), never below 3, the usual control-chart limit."""
    from statistics import NormalDist

    return max(3.0, NormalDist().inv_cdf(1 - q / max(metrics, 1)))


def noise_rule(q: float = 0.05) -> Rule:
    """The noise-aware rule of issue 5 over one batch of observations (`decide_noise`).

    The current side is the measurement's value (its estimator over its samples); the
    baseline side is the entry's summary: value, spread (MAD of the runs it came from) and n.
    A regression must exceed the threshold and `spread_factor(q, m)` relative spreads; a
    metric whose noise hides a change of the threshold's size is `unstable` (never fails).
    Where both sides carry samples (the run's rounds, the entry's pooled `samples`) the
    rank test, BH-adjusted across the batch, decides instead.
    """

    def rule(observations: Sequence[Observation], /) -> list[Decision]:
        metrics = [_metric_samples(o) for o in observations]
        return decide_noise(metrics, q=q, k=spread_factor(q, len(metrics)))

    return rule


@dataclass(frozen=True, slots=True)
class MetricSamples:
    """One metric's input to `decide_noise`: its samples (or value), the baseline's samples
    or summary, its direction and threshold."""

    current: Sequence[float]
    baseline: Sequence[float] | BaselineSummary
    direction: Direction
    threshold: float


def _metric_samples(o: Observation) -> MetricSamples:
    """Rounds against the baseline's pooled rounds where both sides have them (the rank
    test); otherwise the measured value against the baseline's summary (the spread rule)."""
    from .stats.assessment import BaselineSummary

    entry, m = o.baseline, o.measurement
    if len(m.samples) >= 2 and entry.samples is not None and len(entry.samples) >= 2:
        return MetricSamples(m.samples, entry.samples, m.direction, o.threshold)
    n = entry.n or entry.runs or 1
    baseline = BaselineSummary(entry.value, entry.spread or 0.0, n)
    return MetricSamples((m.value,), baseline, m.direction, o.threshold)


def classify_assessment(
    assessment: Assessment, threshold: float, *, q_value: float | None = None, q: float = 0.05
) -> Decision:
    """The noise rule on one assessed metric. `q_value` is its BH-adjusted p-value (the raw
    p-value is used when None: a session of one metric)."""
    a, t = assessment, threshold
    pct = f"{a.change:+.1%} (threshold {t:.0%})"
    kind: VerdictKind
    if a.rule == "rank-test":
        qv = a.p_value if q_value is None else q_value
        assert qv is not None
        # Beyond the threshold is not enough: the test and the interval must show it too.
        kind = classify(a.change, t)
        if kind == "regression" and not (qv <= q and a.change_better > t / 2):
            kind = "unchanged"
        if kind == "improvement" and not a.change_worse < -t / 2:
            kind = "unchanged"
        interval = f"{a.change_better:+.1%}..{a.change_worse:+.1%}"
        detail = f"{pct}, interval {interval}" + ("" if kind == "improvement" else f", q={qv:.2g}")
    else:
        qv = None
        bar = max(t, a.mde)
        kind = classify(a.change, bar)
        detail = f"{pct}, bar {bar:.1%} (noise {a.rel_spread:.1%})"
    needed = None
    if kind == "unchanged" and a.mde > t:
        kind = "unstable"
        from .stats.detectable_effect import rounds_needed

        needed = rounds_needed(a.rel_spread, t, a.alpha, a.power, direction=a.direction)
        detail = (
            f"{detail}; noise hides a {t:.0%} change (detectable: {a.mde:.0%}),"
            f" needs {needed} rounds"
        )
    return Decision(kind, detail, a, qv, needed)


def decide_noise(
    metrics: Sequence[MetricSamples],
    *,
    q: float = 0.05,
    k: float = 3.0,
    confidence: float = 0.90,
    power: float = 0.8,
) -> list[Decision]:
    """The noise rule over one batch of metrics: assess each, BH-adjust the rank tests'
    p-values together, classify. The minimum detectable effect assumes a lone regression
    (level q / m for m metrics with samples on both sides), the hardest case BH has to pass."""
    from .stats.assessment import BaselineSummary, assess
    from .stats.multiple_testing import benjamini_hochberg

    m = sum(
        1
        for x in metrics
        if not isinstance(x.baseline, BaselineSummary) and min(len(x.current), len(x.baseline)) >= 2
    )
    alpha = q / max(m, 1)
    assessments = [
        assess(
            x.current, x.baseline, x.direction, confidence=confidence, alpha=alpha, power=power, k=k
        )
        for x in metrics
    ]
    tested = [i for i, a in enumerate(assessments) if a.p_value is not None]
    q_values: list[float | None] = [None] * len(assessments)
    adjusted = benjamini_hochberg([assessments[i].p_value or 0.0 for i in tested])
    for i, qv in zip(tested, adjusted, strict=True):
        q_values[i] = qv
    return [
        classify_assessment(a, x.threshold, q_value=qv, q=q)
        for a, x, qv in zip(assessments, metrics, q_values, strict=True)
    ]


def make_rule(name: str, q: float = 0.05) -> Rule:
    """The rule `--perf-rule` names: `threshold` (the contract's) or `noise`."""
    if name == "noise":
        return noise_rule(q)
    if name == "threshold":
        return threshold_rule
    raise ValueError(f"unknown rule {name!r}")


@dataclass(slots=True)
class Comparison:
    """All verdicts of a run. Step verdicts (`step:<name>`) are kept apart from the
    metrics' (`metric_verdicts`, `counts`, `regressions`) but fail the session all the
    same when they regress (`step_regressions`)."""

    platform: str
    verdicts: list[Verdict] = field(default_factory=list)
    # What the verdicts stand on, said with them: e.g. a baseline recorded on other hardware.
    notes: list[str] = field(default_factory=list)

    @property
    def metric_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.metric.startswith(STEP_PREFIX)]

    @property
    def step_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.metric.startswith(STEP_PREFIX)]

    @property
    def step_regressions(self) -> list[Verdict]:
        """Regressed steps that fail the session (gated)."""
        return [v for v in self.step_verdicts if v.kind == "regression" and v.gated]

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
    - Step metrics (`step:<name>`) of those tests are judged like any metric when the
      baseline has them (a regressed step fails the session); a step that raised, or one
      of a test that did not pass, is not compared.
    - A test that failed or errored gets `skipped_failed`, never a regression.
    - With `selected_tests`, baseline entries of selected tests that produced no
      measurement of that metric are `missing` (reported, never a failure).
    Thresholds: `threshold_for` (the measurement's own: marker / `perf.record` /
    `step_threshold=`) > the baseline entry's > `default_threshold`. A baseline of 0
    gives `unchanged` when the value is 0 too, else `new` (no relative change exists).
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
            entry = applicable_baseline(
                baselines, platform, m.test, m.metric, kind=m.kind, marked=m.marked
            )
            items.append(_observe(m, entry, default_threshold, gated=m.is_gated(gate)))
        elif m.kind == "step" and m.test in judged_tests and m.outcome == "passed":
            entry = applicable_baseline(
                baselines, platform, m.test, m.metric, kind=m.kind, marked=m.marked
            )
            if entry is None:
                continue
            gated = gate != "none"
            if m.error is not None:
                threshold = threshold_for(m.threshold, entry.threshold, default_threshold)
                detail = f"step raised: not compared ({m.error})"
                items.append(_verdict(m, entry, threshold, gated, "skipped_failed", detail=detail))
            else:
                items.append(_observe(m, entry, default_threshold, gated=gated))

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


class GateSettings(Protocol):
    """The settings a run's verdicts depend on (`PerfSettings` has them): `perf_threshold`,
    `perf_gate`, `perf_rule` and `perf_q`."""

    @property
    def threshold(self) -> float: ...
    @property
    def gate(self) -> GateScope: ...
    @property
    def rule(self) -> str: ...
    @property
    def q(self) -> float: ...


def judge_run(
    measurements: Sequence[Measurement],
    baselines: BaselineFile,
    platform: str,
    settings: GateSettings,
    *,
    selected_tests: Collection[str] | None = None,
) -> Comparison:
    """The verdicts the gate gives a run under `settings`: what fails a session, and what
    the dashboard shows for a stored run."""
    return compare(
        measurements,
        baselines,
        platform,
        gate=settings.gate,
        default_threshold=settings.threshold,
        selected_tests=selected_tests,
        rule=make_rule(settings.rule, settings.q),
    )


def _observe(
    m: Measurement, entry: BaselineEntry | None, default_threshold: float, *, gated: bool
) -> Verdict | Observation:
    """The verdict when no rule is needed (failed test, no baseline), else what to decide."""
    threshold = threshold_for(m.threshold, entry.threshold if entry else None, default_threshold)
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
        threshold=threshold_for(None, entry.threshold, default_threshold),
        baseline=entry.value,
        detail="baseline exists but the test produced no measurement of this metric",
        gated=gated and not metric.startswith(STEP_PREFIX),
    )
