"""The seed step timer's calls, on top of `track()`: change only the import line.

    from pytest_perfguard.performance_tracker import create_tracker, track_vision_analysis

    tracker = create_tracker()
    tracker.start_pipeline(fast_mode=False)
    with track_vision_analysis(tracker):
        ...
    tracker.end_pipeline(success=True, product_count=5)
    tracker.save_performance_report()
    tracker.print_summary()

`start_pipeline`'s and `end_pipeline`'s keyword arguments are the run's context: labels of
the tracked run, and top-level keys of the report as before. The report is written where
the seed wrote it, ``performance_tracking/performance_report_<session>.json``. New code
should use `pytest_perfguard.track` directly (docs/coming-from-step-timer.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .tracking import Step, TrackedRun, TrackUsageError

if TYPE_CHECKING:
    from .api import History

__all__ = [
    "PerformanceTracker",
    "create_tracker",
    "track_composite_creation",
    "track_image_generation",
    "track_product_search",
    "track_vision_analysis",
]

DEFAULT_REPORT_DIR = Path("performance_tracking")


class PerformanceTracker:
    """The seed's tracker: one pipeline run at a time, started and ended explicitly."""

    def __init__(
        self,
        name: str = "pipeline",
        *,
        history: History | str | os.PathLike[str] | None = None,
        report_dir: str | os.PathLike[str] = DEFAULT_REPORT_DIR,
        live: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.name = name
        self.history = history
        self.report_dir = Path(report_dir)
        self.live = live
        self.stream = stream
        self.run: TrackedRun | None = None

    def start_pipeline(self, **context: Any) -> TrackedRun:
        self.run = TrackedRun(
            self.name, history=self.history, labels=context, live=self.live, stream=self.stream
        )
        return self.run.start()

    def track_step(self, step_name: str, **additional_data: Any) -> Step:
        """A context manager timing one step (started with the pipeline if need be)."""
        if self.run is None:
            self.start_pipeline()
        return self._current().step(step_name, **additional_data)

    step = track_step

    def end_pipeline(self, success: bool = True, **context: Any) -> TrackedRun:
        return self._current().end(success=success, **context)

    def save_performance_report(self, path: str | os.PathLike[str] | None = None) -> Path:
        run = self._current()
        target = (
            Path(path)
            if path is not None
            else self.report_dir / (f"performance_report_{run.session_id}.json")
        )
        return run.report(target)

    def print_summary(self, file: TextIO | None = None) -> None:
        self._current().print_summary(file)

    def get_step_durations(self) -> dict[str, float]:
        """Seconds per step: the seed's ``step_durations`` of an API response."""
        return self._current().step_durations()

    def get_performance_data(self) -> dict[str, Any]:
        """The report as a dict (what `save_performance_report` writes)."""
        return self._current().to_dict()

    def _current(self) -> TrackedRun:
        if self.run is None:
            raise TrackUsageError("performance tracker: call start_pipeline() first")
        return self.run


def create_tracker(
    name: str = "pipeline",
    *,
    history: History | str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] = DEFAULT_REPORT_DIR,
    live: bool = True,
) -> PerformanceTracker:
    """A new tracker; `history` also saves each ended pipeline run there."""
    return PerformanceTracker(name, history=history, report_dir=report_dir, live=live)


def track_vision_analysis(tracker: PerformanceTracker, **additional_data: Any) -> Step:
    return tracker.track_step("Vision Analysis", **additional_data)


def track_product_search(tracker: PerformanceTracker, **additional_data: Any) -> Step:
    return tracker.track_step("Product Search", **additional_data)


def track_composite_creation(tracker: PerformanceTracker, **additional_data: Any) -> Step:
    return tracker.track_step("Composite Creation", **additional_data)


def track_image_generation(tracker: PerformanceTracker, **additional_data: Any) -> Step:
    return tracker.track_step("Image Generation", **additional_data)
