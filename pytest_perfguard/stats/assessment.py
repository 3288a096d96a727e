"""One metric's change against its baseline: the estimate with its interval, the
one-sided p-value, the noise and the smallest change it lets the test see.

With samples on both sides, and enough of them for the rank test to reach its level, the
change is the Hodges-Lehmann ratio and the p-value the Mann-Whitney test's ("rank-test").
Otherwise (a single value on one side, or too few rounds for the rank test ever to reach
significance) the change is that of the medians and the noise the relative spread of the
baseline, of the current samples when the baseline is one value ("spread"). What this means
for the gate is decided in `compare.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..results import Direction, worse_is_positive
from .detectable_effect import minimum_detectable_effect
from .hodges_lehmann import Interval, hodges_lehmann_ratio
from .rank_test import Alternative, can_reject, mann_whitney_u
from .robust import MAD_TO_SIGMA, finite_values, mad_sigma, median

RuleName = Literal["rank-test", "spread"]


@dataclass(frozen=True, slots=True)
class BaselineSummary:
    """A baseline known only by its summary, as the baselines file keeps it:
    the median, the raw MAD (`spread`) and how many values they came from."""

    median: float
    spread: float = 0.0
    n: int = 1


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything about one metric's change that does not depend on the threshold or on
    the other metrics of the session. `change*` are relative and worse-positive;
    `change_better` / `change_worse` are the interval's bounds in that sense."""

    rule: RuleName
    direction: Direction
    ratio: Interval  # current / baseline; a zero-width interval under the spread rule
    change: float
    change_better: float
    change_worse: float
    p_value: float | None  # raw one-sided p for "worse"; None under the spread rule
    rel_spread: float
    mde: float  # rank test: its minimum detectable effect; spread rule: k * rel_spread
    n_current: int
    n_baseline: int
    alpha: float
    power: float


def _pooled_log_spread(cs: Sequence[float], bs: Sequence[float]) -> float:
    if min(cs) > 0 and min(bs) > 0:
        sc, sb = mad_sigma([math.log(c) for c in cs]), mad_sigma([math.log(b) for b in bs])
    else:
        scale = abs(median(bs))
        sc, sb = mad_sigma(cs) / scale, mad_sigma(bs) / scale
    dof = len(cs) + len(bs) - 2
    return math.sqrt(((len(cs) - 1) * sc * sc + (len(bs) - 1) * sb * sb) / dof)


def _oriented(ratio: float, direction: Direction) -> float:
    """A ratio current/baseline as a relative change, worse positive."""
    return worse_is_positive(ratio - 1, direction)


def assess(
    current: Sequence[float],
    baseline: Sequence[float] | BaselineSummary,
    direction: Direction = "lower",
    *,
    confidence: float = 0.90,
    alpha: float = 0.05,
    power: float = 0.8,
    k: float = 3.0,
) -> Assessment:
    """Estimate one metric's change: ratio and interval, raw p-value, noise and MDE.

    The rank test applies when both sides have samples and enough of them for the test to
    reach `alpha` (pass the level the p-value will face: `compare.decide_noise` passes q / m, a
    lone regression's bar under BH). The default 90 % interval's better bound is a one-sided
    95 % bound, matching the one-sided test. Otherwise the spread rule: medians, and the
    relative spread of the baseline (of the current samples when the baseline is one value).
    ValueError when the baseline's centre is 0: no relative change exists.
    """
    cs = finite_values(current, "current")
    samples = None if isinstance(baseline, BaselineSummary) else finite_values(baseline, "baseline")
    if (
        samples is not None
        and min(len(cs), len(samples)) >= 2
        and can_reject(len(cs), len(samples), alpha)
    ):
        if median(samples) == 0 and min(min(cs), min(samples)) <= 0:
            raise ValueError("no relative change: the baseline's median is 0")
        ratio = hodges_lehmann_ratio(cs, samples, confidence)
        alternative: Alternative = "greater" if direction == "lower" else "less"
        p_value = mann_whitney_u(cs, samples, alternative).p_value
        rel = _pooled_log_spread(cs, samples)
        mde = minimum_detectable_effect(
            len(cs), len(samples), rel, alpha, power, direction=direction
        )
        bounds = sorted((_oriented(ratio.low, direction), _oriented(ratio.high, direction)))
        return Assessment(
            rule="rank-test",
            direction=direction,
            ratio=ratio,
            change=_oriented(ratio.estimate, direction),
            change_better=bounds[0],
            change_worse=bounds[1],
            p_value=p_value,
            rel_spread=rel,
            mde=mde,
            n_current=len(cs),
            n_baseline=len(samples),
            alpha=alpha,
            power=power,
        )
    if isinstance(baseline, BaselineSummary):
        centre, spread, n_base = baseline.median, MAD_TO_SIGMA * baseline.spread, baseline.n
    else:
        assert samples is not None
        centre, spread, n_base = median(samples), mad_sigma(samples), len(samples)
    if centre == 0:
        raise ValueError("no relative change: the baseline's median is 0")
    if n_base >= 2:
        rel = spread / abs(centre)
    else:
        rel = mad_sigma(cs) / abs(centre) if len(cs) >= 2 else 0.0
    value = 1 + (median(cs) - centre) / abs(centre)
    change = _oriented(value, direction)
    return Assessment(
        rule="spread",
        direction=direction,
        ratio=Interval(value, value, value, 0.0),
        change=change,
        change_better=change,
        change_worse=change,
        p_value=None,
        rel_spread=rel,
        mde=k * rel,
        n_current=len(cs),
        n_baseline=n_base,
        alpha=alpha,
        power=power,
    )
