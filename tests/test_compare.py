from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
from call_count import calls_made
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard.baselines import BaselineEntry, BaselineFile, PlatformBaselines
from pytest_perfguard.compare import (
    Decision,
    MetricSamples,
    Observation,
    classify,
    classify_assessment,
    compare,
    decide_noise,
    make_rule,
    noise_rule,
    relative_change,
    relative_difference,
    spread_factor,
    threshold_for,
    threshold_rule,
    uses_platform_wide_baseline,
)
from pytest_perfguard.results import Direction, GateScope, Measurement
from pytest_perfguard.stats.assessment import BaselineSummary, assess
from pytest_perfguard.stats.multiple_testing import benjamini_hochberg
from pytest_perfguard.stats.robust import MAD_TO_SIGMA, mad, median

P = "linux_x86"
T = "tests/test_a.py::test_q"


def m(value: float, metric: str = "latency", test: str = T, **kw: Any) -> Measurement:
    kw.setdefault("marked", True)
    kw.setdefault("unit", "s")
    return Measurement(test=test, metric=metric, value=value, **kw)


def baselines(
    entries: dict[tuple[str, str], BaselineEntry], flat: dict[str, BaselineEntry] | None = None
) -> BaselineFile:
    tests: dict[str, dict[str, BaselineEntry]] = {}
    for (test, metric), entry in entries.items():
        tests.setdefault(test, {})[metric] = entry
    return BaselineFile(platforms={P: PlatformBaselines(tests=tests, metrics=flat or {})})


def run(
    measurements: list[Measurement],
    file: BaselineFile,
    *,
    gate: GateScope = "marked",
    default_threshold: float = 0.2,
    **kw: Any,
) -> Any:
    return compare(measurements, file, P, gate=gate, default_threshold=default_threshold, **kw)


@pytest.mark.parametrize(
    ("change", "threshold", "kind"),
    [
        (0.5, 0.2, "regression"),
        (0.2, 0.2, "unchanged"),
        (0.1000000001, 0.1, "unchanged"),
        (0.21, 0.2, "regression"),
        (-0.3, 0.2, "improvement"),
        (-0.2, 0.2, "unchanged"),
        (0.0, 0.0, "unchanged"),
    ],
)
def test_classify(change: float, threshold: float, kind: str) -> None:
    assert classify(change, threshold) == kind


def test_relative_change_is_signed_so_worse_is_positive() -> None:
    assert relative_change(1.5, 1.0, "lower") == pytest.approx(0.5)
    assert relative_change(70, 100, "higher") == pytest.approx(0.3)
    assert relative_change(130, 100, "higher") == pytest.approx(-0.3)
    assert relative_change(0, 0, "lower") == 0.0
    assert relative_change(1, 0, "lower") is None


def test_relative_difference_moves_up_positive_whatever_the_direction() -> None:
    assert relative_difference(70, 100) == pytest.approx(-0.3)
    assert relative_difference(130, 100) == pytest.approx(0.3)
    # A negative baseline: a value that went up still reads as up.
    assert relative_difference(-5, -10) == pytest.approx(0.5)
    assert relative_change(-5, -10, "higher") == pytest.approx(-0.5)  # up is better here
    assert (relative_difference(0, 0), relative_difference(1, 0)) == (0.0, None)


def test_threshold_precedence_is_own_then_baseline_then_default() -> None:
    assert threshold_for(0.05, 0.3, 0.2) == 0.05
    assert threshold_for(None, 0.3, 0.2) == 0.3
    assert threshold_for(None, None, 0.2) == 0.2
    assert threshold_for(0.0, 0.3, 0.2) == 0.0  # an explicit 0 is a threshold, not "unset"
    assert threshold_for(None, 0.0, 0.2) == 0.0


@pytest.mark.parametrize(
    ("kind", "marked", "applies"),
    [
        ("custom", False, True),
        ("custom", True, True),
        ("primary", True, True),
        ("primary", False, False),
        ("step", True, False),
        ("system", True, False),
    ],
)
def test_which_metrics_a_platform_wide_baseline_applies_to(
    kind: str, marked: bool, applies: bool
) -> None:
    assert uses_platform_wide_baseline(kind, marked) is applies


