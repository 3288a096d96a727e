"""The statistics behind noise-aware verdicts: against scipy, by hand, and by property."""

from __future__ import annotations

import itertools
import math
import random
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard.results import Direction
from pytest_perfguard.stats.detectable_effect import minimum_detectable_effect, rounds_needed
from pytest_perfguard.stats.hodges_lehmann import hodges_lehmann_ratio
from pytest_perfguard.stats.multiple_testing import benjamini_hochberg
from pytest_perfguard.stats.rank_test import Alternative, mann_whitney_u, u_cumulative
from pytest_perfguard.stats.robust import MAD_TO_SIGMA, mad, mad_sigma, median, relative_spread

np = pytest.importorskip("numpy")
scipy_stats = pytest.importorskip("scipy.stats")

ALTERNATIVES: tuple[Alternative, ...] = ("less", "greater", "two-sided")


def _sample(rng: random.Random, n: int, *, ties: bool, shift: float = 0.0) -> list[float]:
    if ties:
        return [float(rng.randint(0, 6)) + shift for _ in range(n)]
    return [rng.gauss(shift, 1.0) for _ in range(n)]


def _lognormal(rng: random.Random, n: int, log_shift: float, sigma: float) -> list[float]:
    return [math.exp(rng.gauss(log_shift, sigma)) for _ in range(n)]


# --- descriptive statistics -----------------------------------------------------------


def test_descriptive_statistics_match_numpy_and_scipy() -> None:
    rng = random.Random(1)
    for _ in range(150):
        xs = _sample(rng, rng.randint(1, 40), ties=rng.random() < 0.4)
        assert median(xs) == pytest.approx(np.median(xs), abs=1e-12)
        assert mad(xs) == pytest.approx(scipy_stats.median_abs_deviation(xs), abs=1e-12)
        assert mad_sigma(xs) == pytest.approx(
            scipy_stats.median_abs_deviation(xs, scale="normal"), abs=1e-12
        )


def test_descriptive_statistics_by_hand() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert mad([1, 2, 3, 4, 100]) == 1  # deviations 2, 1, 0, 1, 97
    assert mad_sigma([1, 2, 3, 4, 100]) == pytest.approx(1.4826, abs=1e-4)
    assert relative_spread([10, 10, 11, 9, 10]) == pytest.approx(0.0, abs=1e-12)
    assert relative_spread([8, 10, 12]) == pytest.approx(2 * MAD_TO_SIGMA / 10)


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_descriptive_statistics_reject_empty_and_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        median(bad)


# --- Mann-Whitney U -------------------------------------------------------------------


def test_mann_whitney_matches_scipy_on_random_inputs() -> None:
    rng = random.Random(2)
    for case in range(160):
        m, n = rng.randint(1, 40), rng.randint(1, 40)
        if case % 4 == 0:
            m = rng.randint(1, 8)  # scipy's auto picks exact: one side of at most 8
        ties = case % 3 == 0
        shift = rng.choice([0.0, 0.5, 1.0, 3.0])
        x, y = _sample(rng, m, ties=ties), _sample(rng, n, ties=ties, shift=shift)
        # Our method name, then scipy's.
        methods: list[tuple[Literal["auto", "exact", "normal"], str]] = [
            ("auto", "auto"),
            ("normal", "asymptotic"),
        ]
        if min(m, n) <= 8:
            methods.append(("exact", "exact"))
        for alternative, (method, scipy_method) in itertools.product(ALTERNATIVES, methods):
            expected = scipy_stats.mannwhitneyu(x, y, alternative=alternative, method=scipy_method)
            ours = mann_whitney_u(x, y, alternative, method=method)
            where = f"case {case}: m={m} n={n} {alternative} {method}"
            assert ours.u == pytest.approx(expected.statistic, abs=1e-9), where
            assert ours.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12), where


@pytest.mark.parametrize(
    ("m", "n", "ties", "method"),
    [
        (8, 40, False, "exact"),
        (9, 9, False, "normal"),
        (3, 3, True, "normal"),
        (1, 1, False, "exact"),
    ],
)
def test_mann_whitney_auto_picks_the_method_scipy_picks(
    m: int, n: int, ties: bool, method: str
) -> None:
    x = [float(i) for i in range(m)]
    y = [float(i) + (0 if ties else 0.5) for i in range(n)]
    assert mann_whitney_u(x, y).method == method


