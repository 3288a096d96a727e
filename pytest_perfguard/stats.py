"""Pure statistics behind noise-aware verdicts (stdlib only, no I/O).

Robust summaries, the Mann-Whitney U test, Benjamini-Hochberg, the change as a ratio with a
confidence interval, the minimum detectable effect, and the regression rule of issue 5.
scipy's import cost does not belong in every pytest start, so everything is computed here;
the tests check it against scipy on many random inputs.

Why Hodges-Lehmann on log values, not a bootstrap. Timing noise here is two-levelled and
skewed, and rounds are few (3-30). The Hodges-Lehmann estimate of the shift between
`log(current)` and `log(baseline)` (the median of all pairwise log-ratios), exponentiated, is a
ratio; its interval comes from the same Mann-Whitney distribution as the test, exact for
small samples, so the interval and the test can never disagree (the interval excludes 1 exactly
when the one-sided exact test at half the level rejects). It is distribution-free, deterministic
without a seed, and its coverage is guaranteed for any n. A percentile bootstrap needs a seed,
thousands of resamples per metric, and undercovers badly below about 10 rounds, where most of
our samples are.

The rule (`classify`): with samples on both sides, a **regression** needs the estimated change
(worse positive) above the threshold, the (BH-adjusted) one-sided p-value at most q, and the
interval's better bound above half the threshold. Otherwise (a single value on one side, or too
few rounds for the rank test to ever reach significance), the change of the medians must exceed
both the threshold and `k` times the relative spread (k = 3: about a 0.1 % one-sided false-alarm
rate for normal noise, the usual control-chart limit). **Unstable** when the minimum detectable
effect exceeds the threshold and nothing was shown: noise makes "no change" unreliable, not a
change that was shown despite it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

from .results import Direction

Alternative = Literal["less", "greater", "two-sided"]
DecisionKind = Literal["regression", "improvement", "unchanged", "unstable"]
RuleName = Literal["rank-test", "spread"]

# MAD times this estimates the standard deviation of normal data: 1 / Phi^-1(3/4).
MAD_TO_SIGMA = 1.482602218505602
# Exact U distributions are built in O(min(m, n)^2 * max(m, n)) integer steps; above this
# the normal approximation is as good and cheaper.
_EXACT_WORK_LIMIT = 100_000
# Changes within this of the threshold count as "at" it (as in compare.py).
_EPSILON = 1e-9
_NORMAL = NormalDist()


def _floats(xs: Sequence[float], name: str = "xs") -> list[float]:
    values = [float(x) for x in xs]
    if not values:
        raise ValueError(f"{name} is empty")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} contains NaN or infinity")
    return values


def _sorted_median(s: Sequence[float]) -> float:
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def median(xs: Sequence[float]) -> float:
    return _sorted_median(sorted(_floats(xs)))


def mad(xs: Sequence[float]) -> float:
    """Raw median absolute deviation from the median (no scaling)."""
    values = _floats(xs)
    centre = median(values)
    return median([abs(v - centre) for v in values])


def mad_sigma(xs: Sequence[float]) -> float:
    """MAD scaled to estimate the standard deviation (`MAD_TO_SIGMA` x MAD, about 1.4826)."""
    return MAD_TO_SIGMA * mad(xs)


def quantile(xs: Sequence[float], q: float) -> float:
    """Quantile by linear interpolation (Hyndman-Fan type 7, numpy's default)."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    s = sorted(_floats(xs))
    h = (len(s) - 1) * q
    lo = math.floor(h)
    if lo + 1 >= len(s):
        return s[-1]
    return s[lo] + (h - lo) * (s[lo + 1] - s[lo])


def iqr(xs: Sequence[float]) -> float:
    return quantile(xs, 0.75) - quantile(xs, 0.25)


def trimmed_mean(xs: Sequence[float], proportion: float = 0.1) -> float:
    """Mean after cutting `int(proportion * n)` values from each end (scipy's `trim_mean`)."""
    if not 0 <= proportion < 0.5:
        raise ValueError(f"proportion must be in [0, 0.5), got {proportion}")
    s = sorted(_floats(xs))
    cut = int(proportion * len(s))
    kept = s[cut : len(s) - cut]
    return math.fsum(kept) / len(kept)


def coefficient_of_variation(xs: Sequence[float], ddof: int = 1) -> float:
    """Standard deviation over mean; inf for a zero mean with spread, 0 for a constant."""
    values = _floats(xs)
    if len(values) <= ddof:
        raise ValueError(f"need more than {ddof} values, got {len(values)}")
    mean = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - ddof))
    if mean == 0:
        return 0.0 if sd == 0 else math.inf
    return sd / abs(mean)


def relative_spread(xs: Sequence[float]) -> float:
    """Robust relative noise: `mad_sigma / |median|` (about the sd of log values)."""
    centre, spread = median(xs), mad_sigma(xs)
    if centre == 0:
        return 0.0 if spread == 0 else math.inf
    return spread / abs(centre)


