"""Experiments and their trials, as `History` hands them out: plain records, the `Experiment`
handle, and the pure arithmetic over trials (best, improvement, comparison, filters).

    with History() as history:
        exp = history.experiment("chunk-size sweep", template="rag", mode="grid",
                                 config={"sizes": [256, 512]})
        exp.log_trial(params={"chunk": 256}, metrics={"mrr": 0.61},
                      validation={"passed": True, "violations": 0, "metrics": {"recall": 0.9}})
        exp.best("mrr"); exp.improvement("mrr"); exp.summary = {"winner": 256}
        history.compare_experiments([exp.id, "other sweep"], metric="mrr")

Trials' metrics are numbers (what `best`, `improvement` and `compare_experiments` rank);
anything else a trial should keep goes in its params or `extra`. No SQLAlchemy here: the SQL
is in `history/experiment_store.py`.
"""

from __future__ import annotations

import math
import operator
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .history.errors import HistoryError
from .results import DIRECTIONS, Measurement, is_finite_number

__all__ = [
    "FILTER_FIELDS",
    "Experiment",
    "ExperimentComparison",
    "ExperimentRecord",
    "ExperimentStore",
    "Improvement",
    "Trial",
    "Validation",
    "experiment_filter",
    "trial_metrics",
]


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of a trial's validation step: passed, number of violations, its metrics."""

    passed: bool
    violations: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "violations": self.violations, "metrics": self.metrics}


@dataclass(frozen=True, slots=True)
class Trial:
    """One trial: its number in the experiment, params, metrics and validation."""

    id: int
    experiment_id: int
    trial_number: int
    params: dict[str, Any]
    metrics: dict[str, float]
    validation: Validation | None
    created_at: datetime
    run_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_number": self.trial_number,
            "params": self.params,
            "metrics": self.metrics,
            "validation": None if self.validation is None else self.validation.to_dict(),
            "extra": self.extra,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """An experiment as stored, with counts over its trials.

    `failure_rate`: the share of validated trials whose validation failed (None when no
    trial was validated); `violation_rate` is the seed tracker's name for it.
    """

    id: int
    name: str
    template: str
    mode: str
    config: dict[str, Any]
    summary: dict[str, Any] | None
    created_at: datetime
    n_trials: int = 0
    n_validated: int = 0
    n_failed: int = 0
    violations: int = 0
    last_trial_at: datetime | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.n_failed / self.n_validated if self.n_validated else None

    @property
    def violation_rate(self) -> float | None:
        return self.failure_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "template": self.template,
            "mode": self.mode,
            "config": self.config,
            "summary": self.summary,
            "created_at": self.created_at.isoformat(),
            "n_trials": self.n_trials,
            "n_validated": self.n_validated,
            "n_failed": self.n_failed,
            "failure_rate": self.failure_rate,
            "violations": self.violations,
            "last_trial_at": None if self.last_trial_at is None else self.last_trial_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Improvement:
    """A metric over an experiment's trials in order: first, best and last values, the
    running best after each trial, and `change`, best against first, relative and signed so
    that better is positive."""

    metric: str
    direction: str
    first: float | None
    best: float | None
    last: float | None
    best_trial: int | None
    change: float | None
    running_best: list[tuple[int, float, float]]  # (trial number, value, best so far)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "direction": self.direction,
            "first": self.first,
            "best": self.best,
            "last": self.last,
            "best_trial": self.best_trial,
            "change": self.change,
            "running_best": [list(point) for point in self.running_best],
        }


@dataclass(frozen=True, slots=True)
class ExperimentComparison:
    """One experiment's side of `History.compare_experiments`: one metric over its trials."""

    experiment_id: int
    name: str
    template: str
    mode: str
    metric: str
    direction: str
    n_trials: int
    n_values: int  # trials that have the metric
    best: float | None
    best_trial: int | None
    median: float | None
    mean: float | None
    first: float | None
    last: float | None
    failure_rate: float | None

    @property
    def improvement(self) -> float | None:
        """Best against first, relative, better positive."""
        return _relative_gain(self.first, self.best, self.direction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "template": self.template,
            "mode": self.mode,
            "metric": self.metric,
            "direction": self.direction,
            "n_trials": self.n_trials,
            "n_values": self.n_values,
            "best": self.best,
            "best_trial": self.best_trial,
            "median": self.median,
            "mean": self.mean,
            "first": self.first,
            "last": self.last,
            "improvement": self.improvement,
            "failure_rate": self.failure_rate,
        }


