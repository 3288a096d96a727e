"""Robust summaries of a sample: median, median absolute deviation, relative spread."""

from __future__ import annotations

import math
from collections.abc import Sequence

# MAD times this estimates the standard deviation of normal data: 1 / Phi^-1(3/4).
MAD_TO_SIGMA = 1.482602218505602


def finite_values(xs: Sequence[float], name: str = "xs") -> list[float]:
    """`xs` as floats; ValueError when empty or when a value is NaN or infinite."""
    values = [float(x) for x in xs]
    if not values:
        raise ValueError(f"{name} is empty")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} contains NaN or infinity")
    return values


def sorted_median(s: Sequence[float]) -> float:
    """The median of values already sorted."""
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def median(xs: Sequence[float]) -> float:
    return sorted_median(sorted(finite_values(xs)))


def mad(xs: Sequence[float]) -> float:
    """Raw median absolute deviation from the median (no scaling)."""
    values = finite_values(xs)
    centre = median(values)
    return median([abs(v - centre) for v in values])


def mad_sigma(xs: Sequence[float]) -> float:
    """MAD scaled to estimate the standard deviation (`MAD_TO_SIGMA` x MAD, about 1.4826)."""
    return MAD_TO_SIGMA * mad(xs)


def relative_spread(xs: Sequence[float]) -> float:
    """Robust relative noise: `mad_sigma / |median|` (about the sd of log values)."""
    centre, spread = median(xs), mad_sigma(xs)
    if centre == 0:
        return 0.0 if spread == 0 else math.inf
    return spread / abs(centre)
