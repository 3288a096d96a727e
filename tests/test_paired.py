"""The paired statistics of A/B sessions (`pytest_perfguard.paired`), against scipy and by
their properties."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard import paired
from pytest_perfguard.results import Direction

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 25, 60])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_signed_rank_p_value_matches_scipy_exact(n: int, alternative: paired.Alternative) -> None:
    rng = random.Random(n)
    for _ in range(25):
        diffs = [rng.gauss(0.03, 0.1) for _ in range(n)]
        mine = paired.wilcoxon_signed_rank(diffs, alternative)
        theirs = scipy_stats.wilcoxon(diffs, alternative=alternative, method="exact")
        assert mine.method == "exact"
        assert mine.p_value == pytest.approx(theirs.pvalue, rel=1e-12, abs=1e-15)


def test_signed_rank_above_the_exact_limit_is_close_to_scipy_normal() -> None:
    rng = random.Random(7)
    diffs = [rng.gauss(0.01, 0.1) for _ in range(paired.EXACT_LIMIT + 50)]
    mine = paired.wilcoxon_signed_rank(diffs, "greater")
    theirs = scipy_stats.wilcoxon(diffs, alternative="greater", method="approx", correction=True)
    assert mine.method == "normal"
    assert mine.p_value == pytest.approx(theirs.pvalue, rel=1e-6)


def test_signed_rank_drops_zeros_and_all_zero_is_p_one() -> None:
    assert paired.wilcoxon_signed_rank([0.0, 0.0, 0.0]).p_value == 1.0
    with_zeros = paired.wilcoxon_signed_rank([0.0, 0.2, 0.3, -0.1, 0.0])
    without = paired.wilcoxon_signed_rank([0.2, 0.3, -0.1])
    assert with_zeros == without


@pytest.mark.parametrize("n", [5, 9, 16, 30])
def test_interval_excludes_one_exactly_when_the_exact_test_rejects(n: int) -> None:
    """The interval and the test come from one distribution: the lower bound is above 1
    exactly when the one-sided test at (1 - confidence) / 2 rejects."""
    rng = random.Random(100 + n)
    for _ in range(40):
        base = [1 + rng.random() for _ in range(n)]
        head = [b * math.exp(rng.gauss(0.15, 0.2)) for b in base]
        interval = paired.hodges_lehmann_pairs(base, head, 0.90)
        diffs = [math.log(h / b) for b, h in zip(base, head, strict=True)]
        p = paired.wilcoxon_signed_rank(diffs, "greater").p_value
        assert (interval.low > 1) == (p <= 0.05 + 1e-12)


def test_hodges_lehmann_is_the_median_of_walsh_averages() -> None:
    base = [1.0, 1.0, 1.0]
    head = [1.1, 1.3, 1.2]
    diffs = [math.log(h) for h in head]
    walsh = sorted((diffs[i] + diffs[j]) / 2 for i in range(3) for j in range(i, 3))
    expected = math.exp((walsh[2] + walsh[3]) / 2)
    assert paired.hodges_lehmann_pairs(base, head).estimate == pytest.approx(expected)


def test_a_constant_ratio_is_estimated_exactly() -> None:
    base = [0.001 * (1 + i / 10) for i in range(12)]
    assessment = paired.assess_pairs(base, [1.25 * b for b in base], "lower")
    assert assessment.ratio.estimate == pytest.approx(1.25)
    assert assessment.change == pytest.approx(0.25)
    higher = paired.assess_pairs(base, [1.25 * b for b in base], "higher")
    assert higher.change == pytest.approx(-0.25)


def test_values_not_all_positive_use_differences_relative_to_the_base() -> None:
    interval = paired.hodges_lehmann_pairs([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])
    assert interval.estimate == pytest.approx(0.0)
    with pytest.raises(ValueError, match="median is 0"):
        paired.hodges_lehmann_pairs([0.0, 0.0], [1.0, 1.0])


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="base values"):
        paired.assess_pairs([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no pairs"):
        paired.assess_pairs([], [])
    with pytest.raises(ValueError, match="NaN"):
        paired.assess_pairs([1.0, math.nan], [1.0, 1.0])


def test_a_clear_slowdown_is_a_regression_and_a_clear_speedup_an_improvement() -> None:
    rng = random.Random(3)
    base = [0.002 * (1 + 0.05 * rng.random()) for _ in range(12)]
    slow = paired.assess_pairs(base, [b * 1.3 * (1 + 0.01 * rng.random()) for b in base])
    assert paired.classify_pairs(slow, 0.10)[0] == "regression"
    fast = paired.assess_pairs(base, [b * 0.7 for b in base])
    assert paired.classify_pairs(fast, 0.10)[0] == "improvement"


def test_noise_that_hides_the_threshold_is_unstable_not_unchanged() -> None:
    rng = random.Random(4)
    base = [1.0] * 7
    head = [math.exp(rng.gauss(0, 0.5)) for _ in base]
    kind, detail = paired.classify_pairs(paired.assess_pairs(base, head, looks=4), 0.10)
    assert kind == "unstable"
    assert "threshold" in detail


def test_looks_cost_significance() -> None:
    base = [1.0] * 8
    head = [1.3] * 8
    one = paired.assess_pairs(base, head, looks=1)
    four = paired.assess_pairs(base, head, looks=4)
    assert four.p_value == pytest.approx(4 * one.p_value)
    assert four.ratio.confidence == pytest.approx(0.975)
    assert one.ratio.confidence == pytest.approx(0.90)


@pytest.mark.parametrize("metrics", [1, 5, 24, 100, 1000])
@pytest.mark.parametrize("looks", [1, 2, 4])
def test_every_look_starts_where_the_exact_test_can_reach_its_level(
    metrics: int, looks: int
) -> None:
    """The shares of q never sum past 1 (so the error rate holds whatever the stopping rule);
    at each look the exact test can reach the level that look spends, and one pair fewer
    could not at the first."""
    schedule = paired.LookSchedule.plan(metrics=metrics, q=0.05, looks=looks)
    assert sum(schedule.shares) <= 1 + 1e-12
    deciding = schedule.deciding
    assert deciding in (0, 1)  # at most one futility look, and it comes first
    assert schedule.shares[:deciding] == (0.0,) * deciding
    assert len(schedule.shares) - deciding == schedule.looks - deciding <= looks
    assert list(schedule.counts) == sorted(set(schedule.counts))
    for count, share in zip(schedule.counts[deciding:], schedule.shares[deciding:], strict=True):
        assert 2.0**-count <= share * 0.05 / metrics
    first = schedule.counts[deciding]
    assert first == 6 or 2.0 ** -(first - 1) > schedule.shares[deciding] * 0.05 / metrics
    assert schedule.counts[0] == 6  # the futility look, or a deciding look that early


def test_the_first_look_spends_half_and_costs_fewer_pairs() -> None:
    schedule = paired.LookSchedule.plan(metrics=24, q=0.05, futility_pairs=None)
    assert schedule.shares[0] == 0.5
    assert schedule.counts == (10, 15, 23, 35)  # equal shares of four looks: 11, 17, ...
    assert schedule.share_at(schedule.counts[1]) == pytest.approx(0.5 / 3)
    assert schedule.share_at(36) == schedule.share_at(35)
    assert paired.LookSchedule.plan(metrics=24, first_share=0.95).counts[1] == 9
    assert paired.LookSchedule.plan(metrics=1000, max_pairs=17).counts == (6, 16, 17)


def test_a_futility_look_comes_first_and_spends_nothing() -> None:
    schedule = paired.LookSchedule.plan(metrics=24, q=0.05)
    assert schedule.counts == (6, 10, 15, 23, 35)
    assert schedule.shares[:2] == (0.0, 0.5)
    assert schedule.deciding == 1
    assert schedule.share_at(6) == schedule.share_at(9) == 0.0
    # Where the deciding look comes as early, there is none.
    assert paired.LookSchedule.plan(metrics=1, q=0.05).counts[0] == 6
    assert paired.LookSchedule.plan(metrics=1, q=0.05).deciding == 0


def test_a_futility_look_finds_unchanged_and_nothing_else() -> None:
    """At share 0 no p-value can reach q, an improvement goes on to a look that can state
    it, and a calm unchanged test stops."""
    base = [1.0 + i / 100 for i in range(6)]
    calm = paired.assess_pairs(base, [b * (1.002 if i % 2 else 0.998) for i, b in enumerate(base)],
                               share=0.0)  # fmt: skip
    assert calm.p_value == 1.0 and calm.ratio.confidence == pytest.approx(0.90)
    assert paired.is_settled(calm, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(calm, 0.1)[0] == "unchanged"
    slower = paired.assess_pairs(base, [b * 1.5 for b in base], share=0.0)
    assert slower.p_value == 1.0
    assert not paired.is_settled(slower, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(slower, 0.1)[0] == "unstable"
    faster = paired.assess_pairs(base, [b * 0.5 for b in base], share=0.0)
    assert not paired.is_settled(faster, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(faster, 0.1)[0] != "improvement"
    assert paired.classify_pairs(paired.assess_pairs(base, [b * 0.5 for b in base]), 0.1)[0] == (
        "improvement"
    )


def test_a_looks_share_sets_its_p_value_and_interval() -> None:
    base = [1.0] * 9
    head = [1.3] * 9
    whole = paired.assess_pairs(base, head, share=1.0)
    first = paired.assess_pairs(base, head, share=0.95)
    assert first.p_value == pytest.approx(whole.p_value / 0.95)
    assert first.ratio.confidence == pytest.approx(1 - 2 * 0.05 * 0.95)


def test_settled_means_decided() -> None:
    base = [1.0 + i / 100 for i in range(11)]
    clear = paired.assess_pairs(base, [b * 1.5 for b in base], looks=4)
    assert paired.is_settled(clear, 0.1, q=0.05, metrics=24)
    same = paired.assess_pairs(base, [b * (1.001 if i % 2 else 0.999) for i, b in enumerate(base)])
    assert paired.is_settled(same, 0.1, q=0.05, metrics=24)


def test_an_estimate_within_half_the_threshold_stops_at_a_look_that_tests() -> None:
    """Wide pairs whose estimate is within half the threshold: at a look that tests, from
    10 pairs, they are settled (only "unchanged" or "unstable" could come of more pairs;
    here "unstable"); at the futility look, or with fewer pairs, they are not; an
    estimate past half the threshold with the same spread goes on."""
    wide = [0.8 if i % 2 else 1.3 for i in range(10)]  # about +2 %, reaching past 10 %
    tests_here = paired.assess_pairs([1.0] * 10, wide, share=0.5)
    assert abs(tests_here.change) <= 0.05 and tests_here.reach > 0.1
    assert paired.is_settled(tests_here, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(tests_here, 0.1)[0] == "unstable"
    futility = paired.assess_pairs([1.0] * 10, wide, share=0.0)
    assert not paired.is_settled(futility, 0.1, q=0.05, metrics=24)
    early = paired.assess_pairs([1.0] * 9, wide[:9], share=0.5)
    assert abs(early.change) <= 0.05 and early.reach > 0.1
    assert not paired.is_settled(early, 0.1, q=0.05, metrics=1)
    further = [0.8 if i % 2 else 1.45 for i in range(10)]  # about +8 %
    going_on = paired.assess_pairs([1.0] * 10, further, share=0.5)
    assert going_on.change > 0.05
    assert not paired.is_settled(going_on, 0.1, q=0.05, metrics=24)


def test_a_confirmation_needs_its_estimate_past_the_threshold_and_its_test_not_the_bound() -> None:
    """Six fresh pairs, all slower, estimate +15 %, interval [1.01, 1.30]: as a first
    pairing that is "unstable" (the better bound is not past half the threshold); as a
    confirmation of a flagged regression it bears the regression out, and its pairs are
    settled there. An estimate within the threshold, or one slower pair less (p past q),
    does not confirm."""
    base = [1.0] * 6
    wide = paired.assess_pairs(base, [1.01, 1.02, 1.15, 1.2, 1.25, 1.3], share=0.5)
    assert wide.better < 0.05 and wide.p_value <= 0.05
    assert paired.classify_pairs(wide, 0.1)[0] == "unstable"
    assert not paired.is_settled(wide, 0.1, q=0.05, metrics=1)
    confirmed = paired.decide_confirmation(wide, 0.1, q=0.05)
    assert confirmed.kind == "regression"
    assert confirmed.detail == "ratio 1.150 [1.010, 1.300], 6 pairs, q=0.031"
    assert paired.is_settled(wide, 0.1, q=0.05, metrics=1, confirming=True)
    small = paired.assess_pairs(base, [1.01, 1.02, 1.05, 1.06, 1.08, 1.09], share=0.5)
    assert small.p_value <= 0.05 and small.change < 0.1
    assert paired.decide_confirmation(small, 0.1, q=0.05).kind != "regression"
    one_faster = paired.assess_pairs(base, [0.99, 1.02, 1.15, 1.2, 1.25, 1.3], share=0.5)
    assert one_faster.change > 0.1 and one_faster.p_value > 0.05
    assert paired.decide_confirmation(one_faster, 0.1, q=0.05).kind == "unstable"
    assert not paired.is_settled(one_faster, 0.1, q=0.05, metrics=1, confirming=True)


def test_paired_verdict_rows_say_ab() -> None:
    decision = paired.decide_pairs_session(
        [paired.assess_pairs([1.0] * 8, [2.0] * 8)], [0.1], q=0.05
    )[0]
    verdict = paired.verdict_of(
        decision, test="t", metric="duration", unit="s", base=1.0, head=2.0, gated=True
    )
    row = verdict.to_dict()
    assert row["mode"] == "ab"
    assert row["verdict"] == "regression"
    assert row["pairs"] == 8
    assert row["ratio"] == pytest.approx(2.0)
    assert row["interval"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert verdict.fails


positive = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
directions = st.sampled_from(["lower", "higher"])


@settings(max_examples=150, deadline=None)
@given(st.lists(positive, min_size=1, max_size=40), directions, st.floats(0.0, 1.0))
def test_identical_pairs_never_regress(
    values: list[float], direction: Direction, threshold: float
) -> None:
    assessment = paired.assess_pairs(values, list(values), direction, looks=4)
    assert assessment.p_value == 1.0
    assert assessment.change == 0.0
    kind, _ = paired.classify_pairs(assessment, threshold)
    assert kind in ("unchanged", "unstable")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.floats(-0.5, 0.8), min_size=3, max_size=20), st.floats(0.0, 0.3)),
        min_size=1,
        max_size=12,
    )
)
def test_bh_never_adds_discoveries(metrics: list[tuple[list[float], float]]) -> None:
    """Every regression BH lets through is one the metric's own p-value would give alone."""
    assessments = [
        paired.assess_pairs([1.0] * len(logs), [math.exp(d) for d in logs]) for logs, _ in metrics
    ]
    thresholds = [t for _, t in metrics]
    decided = paired.decide_pairs_session(assessments, thresholds)
    for a, t, d in zip(assessments, thresholds, decided, strict=True):
        alone = paired.classify_pairs(a, t)[0]
        assert d.q_value >= a.p_value
        if d.kind == "regression":
            assert alone == "regression"