@pytest.mark.parametrize(
    ("direction", "baseline", "current", "kind", "change"),
    [
        ("lower", 1.0, 2.0, "regression", 1.0),
        ("lower", 1.0, 0.5, "improvement", -0.5),
        ("lower", 1.0, 1.1, "unchanged", 0.1),
        ("lower", 1.0, 1.2, "unchanged", 0.2),
        ("higher", 100, 50, "regression", 0.5),
        ("higher", 100, 200, "improvement", -1.0),
        ("higher", 100, 95, "unchanged", 0.05),
    ],
)
def test_direction_aware_verdicts(
    direction: Any, baseline: float, current: float, kind: str, change: float
) -> None:
    file = baselines({(T, "latency"): BaselineEntry(value=baseline, direction=direction)})
    comparison = run([m(current, direction=direction)], file)
    [verdict] = comparison.verdicts
    assert verdict.kind == kind
    assert verdict.change == pytest.approx(change)
    assert (verdict.baseline, verdict.current) == (baseline, current)
    assert comparison.failed is (kind == "regression")


def test_threshold_precedence_measurement_then_entry_then_default() -> None:
    file = baselines(
        {
            (T, "a"): BaselineEntry(value=1.0, threshold=0.5),
            (T, "b"): BaselineEntry(value=1.0, threshold=0.5),
            (T, "c"): BaselineEntry(value=1.0),
        }
    )
    comparison = run(
        [m(1.4, "a", threshold=0.3), m(1.4, "b"), m(1.4, "c")], file, default_threshold=0.25
    )
    by_metric = {v.metric: v for v in comparison.verdicts}
    assert (by_metric["a"].threshold, by_metric["a"].kind) == (0.3, "regression")
    assert (by_metric["b"].threshold, by_metric["b"].kind) == (0.5, "unchanged")
    assert (by_metric["c"].threshold, by_metric["c"].kind) == (0.25, "regression")


def test_no_baseline_is_new_and_never_fails() -> None:
    comparison = run([m(5.0)], BaselineFile())
    [verdict] = comparison.verdicts
    assert (verdict.kind, verdict.baseline, verdict.change) == ("new", None, None)
    assert not comparison.failed
    other_platform = compare(
        [m(5.0)],
        baselines({(T, "latency"): BaselineEntry(value=1.0)}),
        "windows",
        gate="marked",
        default_threshold=0.2,
    )
    assert other_platform.verdicts[0].kind == "new"


def test_failed_test_is_never_a_regression() -> None:
    file = baselines({(T, "latency"): BaselineEntry(value=1.0)})
    for outcome in ("failed", "error"):
        comparison = run([m(50.0, outcome=outcome)], file)
        assert [v.kind for v in comparison.verdicts] == ["skipped_failed"]
        assert not comparison.failed
        assert comparison.regressions == []


def test_missing_only_for_selected_tests_and_never_fails() -> None:
    other = "tests/test_b.py::test_gone"
    file = baselines(
        {
            (T, "latency"): BaselineEntry(value=1.0),
            (other, "latency"): BaselineEntry(value=2.0, unit="s"),
        }
    )
    measured = [m(1.0)]
    assert [v.kind for v in run(measured, file).verdicts] == ["unchanged"]
    assert [v.kind for v in run(measured, file, selected_tests=[T]).verdicts] == ["unchanged"]
    comparison = run(measured, file, selected_tests=[T, other])
    missing = comparison.of_kind("missing")
    assert [(v.test, v.metric, v.baseline) for v in missing] == [(other, "latency", 2.0)]
    assert not comparison.failed
    # A test that was selected but skipped did not run: its metrics are missing too.
    skipped = run([m(1.0), m(9.0, test=other, outcome="skipped")], file, selected_tests=[T, other])
    assert [v.kind for v in skipped.verdicts] == ["unchanged", "missing"]


