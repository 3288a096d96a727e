"""The Mann-Whitney U test, matching `scipy.stats.mannwhitneyu`, and its exact null
distribution (shared by the Hodges-Lehmann interval and the detectable-effect bounds)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

from .robust import finite_values

Alternative = Literal["less", "greater", "two-sided"]

# Exact U distributions are built in O(min(m, n)^2 * max(m, n)) integer steps; above this
# the normal approximation is as good and cheaper.
_EXACT_WORK_LIMIT = 100_000
NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class MWResult:
    u: float  # U of x: pairs (x_i, y_j) with x_i > y_j, ties counting half (as scipy)
    p_value: float
    method: Literal["exact", "normal"]


def average_ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based, ties sharing their mean rank) and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=128)
def u_cumulative(m: int, n: int) -> tuple[int, ...]:
    """`cum[u]`: how many of the C(m+n, m) orderings give U <= u (no ties).

    The counts are the coefficients of the Gaussian binomial [m+n choose m]_q, built as
    prod_i (1 - q^(n+i)) / (1 - q^i) in exact integers.
    """
    m, n = min(m, n), max(m, n)
    c = [0] * (m * n + m + 1)
    c[0] = 1
    for i in range(1, m + 1):
        step, top = n + i, n * (i - 1) + n + i
        for u in range(top, step - 1, -1):
            c[u] -= c[u - step]
        for u in range(i, top + 1):
            c[u] += c[u - i]
    cum: list[int] = []
    total = 0
    for count in c[: m * n + 1]:
        total += count
        cum.append(total)
    return tuple(cum)


def exact_feasible(m: int, n: int) -> bool:
    return min(m, n) ** 2 * max(m, n) <= _EXACT_WORK_LIMIT


def _exact_sf(u: int, m: int, n: int) -> float:
    """P(U >= u) under the null, no ties."""
    if u <= 0:
        return 1.0
    cum = u_cumulative(m, n)
    if u > len(cum) - 1:
        return 0.0
    return (cum[-1] - cum[u - 1]) / cum[-1]


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Alternative = "two-sided",
    *,
    method: Literal["auto", "exact", "normal"] = "auto",
    use_continuity: bool = True,
) -> MWResult:
    """Mann-Whitney U test, matching `scipy.stats.mannwhitneyu` (1.17).

    "greater": x tends to be larger than y. `method="auto"` follows scipy: exact when either
    sample has at most 8 values and there are no ties; otherwise the normal approximation
    with tie and continuity corrections.
    """
    xs, ys = finite_values(x, "x"), finite_values(y, "y")
    m, n = len(xs), len(ys)
    ranks, ties = average_ranks(xs + ys)
    u1 = math.fsum(ranks[:m]) - m * (m + 1) / 2
    u2 = m * n - u1
    if alternative == "greater":
        u, factor = u1, 1
    elif alternative == "less":
        u, factor = u2, 1
    elif alternative == "two-sided":
        u, factor = max(u1, u2), 2
    else:
        raise ValueError(f"alternative must be less, greater or two-sided, got {alternative!r}")
    if method == "auto":
        has_ties = any(t > 1 for t in ties)
        method = "normal" if (m > 8 and n > 8) or has_ties else "exact"
    if method == "exact":
        p = _exact_sf(int(u), m, n)  # scipy truncates a tied (half-integer) U the same way
    elif method == "normal":
        total = m + n
        tie_term = sum(t**3 - t for t in ties)
        sd = math.sqrt(m * n / 12 * ((total + 1) - tie_term / (total * (total - 1))))
        numerator = u - m * n / 2 - (0.5 if use_continuity else 0.0)
        # Every value tied: no spread, and U sits at its mean.
        p = (1.0 if numerator <= 0 else 0.0) if sd == 0 else _normal_sf(numerator / sd)
    else:
        raise ValueError(f"method must be auto, exact or normal, got {method!r}")
    return MWResult(u1, min(1.0, max(0.0, p * factor)), method)


def can_reject(m: int, n: int, alpha: float) -> bool:
    """Whether the exact one-sided test can reach p <= alpha at all (p >= 1/C(m+n, m))."""
    if min(m, n) >= 30:  # C(60, 30) > 1e17
        return True
    return math.comb(m + n, min(m, n)) >= (1 - 1e-9) / alpha


def critical_u(m: int, n: int, alpha: float) -> float:
    """Smallest U the one-sided test rejects at alpha (exact when cheap, else normal)."""
    if exact_feasible(m, n):
        cum = u_cumulative(m, n)
        # P(U >= c) = P(U <= mn - c) by symmetry: the largest mn - c with cum <= alpha * total.
        return float(m * n - bisect_right(cum, alpha * cum[-1] * (1 + 1e-9)) + 1)
    sd = math.sqrt(m * n * (m + n + 1) / 12)
    return m * n / 2 + NORMAL.inv_cdf(1 - alpha) * sd + 0.5
