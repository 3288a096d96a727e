from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pytest_perfguard.baselines import BaselineEntry, BaselineFile, PlatformBaselines
from pytest_perfguard.compare import (
    Decision,
    Observation,
    classify,
    compare,
    make_rule,
    noise_rule,
    relative_change,
    spread_factor,
    threshold_rule,
)
from pytest_perfguard.results import GateScope, Measurement

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


def test_steps_of_gated_tests_are_informational() -> None:
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
        ("step:embed", "regression", False),
    ]
    assert comparison.counts()["regression"] == 1  # steps are not counted
    assert [v.metric for v in comparison.regressions] == ["latency"]
    assert [v.metric for v in comparison.step_verdicts] == ["step:embed"]


def test_step_regression_alone_does_not_fail() -> None:
    file = baselines(
        {(T, "latency"): BaselineEntry(value=1.0), (T, "step:embed"): BaselineEntry(value=0.1)}
    )
    comparison = run([m(1.0), m(0.9, "step:embed", kind="step")], file)
    assert not comparison.failed
    assert comparison.regressions == []


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
        ("latency", "unstable", "too noisy (2 compared)"),
        ("new_one", "new", "no baseline on this platform"),
        ("other", "unstable", "too noisy (2 compared)"),
        ("step:s", "unstable", "too noisy (1 compared)"),
    ]
    assert not comparison.failed
    # Gated metrics are decided together (for multiple-comparison corrections), steps apart.
    gated, informational = batches
    assert [o.measurement.metric for o in gated] == ["latency", "other"]
    assert [(o.measurement.metric, o.gated) for o in informational] == [("step:s", False)]
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
    [mixed] = run(
        [m(1.3, "same", samples=tuple(rounds))], file, rule=noise_rule()
    ).verdicts
    assert mixed.kind == "unchanged"
