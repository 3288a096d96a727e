"""Paired verdicts: base and head measured side by side, judged on their ratio (`--perf-against`).

Pure: stdlib only, no pytest, no SQLAlchemy. Where the stored-baseline rule compares a run's
rounds with rounds taken on another day (two independent samples, the Mann-Whitney test),
an A/B session measures base and head in the same seconds, one *pair* of rounds at a time.
What the machine does to both halves of a pair cancels in their ratio, so each pair gives
one number, ``d = log(head / base)``, and the question becomes whether those numbers sit
above zero.

- **Estimate**: the Hodges-Lehmann estimate of the pairs' log-ratios (the median of their
  Walsh averages ``(d_i + d_j) / 2``, i <= j), exponentiated: a ratio head/base.
- **Interval**: from the signed-rank distribution (exact), the k-th smallest and largest
  Walsh averages; distribution-free, and it excludes 1 exactly when the two-sided exact
  signed-rank test at its level rejects.
- **Test**: one-sided exact Wilcoxon signed-rank test of "head is worse" (zero differences
  dropped, as ``scipy.stats.wilcoxon(zero_method="wilcox")``), exact up to
  `EXACT_LIMIT` non-zero pairs, normal with tie correction above.
- **Session**: Benjamini-Hochberg over the gated metrics' p-values.
- **Counts** (`decide_exact`): an instruction count is deterministic, so one pair decides
  on its ratio alone, outside Benjamini-Hochberg.
- **Looks**: pairs are taken in batches (`LookSchedule`) and a test stops as soon as every
  gated metric is decided. Look k spends the share ``w_k`` of ``q`` (a weighted Bonferroni
  over the planned looks, the shares summing to 1: half to the first look that can find a
  regression), so the p-value carried to BH is ``min(1, p / w_k)`` at the look where the
  test stopped: ``P(some look has p <= a w_k) <= a``, whatever rule chose when to stop. The
  interval at look k has confidence ``1 - 2 q w_k``.
- **Futility look**: before that first look, one look at fewer pairs spends nothing
  (``w = 0``: p-value 1, the plain 90 % interval): it can only stop a test whose every
  gated metric is already unchanged (its 90 % interval excludes a change of the
  threshold's size). Stopping there never adds a false alarm; it is where most unchanged
  tests stop, on 6 pairs instead of the 10 that 24 gated metrics need to show a regression.
- **Early futility look** (`LookSchedule.plan(early_futility_pairs=4)`, as A/B sessions
  plan their first pairings): one more futility look, at 4 pairs, too few for the exact
  interval, reads the t interval of the pairs' mean log-ratio (`mean_ratio_interval`).
  Like the other it spends nothing and can only stop a test as unchanged, so its
  assumption of normal log-ratios can cost a test its early stop (it goes on to 6
  pairs), never add a false alarm.
The rule, with ``change`` the estimated ratio's relative change, worse positive
(``ratio - 1`` for ``direction="lower"``, ``1 - ratio`` for ``"higher"``, as the stored
rule defines it) and ``better``/``worse`` the interval's bounds in that sense:
- **regression**: ``change > threshold``, BH-adjusted p <= q, and ``better > threshold / 2``;
- **improvement**: ``change < -threshold`` and ``worse < -threshold / 2``;
- **unchanged**: neither, and the worse bound of the plain 90 % interval (`reach`) is at
  most the threshold: a change of the threshold's size is excluded;
- **unstable**: neither, and that bound still reaches past the threshold after the
  budget's pairs: noise hides a change of that size (never fails).

A **confirmation** (a flagged regression paired again in fresh processes) bears the
regression out when its own estimate is past the threshold and its own test, alone at q,
says the head is slower (`decide_confirmation`); its interval's better bound need not be
past half the threshold, which the first pairing has shown. A first pairing that ends
unstable but *leans* to a regression (`leans_to_regression`: its estimate past half the
threshold) is paired again in fresh processes too, a *redraw*, judged by the same rule;
it becomes a regression where two fresh draws bear one out, so that every regression
rests on two draws of processes that each show it.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev
from typing import Any, Literal

from .results import Direction, Verdict, VerdictKind
from .stats.multiple_testing import benjamini_hochberg
from .stats.rank_test import average_ranks

PairedKind = Literal["regression", "improvement", "unchanged", "unstable"]
Alternative = Literal["greater", "less"]

# Exact signed-rank distributions are built once per n in O(n^3) integer steps in all;
# above this many non-zero pairs the normal approximation is as good.
EXACT_LIMIT = 200
REACH_CONFIDENCE = 0.90
# Below this many pairs the exact signed-rank 90 % interval is the pairs' whole range or
# does not exist; a futility look there uses the t interval of the pairs' mean log-ratio.
EXACT_REACH_FROM = 6
# One-sided 95 % quantiles of Student's t by degrees of freedom: the bounds of a two-sided
# 90 % interval (`REACH_CONFIDENCE`) of a mean of 2 to 5 pairs.
_T_95 = {1: 6.313752, 2: 2.919986, 3: 2.353363, 4: 2.131847}
_EPSILON = 1e-9
_NORMAL = NormalDist()
_counts_by_n: list[list[int]] = [[1]]
# A/B lanes judge their tests in threads of one process: two threads extending the table at
# once would both append the same n's counts, and every later n would be off by one.
_counts_lock = threading.Lock()


def _signed_rank_counts(n: int) -> list[int]:
    """How many of the 2^n sign patterns give each rank sum T+ = 0 .. n(n+1)/2."""
    if len(_counts_by_n) > n:
        return _counts_by_n[n]
    with _counts_lock:
        while len(_counts_by_n) <= n:
            j = len(_counts_by_n)
            previous = _counts_by_n[-1]
            size = len(previous) + j
            counts = [0] * size
            for t, c in enumerate(previous):
                counts[t] += c
                counts[t + j] += c
            _counts_by_n.append(counts)
    return _counts_by_n[n]


@dataclass(frozen=True, slots=True)
class SignedRank:
    """A one-sided Wilcoxon signed-rank test: T+ (sum of the positive differences' ranks),
    the non-zero pairs it counted and the p-value of the alternative."""

    statistic: float
    n: int
    p_value: float
    method: Literal["exact", "normal"]


def wilcoxon_signed_rank(
    diffs: Sequence[float], alternative: Alternative = "greater"
) -> SignedRank:
    """One-sided signed-rank test that the differences sit above ("greater") or below zero.

    Zeros are dropped. Exact (the 2^n sign patterns counted) up to `EXACT_LIMIT` non-zero
    differences; with tied magnitudes the exact p-value takes T+ rounded towards the null,
    which is conservative. Above the limit: normal approximation with tie correction.
    """
    values = [float(d) for d in diffs if d != 0]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("differences contain NaN or infinity")
    n = len(values)
    if n == 0:
        return SignedRank(0.0, 0, 1.0, "exact")
    ranks, _ties = average_ranks([abs(v) for v in values])
    t_plus = sum(r for r, v in zip(ranks, values, strict=True) if v > 0)
    # "less" is "greater" for T- = total - T+.
    total = n * (n + 1) / 2
    t = t_plus if alternative == "greater" else total - t_plus
    if n <= EXACT_LIMIT:
        counts = _signed_rank_counts(n)
        first = math.ceil(t - 1e-9)
        p = sum(counts[first:]) / 2**n
        return SignedRank(t_plus, n, min(1.0, p), "exact")
    mean = total / 2
    tie_sum = 0.0
    for rank in set(ranks):
        tied = ranks.count(rank)
        tie_sum += tied**3 - tied
    variance = n * (n + 1) * (2 * n + 1) / 24 - tie_sum / 48
    z = (t - mean - 0.5) / math.sqrt(variance) if variance > 0 else 0.0
    return SignedRank(t_plus, n, 1 - _NORMAL.cdf(z), "normal")


@dataclass(frozen=True, slots=True)
class RatioInterval:
    """A ratio head/base with its interval (low <= estimate <= high)."""

    estimate: float
    low: float
    high: float
    confidence: float


def _interval_rank(n: int, confidence: float) -> int:
    """The 1-based rank k bounding the interval [W_(k), W_(N+1-k)] of the N = n(n+1)/2
    sorted Walsh averages: the largest k with P(T+ <= k - 1) <= (1 - confidence) / 2.
    0 when no interval at this confidence exists (too few pairs)."""
    half_alpha = (1 - confidence) / 2
    total = n * (n + 1) // 2
    if n <= EXACT_LIMIT:
        counts = _signed_rank_counts(n)
        cumulative, running = [], 0
        for c in counts:
            running += c
            cumulative.append(running)
        k = bisect_right(cumulative, half_alpha * 2**n * (1 + 1e-9))
    else:
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        k = math.floor(total / 2 + 0.5 - _NORMAL.inv_cdf(1 - half_alpha) * sd)
    return max(0, min(k, (total + 1) // 2))


def _log_ratios(base: Sequence[float], head: Sequence[float]) -> tuple[list[float], bool]:
    """Per pair log(head / base); for values that are not all positive, the difference
    relative to |median(base)| (the second item says which)."""
    if len(base) != len(head):
        raise ValueError(f"{len(base)} base values for {len(head)} head values")
    if not base:
        raise ValueError("no pairs")
    bs, hs = [float(b) for b in base], [float(h) for h in head]
    if not all(math.isfinite(v) for v in (*bs, *hs)):
        raise ValueError("values contain NaN or infinity")
    if min(bs) > 0 and min(hs) > 0:
        return [math.log(h / b) for b, h in zip(bs, hs, strict=True)], True
    ordered = sorted(bs)
    mid = len(ordered) // 2
    scale = abs(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2)
    if scale == 0:
        raise ValueError("no ratio: the base's median is 0")
    return [(h - b) / scale for b, h in zip(bs, hs, strict=True)], False


def hodges_lehmann_pairs(
    base: Sequence[float], head: Sequence[float], confidence: float = 0.90
) -> RatioInterval:
    """head/base over pairs: the Hodges-Lehmann estimate of the pairs' log-ratios (median of
    the Walsh averages) with its signed-rank interval, exponentiated. O(n^2 log n)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diffs, logged = _log_ratios(base, head)
    n = len(diffs)
    walsh = sorted((diffs[i] + diffs[j]) / 2 for i in range(n) for j in range(i, n))
    mid = len(walsh) // 2
    centre = walsh[mid] if len(walsh) % 2 else (walsh[mid - 1] + walsh[mid]) / 2
    k = _interval_rank(n, confidence)

    def ratio(d: float) -> float:
        return math.exp(d) if logged else 1 + d

    if k == 0:
        low, high = (0.0, math.inf) if logged else (-math.inf, math.inf)
    else:
        low, high = ratio(walsh[k - 1]), ratio(walsh[len(walsh) - k])
    return RatioInterval(ratio(centre), low, high, confidence)


