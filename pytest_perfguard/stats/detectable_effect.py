"""How small a change the noise lets the one-sided rank test see (the minimum detectable
effect), and how many rounds would let it see a change of the threshold's size."""

from __future__ import annotations

import math

from ..results import Direction
from .rank_test import NORMAL, can_reject, critical_u


def _owens_t(h: float, a: float, steps: int = 16) -> float:
    """Owen's T(h, a) by Simpson's rule (the integrand is smooth on a short interval)."""
    width = a / steps
    total = 0.0
    for i in range(steps + 1):
        x = i * width
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * math.exp(-0.5 * h * h * (1 + x * x)) / (1 + x * x)
    return total * width / 3 / (2 * math.pi)


def _power(m: int, n: int, shift: float, alpha: float) -> float:
    """Approximate power of the one-sided rank test against a normal location shift of
    `shift` standard deviations, with the variance of U under the alternative (Lehmann)."""
    pairs = m * n
    critical = critical_u(m, n, alpha)
    h = shift / math.sqrt(2)
    p1 = NORMAL.cdf(h)  # P(Y > X)
    p2 = p1 - 2 * _owens_t(h, 1 / math.sqrt(3))  # P(Y > X, Y > X') = Phi2(h, h; 1/2)
    mean = pairs * p1
    var = pairs * (p1 * (1 - p1) + (m + n - 2) * max(0.0, p2 - p1 * p1))
    if var <= 1e-12 * pairs * pairs:
        return 1.0 if mean >= critical - 0.5 else 0.0
    return 1 - NORMAL.cdf((critical - 0.5 - mean) / math.sqrt(var))


def _as_change(log_shift: float, direction: Direction) -> float:
    return math.expm1(log_shift) if direction == "lower" else -math.expm1(-log_shift)


def _check_test_args(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")


def minimum_detectable_effect(
    n_current: int,
    n_baseline: int,
    rel_spread: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    direction: Direction = "lower",
) -> float:
    """The smallest relative change (worse positive) the one-sided rank test detects with
    the given power at level alpha, for log-normal noise of relative spread `rel_spread`
    (sd of log values, about mad_sigma / median). inf when the samples are too small
    for the test to ever reach alpha.
    """
    _check_test_args(alpha, power)
    if n_current < 1 or n_baseline < 1:
        raise ValueError("sample sizes must be at least 1")
    if not rel_spread >= 0:
        raise ValueError(f"rel_spread must be >= 0, got {rel_spread}")
    if not can_reject(n_current, n_baseline, alpha) or math.isinf(rel_spread):
        return math.inf
    if rel_spread == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while _power(n_current, n_baseline, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return math.inf
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _power(n_current, n_baseline, mid, alpha) >= power else (mid, hi)
    return _as_change(hi * rel_spread, direction)


def rounds_needed(
    rel_spread: float,
    threshold: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    direction: Direction = "lower",
    max_rounds: int = 100_000,
) -> int:
    """The fewest rounds per side (baseline and current alike) whose minimum detectable
    effect is at most `threshold`; `max_rounds` when even that is not enough."""
    _check_test_args(alpha, power)
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if direction == "lower":
        log_shift = math.log1p(threshold)
    else:
        log_shift = -math.log1p(-threshold) if threshold < 1 else math.inf
    shift = log_shift / rel_spread if rel_spread > 0 else math.inf

    def enough(n: int) -> bool:
        if not can_reject(n, n, alpha):
            return False
        return math.isinf(shift) or _power(n, n, shift, alpha) >= power

    lo, hi = 1, 2
    while not enough(hi):
        if hi >= max_rounds:
            return max_rounds
        lo, hi = hi, min(hi * 2, max_rounds)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
