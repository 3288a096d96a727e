"""What a test yields: the marker's spec, the `perf` fixture object, and turning one test's
raw readings into :class:`~pytest_perfguard.results.Measurement` rows.

No pytest here: the plugin times the call phase and hands the raw numbers over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .results import (
    DIRECTIONS,
    STEP_PREFIX,
    Direction,
    Measurement,
    StepRecord,
    TestOutcome,
    is_finite_number,
)

Reading = tuple[str, float, str]
T = TypeVar("T")


class Collector(Protocol):
    """Something measured around each test's counted rounds (see ``hookspecs``)."""

    def start(self) -> None: ...

    def stop(self, rounds: int) -> Sequence[Reading]: ...


class PerfUsageError(ValueError):
    """A test used the marker or the `perf` fixture wrongly."""


@dataclass(frozen=True, slots=True)
class PerfSpec:
    """The arguments of ``@pytest.mark.perf``, validated."""

    metric: str = "duration"
    direction: Direction = "lower"
    threshold: float | None = None
    unit: str = "s"
    rounds: int = 1
    warmup: int = 0
    # No `rounds=` on the marker: the plugin may take extra calls within its time budget.
    auto_rounds: bool = False
    # `step_threshold=`: one threshold for every `perf.measure` step, or one per step name.
    step_threshold: float | dict[str, float] | None = None

    def step_threshold_of(self, step: str) -> float | None:
        """The marker's threshold for one step (its own in `compare.threshold_for`)."""
        own = self.step_threshold
        return own.get(step) if isinstance(own, dict) else own


MARKER_DEFAULTS = PerfSpec()
_MARKER_FIELDS = ("metric", "direction", "threshold", "unit", "rounds", "warmup", "step_threshold")


def check_direction(direction: object, where: str) -> Direction:
    if direction not in DIRECTIONS:
        raise PerfUsageError(
            f"{where}: direction={direction!r} is invalid; use 'lower' or 'higher'"
        )
    return direction


def check_threshold(threshold: object, where: str) -> float | None:
    if threshold is None:
        return None
    if not is_finite_number(threshold) or float(threshold) < 0:  # type: ignore[arg-type]
        raise PerfUsageError(
            f"{where}: threshold={threshold!r} is invalid; use a number >= 0 such as 0.1 for 10 %"
        )
    return float(threshold)  # type: ignore[arg-type]


def check_step_threshold(value: object, where: str) -> float | dict[str, float] | None:
    """`step_threshold=`: None, a number >= 0 for every step, or {step name: number >= 0}."""
    if value is None:
        return None
    if isinstance(value, dict) and value:
        checked: dict[str, float] = {}
        for step, threshold in value.items():
            if not isinstance(step, str) or not step.strip():
                break
            if not is_finite_number(threshold) or float(threshold) < 0:
                break
            checked[step] = float(threshold)
        else:
            return checked
    elif is_finite_number(value) and float(value) >= 0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise PerfUsageError(
        f"{where}: step_threshold={value!r} is invalid; use a number >= 0 for every step"
        " or a dict of step name -> number >= 0, such as {'embed': 0.3}"
    )


