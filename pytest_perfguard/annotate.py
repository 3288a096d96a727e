"""Notes added to verdicts after the comparison: what the confirm re-runs showed, where a
regressed metric's recorded level stepped, and one-line session warnings.

Pure: the session end hands in the recorded history of the regressed metrics; nothing
here queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compare import Comparison
    from .measure import Confirmation
    from .records import TrendPoint
    from .results import Measurement, Verdict

Markup = dict[str, bool]


def session_notes(
    comparison: Comparison, confirmations: dict[tuple[str, str], Confirmation]
) -> list[tuple[str, Markup]]:
    """One line on the confirm re-runs and one warning for unstable metrics, when any."""
    notes: list[tuple[str, Markup]] = []
    if confirmations:
        held = sum(
            1
            for v in comparison.verdicts
            if v.kind == "regression" and (v.test, v.metric) in confirmations
        )
        tests = len({test for test, _ in confirmations})
        notes.append(
            (
                f"perfguard: re-ran {tests} flagged test{'s' if tests != 1 else ''}: "
                f"{held} regression{'s' if held != 1 else ''} confirmed, "
                f"{len(confirmations) - held} cleared",
                {},
            )
        )
    unstable = comparison.of_kind("unstable")
    if unstable:
        notes.append(
            (
                f"perfguard: {len(unstable)} metric{'s' if len(unstable) != 1 else ''} too noisy "
                "to judge at their threshold (unstable: reported, never failing); the reports "
                "give the rounds they need, and --perf-calibrate measures the noise",
                {"yellow": True},
            )
        )
    return notes


def _annotated(verdict: Verdict, note: str) -> Verdict:
    return replace(verdict, detail=f"{verdict.detail}; {note}" if verdict.detail else note)


def note_confirmations(
    comparison: Comparison, confirmations: dict[tuple[str, str], Confirmation]
) -> None:
    """Say in each flagged verdict whether its re-runs confirmed it."""
    for i, verdict in enumerate(comparison.verdicts):
        found = confirmations.get((verdict.test, verdict.metric))
        if found is None or not found.reruns:
            continue
        times = f"{found.reruns} re-run{'s' if found.reruns != 1 else ''}"
        if verdict.kind == "regression":
            note = f"confirmed: held on {times}"
        else:
            note = f"not confirmed: {found.first_change:+.0%} at first, cleared on {times}"
        comparison.verdicts[i] = _annotated(verdict, note)


def note_change_points(
    comparison: Comparison,
    measurements: Sequence[Measurement],
    trends: Mapping[tuple[str, str], Sequence[TrendPoint]],
) -> None:
    """ "slower since run 41, commit abc1234, +18 %" for each regression whose recorded
    history shows a step; `trends` holds that history (oldest first) by (test, metric)."""
    current = {(m.test, m.metric): m.value for m in measurements}
    for i, verdict in enumerate(comparison.verdicts):
        if verdict.kind != "regression":
            continue
        points = trends.get((verdict.test, verdict.metric))
        if not points:
            continue
        note = step_note(points, current.get((verdict.test, verdict.metric)), verdict)
        if note:
            comparison.verdicts[i] = _annotated(verdict, note)


def step_note(points: Sequence[TrendPoint], current: float | None, verdict: Verdict) -> str | None:
    """Where the metric's recorded level last stepped the worse way, if it did: the
    history (oldest first) plus this run's value, at least `min_segment` (3) runs a side."""
    from .changepoint import find_change_points

    runs = [p for p in points if p.outcome == "passed"]
    values = [p.value for p in runs]
    if current is not None:
        values.append(current)
    if len(values) < 6:
        return None
    found = find_change_points(values, min_change=verdict.threshold / 2)
    if not found:
        return None
    last = found[-1]
    worse = last.change > 0 if verdict.direction == "lower" else last.change < 0
    if not worse or last.index >= len(runs):
        return None
    since = runs[last.index]
    word = "slower" if verdict.direction == "lower" and verdict.unit == "s" else "worse"
    commit = f", commit {since.git_commit[:7]}" if since.git_commit else ""
    return f"{word} since run {since.run_id}{commit}, {last.change:+.0%}"
