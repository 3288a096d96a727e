"""What every report shows, computed once: `build_report` turns a run, its comparison and
its measurements into `ReportData` that the Markdown and JSON renderers only lay out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..compare import Comparison
from ..results import STEP_PREFIX, Measurement, RunInfo, Verdict


@dataclass(frozen=True, slots=True)
class StepRow:
    """One `perf.measure` step of a test."""

    name: str  # without the `step:` prefix
    value: float
    unit: str
    share: float | None  # fraction of the test's total, when the total is known
    error: str | None = None
    verdict: Verdict | None = None  # present when the baseline has this step

    @property
    def regressed(self) -> bool:
        """Whether this step failed the session (its verdict a gated regression)."""
        return self.verdict is not None and self.verdict.kind == "regression" and self.verdict.gated

    @property
    def growth(self) -> float | None:
        """Absolute growth over the baseline (in `unit`), when there is one."""
        if self.verdict is None or self.verdict.baseline is None:
            return None
        return self.value - self.verdict.baseline


@dataclass(frozen=True, slots=True)
class StepBreakdown:
    """The steps of one test, with what a reviewer asks first: which step is slowest,
    which failed, which regressed, and (when the test regressed) which grew most."""

    test: str
    total: float | None
    unit: str
    steps: list[StepRow]
    regressed: bool = False

    @property
    def slowest(self) -> StepRow | None:
        return max(self.steps, key=lambda s: s.value, default=None)

    @property
    def failed(self) -> list[StepRow]:
        return [s for s in self.steps if s.error]

    @property
    def regressed_steps(self) -> list[StepRow]:
        return [s for s in self.steps if s.regressed]

    @property
    def grew_most(self) -> StepRow | None:
        """The step that grew most (absolute) over its baseline, only for a regressed test."""
        if not self.regressed:
            return None
        grown = [s for s in self.steps if (s.growth or 0) > 0]
        return max(grown, key=lambda s: s.growth or 0, default=None)


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One measured metric, with its verdict when it was compared."""

    measurement: Measurement
    verdict: Verdict | None


@dataclass(slots=True)
class ReportData:
    run: RunInfo
    comparison: Comparison
    rows: list[MetricRow] = field(default_factory=list)
    breakdowns: list[StepBreakdown] = field(default_factory=list)
    warn_only: bool = False

    @property
    def regressions(self) -> list[Verdict]:
        """What fails the session: the regressed metrics, then the regressed steps."""
        return self.comparison.regressions + self.comparison.step_regressions

    def of_kind(self, kind: str) -> list[Verdict]:
        return [v for v in self.comparison.metric_verdicts if v.kind == kind]

    @property
    def side_by_side(self) -> str | None:
        """ "base <rev> vs head <rev>, measured side by side on <platform>" when the run was
        an A/B session (`--perf-against`), else None."""
        ab = self.run.system_info.get("ab")
        header = ab.get("header") if isinstance(ab, dict) else None
        return str(header) if header else None

    @property
    def headline(self) -> str:
        counted = regressions_counted(self.comparison)
        if not counted:
            return "✅ No performance regressions"
        text = f"❌ {counted}"
        return f"{text} (warn-only: not failing the build)" if self.warn_only else text


def regressions_counted(comparison: Comparison) -> str:
    """ "2 performance regressions, 1 regressed step" (each part only when there are some;
    empty when nothing regressed): the headline of the terminal summary and the report."""
    metrics, steps = len(comparison.regressions), len(comparison.step_regressions)
    parts = []
    if metrics:
        parts.append(f"{metrics} performance regression{'s' if metrics != 1 else ''}")
    if steps:
        parts.append(f"{steps} regressed step{'s' if steps != 1 else ''}")
    return ", ".join(parts)


def build_report(
    run: RunInfo,
    comparison: Comparison,
    measurements: Sequence[Measurement],
    *,
    warn_only: bool = False,
) -> ReportData:
    verdicts = {(v.test, v.metric): v for v in comparison.verdicts}
    rows = [
        MetricRow(m, verdicts.get((m.test, m.metric)))
        for m in sorted(measurements, key=lambda m: (m.test, m.metric))
    ]
    breakdowns = step_breakdowns(measurements, comparison, verdicts)
    return ReportData(run, comparison, rows, breakdowns, warn_only)


def step_breakdowns(
    measurements: Sequence[Measurement],
    comparison: Comparison,
    verdicts: dict[tuple[str, str], Verdict] | None = None,
    *,
    marked_only: bool = False,
) -> list[StepBreakdown]:
    """The step breakdown of every test with `perf.measure` steps (of marked tests only
    with `marked_only`, as the terminal summary lists them): regressed tests first."""
    if verdicts is None:
        verdicts = {(v.test, v.metric): v for v in comparison.verdicts}
    regressed = {v.test for v in comparison.regressions + comparison.step_regressions}
    breakdowns = _breakdowns(measurements, verdicts, regressed, marked_only)
    breakdowns.sort(key=lambda b: (not b.regressed, b.test))
    return breakdowns


def _breakdowns(
    measurements: Sequence[Measurement],
    verdicts: dict[tuple[str, str], Verdict],
    regressed: set[str],
    marked_only: bool,
) -> list[StepBreakdown]:
    with_steps = {
        m.test
        for m in measurements
        if (m.kind == "step" or m.metric.startswith(STEP_PREFIX)) and (m.marked or not marked_only)
    }
    if not with_steps:
        return []
    by_test: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.test in with_steps:
            by_test.setdefault(m.test, []).append(m)
    result = []
    for test, ms in by_test.items():
        steps = [m for m in ms if m.kind == "step" or m.metric.startswith(STEP_PREFIX)]
        if not steps:
            continue
        total, unit = _total(ms, steps)
        rows = [
            StepRow(
                name=m.metric.removeprefix(STEP_PREFIX),
                value=m.value,
                unit=m.unit or unit,
                share=m.value / total if total else None,
                error=m.error,
                verdict=verdicts.get((m.test, m.metric)),
            )
            for m in steps
        ]
        result.append(StepBreakdown(test, total, unit, rows, regressed=test in regressed))
    return result


def _total(ms: list[Measurement], steps: list[Measurement]) -> tuple[float | None, str]:
    """The test's total time that step shares are taken of: its `duration` measurement,
    else its primary metric when that is a time, else the sum of the steps. A candidate
    smaller than the steps together (a benchmark median, say) is not a total."""
    unit = steps[0].unit
    same_unit = all(s.unit == unit for s in steps)
    summed = sum(s.value for s in steps) if same_unit else None
    for candidate in (
        *(m for m in ms if m.metric == "duration"),
        *(m for m in ms if m.kind == "primary"),
    ):
        if candidate.unit == unit and (summed is None or candidate.value >= summed):
            return candidate.value, unit
    return summed, unit