def test_zero_baseline() -> None:
    file = baselines({(T, "a"): BaselineEntry(value=0.0), (T, "b"): BaselineEntry(value=0.0)})
    comparison = run([m(0.0, "a"), m(0.5, "b")], file)
    by_metric = {v.metric: v for v in comparison.verdicts}
    assert (by_metric["a"].kind, by_metric["a"].change) == ("unchanged", 0.0)
    assert (by_metric["b"].kind, by_metric["b"].change) == ("new", None)
    assert "baseline is 0" in by_metric["b"].detail
    assert not comparison.failed


@pytest.mark.parametrize(
    ("gate", "kinds", "fails"),
    [
        ("marked", ["regression"], True),
        ("all", ["regression", "regression"], True),
        ("none", ["regression"], False),
    ],
)
def test_gate_scope(gate: GateScope, kinds: list[str], fails: bool) -> None:
    unmarked = "tests/test_u.py::test_plain"
    file = baselines(
        {(T, "latency"): BaselineEntry(value=1.0), (unmarked, "duration"): BaselineEntry(value=1.0)}
    )
    measured = [m(3.0), m(3.0, "duration", test=unmarked, marked=False)]
    comparison = run(measured, file, gate=gate)
    assert [v.kind for v in comparison.verdicts] == kinds
    assert comparison.failed is fails
    assert [v.gated for v in comparison.verdicts] == [fails] * len(kinds)


def test_system_metrics_are_not_gated() -> None:
    file = baselines({(T, "rss_peak_mb"): BaselineEntry(value=1.0)})
    comparison = run([m(900.0, "rss_peak_mb", kind="system", unit="MB")], file, gate="all")
    assert comparison.verdicts == []


def test_steps_of_gated_tests_are_judged_apart_from_their_metrics() -> None:
    file = baselines(
        {(T, "latency"): BaselineEntry(value=1.0), (T, "step:embed"): BaselineEntry(value=0.1)}
    )
    measured = [
        m(2.0),
        m(0.9, "step:embed", kind="step", marked=True),
        m(0.3, "step:rerank", kind="step", marked=True),
        m(9.0, "step:x", test="tests/test_u.py::t", kind="step", marked=False),
    ]
    comparison = run(measured, file)
    assert [(v.metric, v.kind, v.gated) for v in comparison.verdicts] == [
        ("latency", "regression", True),
        ("step:embed", "regression", True),
    ]
    assert comparison.counts()["regression"] == 1  # steps are counted apart
    assert [v.metric for v in comparison.regressions] == ["latency"]
    assert [v.metric for v in comparison.step_verdicts] == ["step:embed"]
    assert [v.metric for v in comparison.step_regressions] == ["step:embed"]


def test_step_regression_alone_fails() -> None:
    file = baselines(
        {(T, "latency"): BaselineEntry(value=1.0), (T, "step:embed"): BaselineEntry(value=0.1)}
    )
    comparison = run([m(1.0), m(0.9, "step:embed", kind="step", marked=True)], file)
    assert comparison.failed
    assert comparison.regressions == []
    assert [v.metric for v in comparison.step_regressions] == ["step:embed"]


def test_step_threshold_precedence_and_gate_none() -> None:
    file = baselines(
        {
            (T, "latency"): BaselineEntry(value=1.0),
            (T, "step:a"): BaselineEntry(value=1.0, threshold=0.5),
            (T, "step:b"): BaselineEntry(value=1.0, threshold=0.5),
            (T, "step:c"): BaselineEntry(value=1.0),
        }
    )
    measured = [
        m(1.0),
        m(1.3, "step:a", kind="step", marked=True, threshold=0.25),  # own 25 % wins
        m(1.3, "step:b", kind="step", marked=True),  # the entry's 50 %
        m(1.3, "step:c", kind="step", marked=True),  # the default 20 %
    ]
    comparison = run(measured, file)
    assert [(v.metric, v.kind, v.threshold) for v in comparison.step_verdicts] == [
        ("step:a", "regression", 0.25),
        ("step:b", "unchanged", 0.5),
        ("step:c", "regression", 0.2),
    ]
    assert comparison.failed
    quiet = run(measured, file, gate="none")
    assert not quiet.failed
    assert [v.gated for v in quiet.step_verdicts] == [False, False, False]