class ExperimentStore(Protocol):
    """What an `Experiment` asks of the history it came from (`History` is one)."""

    def log_trial(
        self,
        experiment: Any,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        validation: Any = None,
        trial_number: int | None = None,
        run_id: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Trial: ...

    def trials(self, experiment: Any) -> list[Trial]: ...

    def set_experiment_summary(
        self, experiment: Any, summary: Mapping[str, Any] | None
    ) -> ExperimentRecord: ...

    def get_experiment(self, ref: Any) -> Experiment: ...

    def experiments_dataframe(self, experiments: Sequence[Any] | None = None) -> Any: ...


class Experiment:
    """A stored experiment: log trials to it, read them back, rank them.

    Got from `History.experiment(...)` or `History.get_experiment(...)`; every call goes to
    the database, so several processes can log trials to one experiment.
    """

    def __init__(self, history: ExperimentStore, record: ExperimentRecord) -> None:
        self.history = history
        self.record = record

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def template(self) -> str:
        return self.record.template

    @property
    def mode(self) -> str:
        return self.record.mode

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def created_at(self) -> datetime:
        return self.record.created_at

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.record.summary

    @summary.setter
    def summary(self, value: Mapping[str, Any] | None) -> None:
        self.record = self.history.set_experiment_summary(self.id, value)

    def log_trial(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        validation: Validation | Mapping[str, Any] | None = None,
        *,
        trial_number: int | None = None,
        run_id: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Trial:
        """Store a trial; `trial_number` None takes the next number in the experiment."""
        return self.history.log_trial(
            self.id,
            params=params,
            metrics=metrics,
            validation=validation,
            trial_number=trial_number,
            run_id=run_id,
            extra=extra,
        )

    def trials(self) -> list[Trial]:
        """Every trial, by trial number."""
        return self.history.trials(self.id)

    def best(
        self, metric: str, direction: str = "higher", *, passed_only: bool = False
    ) -> Trial | None:
        """The trial with the best value of `metric` (the first of equals); None if no trial
        has it. `passed_only` leaves out trials whose validation failed."""
        return best_trial(self.trials(), metric, direction, passed_only=passed_only)

    def improvement(self, metric: str, direction: str = "higher") -> Improvement:
        """How `metric` improved over the trials, in trial order."""
        return improvement(self.trials(), metric, direction)

    def refresh(self) -> Experiment:
        """Read the record (summary, counts) again."""
        self.record = self.history.get_experiment(self.id).record
        return self

    def dataframe(self) -> Any:
        """This experiment's trials as a pandas DataFrame (see `History.experiments_dataframe`)."""
        return self.history.experiments_dataframe([self.id])

    def __repr__(self) -> str:
        return f"Experiment(id={self.id}, name={self.name!r}, trials={self.record.n_trials})"


# -- checks of what users hand in ---------------------------------------------------------


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise HistoryError(f"direction must be 'higher' or 'lower', not {direction!r}")
    return direction


def check_metrics(metrics: Mapping[str, Any] | None, where: str = "log_trial") -> dict[str, float]:
    """Metrics as {name: float}; a name with a quote or backslash, or a value that is not a
    finite number, is refused (they are read back by name inside the database's JSON)."""
    checked: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        if not isinstance(name, str) or not name or '"' in name or "\\" in name:
            raise HistoryError(f"{where}: metric name {name!r} must be a non-empty string "
                               "without quotes or backslashes")  # fmt: skip
        if not is_finite_number(value):
            raise HistoryError(f"{where}: metric {name!r} needs a finite number, not {value!r}")
        checked[name] = float(value)
    return checked


def check_validation(validation: Validation | Mapping[str, Any] | None) -> Validation | None:
    if validation is None or isinstance(validation, Validation):
        return validation
    if not isinstance(validation, Mapping):
        raise HistoryError(f"log_trial: validation must be a dict, not {validation!r}")
    unknown = sorted(set(validation) - {"passed", "violations", "metrics"})
    if unknown:
        raise HistoryError(f"log_trial: unknown validation keys {unknown} "
                           "(use passed, violations, metrics)")  # fmt: skip
    passed = validation.get("passed")
    if not isinstance(passed, bool):
        raise HistoryError(f"log_trial: validation 'passed' must be True or False, not {passed!r}")
    violations = validation.get("violations", 0)
    if isinstance(violations, bool) or not isinstance(violations, int) or violations < 0:
        raise HistoryError(
            f"log_trial: validation 'violations' must be a whole number >= 0, not {violations!r}"
        )
    metrics = validation.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise HistoryError(f"log_trial: validation 'metrics' must be a dict, not {metrics!r}")
    return Validation(passed, violations, dict(metrics))


# -- arithmetic over trials ---------------------------------------------------------------


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "higher" else a < b


def _relative_gain(first: float | None, best: float | None, direction: str) -> float | None:
    if first is None or best is None or first == 0:
        return None
    change = (best - first) / abs(first)
    return change if direction == "higher" else -change


def best_trial(
    trials: Iterable[Trial], metric: str, direction: str, *, passed_only: bool = False
) -> Trial | None:
    check_direction(direction)
    found: Trial | None = None
    for trial in trials:
        value = trial.metrics.get(metric)
        if value is None or (passed_only and trial.validation and not trial.validation.passed):
            continue
        if found is None or _better(value, found.metrics[metric], direction):
            found = trial
    return found


def improvement(trials: Iterable[Trial], metric: str, direction: str) -> Improvement:
    check_direction(direction)
    series = [(t.trial_number, t.metrics[metric]) for t in trials if metric in t.metrics]
    running: list[tuple[int, float, float]] = []
    best_value: float | None = None
    best_number: int | None = None
    for number, value in series:
        if best_value is None or _better(value, best_value, direction):
            best_value, best_number = value, number
        running.append((number, value, best_value))
    first = series[0][1] if series else None
    last = series[-1][1] if series else None
    return Improvement(
        metric, direction, first, best_value, last, best_number,
        _relative_gain(first, best_value, direction), running,
    )  # fmt: skip


def metric_comparison(
    record: ExperimentRecord,
    metric: str,
    direction: str,
    numbers: Sequence[int],
    values: Sequence[float | None],
) -> ExperimentComparison:
    """One experiment's side of `compare_experiments`, from its trials' numbers and values
    of `metric` (None where a trial lacks it), in trial order."""
    present = [(n, v) for n, v in zip(numbers, values, strict=True) if v is not None]
    found = [v for _, v in present]
    best = (max if direction == "higher" else min)(found, default=None)
    return ExperimentComparison(
        experiment_id=record.id,
        name=record.name,
        template=record.template,
        mode=record.mode,
        metric=metric,
        direction=direction,
        n_trials=len(numbers),
        n_values=len(found),
        best=best,
        # max/min return the first of equal values, so this is the first trial reaching it.
        best_trial=None if best is None else present[found.index(best)][0],
        median=statistics.median(found) if found else None,
        mean=math.fsum(found) / len(found) if found else None,
        first=found[0] if found else None,
        last=found[-1] if found else None,
        failure_rate=record.failure_rate,
    )


def trial_metrics(measurements: Iterable[Measurement]) -> dict[str, float]:
    """A pytest run's measurements as a trial's metrics: the own metrics (primary and
    `perf.record` ones) of the marked tests that passed, or of every passing test when none
    is marked. A metric is named by its name alone when one test has it, else
    `<test id>::<metric>`."""
    rows = [m for m in measurements if m.kind in ("primary", "custom") and m.outcome == "passed"]
    if any(m.marked for m in rows):
        rows = [m for m in rows if m.marked]
    tests_by_name: dict[str, set[str]] = {}
    for m in rows:
        tests_by_name.setdefault(m.metric, set()).add(m.test)
    return {
        m.metric if len(tests_by_name[m.metric]) == 1 else f"{m.test}::{m.metric}": m.value
        for m in rows
        if math.isfinite(m.value)
    }


# -- filters ------------------------------------------------------------------------------

# What `History.experiments(filter=...)` can test, by name.
FILTER_FIELDS: dict[str, Callable[[ExperimentRecord], float | None]] = {
    "trials": lambda r: r.n_trials,
    "validated": lambda r: r.n_validated,
    "failed": lambda r: r.n_failed,
    "failure_rate": lambda r: r.failure_rate,
    "violation_rate": lambda r: r.violation_rate,
    "violations": lambda r: r.violations,
}
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "=": operator.eq,
}  # fmt: skip
_CONDITION = re.compile(r"\s*([a-z_]+)\s*(<=|>=|==|!=|<|>|=)\s*([^\s]+)\s*")

ExperimentFilter = str | Sequence[str] | Callable[[ExperimentRecord], bool]


def experiment_filter(spec: ExperimentFilter | None) -> Callable[[ExperimentRecord], bool]:
    """A predicate from `spec`: a callable, or conditions like ``"failure_rate <= 0.2"``
    (several: all must hold; commas separate them in one string). An experiment without a
    value for a field (no validated trial for `failure_rate`) never matches a condition on it.
    """
    if spec is None:
        return lambda record: True
    if callable(spec):
        return spec
    texts = [spec] if isinstance(spec, str) else list(spec)
    conditions = []
    for text in texts:
        for part in text.split(","):
            if part.strip():
                conditions.append(_condition(part))

    def matches(record: ExperimentRecord) -> bool:
        for read, compare, bound in conditions:
            value = read(record)
            if value is None or not compare(value, bound):
                return False
        return True

    return matches


def _condition(
    text: str,
) -> tuple[Callable[[ExperimentRecord], float | None], Callable[[float, float], bool], float]:
    match = _CONDITION.fullmatch(text)
    fields = ", ".join(FILTER_FIELDS)
    if match is None:
        raise HistoryError(
            f"experiment filter {text.strip()!r} is not FIELD OP NUMBER "
            f"(e.g. 'failure_rate <= 0.2'; fields: {fields})"
        )
    name, op, number = match.groups()
    if name not in FILTER_FIELDS:
        raise HistoryError(f"experiment filter {text.strip()!r}: unknown field {name!r} "
                           f"(fields: {fields})")  # fmt: skip
    try:
        bound = float(number.rstrip("%")) / (100 if number.endswith("%") else 1)
    except ValueError:
        raise HistoryError(
            f"experiment filter {text.strip()!r}: {number!r} is not a number"
        ) from None
    return FILTER_FIELDS[name], _OPERATORS[op], bound
