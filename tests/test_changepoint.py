"""Change points: where a metric's history stepped, and never at a lone spike."""

from __future__ import annotations

import random

import pytest
from call_count import calls_made
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard.annotate import step_note
from pytest_perfguard.changepoint import ChangePoint, find_change_points
from pytest_perfguard.records import TrendPoint
from pytest_perfguard.results import Direction, Verdict


def _noisy(rng: random.Random, levels: list[tuple[int, float]], noise: float) -> list[float]:
    return [rng.gauss(level, noise * level) for count, level in levels for _ in range(count)]


def test_a_clean_step_is_found_at_its_index() -> None:
    assert find_change_points([1.0] * 20 + [2.0] * 20) == [
        ChangePoint(index=20, before_median=1.0, after_median=2.0, change=1.0, p_value=0.005)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_step_is_found_at_its_index(seed: int) -> None:
    values = _noisy(random.Random(seed), [(30, 1.0), (25, 1.2)], noise=0.02)
    (point,) = find_change_points(values, min_change=0.05)
    assert point.index == 30
    assert point.change == pytest.approx(0.2, abs=0.03)
    assert point.p_value <= 0.01
    # Without min_change, a 1 % wobble within the noise can pass the test too (seed 3 has
    # one at p = 0.01): every segment is tested at alpha.
    assert 30 in [p.index for p in find_change_points(values)]


def test_a_step_near_the_end_of_the_history_is_found() -> None:
    values = _noisy(random.Random(1), [(60, 100.0), (6, 118.0)], noise=0.02)
    assert [p.index for p in find_change_points(values)] == [60]


def test_several_steps_and_a_step_back_are_all_found() -> None:
    values = _noisy(random.Random(2), [(40, 1.0), (30, 1.3), (30, 0.9), (40, 1.3)], noise=0.02)
    points = find_change_points(values)
    assert [p.index for p in points] == [40, 70, 100]
    assert [p.change for p in points] == pytest.approx(
        [0.3, 0.9 / 1.3 - 1, 1.3 / 0.9 - 1], abs=0.03
    )
    # Each change is relative to the segment just before it.
    assert points[1].before_median == points[0].after_median


def test_an_excursion_that_comes_back_is_found() -> None:
    assert [p.index for p in find_change_points([1.0] * 30 + [3.0] * 10 + [1.0] * 30)] == [30, 40]
    values = _noisy(random.Random(3), [(120, 1.0), (15, 1.3), (120, 1.0)], noise=0.02)
    assert [p.index for p in find_change_points(values)] == [120, 135]


def test_two_level_noise_without_a_step_has_no_change_point() -> None:
    rng = random.Random(4)
    values = [rng.choice([160.0, 300.0]) * rng.gauss(1, 0.01) for _ in range(80)]
    assert find_change_points(values) == []


@pytest.mark.parametrize("values", [[], [1.0], [5.0] * 40, [1.0, 2.0, 3.0, 4.0, 5.0]])
def test_constant_or_too_short_series_have_none(values: list[float]) -> None:
    assert find_change_points(values) == []


def test_a_step_shorter_than_the_minimum_segment_is_not_a_change_point() -> None:
    assert find_change_points([1.0] * 30 + [2.0] * 2) == []
    assert [p.index for p in find_change_points([1.0] * 30 + [2.0] * 2, min_segment=2)] == [30]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(6, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
    st.floats(1e-3, 1e3),
    st.sampled_from([0.0, 0.5, 2.0, 1e6]),
)
def test_a_single_spike_is_never_a_change_point(
    size_and_position: tuple[int, int], level: float, spike: float
) -> None:
    size, position = size_and_position
    values = [level] * size
    values[position] = level * spike
    assert find_change_points(values) == []


@pytest.mark.parametrize("seed", range(3))
def test_a_spike_in_noise_is_never_a_change_point(seed: int) -> None:
    noise = _noisy(random.Random(seed), [(60, 1.0)], noise=0.05)
    for position in range(60):
        for spike in (0.001, 10.0, 1000.0):
            values = list(noise)
            values[position] = spike
            assert find_change_points(values) == [], (position, spike)


def test_results_are_deterministic_for_a_seed() -> None:
    values = _noisy(random.Random(5), [(50, 1.0), (50, 1.05)], noise=0.03)
    assert find_change_points(values, seed=7) == find_change_points(values, seed=7)
    clear = [1.0] * 20 + [2.0] * 20
    assert find_change_points(clear, seed=1) == find_change_points(clear, seed=2)


def _calls_to_find(points: int) -> tuple[int, list[int]]:
    """Function calls `find_change_points` makes on a history of `points` values with two
    steps, and where it found them."""
    n = points // 10
    values = _noisy(random.Random(6), [(4 * n, 1.0), (3 * n, 1.2), (3 * n, 0.9)], noise=0.05)
    calls, found = calls_made(lambda: find_change_points(values))
    return calls, [p.index for p in found]


def test_work_grows_about_linearly_with_the_history() -> None:
    small, _ = _calls_to_find(100)
    large, found = _calls_to_find(1000)
    assert found == [400, 700]
    # 10x the points costs about 6.6x the calls (the cuts scanned per interval are capped);
    # a search quadratic in the history would cost 100x.
    assert large < 10 * small


def test_changes_from_zero() -> None:
    (point,) = find_change_points([0.0] * 10 + [1.0] * 10)
    assert point.change == float("inf")


@pytest.mark.parametrize(
    "kwargs",
    [{"min_segment": 0}, {"alpha": 0.0}, {"alpha": 1.0}, {"permutations": 0}, {"min_change": -1}],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        find_change_points([1.0] * 10, **kwargs)  # type: ignore[arg-type]


def test_non_finite_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        find_change_points([1.0, float("nan")] * 5)


def _points(values: list[float]) -> list[TrendPoint]:
    from datetime import datetime, timezone

    return [
        TrendPoint(
            run_id=i + 1,
            started_at=datetime.now(timezone.utc),
            platform="p",
            git_commit=f"{i:02d}" + "c" * 38,
            test="t",
            metric="m",
            value=v,
            unit="s",
            direction="lower",
            outcome="passed",
        )
        for i, v in enumerate(values)
    ]


def _verdict(direction: Direction = "lower", unit: str = "s") -> Verdict:
    return Verdict("t", "m", "regression", direction, unit, threshold=0.1)


def test_step_note_names_the_run_and_commit_where_the_level_stepped() -> None:
    points = _points([1.0] * 12 + [1.3] * 6)
    assert step_note(points, 1.3, _verdict()) == "slower since run 13, commit 12ccccc, +30%"
    assert step_note(points, 1.3, _verdict(unit="MB")) == "worse since run 13, commit 12ccccc, +30%"


def test_step_note_is_silent_without_a_worse_step() -> None:
    assert step_note(_points([1.0] * 12), 1.0, _verdict()) is None
    assert step_note(_points([1.0] * 3), 2.0, _verdict()) is None  # too short
    assert step_note(_points([1.3] * 12 + [1.0] * 6), 1.0, _verdict()) is None  # got better
    # A throughput falling is the worse way for direction "higher".
    falling = _points([100.0] * 12 + [70.0] * 6)
    assert step_note(falling, 70.0, _verdict("higher", "items/s")) == (
        "worse since run 13, commit 12ccccc, -30%"
    )