def test_mann_whitney_by_hand() -> None:
    # All 3 of x below all 3 of y: 1 of the C(6, 3) = 20 equally likely orderings.
    result = mann_whitney_u([1, 2, 3], [4, 5, 6], "less")
    assert (result.u, result.p_value, result.method) == (0, 1 / 20, "exact")
    assert mann_whitney_u([1, 2, 3], [4, 5, 6], "greater").p_value == 1
    assert mann_whitney_u([1, 2, 3], [4, 5, 6], "two-sided").p_value == pytest.approx(0.1)
    # Every value tied: no evidence either way.
    assert mann_whitney_u([5.0] * 4, [5.0] * 4, "greater").p_value == 1
    with pytest.raises(ValueError):
        mann_whitney_u([1, 2], [3, 4], "bigger")  # type: ignore[arg-type]


def test_exact_u_distribution_matches_enumeration() -> None:
    for m, n in [(1, 1), (1, 4), (2, 3), (3, 3), (4, 5), (5, 2)]:
        counts = [0] * (m * n + 1)
        for x_positions in itertools.combinations(range(m + n), m):
            # U of x: pairs with x above y.
            y_positions = set(range(m + n)) - set(x_positions)
            counts[sum(1 for i in x_positions for j in y_positions if i > j)] += 1
        assert list(u_cumulative(m, n)) == list(itertools.accumulate(counts))


# --- Benjamini-Hochberg ---------------------------------------------------------------


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = random.Random(3)
    for _ in range(300):
        ps = [rng.random() ** rng.choice([1, 3, 6]) for _ in range(rng.randint(1, 80))]
        if rng.random() < 0.3:
            ps += ps[: len(ps) // 2]  # repeated p-values
        expected = scipy_stats.false_discovery_control(ps, method="bh")
        assert benjamini_hochberg(ps) == pytest.approx(list(expected), rel=1e-12, abs=1e-15)


def test_benjamini_hochberg_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.5 scaled by 4/1, 4/2, 4/3, 4/4, then minimum from the right.
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    assert adjusted == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert benjamini_hochberg([]) == []
    with pytest.raises(ValueError):
        benjamini_hochberg([0.5, 1.5])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.floats(0.001, 0.5))
def test_benjamini_hochberg_never_adds_discoveries(ps: list[float], q: float) -> None:
    adjusted = benjamini_hochberg(ps)
    for p, a in zip(ps, adjusted, strict=True):
        assert a >= p
        assert a > q or p <= q  # rejected (adjusted <= q) only what the raw p-value allows
    for (p1, a1), (p2, a2) in itertools.combinations(zip(ps, adjusted, strict=True), 2):
        if p1 <= p2:
            assert a1 <= a2
        else:
            assert a1 >= a2


# --- Hodges-Lehmann ratio -------------------------------------------------------------


def test_hodges_lehmann_estimate_is_the_median_pairwise_ratio() -> None:
    rng = random.Random(4)
    for _ in range(100):
        current = _lognormal(rng, rng.randint(1, 12), 0.2, 0.3)
        baseline = _lognormal(rng, rng.randint(1, 12), 0.0, 0.3)
        ratios = sorted(c / b for c in current for b in baseline)
        mid = len(ratios) // 2
        expected = ratios[mid] if len(ratios) % 2 else math.sqrt(ratios[mid - 1] * ratios[mid])
        interval = hodges_lehmann_ratio(current, baseline)
        assert interval.estimate == pytest.approx(expected, rel=1e-12)
        assert interval.low <= interval.estimate <= interval.high


def test_hodges_lehmann_interval_inverts_the_exact_test() -> None:
    """The interval excludes 1 exactly when scipy's exact one-sided test at half the level
    rejects: interval and test can never disagree."""
    rng = random.Random(5)
    for _ in range(300):
        m, n = rng.randint(1, 10), rng.randint(1, 10)
        current = _lognormal(rng, m, rng.choice([0.0, 0.3, 1.0]), 0.4)
        baseline = _lognormal(rng, n, 0.0, 0.4)
        confidence = rng.choice([0.8, 0.9, 0.95, 0.99])
        interval = hodges_lehmann_ratio(current, baseline, confidence)
        half = (1 - confidence) / 2 + 1e-12
        for alternative, excluded in (("greater", interval.low > 1), ("less", interval.high < 1)):
            p = scipy_stats.mannwhitneyu(
                current, baseline, alternative=alternative, method="exact"
            ).pvalue
            assert excluded == (p <= half), (m, n, confidence, interval, p)