def test_a_step_that_raised_is_not_compared() -> None:
    file = baselines(
        {(T, "latency"): BaselineEntry(value=1.0), (T, "step:s"): BaselineEntry(value=0.1)}
    )
    raised = m(9.0, "step:s", kind="step", marked=True, error="ValueError: boom")
    comparison = run([m(1.0), raised], file)
    assert [(v.metric, v.kind) for v in comparison.step_verdicts] == [("step:s", "skipped_failed")]
    assert "ValueError: boom" in comparison.step_verdicts[0].detail
    assert not comparison.failed


def test_flat_baselines_match_marked_and_recorded_metrics_by_name() -> None:
    flat = {
        "query_latency": BaselineEntry(value=1.0),
        "tokens_per_s": BaselineEntry(value=100),
        "duration": BaselineEntry(value=1.0),
    }
    file = baselines({}, flat)
    measured = [
        m(2.0, "query_latency"),
        m(50.0, "tokens_per_s", kind="custom", direction="higher", unit="tokens/s"),
        m(5.0, "duration", test="tests/test_u.py::t", marked=False),
    ]
    comparison = run(measured, file, gate="all")
    assert [(v.metric, v.kind) for v in comparison.verdicts] == [
        ("query_latency", "regression"),
        ("tokens_per_s", "regression"),
        ("duration", "new"),
    ]


def test_measurement_direction_wins_over_baseline_direction() -> None:
    file = baselines({(T, "tput"): BaselineEntry(value=100, direction="lower")})
    [verdict] = run([m(200.0, "tput", direction="higher")], file).verdicts
    assert verdict.kind == "improvement"
    assert "direction 'lower'" in verdict.detail


def test_rerun_of_a_test_uses_the_last_measurement() -> None:
    file = baselines({(T, "latency"): BaselineEntry(value=1.0)})
    comparison = run([m(5.0, outcome="failed"), m(1.0)], file)
    assert [v.kind for v in comparison.verdicts] == ["unchanged"]


def test_counts_cover_every_kind() -> None:
    file = baselines({(T, "a"): BaselineEntry(value=1.0), (T, "b"): BaselineEntry(value=1.0)})
    counts = run([m(2.0, "a"), m(0.5, "b"), m(1.0, "c")], file).counts()
    assert counts == {
        "regression": 1,
        "improvement": 1,
        "unchanged": 0,
        "new": 1,
        "missing": 0,
        "skipped_failed": 0,
        "unstable": 0,
    }


def test_a_rule_can_replace_the_threshold_decision() -> None:
    batches: list[list[Observation]] = []

    def noisy(observations: Sequence[Observation]) -> list[Decision]:
        batches.append(list(observations))
        return [
            Decision("unstable", f"too noisy ({len(observations)} compared)") for _ in observations
        ]

    file = baselines(
        {
            (T, "latency"): BaselineEntry(value=1.0, spread=0.4, n=5),
            (T, "other"): BaselineEntry(value=1.0),
            (T, "step:s"): BaselineEntry(value=1.0),
        }
    )
    measured = [
        m(2.0, samples=(1.9, 2.1)),
        m(5.0, "new_one"),
        m(1.0, "other"),
        m(1.0, "step:s", kind="step"),
    ]
    comparison = run(measured, file, rule=noisy)
    assert [(v.metric, v.kind, v.detail) for v in comparison.verdicts] == [
        ("latency", "unstable", "too noisy (3 compared)"),
        ("new_one", "new", "no baseline on this platform"),
        ("other", "unstable", "too noisy (3 compared)"),
        ("step:s", "unstable", "too noisy (3 compared)"),
    ]
    assert not comparison.failed
    # Gated metrics, steps with a baseline included, are decided together (for
    # multiple-comparison corrections).
    (gated,) = batches
    assert [o.measurement.metric for o in gated] == ["latency", "other", "step:s"]
    first = gated[0]
    assert first.baseline.spread == 0.4
    assert first.measurement.samples == (1.9, 2.1)
    assert first.change == pytest.approx(1.0)


# --- the noise rule (`--perf-rule noise`) ----------------------------------------------


def test_make_rule_names_the_two_rules() -> None:
    assert make_rule("threshold") is threshold_rule
    assert callable(make_rule("noise", 0.01))
    with pytest.raises(ValueError, match="unknown rule"):
        make_rule("bayes")