def mean_ratio_interval(base: Sequence[float], head: Sequence[float]) -> RatioInterval:
    """head/base over 2 to 5 pairs: the mean of the pairs' log-ratios with its t interval at
    `REACH_CONFIDENCE`, exponentiated; what a futility look with too few pairs for the
    exact interval reads (it can only stop a test as unchanged, so its assumption of
    normal log-ratios can cost a test its early stop, never add a false alarm)."""
    diffs, logged = _log_ratios(base, head)
    n = len(diffs)
    if n - 1 not in _T_95:
        raise ValueError(f"a mean interval of {n} pairs: 2 to {len(_T_95) + 1} only")
    mean = fmean(diffs)
    half = _T_95[n - 1] * stdev(diffs, mean) / math.sqrt(n)

    def ratio(d: float) -> float:
        return math.exp(d) if logged else 1 + d

    return RatioInterval(ratio(mean), ratio(mean - half), ratio(mean + half), REACH_CONFIDENCE)


def oriented_change(ratio: float, direction: Direction) -> float:
    """A ratio head/base as a relative change, worse positive (the stored rule's sense)."""
    return ratio - 1 if direction == "lower" else 1 - ratio


@dataclass(frozen=True, slots=True)
class PairedAssessment:
    """One metric's pairs, assessed at one look. `change*` are relative, worse positive;
    `better`/`worse` are the interval's bounds in that sense. `p_value` is already
    adjusted for the look's share of the error rate (``min(1, raw / share)``)."""

    direction: Direction
    pairs: int
    ratio: RatioInterval
    change: float
    better: float
    worse: float
    p_value: float
    share: float  # of q, spent by this look
    # The worse bound of the plain 90 % interval: how bad the change could plausibly be.
    # It only separates "unchanged" from "unstable" (neither fails), so it need not pay
    # for the looks.
    reach: float = math.inf