def test_hodges_lehmann_interval_covers_the_true_ratio() -> None:
    rng = random.Random(6)
    for m, n in [(5, 5), (10, 10), (30, 25)]:
        covered = sum(
            interval.low <= 1.5 <= interval.high
            for interval in (
                hodges_lehmann_ratio(
                    _lognormal(rng, m, math.log(1.5), 0.3), _lognormal(rng, n, 0, 0.3), 0.9
                )
                for _ in range(400)
            )
        )
        assert covered / 400 >= 0.86, (m, n)  # at least 90 %, less Monte Carlo error


def test_hodges_lehmann_by_hand() -> None:
    baseline = [10.0, 11.0, 12.0]
    # A uniform 2x: pairwise log-ratios are symmetric about log 2.
    exact = hodges_lehmann_ratio([2 * b for b in baseline], baseline, 0.9)
    assert exact.estimate == pytest.approx(2.0)
    # 3 vs 3 reach 90 % with k = 1: the interval spans the smallest to the largest ratio.
    assert (exact.low, exact.high) == pytest.approx((20 / 12, 24 / 10))
    # ... but not 95 %: no finite interval exists.
    wide = hodges_lehmann_ratio([2 * b for b in baseline], baseline, 0.95)
    assert (wide.low, wide.high) == (0.0, math.inf)
    # Scaling both sides changes nothing.
    scaled = hodges_lehmann_ratio([2e-6 * b for b in baseline], [1e-6 * b for b in baseline], 0.9)
    assert scaled.estimate == pytest.approx(exact.estimate)
    assert scaled.low == pytest.approx(exact.low)


def test_hodges_lehmann_without_logs_uses_the_shift_over_the_baseline_median() -> None:
    interval = hodges_lehmann_ratio([0.0, 1.0, 2.0], [10.0, 11.0, 12.0], 0.9)
    assert interval.estimate == pytest.approx(1 + (-10) / 11)
    with pytest.raises(ValueError, match="median is 0"):
        hodges_lehmann_ratio([1.0, 2.0], [0.0, 0.0, 1.0])


# --- minimum detectable effect --------------------------------------------------------


def test_minimum_detectable_effect_limits() -> None:
    assert minimum_detectable_effect(2, 2, 0.1) == math.inf  # best p is 1/6
    assert minimum_detectable_effect(1, 1, 0.0) == math.inf
    assert minimum_detectable_effect(3, 3, 0.0) == 0.0
    assert minimum_detectable_effect(3, 3, 0.1) < math.inf  # best p is exactly 0.05
    assert minimum_detectable_effect(3, 3, 0.1, alpha=0.01) == math.inf
    by_rounds = [minimum_detectable_effect(n, n, 0.1) for n in (4, 6, 10, 20, 40)]
    assert by_rounds == sorted(by_rounds, reverse=True)
    by_noise = [minimum_detectable_effect(10, 10, s) for s in (0.01, 0.05, 0.2)]
    assert by_noise == sorted(by_noise)
    lower = minimum_detectable_effect(10, 10, 0.2)
    higher = minimum_detectable_effect(10, 10, 0.2, direction="higher")
    assert higher == pytest.approx(1 - 1 / (1 + lower))  # the same log-shift, downwards


@pytest.mark.parametrize(("m", "n", "alpha"), [(5, 5, 0.05), (10, 10, 0.05), (20, 12, 0.01)])
def test_minimum_detectable_effect_has_the_power_it_claims(m: int, n: int, alpha: float) -> None:
    rng = random.Random(7)
    sigma = 0.1
    log_shift = math.log1p(minimum_detectable_effect(m, n, sigma, alpha))
    trials = 1000
    detected = sum(
        mann_whitney_u(
            _lognormal(rng, m, log_shift, sigma), _lognormal(rng, n, 0, sigma), "greater"
        ).p_value
        <= alpha
        for _ in range(trials)
    )
    assert 0.72 <= detected / trials <= 0.88


def test_rounds_needed_is_the_fewest_rounds_whose_mde_meets_the_threshold() -> None:
    for spread, threshold in [(0.02, 0.1), (0.1, 0.1), (0.3, 0.25), (0.05, 0.05)]:
        needed = rounds_needed(spread, threshold)
        assert minimum_detectable_effect(needed, needed, spread) <= threshold * 1.001
        assert minimum_detectable_effect(needed - 1, needed - 1, spread) > threshold * 0.999
    assert rounds_needed(0.0, 0.1) == 3  # no noise: the fewest rounds the test can use
    assert rounds_needed(0.1, 0.1, alpha=0.001) > rounds_needed(0.1, 0.1)
    assert rounds_needed(math.inf, 0.1, max_rounds=50) == 50
    with pytest.raises(ValueError):
        rounds_needed(0.1, 0.0)