@pytest.mark.parametrize(
    ("base", "head", "direction", "kind"),
    [
        (1000.0, 1000.0, "lower", "unchanged"),
        (1000.0, 1099.0, "lower", "unchanged"),
        (1000.0, 1101.0, "lower", "regression"),
        (1000.0, 899.0, "lower", "improvement"),
        (1000.0, 899.0, "higher", "regression"),
    ],
)
def test_a_count_is_decided_by_one_pair_at_the_threshold(
    base: float, head: float, direction: Direction, kind: str
) -> None:
    decision = paired.decide_exact(base, head, direction, 0.10)
    assert decision.kind == kind
    assert decision.assessment.pairs == 1
    assert decision.assessment.ratio.estimate == decision.assessment.ratio.low == head / base


def test_a_count_of_zero_in_the_base_gives_no_ratio() -> None:
    with pytest.raises(ValueError, match="no ratio"):
        paired.decide_exact(0.0, 10.0, "lower", 0.1)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_the_mean_interval_is_the_t_interval_of_the_log_ratios(n: int) -> None:
    rng = random.Random(n)
    base = [rng.uniform(1.0, 2.0) for _ in range(n)]
    head = [b * math.exp(rng.gauss(0.02, 0.05)) for b in base]
    diffs = [math.log(h / b) for b, h in zip(base, head, strict=True)]
    low, high = scipy_stats.t.interval(
        paired.REACH_CONFIDENCE, n - 1, loc=statistics.mean(diffs),
        scale=scipy_stats.sem(diffs),
    )  # fmt: skip
    mine = paired.mean_ratio_interval(base, head)
    assert mine.estimate == pytest.approx(math.exp(statistics.mean(diffs)), rel=1e-12)
    assert (mine.low, mine.high) == (
        pytest.approx(math.exp(low), rel=1e-6), pytest.approx(math.exp(high), rel=1e-6)
    )
    with pytest.raises(ValueError, match="2 to 5"):
        paired.mean_ratio_interval([1.0] * 6, [1.0] * 6)