# --- Mann-Whitney U ------------------------------------------------------------------


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
def _u_cumulative(m: int, n: int) -> tuple[int, ...]:
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


def _exact_feasible(m: int, n: int) -> bool:
    return min(m, n) ** 2 * max(m, n) <= _EXACT_WORK_LIMIT


def _exact_sf(u: int, m: int, n: int) -> float:
    """P(U >= u) under the null, no ties."""
    if u <= 0:
        return 1.0
    cum = _u_cumulative(m, n)
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
    xs, ys = _floats(x, "x"), _floats(y, "y")
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


# --- multiple testing -----------------------------------------------------------------


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values), as `scipy.stats.false_discovery_control(p, method="bh")`."""
    ps = [float(p) for p in p_values]
    if not all(0 <= p <= 1 for p in ps):
        raise ValueError("p-values must be in [0, 1]")
    m = len(ps)
    adjusted = [0.0] * m
    running = 1.0
    for rank, i in reversed(list(enumerate(sorted(range(m), key=ps.__getitem__), start=1))):
        running = min(running, ps[i] * (m / rank))
        adjusted[i] = running
    return adjusted


def bh_reject(p_values: Sequence[float], q: float = 0.05) -> list[bool]:
    """Which hypotheses Benjamini-Hochberg rejects at false-discovery rate q (adjusted <= q)."""
    return [a <= q for a in benjamini_hochberg(p_values)]


# --- the change as a ratio ------------------------------------------------------------


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
    if _exact_feasible(m, n):
        cum = _u_cumulative(m, n)
        # The tolerance keeps 3 vs 3 at 90 % (P(U <= 0) = 0.05 exactly) from rounding away.
        k = bisect_right(cum, half_alpha * cum[-1] * (1 + 1e-9))
    else:
        sd = math.sqrt(m * n * (m + n + 1) / 12)
        k = math.floor(m * n / 2 + 0.5 - _NORMAL.inv_cdf(1 - half_alpha) * sd)
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
    cs, bs = _floats(current, "current"), _floats(baseline, "baseline")
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
    return Interval(ratio(_sorted_median(diffs)), low, high, confidence)


# --- how small a change the noise lets us see ------------------------------------------


def _can_reject(m: int, n: int, alpha: float) -> bool:
    """Whether the exact one-sided test can reach p <= alpha at all (p >= 1/C(m+n, m))."""
    if min(m, n) >= 30:  # C(60, 30) > 1e17
        return True
    return math.comb(m + n, min(m, n)) >= (1 - 1e-9) / alpha


def _owens_t(h: float, a: float, steps: int = 16) -> float:
    """Owen's T(h, a) by Simpson's rule (the integrand is smooth on a short interval)."""
    width = a / steps
    total = 0.0
    for i in range(steps + 1):
        x = i * width
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * math.exp(-0.5 * h * h * (1 + x * x)) / (1 + x * x)
    return total * width / 3 / (2 * math.pi)


def _critical_u(m: int, n: int, alpha: float) -> float:
    """Smallest U the one-sided test rejects at alpha (exact when cheap, else normal)."""
    if _exact_feasible(m, n):
        cum = _u_cumulative(m, n)
        # P(U >= c) = P(U <= mn - c) by symmetry: the largest mn - c with cum <= alpha * total.
        return float(m * n - bisect_right(cum, alpha * cum[-1] * (1 + 1e-9)) + 1)
    sd = math.sqrt(m * n * (m + n + 1) / 12)
    return m * n / 2 + _NORMAL.inv_cdf(1 - alpha) * sd + 0.5


def _power(m: int, n: int, shift: float, alpha: float) -> float:
    """Approximate power of the one-sided rank test against a normal location shift of
    `shift` standard deviations, with the variance of U under the alternative (Lehmann)."""
    pairs = m * n
    critical = _critical_u(m, n, alpha)
    h = shift / math.sqrt(2)
    p1 = _NORMAL.cdf(h)  # P(Y > X)
    p2 = p1 - 2 * _owens_t(h, 1 / math.sqrt(3))  # P(Y > X, Y > X') = Phi2(h, h; 1/2)
    mean = pairs * p1
    var = pairs * (p1 * (1 - p1) + (m + n - 2) * max(0.0, p2 - p1 * p1))
    if var <= 1e-12 * pairs * pairs:
        return 1.0 if mean >= critical - 0.5 else 0.0
    return 1 - _NORMAL.cdf((critical - 0.5 - mean) / math.sqrt(var))


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
    if not _can_reject(n_current, n_baseline, alpha) or math.isinf(rel_spread):
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
        if not _can_reject(n, n, alpha):
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


# --- the decision rule ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaselineSummary:
    """A baseline known only by its summary, as the baselines file keeps it:
    the median, the raw MAD (`spread`) and how many values they came from."""

    median: float
    spread: float = 0.0
    n: int = 1

    @classmethod
    def of(cls, xs: Sequence[float]) -> BaselineSummary:
        values = _floats(xs)
        return cls(median(values), mad(values), len(values))


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


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    assessment: Assessment
    threshold: float
    q_value: float | None = None
    rounds_needed: int | None = None  # set when unstable: rounds per side that would do
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MetricSamples:
    """One gated metric's input to `decide_session`."""

    current: Sequence[float]
    baseline: Sequence[float] | BaselineSummary
    direction: Direction
    threshold: float