def assess_pairs(
    base: Sequence[float],
    head: Sequence[float],
    direction: Direction = "lower",
    *,
    q: float = 0.05,
    looks: int = 1,
    share: float | None = None,
) -> PairedAssessment:
    """Estimate, interval and look-adjusted one-sided p-value of one metric's pairs, at a
    look that spends `share` of `q` (``1 / looks`` when not given: equal shares).

    The interval's confidence is ``1 - 2 q share``: its better bound is a one-sided bound
    at the level the look spends."""
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    share = 1 / looks if share is None else share
    if not 0 <= share <= 1:
        raise ValueError(f"a look's share of q must be in [0, 1], got {share}")
    diffs, _ = _log_ratios(base, head)
    if share == 0 and len(diffs) < EXACT_REACH_FROM:
        plain = mean_ratio_interval(base, head)
    else:
        plain = hodges_lehmann_pairs(base, head, REACH_CONFIDENCE)
    if share == 0:  # a futility look: it tests nothing, and shows the plain interval
        ratio, raw = plain, 1.0
    else:
        ratio = hodges_lehmann_pairs(base, head, 1 - 2 * q * share)
        alternative: Alternative = "greater" if direction == "lower" else "less"
        raw = wilcoxon_signed_rank(diffs, alternative).p_value / share
    bounds = sorted((oriented_change(ratio.low, direction), oriented_change(ratio.high, direction)))
    reach = max(oriented_change(plain.low, direction), oriented_change(plain.high, direction))
    return PairedAssessment(
        direction=direction,
        pairs=len(diffs),
        ratio=ratio,
        change=oriented_change(ratio.estimate, direction),
        better=bounds[0],
        worse=bounds[1],
        p_value=min(1.0, raw),
        share=share,
        reach=reach,
    )


