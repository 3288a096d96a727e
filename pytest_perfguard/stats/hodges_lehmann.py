"""The change current/baseline as a ratio: the Hodges-Lehmann estimate with its
distribution-free interval from the Mann-Whitney distribution."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .rank_test import NORMAL, exact_feasible, u_cumulative
from .robust import finite_values, median, sorted_median


@dataclass(frozen=True, slots=True)
class Interval:
    """A ratio current/baseline with its confidence interval (low <= estimate <= high)."""

    estimate: float
    low: float
    high: float
    confidence: float


def _interval_rank(m: int, n: int, confidence: float) -> int:
    """The 1-based rank k of the sorted pairwise differences bounding the interval
    [d_(k), d_(mn+1-k)]: the largest k with P(U <= k - 1) <= (1 - confidence) / 2.
    0 when no interval at this confidence exists (too few values)."""
    half_alpha = (1 - confidence) / 2
    if exact_feasible(m, n):
        cum = u_cumulative(m, n)
        # The tolerance keeps 3 vs 3 at 90 % (P(U <= 0) = 0.05 exactly) from rounding away.
        k = bisect_right(cum, half_alpha * cum[-1] * (1 + 1e-9))
    else:
        sd = math.sqrt(m * n * (m + n + 1) / 12)
        k = math.floor(m * n / 2 + 0.5 - NORMAL.inv_cdf(1 - half_alpha) * sd)
    return max(0, min(k, (m * n + 1) // 2))


def hodges_lehmann_ratio(
    current: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> Interval:
    """The change current/baseline as a ratio: Hodges-Lehmann shift of the log values
    (median of all pairwise log-ratios) with its distribution-free interval from the
    Mann-Whitney distribution (exact for small samples), exponentiated.

    Values that are not all positive have no log: the shift of the raw values relative to
    `|median(baseline)|` stands in (ValueError when that median is 0). The interval is
    (0, inf) when the samples are too small for the confidence asked (3 vs 3 reach 90 %).
    O(mn log mn): fine up to a few hundred values a side.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cs, bs = finite_values(current, "current"), finite_values(baseline, "baseline")
    ratio: Callable[[float], float]
    if min(cs) > 0 and min(bs) > 0:
        log_b = [math.log(b) for b in bs]
        diffs = sorted(lc - lb for lc in map(math.log, cs) for lb in log_b)
        ratio = math.exp
    else:
        scale = abs(median(bs))
        if scale == 0:
            raise ValueError("no ratio: the baseline's median is 0")
        diffs = sorted(c - b for c in cs for b in bs)

        def ratio(d: float) -> float:
            return 1 + d / scale

    k = _interval_rank(len(cs), len(bs), confidence)
    if k == 0:
        low, high = ratio(-math.inf), ratio(math.inf)
    else:
        low, high = ratio(diffs[k - 1]), ratio(diffs[len(diffs) - k])
    return Interval(ratio(sorted_median(diffs)), low, high, confidence)