def test_an_early_futility_look_comes_before_the_exact_one_and_only_finds_unchanged() -> None:
    schedule = paired.LookSchedule.plan(metrics=24, q=0.05, early_futility_pairs=4)
    assert schedule.counts[:3] == (4, 6, 10)
    assert schedule.shares[:2] == (0.0, 0.0) and schedule.deciding == 2
    # Four tight pairs near 1: the t interval excludes a change of the threshold's size.
    tight = paired.assess_pairs([1.0] * 4, [1.01, 0.99, 1.0, 1.005], share=0.0)
    assert tight.reach < 0.1 and tight.p_value == 1.0
    assert paired.is_settled(tight, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(tight, 0.1)[0] == "unchanged"
    # Four pairs of a doubled head: no regression at a look that tests nothing; it goes on.
    doubled = paired.assess_pairs([1.0] * 4, [2.0, 2.1, 1.9, 2.05], share=0.0)
    assert doubled.p_value == 1.0
    assert not paired.is_settled(doubled, 0.1, q=0.05, metrics=24)
    assert paired.classify_pairs(doubled, 0.1)[0] != "regression"
    # Four wide pairs around 1: not settled either (the exact look at 6 decides).
    wide = paired.assess_pairs([1.0] * 4, [0.8, 1.25, 0.9, 1.15], share=0.0)
    assert not paired.is_settled(wide, 0.1, q=0.05, metrics=24)