# --- estimators (`--perf-estimator`) and A/A calibration ---------------------------------


@pytest.mark.parametrize(
    ("estimator", "direction", "expected"),
    [
        ("min", "lower", 1.0),
        ("min", "higher", 9.0),
        ("median", "lower", 3.0),
        ("mean", "lower", 4.0),
        ("q25", "lower", 2.0),
        ("q25", "higher", 5.0),
        ("q50", "lower", 3.0),
        ("q99", "lower", 8.84),
    ],
)
def test_estimators_count_from_the_best_end(
    estimator: str, direction: Direction, expected: float
) -> None:
    from pytest_perfguard.measure import estimate

    assert estimate([3.0, 1.0, 9.0, 2.0, 5.0], estimator, direction) == pytest.approx(expected)
    assert estimate([7.0], estimator, direction) == 7.0


@given(
    st.lists(st.floats(0.001, 1000), min_size=1, max_size=30),
    st.sampled_from(["min", "median", "mean", "q10", "q25", "q49"]),
)
@settings(max_examples=200, deadline=None)
def test_estimators_stay_within_the_samples(values: list[float], estimator: str) -> None:
    from pytest_perfguard.measure import estimate

    directions: tuple[Direction, ...] = ("lower", "higher")
    for direction in directions:
        value = estimate(values, estimator, direction)
        assert min(values) - 1e-9 <= value <= max(values) + 1e-9
    assert estimate(values, "min") == min(values)


@pytest.mark.parametrize(
    ("raw", "nice"),
    [(0.001, 0.01), (0.034, 0.04), (0.1, 0.1), (0.101, 0.15), (0.42, 0.45), (0.0, 0.01)],
)
def test_nice_threshold_rounds_up(raw: float, nice: float) -> None:
    from pytest_perfguard.calibrate import nice_threshold

    assert nice_threshold(raw) == pytest.approx(nice)


def test_calibration_measures_noise_and_suggests() -> None:
    from pytest_perfguard.baselines import BaselineEntry, BaselineFile, PlatformBaselines
    from pytest_perfguard.calibrate import apply_calibration, calibrate
    from pytest_perfguard.results import Measurement

    def pass_rows(steady: float, noisy: float) -> list[Measurement]:
        return [
            Measurement("t::steady", "lat", steady, "s", marked=True, samples=(steady,) * 3),
            Measurement("t::noisy", "lat", noisy, "s", marked=True, samples=(noisy,) * 3),
            Measurement("t::plain", "duration", 1.0, "s"),  # unmarked: not gated
        ]

    noisy_values = [1.0, 1.5, 0.8, 1.2, 1.0, 2.0]
    passes = [pass_rows(1.0 + i * 0.001, v) for i, v in enumerate(noisy_values)]
    rows = {
        r.test: r
        for r in calibrate(passes, BaselineFile(), "p", gate="marked", default_threshold=0.1)
    }
    assert set(rows) == {"t::steady", "t::noisy"}
    steady, noisy = rows["t::steady"], rows["t::noisy"]
    assert steady.noise < 0.01 and steady.aa_flagged == 0 and steady.suggested_rounds == 3
    assert steady.suggested_threshold == 0.01
    assert noisy.noise > 0.2 and noisy.aa_flagged >= 3
    assert noisy.detectable > noisy.threshold and noisy.suggested_rounds > 3
    assert noisy.suggested_threshold >= noisy.detectable

    existing = BaselineFile(
        platforms={
            "p": PlatformBaselines(tests={"t::steady": {"lat": BaselineEntry(value=0.9, runs=5)}})
        }
    )
    written = apply_calibration(existing, "p", list(rows.values()))
    tests = written.platforms["p"].tests
    assert tests["t::steady"]["lat"].value == 0.9  # the baseline value is kept
    assert tests["t::steady"]["lat"].threshold == 0.01
    assert tests["t::noisy"]["lat"].n == 6 and tests["t::noisy"]["lat"].spread is not None
    assert existing.platforms["p"].tests["t::steady"]["lat"].threshold is None  # a copy