@pytest.mark.parametrize(
    ("q", "metrics", "low", "high"),
    [(0.05, 1, 3.0, 3.0), (0.05, 24, 3.0, 3.0), (0.05, 1000, 3.8, 4.0), (0.001, 10, 3.7, 3.75)],
)
def test_spread_factor_grows_with_the_number_of_metrics(
    q: float, metrics: int, low: float, high: float
) -> None:
    assert low <= spread_factor(q, metrics) <= high


def test_noise_rule_without_spread_is_the_threshold_rule() -> None:
    file = baselines(
        {
            (T, "a"): BaselineEntry(value=1.0),
            (T, "b"): BaselineEntry(value=1.0),
            (T, "c"): BaselineEntry(value=1.0),
        }
    )
    measured = [m(1.5, "a"), m(1.05, "b"), m(0.5, "c")]
    plain = [v.kind for v in run(measured, file).verdicts]
    noisy = [v.kind for v in run(measured, file, rule=noise_rule()).verdicts]
    assert plain == noisy == ["regression", "unchanged", "improvement"]


def test_noise_rule_needs_the_change_beyond_the_spread() -> None:
    # MAD 0.02 of 1.0: relative noise ~3 %, the bar is max(20 %, 3 x 3 %) = 20 %.
    quiet = BaselineEntry(value=1.0, spread=0.02, n=5, runs=5)
    # MAD 0.1: noise ~15 %, bar ~44 %: a 20 % threshold cannot be seen -> unstable.
    loud = BaselineEntry(value=1.0, spread=0.1, n=5, runs=5)
    file = baselines({(T, "quiet"): quiet, (T, "loud"): loud, (T, "loud_big"): loud})
    measured = [m(1.3, "quiet"), m(1.3, "loud"), m(1.9, "loud_big")]
    comparison = run(measured, file, rule=noise_rule())
    kinds = {v.metric: v for v in comparison.verdicts}
    assert kinds["quiet"].kind == "regression"
    assert kinds["loud"].kind == "unstable" and "rounds" in kinds["loud"].detail
    assert kinds["loud_big"].kind == "regression"  # far beyond the noise: still fails
    assert {v.metric for v in comparison.regressions} == {"loud_big", "quiet"}
    assert not any(v.fails for v in comparison.of_kind("unstable"))


def test_noise_rule_respects_direction() -> None:
    entry = BaselineEntry(value=100.0, spread=1.0, n=5, direction="higher")
    file = baselines({(T, "tput"): entry})
    [drop] = run([m(60.0, "tput", direction="higher")], file, rule=noise_rule()).verdicts
    [rise] = run([m(160.0, "tput", direction="higher")], file, rule=noise_rule()).verdicts
    assert (drop.kind, rise.kind) == ("regression", "improvement")


def test_noise_rule_uses_the_runs_count_when_n_is_absent() -> None:
    # Hand-written entries may give only `runs`; with one run there is no spread to use.
    file = baselines(
        {
            (T, "a"): BaselineEntry(value=1.0, spread=0.1, runs=5),
            (T, "b"): BaselineEntry(value=1.0, spread=0.1),
        }
    )
    kinds = [v.kind for v in run([m(1.3, "a"), m(1.3, "b")], file, rule=noise_rule()).verdicts]
    assert kinds == ["unstable", "regression"]


def test_noise_rule_ranks_rounds_against_the_baselines_pooled_samples() -> None:
    rounds = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07]
    entry = BaselineEntry(value=1.0, spread=0.02, n=5, samples=rounds * 4)
    file = baselines({(T, "same"): entry, (T, "slow"): entry, (T, "two"): entry})
    slower = tuple(r * 1.5 for r in rounds)
    measured = [
        m(1.0, "same", samples=tuple(rounds)),
        m(1.5, "slow", samples=slower),
        # One round is no sample: the spread rule decides.
        m(1.5, "two", samples=slower[:1]),
    ]
    verdicts = {v.metric: v for v in run(measured, file, rule=noise_rule()).verdicts}
    assert verdicts["same"].kind == "unchanged" and "interval" in verdicts["same"].detail
    assert verdicts["slow"].kind == "regression"
    assert "interval +4" in verdicts["slow"].detail and "q=" in verdicts["slow"].detail
    assert verdicts["two"].kind == "regression" and "bar" in verdicts["two"].detail
    # A value whose samples sit in the baseline's is not a regression, whatever its estimate.
    [mixed] = run([m(1.3, "same", samples=tuple(rounds))], file, rule=noise_rule()).verdicts
    assert mixed.kind == "unchanged"


