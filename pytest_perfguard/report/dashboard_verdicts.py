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
from .dashboard_series import Series, epoch, segment_at

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
    verdicts: dict[VerdictKey, Verdict] = {}
    for run_id, (platform, when) in sorted(runs.items()):
        tests: dict[str, dict[str, BaselineEntry]] = {}
        for s in series:
            for line in s.lines:
                segment = segment_at(line.segments, when) if line.platform == platform else None
                if segment is not None:
                    tests.setdefault(s.test, {})[s.metric] = segment.entry
        in_effect = BaselineFile(platforms={platform: PlatformBaselines(tests=tests)})
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
