"""The dashboard's verdicts are the gate's.

Every run the dashboard shows is judged by `compare.judge_run`, the function the gate's
verdicts come from, with the project's settings (`perf_threshold`, `perf_gate`, `perf_rule`,
`perf_q`), the run's stored measurements (their marker thresholds and rounds included) and
the baselines in effect when the run was made (the segments `dashboard_series.judge` worked
out from the baselines file and the stored snapshots). A point is a regression on the chart,
and a row of the snapshot says `regression`, exactly when the gate would fail that run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..baselines import BaselineEntry, BaselineFile, PlatformBaselines
from ..compare import GateSettings, judge_run
from ..results import Measurement, Verdict
from .dashboard_series import Segment, Series, epoch, segment_at

VerdictKey = tuple[int, str, str]  # run id, test, metric


def judge_runs(
    measurements: Mapping[int, Sequence[Measurement]], series: list[Series], settings: GateSettings
) -> dict[VerdictKey, Verdict]:
    """The gate's verdict on every (run, test, metric) that `series` shows and the gate
    judges, and marks the regressions on each line. `measurements` holds each shown run's
    stored measurements (read in one batch by the caller: `History.runs_measurements`)."""
    runs: dict[int, tuple[str, float]] = {}
    for s in series:
        for line in s.lines:
            for point in line.points:
                runs[point.run_id] = (line.platform, epoch(point.started_at))
    # The lines with baselines, per platform: a run is judged against those of its own.
    with_baselines: dict[str, list[tuple[str, str, list[Segment]]]] = {}
    for s in series:
        for line in s.lines:
            if line.segments:
                with_baselines.setdefault(line.platform, []).append(
                    (s.test, s.metric, line.segments)
                )
    verdicts: dict[VerdictKey, Verdict] = {}
    # Baselines change at updates only: runs between two updates share one file.
    files: dict[tuple[str, tuple[int, ...]], BaselineFile] = {}
    for run_id, (platform, when) in sorted(runs.items()):
        in_effect_now = [
            (test, metric, segment_at(segments, when))
            for test, metric, segments in with_baselines.get(platform, ())
        ]
        key = (platform, tuple(id(found) for _, _, found in in_effect_now))
        in_effect = files.get(key)
        if in_effect is None:
            tests: dict[str, dict[str, BaselineEntry]] = {}
            for test, metric, found in in_effect_now:
                if found is not None:
                    tests.setdefault(test, {})[metric] = found.entry
            in_effect = BaselineFile(platforms={platform: PlatformBaselines(tests=tests)})
            files[key] = in_effect
        stored = list(measurements.get(run_id, ()))
        for verdict in judge_run(stored, in_effect, platform, settings).verdicts:
            verdicts[(run_id, verdict.test, verdict.metric)] = verdict
    for s in series:
        for line in s.lines:
            line.regressions = [
                i
                for i, point in enumerate(line.points)
                if _kind(verdicts.get((point.run_id, s.test, s.metric))) == "regression"
            ]
    return verdicts


def _kind(verdict: Verdict | None) -> str | None:
    return None if verdict is None else verdict.kind