# An estimate within half the threshold ends a test's pairs from this many pairs on. With
# fewer the estimate of a noisy test is too loose: a +25 % test's confirmation read
# 1.021 [0.718, 1.509] at 6 pairs (benchmarks/ab/RESULTS.md).
WITHIN_HALF_FROM = 10


def is_settled(
    a: PairedAssessment, threshold: float, *, q: float, metrics: int, confirming: bool = False
) -> bool:
    """Whether taking more pairs can no longer change this metric's verdict much: a
    regression that Benjamini-Hochberg will confirm whatever the other metrics show
    (p <= q / metrics; `confirming`: one that bears out a flagged regression, as
    `decide_confirmation` judges it), an interval that excludes a regression of the
    threshold's size, or, at a look that tests and from `WITHIN_HALF_FROM` pairs, an
    estimate within half the threshold. Stopping never adds false alarms: the p-value
    already pays for every planned look, and "unchanged" and "unstable" only end the pairs
    early. At a futility look (no share of q) an estimate past the threshold's improvement
    goes on to a look that can state it."""
    if a.reach <= threshold + _EPSILON:
        return a.share > 0 or a.change >= -threshold - _EPSILON
    within_half = abs(a.change) <= threshold / 2 + _EPSILON
    if a.share > 0 and a.pairs >= WITHIN_HALF_FROM and within_half:
        # Futile: more pairs would mostly tell "unchanged" from "unstable", neither of
        # which fails; a regression or an improvement (or a confirmation that bears one
        # out) needs the estimate past the threshold, where this one is not.
        return True
    return shows_regression(a, threshold, a.p_value, q / max(metrics, 1), confirming=confirming)


def shows_regression(
    a: PairedAssessment, threshold: float, p: float, level: float, *, confirming: bool = False
) -> bool:
    """The regression rule, in one place: the estimate past the threshold, `p` (the
    look-adjusted or BH-adjusted p-value) at most `level`, and, unless the pairs confirm
    a regression a first pairing already sized, the interval's better bound past half the
    threshold."""
    return (
        a.change > threshold + _EPSILON
        and p <= level
        and (confirming or a.better > threshold / 2)
    )


def leans_to_regression(a: PairedAssessment, threshold: float) -> bool:
    """Whether pairs that show no regression still lean to one: the estimate past half the
    threshold toward worse, the interval reaching past the threshold. A first pairing's
    estimate is a draw of two processes (where their data landed in memory) as much as of
    the code, so such a metric is paired again in fresh processes (a redraw) rather than
    left unstable; one within half the threshold is not (`is_settled` stops it there)."""
    return a.change > threshold / 2 + _EPSILON and a.reach > threshold + _EPSILON


def basis(a: PairedAssessment) -> str:
    """What a verdict's note says of its pairs: the ratio, its interval, how many."""
    return f"ratio {a.ratio.estimate:.3f} [{a.ratio.low:.3f}, {a.ratio.high:.3f}], {a.pairs} pairs"


