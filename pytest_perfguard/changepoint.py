"""Change points in a metric's history: the runs where its level stepped (pure, stdlib only).

Binary segmentation on a rank statistic with a permutation test, the distribution-free
counterpart of e-divisive means. A segment's statistic is the largest standardised
Mann-Whitney rank sum |S_t - mean| / sd over its candidate splits t (both sides at least
`min_segment` long), taken over the whole segment and over its halves and quarters (shifted by
half their length, as in seeded binary segmentation), so that an excursion that comes back
(slower for runs 30-39 of 70) is a step inside a shorter interval. The best split is kept when
that maximum beats all but an `alpha` share of `permutations` shuffles of the segment; both
sides are then searched again.

Why ranks, not e-divisive's energy distances: timing histories have two-level noise and
spikes, and a rank moves by at most one place per value, so a spike weighs no more than any
other high value. A permutation pass is then prefix sums over shuffled ranks, C-level loops,
where the energy statistic needs an order-statistic structure per pass: 1000 points with
199 permutations take a few tenths of a second in pure Python. Standardising each split
gives a step near the end of the history (the one a report cares about) the same footing as
one in the middle.

One spike is never a change point: it cannot fill a segment of `min_segment >= 3`, and a split
is kept only when the medians of its two sides differ in the direction of the statistic (a
near-constant series with one odd value otherwise looks "significant" to any permutation test).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import mul, sub

from .stats.rank_test import average_ranks
from .stats.robust import median


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """The level stepped at `index` (the first value of the new level); medians of the
    segments on either side, `change` relative to the one before, and the test's p-value."""

    index: int
    before_median: float
    after_median: float
    change: float
    p_value: float


# Interval scales searched: the whole segment, halves, quarters.
_SCALES = 3
_GRID = 32