# --- the noise rule on samples (issue 5) ---------------------------------------------


def decide(
    current: Sequence[float],
    baseline: Sequence[float] | BaselineSummary,
    direction: Direction,
    threshold: float,
    q_value: float | None = None,
) -> Decision:
    """One metric on its own: assessed at q = 0.05, then classified."""
    return classify_assessment(assess(current, baseline, direction), threshold, q_value=q_value)


def summary_of(xs: Sequence[float]) -> BaselineSummary:
    return BaselineSummary(median(xs), mad(xs), len(xs))


def _lognormal(rng: random.Random, n: int, log_shift: float, sigma: float) -> list[float]:
    return [math.exp(rng.gauss(log_shift, sigma)) for _ in range(n)]


positive_samples = st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(positive_samples, st.sampled_from(["lower", "higher"]), st.floats(0.01, 1.0))
def test_identical_samples_never_regress(
    samples: list[float], direction: Direction, threshold: float
) -> None:
    assert decide(samples, samples, direction, threshold).kind != "regression"
    summary = summary_of(samples)
    assert decide(samples, summary, direction, threshold).kind != "regression"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(1.0, 1.5), min_size=10, max_size=10),
    st.lists(st.floats(1.0, 1.5), min_size=10, max_size=10),
    st.floats(1e-6, 1e6),
    st.sampled_from([0.05, 0.1, 0.2, 0.4]),
)
def test_a_uniform_2x_slowdown_with_ten_rounds_always_regresses(
    baseline: list[float], current: list[float], scale: float, threshold: float
) -> None:
    # Noise within 1.5x keeps every pairwise ratio above 2 / 1.5: the interval's better bound
    # clears half of any of these thresholds. (Halved throughput is a 50 % change.)
    base = [b * scale for b in baseline]
    slow = [2 * c * scale for c in current]
    assert decide(slow, base, "lower", threshold).kind == "regression"
    assert decide(base, slow, "higher", threshold).kind == "regression"  # throughput halved
    assert decide(base, slow, "lower", threshold).kind == "improvement"


def test_regression_needs_the_estimate_the_test_and_the_interval() -> None:
    rng = random.Random(8)
    baseline = _lognormal(rng, 10, 0.0, 0.02)
    # +5 % with 2 % noise: significant, but below a 10 % threshold.
    small = decide(_lognormal(rng, 10, math.log(1.05), 0.02), baseline, "lower", 0.10)
    assert small.kind == "unchanged"
    assert small.assessment.p_value is not None and small.assessment.p_value < 0.01
    # +30 %: all three conditions hold.
    slower = _lognormal(rng, 10, math.log(1.3), 0.02)
    big = decide(slower, baseline, "lower", 0.10)
    assert big.kind == "regression"
    assert big.assessment.change == pytest.approx(0.3, abs=0.03)
    assert big.assessment.change_better > 0.05
    assert "+3" in big.detail
    # ... unless the session's adjusted q-value says otherwise.
    assert decide(slower, baseline, "lower", 0.10, q_value=0.2).kind == ("unchanged")


def test_noisy_samples_are_unstable_with_the_rounds_that_would_do() -> None:
    rng = random.Random(9)
    decision = decide(_lognormal(rng, 5, 0, 0.3), _lognormal(rng, 5, 0, 0.3), "lower", 0.10)
    assert decision.kind == "unstable"
    assert decision.assessment.mde > 0.10
    assert decision.rounds_needed is not None and decision.rounds_needed > 5
    assert "needs" in decision.detail
    # A change shown despite the noise is still reported: noise only weakens "no change".
    decision = decide(
        _lognormal(rng, 10, math.log(4), 0.3), _lognormal(rng, 10, 0, 0.3), "lower", 0.10
    )
    assert decision.kind == "regression"