def classify_pairs(
    a: PairedAssessment, threshold: float, *, q_value: float | None = None, q: float = 0.05
) -> tuple[PairedKind, str]:
    """The verdict of one assessed metric and a one-line reason. `q_value` is its
    BH-adjusted p-value (its own p-value when None: a session of one metric)."""
    qv = a.p_value if q_value is None else q_value
    t = threshold
    text = basis(a)
    if shows_regression(a, t, qv, q, confirming=False):
        return "regression", f"{text}, q={qv:.2g}"
    if a.change < -t - _EPSILON and a.worse < -t / 2 and a.share > 0:
        return "improvement", text
    if a.reach <= t + _EPSILON:
        return "unchanged", text
    return "unstable", f"{text}; the interval still reaches past the {t:.0%} threshold"


@dataclass(frozen=True, slots=True)
class PairedDecision:
    kind: PairedKind
    assessment: PairedAssessment
    threshold: float
    q_value: float
    detail: str


def decide_pairs_session(
    assessments: Sequence[PairedAssessment], thresholds: Sequence[float], *, q: float = 0.05
) -> list[PairedDecision]:
    """All gated metrics of a session: BH over their (look-adjusted) p-values, then the
    rule. Informational metrics go through a separate call, so they never dilute BH."""
    if len(assessments) != len(thresholds):
        raise ValueError("one threshold per assessment")
    adjusted = benjamini_hochberg([a.p_value for a in assessments])
    decisions = []
    for a, t, qv in zip(assessments, thresholds, adjusted, strict=True):
        kind, detail = classify_pairs(a, t, q_value=qv, q=q)
        decisions.append(PairedDecision(kind, a, t, qv, detail))
    return decisions


def decide_confirmation(
    assessment: PairedAssessment, threshold: float, *, q: float = 0.05
) -> PairedDecision:
    """A confirmation's pairs of a flagged regression, in fresh processes, judged on their
    own: "regression" (the flag borne out) when the estimate is past the threshold and the
    look-adjusted p-value at most `q`, with no family to share `q` with (the first pairing
    already held the session's false discoveries to `q`) and no bound on the interval: the
    first pairing's interval showed the change's size, and what a confirmation adds is a
    new draw of both processes, which must see the head slower by more than the threshold.
    Otherwise the verdict the rule gives these pairs (unchanged, unstable, improvement).
    A redraw (the pairs of a metric whose first pairing leaned to a regression,
    `leans_to_regression`) is judged by the same rule."""
    a, t = assessment, threshold
    if shows_regression(a, t, a.p_value, q, confirming=True):
        return PairedDecision("regression", a, t, a.p_value, f"{basis(a)}, q={a.p_value:.2g}")
    kind, detail = classify_pairs(a, t, q=q)
    return PairedDecision(kind, a, t, a.p_value, detail)


def decide_exact(
    base: float, head: float, direction: Direction, threshold: float
) -> PairedDecision:
    """One pair of a deterministic metric (an instruction count under callgrind): the same
    code on the same inputs gives the same count, so the ratio is the change, with no
    interval, test or false-discovery control; the rule's thresholds apply to it as they
    are. Raises ValueError for counts that give no ratio."""
    if not (math.isfinite(base) and math.isfinite(head)) or base <= 0 or head < 0:
        raise ValueError(f"no ratio of counts {head} / {base}")
    ratio = head / base
    change = oriented_change(ratio, direction)
    assessment = PairedAssessment(
        direction=direction,
        pairs=1,
        ratio=RatioInterval(ratio, ratio, ratio, 1.0),
        change=change,
        better=change,
        worse=change,
        p_value=0.0 if change > 0 else 1.0,
        share=1.0,
        reach=change,
    )
    kind: PairedKind
    if change > threshold + _EPSILON:
        kind = "regression"
    elif change < -threshold - _EPSILON:
        kind = "improvement"
    else:
        kind = "unchanged"
    detail = f"ratio {ratio:.4f}, counted (exact), 1 pair"
    return PairedDecision(kind, assessment, threshold, assessment.p_value, detail)


