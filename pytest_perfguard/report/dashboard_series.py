"""The dashboard's data: each (test, metric) over time, one line per platform, with the
baselines in effect over time, the points that regressed and the change points.

Built from the points handed in (`DashboardData`, read by the caller through the `History`
API); the charts get it as compact JSON (`chart_payload`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..baselines import BaselineEntry, BaselineFile, BaselinesError, parse_entry
from ..changepoint import find_change_points
from ..compare import applicable_baseline, threshold_for
from ..results import STEP_PREFIX, Direction, worse_is_positive

if TYPE_CHECKING:
    from ..experiments import ExperimentRecord, Trial
    from ..records import BaselineSnapshotRecord, PlatformRecord, TrendPoint
    from ..results import Measurement

_KIND_ORDER = {"primary": 0, "custom": 1, "step": 2, "system": 3}


@dataclass(frozen=True, slots=True)
class Segment:
    """A baseline in effect from `since` (epoch seconds; None: from the start), with the
    threshold it gives when the test sets none."""

    since: float | None
    entry: BaselineEntry
    threshold: float

    @property
    def value(self) -> float:
        return self.entry.value


@dataclass(slots=True)
class Line:
    """One (test, metric) on one platform: its points, baselines and what stands out."""

    platform: str
    points: list[TrendPoint]
    segments: list[Segment] = field(default_factory=list)
    regressions: list[int] = field(default_factory=list)
    change_points: list[tuple[int, float, float]] = field(default_factory=list)  # i, change, worse

    @property
    def latest(self) -> int | None:
        """Index of the newest passing point, else of the newest point."""
        for i in range(len(self.points) - 1, -1, -1):
            if self.points[i].outcome == "passed":
                return i
        return len(self.points) - 1 if self.points else None


@dataclass(slots=True)
class Series:
    test: str
    metric: str
    unit: str
    direction: Direction
    kind: str
    marked: bool
    lines: list[Line]

    @property
    def regressed(self) -> bool:
        """Whether the newest passing value on some platform is a regression."""
        return any(line.latest in line.regressions for line in self.lines)


@dataclass(frozen=True, slots=True)
class DashboardData:
    """Everything the dashboard shows, read from the history by its caller (the report
    layer renders what it is handed and queries nothing): `read_dashboard` in
    `cli/dashboard_data.py` fills it through the `History` API."""

    url: str
    days: int | None
    platforms: list[PlatformRecord]  # the platforms asked for, in the history's order
    missing: list[str]  # platforms asked for that the history does not have
    snapshots: list[BaselineSnapshotRecord]  # baselines updates on those platforms, newest first
    points: list[TrendPoint]  # every stored value on those platforms in the window
    kinds: dict[tuple[str, str], tuple[str, bool]]  # (test, metric) -> (kind, marked)
    measurements: dict[int, list[Measurement]]  # run id -> its measurements, to judge it
    experiments: list[ExperimentRecord] = field(default_factory=list)
    trials: dict[int, list[Trial]] = field(default_factory=dict)  # experiment id -> trials


def build_series(
    points: Sequence[TrendPoint], kinds: dict[tuple[str, str], tuple[str, bool]], keys: list[str]
) -> list[Series]:
    """The points grouped per (test, metric), one line per platform in `keys`' order."""
    grouped: dict[tuple[str, str], dict[str, list[TrendPoint]]] = {}
    for point in points:
        if point.platform in keys:
            by_platform = grouped.setdefault((point.test, point.metric), {})
            by_platform.setdefault(point.platform, []).append(point)
    series = []
    for (test, metric), by_platform in grouped.items():
        newest = max((p[-1] for p in by_platform.values()), key=lambda p: p.started_at)
        guess = ("step" if metric.startswith(STEP_PREFIX) else "custom", True)
        kind, marked = kinds.get((test, metric), guess)
        lines = [Line(key, by_platform[key]) for key in keys if key in by_platform]
        direction: Direction = "higher" if newest.direction == "higher" else "lower"
        series.append(Series(test, metric, newest.unit, direction, kind, marked, lines))
    series.sort(key=lambda s: (s.test, _KIND_ORDER.get(s.kind, 9), s.metric))
    return series