def _intervals(n: int, min_segment: int) -> list[tuple[int, int]]:
    found = {(0, n)}
    for level in range(1, _SCALES):
        length = n >> level
        if length < 2 * min_segment:
            break
        step = max(1, length // 2)
        found.update((a, a + length) for a in range(0, n - length + 1, step))
        found.add((n - length, n))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class _Splits:
    """The candidate splits of one interval [a, b) and the weights that standardise them:
    the rank sum of [a, t) against its mean, over its permutation sd given the interval's
    rank variance (Mann-Whitney's z with the interval's own tie structure)."""

    a: int
    b: int
    cuts: range
    sizes: tuple[int, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, a: int, b: int, min_segment: int, step: int = 1) -> _Splits:
        length = b - a
        cuts = range(a + min_segment, b - min_segment + 1, step)
        sizes = tuple(t - a for t in cuts)
        weights = tuple(math.sqrt(length * (length - 1) / (k * (length - k))) for k in sizes)
        return cls(a, b, cuts, sizes, weights)

    def scores(self, sums: list[float], squares: Sequence[float]) -> Iterator[float]:
        """z for each cut, from prefix sums of the ranks and of their squares.

        Built from `map` over operator functions: C-level loops, the permutation test's
        inner loop."""
        length = self.b - self.a
        base = sums[self.a]
        mean = (sums[self.b] - base) / length
        ss = squares[self.b] - squares[self.a] - length * mean * mean
        if ss <= 1e-9 * length * mean * mean:
            return iter(())  # every value in the interval tied
        cut_sums = sums[self.cuts.start : self.cuts.stop : self.cuts.step]
        deviations = map(sub, map(sub, cut_sums, repeat(base)), map(mul, self.sizes, repeat(mean)))
        return map(mul, map(mul, deviations, self.weights), repeat(1 / math.sqrt(ss)))


def _max_score(ranks: Sequence[float], intervals: Sequence[_Splits]) -> float:
    sums = list(accumulate(ranks, initial=0.0))
    squares = list(accumulate(map(mul, ranks, ranks), initial=0.0))
    return max(
        (max(map(abs, iv.scores(sums, squares)), default=0.0) for iv in intervals), default=0.0
    )


def _best_split(
    values: Sequence[float],
    min_segment: int,
    alpha: float,
    permutations: int,
    min_change: float,
    rng: random.Random,
) -> tuple[int, float] | None:
    """The best split of a segment and its permutation p-value, or None when not significant."""
    ranks, ties = average_ranks(values)
    if len(ties) == 1:
        return None
    # The test scans at most about _GRID cuts per interval, which keeps a permutation pass
    # cheap on long histories; the split is then placed exactly within the best interval.
    intervals = [
        _Splits.of(a, b, min_segment, max(1, (b - a - 2 * min_segment) // _GRID))
        for a, b in _intervals(len(values), min_segment)
    ]
    sums = list(accumulate(ranks, initial=0.0))
    squares = list(accumulate(map(mul, ranks, ranks), initial=0.0))
    observed, best = 0.0, intervals[0]
    for iv in intervals:
        for z in iv.scores(sums, squares):
            if abs(z) > abs(observed):
                observed, best = z, iv
    if observed == 0:
        return None
    exact = _Splits.of(best.a, best.b, min_segment)
    z, split = max(zip(exact.scores(sums, squares), exact.cuts, strict=False), key=_magnitude)
    # Ranks place a step to within a value or two (a high value just before it ranks with
    # the values after it); least absolute deviations from each side's median place it on
    # the values themselves.
    nearby = range(
        max(exact.cuts.start, split - min_segment), min(exact.cuts.stop, split + min_segment + 1)
    )
    split = min(nearby, key=lambda t: (_l1_cost(values, best.a, t, best.b), abs(t - split)))
    left, right = median(values[best.a : split]), median(values[split : best.b])
    if (left - right) * z <= 0:  # the medians must step the way the ranks do
        return None
    if abs(right - left) < min_change * abs(left):
        return None
    allowed = math.floor(alpha * (permutations + 1)) - 1  # exceedances still significant
    if allowed < 0:
        return None
    threshold = abs(observed) * (1 - 1e-12)
    exceed = 0
    uniform, positions = rng.random, range(len(ranks))
    for _ in range(permutations):
        # A random order by sorting random keys: C-level work, faster than random.shuffle.
        keys = [uniform() for _ in positions]
        shuffled = list(map(ranks.__getitem__, sorted(positions, key=keys.__getitem__)))
        if _max_score(shuffled, intervals) >= threshold:
            exceed += 1
            if exceed > allowed:
                return None
    return split, (exceed + 1) / (permutations + 1)


def _magnitude(scored: tuple[float, int]) -> float:
    return abs(scored[0])


def _l1_cost(values: Sequence[float], a: int, t: int, b: int) -> float:
    """Sum of absolute deviations of [a, t) and [t, b) from their own medians."""
    left, right = values[a:t], values[t:b]
    mid_left, mid_right = median(left), median(right)
    return math.fsum(abs(v - mid_left) for v in left) + math.fsum(abs(v - mid_right) for v in right)


def find_change_points(
    values: Sequence[float],
    *,
    min_segment: int = 3,
    alpha: float = 0.01,
    permutations: int = 199,
    seed: int = 0,
    min_change: float = 0.0,
) -> list[ChangePoint]:
    """Where the level of `values` (in run order) stepped, earliest first.

    Each segment between change points is at least `min_segment` long; each change point
    passed a permutation test at `alpha` (with 199 permutations, p <= 0.01 needs the observed
    split to beat all but one shuffle). Every segment is tested, so a long history with no
    step still shows a spurious point about once per 1/alpha segments; `min_change` (a
    relative step of the medians, e.g. half the gate's threshold) keeps those, which are
    within the noise, out of reports. Deterministic for a given `seed`.
    """
    if min_segment < 1:
        raise ValueError(f"min_segment must be >= 1, got {min_segment}")
    if not 0 < alpha < 1 or permutations < 1 or min_change < 0:
        raise ValueError("alpha must be in (0, 1), permutations >= 1 and min_change >= 0")
    xs = [float(v) for v in values]
    if not all(math.isfinite(v) for v in xs):
        raise ValueError("values contain NaN or infinity")
    found: dict[int, float] = {}
    pending = [(0, len(xs))]
    while pending:
        lo, hi = pending.pop()
        if hi - lo < 2 * min_segment:
            continue
        # Seeded per segment, so a segment's result never depends on the search order.
        rng = random.Random(f"{seed}:{lo}:{hi}")
        result = _best_split(xs[lo:hi], min_segment, alpha, permutations, min_change, rng)
        if result is not None:
            split, p_value = result
            found[lo + split] = p_value
            pending += [(lo, lo + split), (lo + split, hi)]
    bounds = [0, *sorted(found), len(xs)]
    points = []
    for start, index, end in zip(bounds, bounds[1:], bounds[2:], strict=False):
        before, after = median(xs[start:index]), median(xs[index:end])
        if before != 0:
            change = (after - before) / abs(before)
        else:
            change = 0.0 if after == 0 else math.copysign(math.inf, after)
        points.append(ChangePoint(index, before, after, change, found[index]))
    return points