@dataclass(frozen=True, slots=True)
class LookSchedule:
    """When a test's pairs are judged, and the share of the error rate each look spends.

    `counts` are the pair counts of the looks. The first look that tests (the *deciding*
    look) is at the smallest count that can reach its level ``first_share * q / metrics``
    at all (the exact test's smallest p-value is 2^-n), each later one about `growth`
    times the previous and at least the count that can reach its own level, none above
    `max_pairs`. `shares` (of q) sum to at most 1: the deciding look gets `first_share`,
    the later ones split the rest. Spending more there lowers the pairs a regression
    needs (10 instead of 11 for 24 tests at q = 0.05, with half of q there); a noisy test
    that goes on to later looks needs a few more pairs there to reach their smaller
    levels. A schedule cut short by `max_pairs` leaves the later shares unspent
    (conservative).

    When the deciding look needs more than `futility_pairs`, a futility look comes first,
    at `futility_pairs` with share 0: it can only find a test unchanged (see
    `is_settled`), which is most tests, so most stop there. `early_futility_pairs` adds
    one more before it, fewer pairs than the exact interval needs, read through the t
    interval of the pairs' mean log-ratio (`mean_ratio_interval`)."""

    counts: tuple[int, ...]
    shares: tuple[float, ...]

    @property
    def looks(self) -> int:
        return len(self.counts)

    @property
    def deciding(self) -> int:
        """The index of the first look that spends a share of q (after a futility look)."""
        return next(index for index, share in enumerate(self.shares) if share > 0)

    def share_at(self, pairs: int) -> float:
        """The share spent by the look taken at `pairs` pairs (the last look at or below it;
        the first look's for fewer pairs)."""
        index = max(0, bisect_right(self.counts, pairs) - 1)
        return self.shares[index]

    @classmethod
    def plan(
        cls,
        *,
        metrics: int,
        q: float = 0.05,
        looks: int = 4,
        first_share: float = 0.5,
        growth: float = 1.5,
        min_pairs: int = 6,
        max_pairs: int = 96,
        futility_pairs: int | None = 6,
        early_futility_pairs: int | None = None,
    ) -> LookSchedule:
        if looks < 1 or not 0 < first_share <= 1:
            raise ValueError(f"looks={looks}, first_share={first_share}")
        for name, value in (
            ("futility_pairs", futility_pairs),
            ("early_futility_pairs", early_futility_pairs),
        ):
            if value is not None and value < 2:
                raise ValueError(f"{name}={value}: an interval needs 2 or more")
        m = max(metrics, 1)
        if looks == 1:
            first_share = 1.0
        later = (1 - first_share) / (looks - 1) if looks > 1 else 0.0

        def reach(share: float) -> int:
            """The fewest pairs whose exact test can reach p <= share * q / m at all."""
            return math.ceil(math.log2(m / (share * q)) - 1e-12)

        counts = [min(max(min_pairs, reach(first_share)), max_pairs)]
        while len(counts) < looks and later > 0:
            following = min(
                max_pairs, max(counts[-1] + 1, math.ceil(counts[-1] * growth), reach(later))
            )
            if following == counts[-1]:
                break
            counts.append(following)
        shares = [first_share, *(later,) * (len(counts) - 1)]
        for futile in (futility_pairs, early_futility_pairs):
            if futile is not None and futile < counts[0]:
                counts.insert(0, futile)
                shares.insert(0, 0.0)
        return cls(tuple(counts), tuple(shares))


@dataclass(frozen=True, slots=True)
class PairedVerdict(Verdict):
    """A verdict from an A/B session: `baseline` is the base's median per round, `current`
    the head's; `ratio` is the Hodges-Lehmann estimate head/base with its interval."""

    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    pairs: int = 0
    mode: str = "ab"
    # Unstable, and a draw in fresh processes may still make it a regression: its first
    # pairing leans to one (`leans_to_regression`), or its fresh draws so far may yet add
    # up to the two a regression needs. Not reported: the detail says what came of it.
    draw_due: bool = False

    def to_dict(self) -> dict[str, Any]:
        row = Verdict.to_dict(self)
        row.update(
            mode=self.mode,
            ratio=self.ratio,
            interval=None if self.low is None else [self.low, self.high],
            pairs=self.pairs,
        )
        return row


def verdict_of(
    decision: PairedDecision,
    *,
    test: str,
    metric: str,
    unit: str,
    base: float,
    head: float,
    gated: bool,
) -> PairedVerdict:
    a = decision.assessment
    kind: VerdictKind = decision.kind
    return PairedVerdict(
        test=test,
        metric=metric,
        kind=kind,
        direction=a.direction,
        unit=unit,
        threshold=decision.threshold,
        current=head,
        baseline=base,
        change=a.change,
        detail=decision.detail,
        gated=gated,
        ratio=a.ratio.estimate,
        low=a.ratio.low,
        high=a.ratio.high,
        pairs=a.pairs,
    )
