"""Change points in a metric's history: the runs where its level stepped (pure, stdlib only).

Binary segmentation on a rank statistic with a permutation test, the distribution-free
counterpart of e-divisive means. For each candidate split t of a segment (both sides at least
`min_segment` long) the statistic is the standardised Mann-Whitney rank sum of the first t
values, |S_t - t(n+1)/2| / sqrt(t(n-t)(n+1)/12); the best split is kept when its maximum
beats all but an `alpha` share of `permutations` shuffles of the segment, and then both halves
are searched again.

Why ranks, not e-divisive's energy distances: timing histories have two-level noise and
spikes, and a rank moves by at most one place per value, so a spike weighs no more than any
other high value. A permutation pass is then a prefix sum over shuffled ranks, O(n) in C-level
loops, where the energy statistic needs an O(n log n) order-statistic structure per pass:
1000 points with 199 permutations take a fraction of a second in pure Python. Standardising
each split gives a step near the end of the history (the one a report cares about) the same
footing as one in the middle. Known limit, shared with e-divisive's plain bisection: a short
excursion that comes back to the same level may be missed in a long history.

One spike is never a change point: it cannot fill a segment of `min_segment >= 3`, and a split
is kept only when the medians of its two sides differ in the direction of the statistic (a
near-constant series with one odd value otherwise looks "significant" to any permutation test).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, islice

from .stats import average_ranks, median


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """The level stepped at `index` (the first value of the new level); medians of the
    segments on either side, `change` relative to the one before, and the test's p-value."""

    index: int
    before_median: float
    after_median: float
    change: float
    p_value: float


def _split_statistic(ranks: Sequence[float], offsets: Sequence[float], weights: Sequence[float],
                     first: int) -> float:  # fmt: skip
    prefix = islice(accumulate(ranks), first - 1, first - 1 + len(offsets))
    return max(abs(s - o) * w for s, o, w in zip(prefix, offsets, weights, strict=False))


def _best_split(
    values: Sequence[float], min_segment: int, alpha: float, permutations: int, rng: random.Random
) -> tuple[int, float] | None:
    """The best split of a segment and its permutation p-value, or None when not significant."""
    n = len(values)
    ranks, ties = average_ranks(values)
    if len(ties) == 1:
        return None
    splits = range(min_segment, n - min_segment + 1)
    offsets = [t * (n + 1) / 2 for t in splits]
    weights = [1 / math.sqrt(t * (n - t) * (n + 1) / 12) for t in splits]
    prefix = list(accumulate(ranks))
    scores = [(prefix[t - 1] - o) * w for t, o, w in zip(splits, offsets, weights, strict=True)]
    best = max(range(len(scores)), key=lambda i: abs(scores[i]))
    observed = abs(scores[best]) * (1 - 1e-12)
    split = splits[best]
    left, right = median(values[:split]), median(values[split:])
    if (left - right) * scores[best] <= 0:  # the medians must step the way the ranks do
        return None
    allowed = math.floor(alpha * (permutations + 1)) - 1  # exceedances still significant
    if allowed < 0:
        return None
    exceed = 0
    shuffled = list(ranks)
    for _ in range(permutations):
        rng.shuffle(shuffled)
        if _split_statistic(shuffled, offsets, weights, min_segment) >= observed:
            exceed += 1
            if exceed > allowed:
                return None
    return split, (exceed + 1) / (permutations + 1)


def find_change_points(
    values: Sequence[float],
    *,
    min_segment: int = 3,
    alpha: float = 0.01,
    permutations: int = 199,
    seed: int = 0,
) -> list[ChangePoint]:
    """Where the level of `values` (in run order) stepped, earliest first.

    Each segment between change points is at least `min_segment` long; each change point
    passed a permutation test at `alpha` (with 199 permutations, p <= 0.01 needs the observed
    split to beat all but one shuffle). Deterministic for a given `seed`.
    """
    if min_segment < 1:
        raise ValueError(f"min_segment must be >= 1, got {min_segment}")
    if not 0 < alpha < 1 or permutations < 1:
        raise ValueError("alpha must be in (0, 1) and permutations >= 1")
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
        result = _best_split(xs[lo:hi], min_segment, alpha, permutations, rng)
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
