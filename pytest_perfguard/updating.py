"""Updating the baselines file from recorded history (`--perf-update-baselines`,
`perfguard baselines update`).

`propose_updates` is the pure policy; `update_baselines` reads history, applies the policy
to the file under a lock, writes it atomically and stores a snapshot of what changed in
the history database. The history is anything with the two methods of `UpdateHistory`
(`pytest_perfguard.api.History` in practice), so this module does not import SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import copy
import platform as _platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from .baselines import (
    BaselineEntry,
    BaselineFile,
    BaselineMetadata,
    PlatformBaselines,
    baselines_lock,
    load_baselines,
    write_baselines,
)
from .compare import applicable_baseline, relative_change
from .formatting import format_delta, format_value, text_table
from .results import GATEABLE_KINDS, Direction, GateScope

UpdateAction = Literal["add", "improve", "accept_regression", "keep", "skip_insufficient"]
APPLIED_ACTIONS: frozenset[str] = frozenset({"add", "improve", "accept_regression"})
_REASONS = {
    "add": "new metric",
    "improve": "improvement",
    "accept_regression": "accepted regression",
}


class MetricSeries(Protocol):
    """One metric's recorded values on a platform, newest first."""

    @property
    def test(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def direction(self) -> str: ...  # "lower" or "higher"
    @property
    def kind(self) -> str: ...
    @property
    def marked(self) -> bool: ...
    @property
    def values(self) -> Sequence[float]: ...
    @property
    def samples(self) -> Sequence[Sequence[float]]: ...  # per run, as `values`


class UpdateHistory(Protocol):
    """The part of `pytest_perfguard.api.History` that updating needs."""

    def metric_history(
        self, platform: str, *, last_runs: int
    ) -> Mapping[tuple[str, str], MetricSeries]: ...

    def save_baseline_snapshot(
        self,
        platform: str,
        entries: Mapping[str, Any],
        *,
        reason: str,
        git_commit: str | None,
        who: str,
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class BaselineUpdate:
    """What the policy proposes for one metric. `change` is proposed vs current, signed
    so that worse is positive; `spread` is the MAD of the `n` values the median came from;
    `samples` are those runs' own samples (rounds) pooled, thinned to `MAX_BASELINE_SAMPLES`."""

    test: str
    metric: str
    unit: str
    direction: Direction
    action: UpdateAction
    current: float | None
    proposed: float | None
    change: float | None
    spread: float | None
    n: int
    threshold: float | None = None
    samples: tuple[float, ...] = ()

    @property
    def applied(self) -> bool:
        return self.action in APPLIED_ACTIONS


@dataclass(slots=True)
class UpdateResult:
    platform: str
    path: Path
    updates: list[BaselineUpdate] = field(default_factory=list)
    min_runs: int = 5
    dry_run: bool = False
    written: bool = False
    snapshot_id: int | None = None
    message: str = ""

    @property
    def applied(self) -> list[BaselineUpdate]:
        return [u for u in self.updates if u.applied]


def _tidy(value: float, digits: int = 12) -> float:
    """Significant digits only: 0.05 rather than 0.050000000000000044 in the file's diffs."""
    return float(f"{value:.{digits}g}")


def _mad(values: Sequence[float], center: float) -> float:
    return statistics.median(abs(v - center) for v in values)


# Enough for the rank test to reach q / m for hundreds of metrics against a test's rounds,
# few enough to keep the baselines file readable in a diff.
MAX_BASELINE_SAMPLES = 32


def pooled_samples(
    runs: Sequence[Sequence[float]], limit: int = MAX_BASELINE_SAMPLES
) -> tuple[float, ...]:
    """The runs' samples pooled and sorted; above `limit`, `limit` evenly spaced order
    statistics (minimum and maximum included), so the distribution keeps its shape.
    Empty when fewer than two samples: one value says nothing about the noise."""
    pooled = sorted(float(x) for run in runs for x in run)
    if len(pooled) < 2:
        return ()
    if len(pooled) > limit:
        step = (len(pooled) - 1) / (limit - 1)
        pooled = [pooled[round(i * step)] for i in range(limit)]
    return tuple(_tidy(x, 6) for x in pooled)


def _selected(
    series: Mapping[tuple[str, str], MetricSeries], gate: GateScope
) -> list[MetricSeries]:
    """Gated metrics (primary/custom of marked tests, or of all tests with gate=all) plus
    the steps of those tests, in a stable order."""
    gated = [s for s in series.values() if s.kind in GATEABLE_KINDS and (s.marked or gate == "all")]
    tests = {s.test for s in gated}
    steps = [s for s in series.values() if s.kind == "step" and s.test in tests]
    return sorted(gated + steps, key=lambda s: (s.test, s.metric))


def propose_updates(
    series: Mapping[tuple[str, str], MetricSeries],
    current: BaselineFile,
    platform: str,
    *,
    min_runs: int = 5,
    margin: float = 0.05,
    accept_regressions: bool = False,
    gate: GateScope = "marked",
) -> list[BaselineUpdate]:
    """For each gated metric: the median of its last `min_runs` values against the baseline.

    Fewer values: `skip_insufficient`. No baseline: `add`. Better by more than `margin`:
    `improve`. Worse and `accept_regressions`: `accept_regression`. Otherwise `keep`.
    `gate="none"` selects like `"marked"` (updating is independent of failing the run).
    """
    updates: list[BaselineUpdate] = []
    for s in _selected(series, gate):
        values = list(s.values[:min_runs])
        direction: Direction = "higher" if s.direction == "higher" else "lower"
        entry = applicable_baseline(
            current, platform, s.test, s.metric, kind=s.kind, marked=s.marked
        )
        existing = entry.value if entry is not None else None
        threshold = entry.threshold if entry is not None else None
        if len(values) < min_runs:
            updates.append(
                BaselineUpdate(
                    s.test,
                    s.metric,
                    s.unit,
                    direction,
                    "skip_insufficient",
                    existing,
                    None,
                    None,
                    None,
                    len(values),
                    threshold,
                )
            )
            continue
        proposed = _tidy(statistics.median(values))
        spread = _tidy(_mad(values, proposed))
        samples = pooled_samples(s.samples[:min_runs])
        change = None if existing is None else relative_change(proposed, existing, direction)
        action = _decide(existing, proposed, change, direction, margin, accept_regressions)
        updates.append(
            BaselineUpdate(
                s.test,
                s.metric,
                s.unit,
                direction,
                action,
                existing,
                proposed,
                change,
                spread,
                len(values),
                threshold,
                samples,
            )
        )
    return updates


def _decide(
    existing: float | None,
    proposed: float,
    change: float | None,
    direction: Direction,
    margin: float,
    accept_regressions: bool,
) -> UpdateAction:
    if existing is None:
        return "add"
    if change is None:  # baseline 0, proposed not: better only when higher is better
        if direction == "higher":
            return "improve"
        return "accept_regression" if accept_regressions else "keep"
    if change < -margin:
        return "improve"
    if change > 0 and accept_regressions:
        return "accept_regression"
    return "keep"


def make_metadata(
    git_commit: str | None, notes: str = "", hardware: Mapping[str, Any] | None = None
) -> BaselineMetadata:
    """Metadata for an update made now: UTC time with a 'Z', commit, Python version, and
    the hardware (CPU model, cores, memory, GPUs) the values were measured on, which a
    verdict compares with its own run's."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return BaselineMetadata(
        last_updated=now.isoformat().replace("+00:00", "Z"),
        git_commit=git_commit,
        python_version=_platform.python_version(),
        notes=notes,
        extra={"hardware": dict(hardware)} if hardware else {},
    )


def apply_updates(
    file: BaselineFile,
    platform: str,
    updates: Sequence[BaselineUpdate],
    metadata: BaselineMetadata,
) -> BaselineFile:
    """A copy of `file` with the applied updates written as test entries of `platform`.

    Other platforms, and this platform's entries not updated, are kept as they are. An
    existing entry keeps its own threshold.
    """
    new = copy.deepcopy(file)
    section = new.platforms.setdefault(platform, PlatformBaselines())
    for u in updates:
        if not u.applied or u.proposed is None:
            continue
        section.tests.setdefault(u.test, {})[u.metric] = _entry(u)
    section.metadata = metadata
    return new


def _entry(u: BaselineUpdate) -> BaselineEntry:
    assert u.proposed is not None
    return BaselineEntry(
        value=u.proposed,
        unit=u.unit,
        direction=u.direction,
        threshold=u.threshold,
        runs=u.n,
        spread=u.spread,
        n=u.n,
        samples=list(u.samples) or None,
    )


def update_baselines(
    history: UpdateHistory,
    baselines_path: Path,
    platform: str,
    *,
    min_runs: int = 5,
    margin: float = 0.05,
    accept_regressions: bool = False,
    dry_run: bool = False,
    git_commit: str | None = None,
    who: str = "user",
    gate: GateScope = "marked",
    notes: str = "",
    hardware: Mapping[str, Any] | None = None,
) -> UpdateResult:
    """Propose, and unless `dry_run` apply, baseline updates for `platform` from history.

    Raises `BaselinesError` for an unreadable baselines file.
    """
    result = UpdateResult(
        platform=platform, path=baselines_path, min_runs=min_runs, dry_run=dry_run
    )
    series = history.metric_history(platform, last_runs=min_runs)
    if not series:
        result.message = (
            f"no recorded runs for platform {platform!r}: record some with --perf-record; "
            "baselines unchanged"
        )
        return result
    # Read, decide and write under one lock so concurrent updaters never lose each
    # other's entries; a dry run only reads.
    with contextlib.nullcontext() if dry_run else baselines_lock(baselines_path):
        current = load_baselines(baselines_path)
        result.updates = propose_updates(
            series,
            current,
            platform,
            min_runs=min_runs,
            margin=margin,
            accept_regressions=accept_regressions,
            gate=gate,
        )
        applied = result.applied
        if applied and not dry_run:
            metadata = make_metadata(git_commit, notes, hardware)
            write_baselines(baselines_path, apply_updates(current, platform, applied, metadata))
            result.written = True
    if result.written:
        snapshot: dict[str, dict[str, Any]] = {}
        for u in applied:
            entry = _entry(u).to_data()
            snapshot.setdefault(u.test, {})[u.metric] = {**entry, "reason": _REASONS[u.action]}
        reason = ", ".join(sorted({_REASONS[u.action] for u in applied}))
        result.snapshot_id = history.save_baseline_snapshot(
            platform, snapshot, reason=reason, git_commit=git_commit, who=who
        )
    result.message = _summary(result)
    return result


def _summary(result: UpdateResult) -> str:
    counts: dict[str, int] = {}
    for u in result.updates:
        counts[u.action] = counts.get(u.action, 0) + 1
    words = {
        "add": "added",
        "improve": "improved",
        "accept_regression": "accepted regressions",
        "keep": "kept",
        "skip_insufficient": f"skipped (fewer than {result.min_runs} runs)",
    }
    parts = [f"{counts[a]} {w}" for a, w in words.items() if counts.get(a)]
    if not result.updates:
        parts = ["no gated metrics in history"]
    if result.dry_run:
        tail = "dry run: nothing written"
    elif result.written:
        tail = f"written to {result.path}"
    else:
        tail = f"{result.path} unchanged"
    return f"baselines for {result.platform}: {', '.join(parts)}; {tail}"


def format_update_table(result: UpdateResult) -> str:
    """The update as a plain-text table (test, metric, current, proposed, change, action)."""
    rows = []
    for u in result.updates:
        action = u.action.replace("_", " ")
        if u.action == "skip_insufficient":
            action = f"skip ({u.n} of {result.min_runs} runs)"
        rows.append(
            [
                u.test,
                u.metric,
                format_value(u.current, u.unit),
                format_value(u.proposed, u.unit),
                format_delta(u.proposed, u.current),
                action,
            ]
        )
    lines = []
    if rows:
        lines = text_table(["test", "metric", "current", "proposed", "change", "action"], rows)
    return "\n".join([*lines, result.message])