def snapshot_segments(
    snapshots: Sequence[Any], default_threshold: float
) -> dict[tuple[str, str, str], list[Segment]]:
    """Baselines over time from the snapshots stored by updates (oldest first)."""
    found: dict[tuple[str, str, str], list[Segment]] = {}
    for snap in reversed(snapshots):  # newest first -> oldest first
        since = epoch(snap.created_at)
        for test, metrics in snap.entries.items():
            if not isinstance(metrics, dict):
                continue
            for metric, stored in metrics.items():
                try:
                    entry = parse_entry(stored)
                except BaselinesError:
                    continue  # not an entry this version can judge against
                threshold = threshold_for(None, entry.threshold, default_threshold)
                segment = Segment(since, entry, threshold)
                found.setdefault((snap.platform, test, metric), []).append(segment)
    return found


def judge(
    s: Series,
    line: Line,
    stored: list[Segment],
    baselines: BaselineFile | None,
    default_threshold: float,
) -> None:
    """Baseline segments and change points of one line (its regressions are the gate's
    verdicts: `dashboard_verdicts`)."""
    segments = list(stored)
    if baselines is not None:
        entry = applicable_baseline(
            baselines, line.platform, s.test, s.metric, kind=s.kind, marked=s.marked
        )
        if entry is None:
            segments = []
        else:
            since = segments[-1].since if segments else None
            threshold = threshold_for(None, entry.threshold, default_threshold)
            segments = [*segments[:-1], Segment(since, entry, threshold)]
    line.segments = segments
    passed = [i for i, p in enumerate(line.points) if p.outcome == "passed"]
    threshold = segments[-1].threshold if segments else default_threshold
    values = [line.points[i].value for i in passed]
    if len(values) >= 6:
        for cp in find_change_points(values, min_change=threshold / 2):
            worse = worse_is_positive(cp.change, s.direction)
            line.change_points.append((passed[cp.index], round6(cp.change), round6(worse)))


def segment_at(segments: list[Segment], t: float) -> Segment | None:
    """The segment in effect at `t` (the first one before any began)."""
    found = segments[0] if segments else None
    for segment in segments:
        if segment.since is None or segment.since <= t:
            found = segment
    return found


def chart_payload(series: list[Series], platforms: list[str]) -> dict[str, Any]:
    """The chart data: runs once in a table, each line's points as indices into it."""
    index = {key: i for i, key in enumerate(platforms)}
    runs: list[list[Any]] = []
    run_index: dict[int, int] = {}
    out = []
    for s in series:
        lines = []
        for line in s.lines:
            refs = []
            for p in line.points:
                if p.run_id not in run_index:
                    run_index[p.run_id] = len(runs)
                    commit = (p.git_commit or "")[:10]
                    runs.append([p.run_id, round(epoch(p.started_at)), index[p.platform], commit])
                refs.append(run_index[p.run_id])
            lines.append(
                {
                    "p": index[line.platform],
                    "r": refs,
                    "v": [round6(p.value) for p in line.points],
                    "x": [i for i, p in enumerate(line.points) if p.outcome != "passed"],
                    "reg": line.regressions,
                    "cp": [list(cp) for cp in line.change_points],
                    "bl": [
                        [_epoch_or_none(g.since), round6(g.value), g.threshold]
                        for g in line.segments
                    ],
                }
            )
        out.append(
            {
                "test": s.test,
                "metric": s.metric,
                "unit": s.unit,
                "dir": s.direction,
                "kind": s.kind,
                "regressed": s.regressed,
                "lines": lines,
            }
        )
    return {"v": 1, "platforms": platforms, "runs": runs, "series": out}


def round6(value: float) -> float:
    """Six significant digits: plenty for a chart, and a third of the bytes of repr()."""
    return float(f"{value:.6g}")


def aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def epoch(when: datetime) -> float:
    return aware(when).timestamp()


def _epoch_or_none(value: float | None) -> int | None:
    return None if value is None else round(value)