def parse_marker(args: Sequence[Any], kwargs: dict[str, Any]) -> PerfSpec:
    """Validate ``@pytest.mark.perf(...)``; raises PerfUsageError naming the bad argument."""
    where = "@pytest.mark.perf"
    if len(args) > 1:
        raise PerfUsageError(f"{where}: takes at most one positional argument (the metric name)")
    values = dict(kwargs)
    if args:
        if "metric" in values:
            raise PerfUsageError(f"{where}: metric given twice")
        values["metric"] = args[0]
    unknown = sorted(set(values) - set(_MARKER_FIELDS))
    if unknown:
        raise PerfUsageError(
            f"{where}: unknown argument {unknown[0]!r}; expected one of {', '.join(_MARKER_FIELDS)}"
        )
    metric = values.get("metric", MARKER_DEFAULTS.metric)
    if not isinstance(metric, str) or not metric.strip():
        raise PerfUsageError(f"{where}: metric={metric!r} must be a non-empty string")
    unit = values.get("unit", MARKER_DEFAULTS.unit)
    if not isinstance(unit, str):
        raise PerfUsageError(f"{where}: unit={unit!r} must be a string")
    rounds = values.get("rounds", 1)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PerfUsageError(f"{where}: rounds={rounds!r} must be a whole number >= 1")
    warmup = values.get("warmup", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise PerfUsageError(f"{where}: warmup={warmup!r} must be a whole number >= 0")
    return PerfSpec(
        metric=metric,
        direction=check_direction(values.get("direction", "lower"), where),
        threshold=check_threshold(values.get("threshold"), where),
        unit=unit,
        rounds=rounds,
        warmup=warmup,
        auto_rounds="rounds" not in values,
        step_threshold=check_step_threshold(values.get("step_threshold"), where),
    )


def estimate(values: Sequence[float], estimator: str, direction: Direction = "lower") -> float:
    """One number from a metric's samples.

    `min` is the best sample (the largest for `direction="higher"`), `qNN` the NN-th
    percentile counted from the best end (linear interpolation), `median` and `mean` as named.
    Estimator names are validated by `config.parse_estimator`.
    """
    if len(values) == 1:
        return values[0]
    if estimator == "median":
        import statistics  # lazy: it loads fractions and decimal into every session

        return statistics.median(values)
    if estimator == "mean":
        return math.fsum(values) / len(values)
    ordered = sorted(values, reverse=direction == "higher")
    if estimator == "min":
        return ordered[0]
    position = (len(ordered) - 1) * int(estimator[1:]) / 100
    low = math.floor(position)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (position - low) * (ordered[low + 1] - ordered[low])


@dataclass(frozen=True, slots=True)
class BenchmarkBudget:
    """How `perf.benchmark` calibrates: each sample long enough to time reliably, total capped."""

    min_sample_time: float = 0.0005
    max_time: float = 0.25
    min_rounds: int = 5
    max_rounds: int = 200
    warmup_time: float = 0.01


@dataclass(slots=True)
class _Record:
    values: list[float]
    unit: str
    direction: Direction
    threshold: float | None


# A recorder's state for `PerfRecorder.rollback`: each record's count of values, the count
# of step records, the step errors.
RecorderCheckpoint = tuple[dict[str, int], int, dict[str, str]]


class PerfRecorder:
    """The `perf` fixture: custom metrics, timed steps and micro-benchmarks inside a test."""

    def __init__(self, active: bool = True, budget: BenchmarkBudget | None = None) -> None:
        self.active = active
        self.budget = budget or BenchmarkBudget()
        self.records: dict[str, _Record] = {}
        self.steps: dict[str, list[float]] = {}
        self.step_errors: dict[str, str] = {}
        # Every `perf.measure` block in order (all rounds): start, end, error and data.
        self.step_records: list[StepRecord] = []
        self.benchmark_samples: list[float] = []
        self.round = 0

    def checkpoint(self) -> RecorderCheckpoint:
        """What has been recorded so far, for `rollback`."""
        counts = {name: len(record.values) for name, record in self.records.items()}
        return counts, len(self.step_records), dict(self.step_errors)

    def rollback(self, checkpoint: RecorderCheckpoint) -> None:
        """Forget what the current round recorded since `checkpoint` (a round that raised
        and does not count)."""
        counts, steps, errors = checkpoint
        for name in list(self.records):
            if name in counts:
                del self.records[name].values[counts[name] :]
            else:
                del self.records[name]
        for name in list(self.steps):
            del self.steps[name][self.round :]
            if not self.steps[name]:
                del self.steps[name]
        del self.step_records[steps:]
        self.step_errors = errors

    def reset(self) -> None:
        """Forget what warmup rounds recorded."""
        self.records.clear()
        self.steps.clear()
        self.step_errors.clear()
        self.step_records.clear()
        self.benchmark_samples.clear()
        self.round = 0

    def record(
        self,
        name: str,
        value: float,
        unit: str = "",
        direction: str = "lower",
        threshold: float | None = None,
    ) -> None:
        """Record a custom metric (tokens/s, MRR, hit rate); several calls keep every value."""
        where = f"perf.record({name!r})"
        if not isinstance(name, str) or not name.strip():
            raise PerfUsageError(f"perf.record: name={name!r} must be a non-empty string")
        if name.startswith(STEP_PREFIX):
            raise PerfUsageError(f"{where}: names starting with {STEP_PREFIX!r} are reserved")
        if not is_finite_number(value):
            raise PerfUsageError(f"{where}: value={value!r} must be a finite number")
        checked_direction = check_direction(direction, where)
        checked_threshold = check_threshold(threshold, where)
        existing = self.records.get(name)
        if existing is None:
            self.records[name] = _Record([float(value)], unit, checked_direction, checked_threshold)
        else:
            existing.values.append(float(value))

    @contextmanager
    def measure(self, name: str, **data: Any) -> Iterator[StepRecord]:
        """Time a step of the test; stored as metric ``step:<name>``. Yields the step's
        record (`StepRecord`, as `track()`'s steps): keyword arguments start its `data`."""
        if not isinstance(name, str) or not name.strip():
            raise PerfUsageError(f"perf.measure: name={name!r} must be a non-empty string")
        step = StepRecord(name, data)
        self.step_records.append(step)
        step.start = start = time.perf_counter()
        try:
            yield step
        except BaseException as exc:
            step.fail(type(exc), exc)
            self.step_errors[name] = step.error  # type: ignore[assignment]
            raise
        finally:
            step.end = end = time.perf_counter()
            elapsed = end - start
            per_round = self.steps.setdefault(name, [])
            while len(per_round) <= self.round:
                per_round.append(0.0)
            per_round[self.round] += elapsed

    def benchmark(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` repeatedly (warmup, then calibrated rounds); return its result."""
        if not callable(fn):
            raise PerfUsageError(f"perf.benchmark: {fn!r} is not callable")
        if not self.active:
            return fn(*args, **kwargs)
        budget = self.budget
        clock = time.perf_counter
        result = fn(*args, **kwargs)
        warm_start = clock()
        calls = 1
        while clock() - warm_start < budget.warmup_time:
            result = fn(*args, **kwargs)
            calls += 1
        per_call = max((clock() - warm_start) / calls, 1e-9)
        loops = max(1, math.ceil(budget.min_sample_time / per_call))
        rounds = int(budget.max_time / (per_call * loops))
        rounds = min(budget.max_rounds, max(budget.min_rounds, rounds))
        samples = self.benchmark_samples
        for _ in range(rounds):
            start = clock()
            for _ in range(loops):
                result = fn(*args, **kwargs)
            samples.append((clock() - start) / loops)
        return result


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A metric flagged as a regression after the main loop, and how often its test was
    re-run to check it (`--perf-confirm`)."""

    first_change: float
    reruns: int


@dataclass(slots=True)
class TestRun:
    """One test's raw readings from the call phase, turned into rows at the end."""

    nodeid: str
    outcome: TestOutcome
    durations: list[float]
    readings: Sequence[Reading]
    spec: PerfSpec | None = None
    recorder: PerfRecorder | None = None

    def pool(self, later: TestRun) -> None:
        """Add a later run's samples of the same test (a confirm re-run) to this one's.

        System readings (CPU time, memory) stay those of the first run."""
        self.durations.extend(later.durations)
        if later.recorder is None:
            return
        if self.recorder is None:
            self.recorder = later.recorder
            return
        mine, theirs = self.recorder, later.recorder
        for name, record in theirs.records.items():
            existing = mine.records.get(name)
            if existing is None:
                mine.records[name] = record
            else:
                existing.values.extend(record.values)
        for name, per_round in theirs.steps.items():
            mine.steps.setdefault(name, []).extend(per_round)
        mine.step_errors.update(theirs.step_errors)
        mine.step_records.extend(theirs.step_records)
        mine.benchmark_samples.extend(theirs.benchmark_samples)

    def measurements(self, estimator: str = "median") -> list[Measurement]:
        """This test's rows; `estimator` (`--perf-estimator`) turns samples into values."""
        spec = self.spec or MARKER_DEFAULTS
        marked = self.spec is not None
        recorder = self.recorder
        nodeid, outcome = self.nodeid, self.outcome
        durations = self.durations
        # One call (every unmarked test) skips the estimator: this runs once per test.
        duration = durations[0] if len(durations) == 1 else estimate(durations, estimator, "lower")
        rows: list[Measurement] = []
        primary_record = recorder.records.get(spec.metric) if recorder else None
        if primary_record is not None:
            unit = spec.unit if marked else primary_record.unit
            direction = spec.direction if marked else primary_record.direction
            primary_value = estimate(primary_record.values, estimator, direction)
            primary_samples = tuple(primary_record.values) if len(primary_record.values) > 1 else ()
            threshold = spec.threshold if spec.threshold is not None else primary_record.threshold
        elif recorder is not None and recorder.benchmark_samples:
            primary_value = estimate(recorder.benchmark_samples, estimator, spec.direction)
            primary_samples = tuple(recorder.benchmark_samples)
            unit, direction, threshold = spec.unit, spec.direction, spec.threshold
        else:
            primary_value = duration
            primary_samples = tuple(durations) if len(durations) > 1 else ()
            unit, direction, threshold = spec.unit, spec.direction, spec.threshold
        rows.append(
            Measurement(
                nodeid,
                spec.metric,
                primary_value,
                unit,
                direction,
                "primary",
                marked,
                outcome,
                threshold,
                primary_samples,
            )
        )
        if spec.metric != "duration":
            rows.append(
                Measurement(
                    nodeid,
                    "duration",
                    duration,
                    "s",
                    "lower",
                    "system",
                    marked,
                    outcome,
                    None,
                    tuple(durations) if len(durations) > 1 else (),
                )
            )
        for metric, value, unit in self.readings:
            rows.append(
                Measurement(nodeid, metric, value, unit, "lower", "system", marked, outcome)
            )
        if recorder is not None:
            for name, record in recorder.records.items():
                if name == spec.metric:
                    continue
                samples = tuple(record.values) if len(record.values) > 1 else ()
                rows.append(
                    Measurement(
                        nodeid,
                        name,
                        estimate(record.values, estimator, record.direction),
                        record.unit,
                        record.direction,
                        "custom",
                        marked,
                        outcome,
                        record.threshold,
                        samples,
                    )
                )
            for name, per_round in recorder.steps.items():
                samples = tuple(per_round) if len(per_round) > 1 else ()
                rows.append(
                    Measurement(
                        nodeid,
                        STEP_PREFIX + name,
                        estimate(per_round, estimator, "lower"),
                        "s",
                        "lower",
                        "step",
                        marked,
                        outcome,
                        spec.step_threshold_of(name),
                        samples,
                        recorder.step_errors.get(name),
                    )
                )
        return rows


# A test without marker, fixture or rounds: (outcome, duration, collector readings). Most
# tests of a suite are this; a tuple of them costs far less per test than a TestRun.
PlainRun = tuple[TestOutcome, float, Sequence[Reading]]
MeasuredRun = TestRun | PlainRun


def as_test_run(nodeid: str, run: MeasuredRun) -> TestRun:
    if isinstance(run, TestRun):
        return run
    outcome, duration, readings = run
    return TestRun(nodeid, outcome, [duration], readings)


def run_outcome(run: MeasuredRun) -> TestOutcome:
    return run.outcome if isinstance(run, TestRun) else run[0]


def measurements_of(runs: dict[str, MeasuredRun], estimator: str) -> list[Measurement]:
    """Every run's rows in run order, values by `estimator` (see `TestRun.measurements`)."""
    rows: list[Measurement] = []
    append = rows.append
    for nodeid, run in runs.items():
        if type(run) is tuple:
            outcome, duration, readings = run
            append(
                Measurement(nodeid, "duration", duration, "s", "lower", "primary", False, outcome)
            )
            for metric, value, unit in readings:
                append(Measurement(nodeid, metric, value, unit, "lower", "system", False, outcome))
        else:
            rows.extend(run.measurements(estimator))  # type: ignore[union-attr]
    return rows
