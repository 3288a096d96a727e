"""`track()`: time the steps of a pipeline in application code, outside pytest.

    from pytest_perfguard import track

    with track("design pipeline", history="history.db", labels={"model": "openai"}) as run:
        with run.step("vision analysis", style="modern") as step:
            step.data["tokens"] = 812
        with run.step("product search"):
            ...
    run.report("report.json")
    run.print_summary()

Each step keeps its start, end, duration, success, error and additional data (`step.data`).
A step that raises records the error and re-raises; the run is still ended and saved. With a
`history`, the run is stored like a test run: one result per step (`step:<name>`, kind
"step"), the run's total as `duration`, all under the run's name as the test id; the labels
are the run's labels (the ones it started with are its label set, like `--perf-label`), and
the full step records go into the run's `system_info["track"]`.

Live lines (a step starting and ending) go to stderr while the run goes; `live=False`
silences them. Colour only on a terminal and never when ``NO_COLOR`` is set.

A step costs two `perf_counter` calls, one small object and a list append (see
benchmarks/bench_track.py); epoch times are derived from one anchor taken when the run
starts, not read per step.

(Named `tracking`, not `track`: a submodule named like the function would replace
`pytest_perfguard.track` with the module as soon as it is imported.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from .results import (
    STEP_PREFIX,
    LabelError,
    Measurement,
    RunInfo,
    StepRecord,
    check_labels,
)
from .results import jsonable as _jsonable

if TYPE_CHECKING:
    from .api import History

__all__ = ["Step", "TrackUsageError", "TrackedRun", "track"]

# Report keys of the seed's step timer; a label of the same name stays under "labels" only.
_REPORT_KEYS = frozenset(
    {"session_id", "name", "total_duration", "success", "timestamp", "steps", "labels", "run_id"}
)


class TrackUsageError(RuntimeError):
    """A tracker used out of order (a step before the run started or after it ended)."""


class Step(StepRecord):
    """One timed step: a context manager handed out by `TrackedRun.step`; the fields are
    `StepRecord`'s (shared with `perf.measure` inside pytest).

    `start`/`end` are `perf_counter` readings; `start_time`/`end_time` are epoch seconds.
    """

    __slots__ = ("_run",)

    def __init__(self, run: TrackedRun, name: str, data: dict[str, Any]) -> None:
        # The record's fields set here rather than through StepRecord.__init__: one call
        # less per step (the tracker's per-step cost is measured).
        self._run = run
        self.name = name
        self.data = data
        self.start = 0.0
        self.end = None
        self.success = True
        self.error = None

    def __enter__(self) -> Step:
        run = self._run
        if run.live:
            run._say("start", self)
        run.steps.append(self)
        self.start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end = time.perf_counter()
        if exc_type is not None:
            self.fail(exc_type, exc)
        if self._run.live:
            self._run._say("end", self)

    @property
    def start_time(self) -> float:
        return self._run._epoch(self.start)

    @property
    def end_time(self) -> float | None:
        return None if self.end is None else self._run._epoch(self.end)

    def to_dict(self, wall0: float | None = None, origin: float | None = None) -> dict[str, Any]:
        """The seed's step record (see `StepRecord.to_dict`), epoch times from the run's
        anchor."""
        run = self._run
        return StepRecord.to_dict(
            self, run._wall0 if wall0 is None else wall0, run._start if origin is None else origin
        )


class TrackedRun:
    """A run of a pipeline: its steps, labels (the run's context), outcome and total.

    Made by `track()`; use it as a context manager, or call `start()` and `end()`.
    """

    def __init__(
        self,
        name: str,
        *,
        history: History | str | os.PathLike[str] | None = None,
        labels: Mapping[str, Any] | None = None,
        live: bool = True,
        stream: TextIO | None = None,
        platform: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise TrackUsageError(f"track: name={name!r} must be a non-empty string")
        self.name = name
        self.labels: dict[str, Any] = dict(labels or {})
        # The labels the run was started with are its label set (what its baselines are kept
        # apart by); labels added by `end(**labels)` are stored but do not split runs.
        self.label_set: dict[str, Any] = dict(self.labels)
        self.live = live
        self.history = history
        self.platform = platform
        self._stream = stream
        self.steps: list[Step] = []
        self.success: bool | None = None
        self.started_at: datetime | None = None
        self.session_id = ""
        self.run_id: int | None = None  # the history's run id once saved
        self._start = 0.0
        self._end: float | None = None
        self._wall0 = 0.0
        self._color = False

    # -- running ---------------------------------------------------------------------------

    def start(self) -> TrackedRun:
        if self.started_at is not None:
            raise TrackUsageError(f"track {self.name!r}: already started")
        self.started_at = datetime.now(timezone.utc)
        self.session_id = self.started_at.astimezone().strftime("%Y%m%d_%H%M%S")
        self._color = self.live and _wants_color(self.stream)
        self._wall0 = time.time()
        self._start = time.perf_counter()
        if self.live:
            context = "".join(f", {k}={v}" for k, v in self.labels.items())
            self._line(f"perfguard: tracking {self.name!r} (session {self.session_id}{context})")
        return self

    def step(self, name: str, **data: Any) -> Step:
        """A context manager timing one step; keyword arguments start its `data`."""
        if self.started_at is None or self._end is not None:
            state = "has not started" if self.started_at is None else "has ended"
            raise TrackUsageError(f"track {self.name!r}: step {name!r} but the run {state}")
        return Step(self, name, data)

    def end(self, success: bool | None = None, **labels: Any) -> TrackedRun:
        """End the run (its total stops here) and save it to the history, if one was given.

        `success` None means: every step succeeded. Keyword arguments are added to the labels
        (the seed's `end_pipeline(success=True, product_count=5)`).
        """
        if self.started_at is None:
            raise TrackUsageError(f"track {self.name!r}: end() before start()")
        if self._end is not None:
            raise TrackUsageError(f"track {self.name!r}: already ended")
        self._end = time.perf_counter()
        self.labels.update(labels)
        self.success = all(s.success for s in self.steps) if success is None else bool(success)
        if self.live:
            self._say("done", None)
        if self.history is not None:
            self.run_id = self._save()
        return self

    def __enter__(self) -> TrackedRun:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._end is not None:
            return
        if exc_type is None:
            self.end()
            return
        try:
            self.end(success=False)
        except Exception as save_error:
            # The application's own exception is the one to see; the lost save is said.
            self._line(f"perfguard: track {self.name!r} was not saved: {save_error}")

    # -- results ---------------------------------------------------------------------------

    @property
    def total_duration(self) -> float | None:
        """Seconds from start to end (to now while running); None before the start."""
        if self.started_at is None:
            return None
        return (time.perf_counter() if self._end is None else self._end) - self._start

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def step_durations(self) -> dict[str, float]:
        """Seconds per step name (a repeated step's times added up), in order of first start."""
        totals: dict[str, float] = {}
        for step in self.steps:
            totals[step.name] = totals.get(step.name, 0.0) + (step.duration or 0.0)
        return totals

    def slowest_step(self) -> Step | None:
        done = [s for s in self.steps if s.end is not None]
        return max(done, key=lambda s: s.end - s.start if s.end is not None else 0.0, default=None)

    def failed_steps(self) -> list[Step]:
        return [s for s in self.steps if not s.success]

    def to_dict(self) -> dict[str, Any]:
        """The report: the seed step timer's structure (session_id, total_duration, the run's
        context at the top level, success, timestamp, steps) plus name, labels and run_id."""
        total = self.total_duration
        report: dict[str, Any] = {
            "session_id": self.session_id,
            "name": self.name,
            "total_duration": None if total is None else round(total, 6),
        }
        labels = _jsonable(self.labels)
        report.update((k, v) for k, v in labels.items() if k not in _REPORT_KEYS)
        report.update(
            {
                "success": self.success,
                "timestamp": self.started_at.astimezone().isoformat() if self.started_at else None,
                "labels": labels,
                "run_id": self.run_id,
                "steps": [step.to_dict() for step in self.steps],
            }
        )
        return report

    def report(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON report (see `to_dict`), atomically; returns its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, target)
        return target

    def summary_lines(self) -> list[str]:
        """The summary as plain lines: total, outcome, step breakdown with shares of the
        total, the slowest step and the failed ones."""
        from .formatting import format_percent, format_value, text_table

        total = self.total_duration or 0.0
        outcome = {True: "passed", False: "failed", None: "running"}[self.success]
        lines = [f"perfguard: {self.name} - {format_value(total, 's')}, {outcome}"]
        if self.session_id:
            lines[0] += f" (session {self.session_id})"
        if self.labels:
            lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in self.labels.items()))
        if not self.steps:
            lines.append("no steps")
            return lines
        rows = []
        for step in self.steps:
            duration = step.duration
            share = None if duration is None or total <= 0 else duration / total
            mark = "ok" if step.success else "FAILED"
            rows.append([step.name, format_value(duration, "s"), format_percent(share), mark])
        lines.extend(text_table(["step", "time", "share", "status"], rows))
        slowest = self.slowest_step()
        if slowest is not None and slowest.duration is not None:
            share_text = format_percent(slowest.duration / total) if total > 0 else "—"
            lines.append(f"slowest step: {slowest.name} ({share_text} of total)")
        for step in self.failed_steps():
            lines.append(f"failed step: {step.name}: {step.error}")
        return lines

    def print_summary(self, file: TextIO | None = None) -> None:
        """Print the summary (see `summary_lines`) to stderr, or `file`."""
        out = file if file is not None else self.stream
        color = _wants_color(out)
        for line in self.summary_lines():
            if color and (line.endswith("FAILED") or line.startswith("failed step")):
                line = _RED + line + _RESET
            out.write(line + "\n")
        out.flush()

    def measurements(self) -> list[Measurement]:
        """What the history stores: the total (`duration`) and one `step:<name>` per step."""
        outcome: Any = "passed" if self.success else "failed"
        rows = [
            Measurement(
                test=self.name,
                metric="duration",
                value=float(self.total_duration or 0.0),
                unit="s",
                kind="primary",
                marked=True,
                outcome=outcome,
            )
        ]
        errors: dict[str, str] = {}
        for step in self.steps:
            if step.error is not None:
                errors[step.name] = step.error
        for name, seconds in self.step_durations().items():
            rows.append(
                Measurement(
                    test=self.name,
                    metric=STEP_PREFIX + name,
                    value=seconds,
                    unit="s",
                    kind="step",
                    marked=True,
                    outcome="failed" if name in errors else "passed",
                    error=errors.get(name),
                )
            )
        return rows

    def __repr__(self) -> str:
        return f"TrackedRun({self.name!r}, steps={len(self.steps)}, success={self.success})"

    # -- internals -------------------------------------------------------------------------

    def _epoch(self, counter: float) -> float:
        return self._wall0 + (counter - self._start)

    def _save(self) -> int:
        from .api import History
        from .config import running_in_ci
        from .platform import detect_platform, labelled_platform, python_version
        from .runinfo import _user, git_state, triggered_by

        env = os.environ
        run_type: Any = "ci" if running_in_ci(env) else "manual"
        git = git_state(Path.cwd(), env)
        assert self.started_at is not None
        info = RunInfo(
            started_at=self.started_at,
            finished_at=datetime.now(timezone.utc),
            platform=labelled_platform(
                detect_platform(self.platform or _platform_from_env(env)),
                _storable(self.label_set),
            ),
            git_commit=git.commit,
            git_branch=git.branch,
            git_dirty=git.dirty,
            python_version=python_version(),
            run_type=run_type,
            triggered_by=triggered_by(run_type, env),
            host=_host(),
            args=[],
            outcome="passed" if self.success else "failed",
            notes=f"track: {self.name}",
            system_info={"user": _user(), "track": self.to_dict()},
            labels=_storable(self.labels),
        )
        if isinstance(self.history, History):
            return self.history.save_session(info, self.measurements())
        with History(self.history) as history:
            return history.save_session(info, self.measurements())

    def _say(self, event: str, step: Step | None) -> None:
        # Imported here: application code pays for formatting only when it prints.
        from .formatting import format_value

        if step is None:
            total = format_value(self.total_duration, "s")
            failed = len(self.failed_steps())
            tail = f", {failed} failed step{'s' * (failed != 1)}" if failed else ""
            outcome = "passed" if self.success else "failed"
            self._line(f"perfguard: {self.name!r} {outcome} in {total}{tail}", bad=not self.success)
        elif event == "start":
            self._line(f"  > {step.name}")
        elif step.success:
            self._line(f"  ok {step.name} ({format_value(step.duration, 's')})", good=True)
        else:
            took = format_value(step.duration, "s")
            self._line(f"  FAILED {step.name} ({took}): {step.error}", bad=True)

    def _line(self, text: str, *, good: bool = False, bad: bool = False) -> None:
        if self._color and (good or bad):
            text = (_GREEN if good else _RED) + text + _RESET
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stderr must not break the application


def track(
    name: str,
    *,
    history: History | str | os.PathLike[str] | None = None,
    labels: Mapping[str, Any] | None = None,
    live: bool = True,
    stream: TextIO | None = None,
    platform: str | None = None,
) -> TrackedRun:
    """Time a pipeline's steps: ``with track("name", history=...) as run:``.

    `history`: a `History`, or a database URL or path, where the run is saved when it ends
    (None: not saved; the report and summary still work). `labels`: the run's context
    (model, dataset, ...), stored with the run. `live`: print a line to stderr (or `stream`)
    as each step starts and ends. `platform`: the platform key to store the run under
    (detected when None).
    """
    return TrackedRun(
        name, history=history, labels=labels, live=live, stream=stream, platform=platform
    )


_GREEN = "\x1b[32m"
_RED = "\x1b[31m"
_RESET = "\x1b[0m"


def _wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set to anything (no-color.org)."""
    if os.environ.get("NO_COLOR", ""):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _storable(labels: Mapping[str, Any]) -> dict[str, str]:
    """The labels that can be stored as labels (text without ',', '[' or ']', short
    enough); the others stay in the report only."""
    kept: dict[str, str] = {}
    for key, value in labels.items():
        try:
            kept.update(check_labels({str(key): value}, "track"))
        except LabelError:
            continue
    return kept


def _platform_from_env(env: Mapping[str, str]) -> str | None:
    # The plugin's --perf-platform as environment variables (and the seed's alias).
    return env.get("PERFGUARD_PLATFORM") or env.get("PERFORMANCE_PLATFORM") or None


def _host() -> str:
    import socket

    return socket.gethostname()