def test_single_values_fall_back_to_the_baselines_spread() -> None:
    summary = BaselineSummary(median=100.0, spread=2.0 / MAD_TO_SIGMA, n=20)  # sigma 2 %
    assert decide([115.0], summary, "lower", 0.10).kind == "regression"
    assert decide([108.0], summary, "lower", 0.10).kind == "unchanged"
    assert decide([85.0], summary, "lower", 0.10).kind == "improvement"
    noisy = BaselineSummary(median=100.0, spread=6.0 / MAD_TO_SIGMA, n=20)  # sigma 6 %
    # 3 x 6 % = 18 %: a 15 % change is within the noise, and a 10 % one could never be seen.
    decision = decide([115.0], noisy, "lower", 0.10)
    assert (decision.kind, decision.assessment.rule) == ("unstable", "spread")
    assert decision.assessment.mde == pytest.approx(0.18)
    assert decide([125.0], noisy, "lower", 0.10).kind == "regression"
    # No spread known on either side: the plain threshold.
    assert decide([111.0], [100.0], "lower", 0.10).kind == "regression"
    assert decide([109.0], [100.0], "lower", 0.10).kind == "unchanged"
    # A single baseline value and current samples: the current samples' spread.
    assert decide([115.0, 114.0, 116.0], [100.0], "lower", 0.10).kind == "regression"


def test_too_few_rounds_for_the_rank_test_use_the_spread_rule() -> None:
    assessment = assess([200.0, 201.0], [100.0, 101.0])  # 2 vs 2: best p is 1/6
    assert assessment.rule == "spread"
    assert assessment.p_value is None
    assert decide([200.0, 201.0], [100.0, 101.0], "lower", 0.10).kind == "regression"


def test_a_zero_baseline_has_no_relative_change() -> None:
    with pytest.raises(ValueError, match="median is 0"):
        assess([1.0], BaselineSummary(0.0))


def test_session_applies_benjamini_hochberg_across_metrics() -> None:
    rng = random.Random(10)
    clean = [
        MetricSamples(_lognormal(rng, 10, 0, 0.03), _lognormal(rng, 10, 0, 0.03), "lower", 0.1)
        for _ in range(40)
    ]
    slow = MetricSamples(
        _lognormal(rng, 10, math.log(1.5), 0.03), _lognormal(rng, 10, 0, 0.03), "lower", 0.1
    )
    single = MetricSamples([130.0], BaselineSummary(100.0, 1.0, 10), "lower", 0.1)
    decisions = decide_noise([*clean, slow, single])
    kinds = [d.kind for d in decisions]
    assert kinds[:40] == ["unchanged"] * 40
    assert kinds[40:] == ["regression", "regression"]
    tested = [d for d in decisions if d.assessment.p_value is not None]
    raw = [d.assessment.p_value for d in tested]
    assert [d.q_value for d in tested] == pytest.approx(benjamini_hochberg(raw))  # type: ignore[arg-type]
    assert decisions[-1].q_value is None
    # The detectable effect is judged at q / m, a lone regression's bar.
    assert decisions[0].assessment.alpha == pytest.approx(0.05 / 41)


def _calls_per_assess(rounds: int) -> float:
    """Function calls one `assess` makes, averaged over 20 metrics."""
    rng = random.Random(11)
    pairs = [(_lognormal(rng, rounds, 0, 0.1), _lognormal(rng, rounds, 0, 0.1)) for _ in range(20)]
    calls, _ = calls_made(lambda: [assess(current, baseline) for current, baseline in pairs])
    return calls / len(pairs)


def test_assess_does_little_work_for_typical_rounds() -> None:
    typical, doubled = _calls_per_assess(30), _calls_per_assess(60)
    # About 2 800 calls at 30 rounds (a few ms); the pairwise Hodges-Lehmann ratios make it
    # at most quadratic in the rounds, so doubling them may cost up to 4x, never more.
    assert typical < 10_000
    assert doubled < 4 * typical
