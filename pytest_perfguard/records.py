"""Plain frozen dataclasses of stored runs, as `History` hands them back (no SQLAlchemy here)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .compare import relative_change, relative_difference
from .results import Measurement

# Columns of `History.export` and `History.to_dataframe`, in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "started_at",
    "platform",
    "git_commit",
    "git_branch",
    "run_type",
    "test",
    "metric",
    "value",
    "unit",
    "direction",
    "kind",
    "marked",
    "outcome",
    "threshold",
    "samples",
    "error",
)


@dataclass(frozen=True)
class RunSummary:
    """One run as listed by `History.recent_runs`.

    `n_results` counts stored metric values; `n_failed` counts distinct tests that
    failed or errored in the run.
    """

    id: int
    started_at: datetime
    finished_at: datetime | None
    platform: str
    git_commit: str | None
    git_branch: str | None
    run_type: str
    triggered_by: str
    outcome: str
    notes: str
    n_results: int
    n_failed: int
    # The kind of test (`perfguard record --type`); None for pytest sessions.
    test_type: str | None = None


@dataclass(frozen=True)
class RunDetail(RunSummary):
    """One run with everything stored about it, as returned by `History.get_run`."""

    host: str = ""
    python_version: str = ""
    args: list[str] = field(default_factory=list)
    system_info: dict[str, Any] = field(default_factory=dict)
    git_dirty: bool | None = None
    source_key: str | None = None
    measurements: list[Measurement] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One value of one metric in one run (`History.trend`)."""

    run_id: int
    started_at: datetime
    platform: str
    git_commit: str | None
    test: str
    metric: str
    value: float
    unit: str
    direction: str
    outcome: str


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """Recent values of one (test, metric) on one platform, newest first."""

    test: str
    metric: str
    unit: str
    direction: str
    kind: str
    marked: bool
    values: list[float]
    run_ids: list[int]
    # Per run, as `values`: the run's own samples (rounds), empty where it stored none.
    samples: list[tuple[float, ...]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One (test, metric) over the runs `History.summary` looked at.

    `values` are the passing values, oldest first; `n_failed` counts results of failed or
    errored tests (not in `values`). `change` is the newest value against the median of
    the ones before it (`compare.relative_difference`); `worse_change` signs it so that
    worse is positive for the metric's direction (`compare.relative_change`).
    """

    test: str
    metric: str
    unit: str
    direction: str
    kind: str
    values: list[float]
    run_ids: list[int]
    n_failed: int = 0

    @property
    def latest(self) -> float | None:
        return self.values[-1] if self.values else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def change(self) -> float | None:
        before = self._median_before()
        return None if before is None else relative_difference(self.values[-1], before)

    @property
    def worse_change(self) -> float | None:
        before = self._median_before()
        return None if before is None else relative_change(self.values[-1], before, self.direction)

    def _median_before(self) -> float | None:
        return statistics.median(self.values[:-1]) if len(self.values) >= 2 else None


@dataclass(frozen=True, slots=True)
class RunDiff:
    """One (test, metric) of `History.compare`: its value in run A and in run B.

    `change` is `(b - a) / |a|`; `worse_change` is the same signed so that worse is
    positive for the metric's direction (the sign the gate uses; both from `compare`).
    """

    test: str
    metric: str
    unit: str
    direction: str
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return relative_difference(self.b, self.a)

    @property
    def worse_change(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return relative_change(self.b, self.a, self.direction)


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """Size and span of a history database (`History.stats`)."""

    url: str  # password masked
    schema_revision: str | None
    n_runs: int
    n_results: int
    n_platforms: int
    n_tests: int
    first_run: datetime | None
    last_run: datetime | None
    db_size_bytes: int | None  # SQLite file (+ WAL); None for server databases


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """A platform seen in the history (`History.platforms`)."""

    key: str
    fingerprint: dict[str, Any]
    n_runs: int
    last_run: datetime | None


@dataclass(frozen=True, slots=True)
class BaselineSnapshotRecord:
    """One applied baselines update, as kept in `baseline_snapshots`."""

    id: int
    created_at: datetime
    platform: str
    git_commit: str | None
    who: str
    reason: str
    entries: dict[str, Any]