def _pooled_log_spread(cs: Sequence[float], bs: Sequence[float]) -> float:
    if min(cs) > 0 and min(bs) > 0:
        sc, sb = mad_sigma([math.log(c) for c in cs]), mad_sigma([math.log(b) for b in bs])
    else:
        scale = abs(median(bs))
        sc, sb = mad_sigma(cs) / scale, mad_sigma(bs) / scale
    dof = len(cs) + len(bs) - 2
    return math.sqrt(((len(cs) - 1) * sc * sc + (len(bs) - 1) * sb * sb) / dof)


def _oriented(ratio: float, direction: Direction) -> float:
    return ratio - 1 if direction == "lower" else 1 - ratio


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
    reach `alpha` (pass the level the p-value will face: `decide_session` passes q / m, a
    lone regression's bar under BH). The default 90 % interval's better bound is a one-sided
    95 % bound, matching the one-sided test. Otherwise the spread rule: medians, and the
    relative spread of the baseline (of the current samples when the baseline is one value).
    ValueError when the baseline's centre is 0: no relative change exists.
    """
    cs = _floats(current, "current")
    samples = None if isinstance(baseline, BaselineSummary) else _floats(baseline, "baseline")
    if (
        samples is not None
        and min(len(cs), len(samples)) >= 2
        and _can_reject(len(cs), len(samples), alpha)
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


def classify(
    assessment: Assessment, threshold: float, *, q_value: float | None = None, q: float = 0.05
) -> Decision:
    """Apply the rule of issue 5 to one assessed metric. `q_value` is its BH-adjusted
    p-value (the raw p-value is used when None: a session of one metric)."""
    a, t = assessment, threshold
    pct = f"{a.change:+.1%} (threshold {t:.0%})"
    kind: DecisionKind
    if a.rule == "rank-test":
        qv = a.p_value if q_value is None else q_value
        assert qv is not None
        interval = f"{a.change_better:+.1%}..{a.change_worse:+.1%}"
        if a.change > t + _EPSILON and qv <= q and a.change_better > t / 2:
            kind, detail = "regression", f"{pct}, interval {interval}, q={qv:.2g}"
        elif a.change < -t - _EPSILON and a.change_worse < -t / 2:
            kind, detail = "improvement", f"{pct}, interval {interval}"
        else:
            kind, detail = "unchanged", f"{pct}, interval {interval}, q={qv:.2g}"
    else:
        qv = None
        bar = max(t, a.mde)
        basis = f"{pct}, bar {bar:.1%} (noise {a.rel_spread:.1%})"
        if a.change > bar + _EPSILON:
            kind, detail = "regression", basis
        elif a.change < -bar - _EPSILON:
            kind, detail = "improvement", basis
        else:
            kind, detail = "unchanged", basis
    needed = None
    if kind == "unchanged" and a.mde > t:
        kind = "unstable"
        needed = rounds_needed(a.rel_spread, t, a.alpha, a.power, direction=a.direction)
        detail = (
            f"{detail}; noise hides a {t:.0%} change (detectable: {a.mde:.0%}),"
            f" needs {needed} rounds"
        )
    return Decision(kind, a, t, qv, needed, detail)


def decide(
    current: Sequence[float],
    baseline: Sequence[float] | BaselineSummary,
    direction: Direction,
    threshold: float,
    q_value: float | None = None,
    *,
    q: float = 0.05,
    k: float = 3.0,
    confidence: float = 0.90,
    power: float = 0.8,
) -> Decision:
    """One metric on its own: `assess` at level q, then `classify`."""
    assessment = assess(
        current, baseline, direction, confidence=confidence, alpha=q, power=power, k=k
    )
    return classify(assessment, threshold, q_value=q_value, q=q)


def decide_session(
    metrics: Sequence[MetricSamples],
    *,
    q: float = 0.05,
    k: float = 3.0,
    confidence: float = 0.90,
    power: float = 0.8,
) -> list[Decision]:
    """All gated metrics of a session: assess each, BH-adjust the rank tests' p-values
    together, classify. The minimum detectable effect assumes a lone regression (level
    q / m for m metrics with samples on both sides), the hardest case BH has to pass."""
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
        classify(a, x.threshold, q_value=qv, q=q)
        for a, x, qv in zip(assessments, metrics, q_values, strict=True)
    ]
