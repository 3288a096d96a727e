"""The plain data every part of perfguard speaks: measurements, run info, verdicts.

Nothing here imports pytest, SQLAlchemy or pydantic, so measuring, storing, comparing
and reporting can all share these types without import cycles.
"""

from __future__ import annotations

import json
import math
import struct
from array import array
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

Direction = Literal["lower", "higher"]
DIRECTIONS: tuple[Direction, ...] = ("lower", "higher")

# What a metric is, which decides whether it can be gated:
# - "primary": the test's own metric (marker `metric=`, `duration` for unmarked tests);
# - "custom": recorded by the test body with `perf.record`;
# - "step": a `perf.measure("name")` block, stored as `step:<name>`;
# - "system": a collector's reading (cpu_time, rss_peak_mb, gpu_mem_peak_mb, ...).
MetricKind = Literal["primary", "custom", "step", "system"]
GATEABLE_KINDS: frozenset[str] = frozenset({"primary", "custom"})

TestOutcome = Literal["passed", "failed", "skipped", "error"]
RunOutcome = Literal["passed", "failed", "interrupted"]
RunType = Literal["manual", "ci", "nightly"]
RUN_TYPES: tuple[RunType, ...] = ("manual", "ci", "nightly")
GateScope = Literal["marked", "all", "none"]
GATE_SCOPES: tuple[GateScope, ...] = ("marked", "all", "none")

STEP_PREFIX = "step:"


# Not frozen: a frozen dataclass costs ~2.7 us to build (object.__setattr__ per field) against
# ~0.3 us here, and the plugin builds a few per test. Treat instances as read-only all the same.
@dataclass(slots=True)
class Measurement:
    """One metric of one test in one run: a row of the history's results table."""

    test: str
    metric: str
    value: float
    unit: str = ""
    direction: Direction = "lower"
    kind: MetricKind = "primary"
    marked: bool = False
    outcome: TestOutcome = "passed"
    threshold: float | None = None
    samples: tuple[float, ...] = ()
    error: str | None = None

    def is_gated(self, gate: GateScope) -> bool:
        """Whether this metric can fail the session under the given gate scope."""
        if gate == "none" or self.kind not in GATEABLE_KINDS:
            return False
        return self.marked or gate == "all"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "direction": self.direction,
            "kind": self.kind,
            "marked": self.marked,
            "outcome": self.outcome,
            "threshold": self.threshold,
            "samples": list(self.samples),
            "error": self.error,
        }

    def to_row(self) -> list[Any]:
        """The fields in order, for `from_row`: a compact form for workers' rows (JSON)."""
        return [
            self.test, self.metric, self.value, self.unit, self.direction, self.kind,
            self.marked, self.outcome, self.threshold, list(self.samples), self.error,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Measurement:
        test, metric, value, unit, direction, kind, marked, outcome, threshold, samples, error = row
        return cls(
            test, metric, value, unit, direction, kind, marked, outcome, threshold,
            tuple(samples), error,
        )  # fmt: skip


class PlainRuns:
    """Plain tests' runs (no marker, no `perf` fixture, no rounds) as columns.

    Most tests of a suite are plain, and each yields the same rows: `duration` (its primary
    metric) and the same collector readings. Kept as columns (ids, outcomes, durations, one
    list of values per reading) they cost a session end no object per row: the history
    stores them as they are (one `test_results` row each), and they become `Measurement`
    rows (:meth:`measurements`) only where something reads rows (gate `all`, reports,
    trials). xdist workers send them the same way (:meth:`to_wire`).
    """

    __slots__ = ("_distinct", "durations", "ids", "outcomes", "readings")

    def __init__(self, readings: Sequence[tuple[str, str]] = ()) -> None:
        self.ids: list[str] = []
        self.outcomes: list[TestOutcome] = []
        self.durations: list[float] = []
        # (metric, unit, one value per test), in the order the collectors read them.
        self.readings: list[tuple[str, str, list[float]]] = [(m, u, []) for m, u in readings]
        # The ids list last found distinct, and its length then.
        self._distinct: tuple[list[str], int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def has_distinct_ids(self) -> bool:
        """Whether no test appears twice (a rerun plugin runs one again). The session end
        asks, then the history's writer: a set of a suite's ids costs up to 0.6 k
        instructions a test (hashing new strings included), so the answer is kept until
        more runs are appended."""
        ids, count = self.ids, len(self.ids)
        checked = self._distinct
        if checked is None or checked[0] is not ids or checked[1] != count:
            if len(set(ids)) != count:
                return False
            self._distinct = (ids, count)
        return True

    def layout(self) -> list[tuple[str, str]]:
        return [(metric, unit) for metric, unit, _ in self.readings]

    def extend(self, other: PlainRuns) -> bool:
        """Append `other`'s runs; False (nothing appended) when its readings differ. Runs
        that hold no test yet take `other`'s readings."""
        if not self.ids:
            self.readings = [(metric, unit, []) for metric, unit, _ in other.readings]
        elif not other.ids:
            return True
        if other.layout() != self.layout():
            return False
        self.ids.extend(other.ids)
        self.outcomes.extend(other.outcomes)
        self.durations.extend(other.durations)
        for (_, _, values), (_, _, more) in zip(self.readings, other.readings, strict=True):
            values.extend(more)
        return True

    def measurements(self, tests: Collection[str] | None = None) -> list[Measurement]:
        """The runs as rows (of `tests` only, when given), in the order `TestRun` rows
        list a test's metrics: duration, then the readings."""
        rows: list[Measurement] = []
        append = rows.append
        readings = self.readings
        for index, (nodeid, outcome, duration) in enumerate(
            zip(self.ids, self.outcomes, self.durations, strict=True)
        ):
            if tests is not None and nodeid not in tests:
                continue
            append(
                Measurement(nodeid, "duration", duration, "s", "lower", "primary", False, outcome)
            )
            for metric, unit, values in readings:
                append(
                    Measurement(
                        nodeid, metric, values[index], unit, "lower", "system", False, outcome
                    )
                )
        return rows

    def to_wire(self) -> dict[str, Any]:
        """The form an xdist worker sends them in (`from_wire` reads it back): no
        container with an item per test, which execnet would serialize element by element
        in Python, and no float printed as text (its shortest repr costs more than storing
        it): values as arrays of doubles, outcomes as one byte each, ids as one string."""
        joined = "\n".join(self.ids)
        # One line per id, unless an id holds a line break: then JSON.
        by_line = joined.count("\n") == len(self.ids) - 1
        return {
            "ids": joined if by_line else json.dumps(self.ids),
            "ids_json": not by_line,
            "outcomes": bytes(map(_OUTCOME_CODES.__getitem__, self.outcomes)),
            "durations": packed_doubles(self.durations),
            "readings": [(metric, unit, packed_doubles(v)) for metric, unit, v in self.readings],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PlainRuns:
        runs = cls()
        if data["ids_json"]:
            runs.ids = list(json.loads(data["ids"]))
        else:
            runs.ids = data["ids"].split("\n") if data["ids"] or data["durations"] else []
        runs.outcomes = list(map(_OUTCOMES.__getitem__, data["outcomes"]))
        runs.durations = _doubles(data["durations"])
        runs.readings = [(str(m), str(u), _doubles(values)) for m, u, values in data["readings"]]
        if not all(len(values) == len(runs.ids) for _, _, values in runs.readings) or not (
            len(runs.ids) == len(runs.outcomes) == len(runs.durations)
        ):
            raise ValueError("plain runs: columns of different lengths")
        return runs


_OUTCOMES: tuple[TestOutcome, ...] = ("passed", "failed", "skipped", "error")
_OUTCOME_CODES = {outcome: code for code, outcome in enumerate(_OUTCOMES)}


def packed_doubles(values: Sequence[float]) -> bytes:
    """`values` as native doubles, as `array("d", values).tobytes()` gives them, packed
    at once: the array's constructor parses each value through `PyArg_Parse`, 0.25 k
    instructions a value in CPython 3.11 against 0.1 k here (one per column per plain
    test, where a recording session stores or sends them)."""
    return struct.pack(f"{len(values)}d", *values)


def _doubles(data: bytes) -> list[float]:
    values = array("d")
    values.frombytes(data)
    return values.tolist()


class StepRecord:
    """One timed step, of a pipeline (`track()`) or of a test (`perf.measure`): its name,
    `start` and `end` (`perf_counter` readings; `end` None while it runs), success, error
    (``"Type: message"``) and additional data. Plain slots, not a dataclass: a step costs
    one of these, and the tracker's per-step cost is measured (benchmarks/bench_track.py)."""

    __slots__ = ("data", "end", "error", "name", "start", "success")

    def __init__(self, name: str, data: dict[str, Any] | None = None, start: float = 0.0) -> None:
        self.name = name
        self.data: dict[str, Any] = {} if data is None else data
        self.start = start
        self.end: float | None = None
        self.success = True
        self.error: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds, None while the step runs."""
        return None if self.end is None else self.end - self.start

    def fail(self, exc_type: type[BaseException], exc: BaseException | None) -> None:
        """Mark the step failed by this exception (the one wording of a step's error)."""
        self.success = False
        self.error = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__

    def to_dict(self, wall0: float, origin: float) -> dict[str, Any]:
        """The seed step timer's record: step_name, start_time, end_time (epoch seconds:
        `wall0` is the epoch time of the `perf_counter` reading `origin`), duration,
        success, error_message, additional_data."""
        duration = self.duration
        return {
            "step_name": self.name,
            "start_time": round(wall0 + (self.start - origin), 6),
            "end_time": None if self.end is None else round(wall0 + (self.end - origin), 6),
            "duration": None if duration is None else round(duration, 6),
            "success": self.success,
            "error_message": self.error,
            "additional_data": jsonable(self.data),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, duration={self.duration!r}, "
            f"success={self.success})"
        )


def jsonable(value: Any) -> Any:
    """`value` as JSON types: what cannot be encoded becomes its `str()`."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):  # e.g. non-string keys of mixed types
        return json.loads(json.dumps(str(value)))


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """A readable platform key and the full fingerprint it was derived from."""

    key: str
    fingerprint: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunInfo:
    """Everything stored about one session besides its measurements."""

    started_at: datetime
    platform: PlatformInfo
    finished_at: datetime | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    python_version: str = ""
    run_type: RunType = "manual"
    triggered_by: str = "user"  # user / ci / automated, or a name (at most 20 characters)
    host: str = ""
    args: list[str] = field(default_factory=list)
    outcome: RunOutcome = "passed"
    notes: str = ""
    system_info: dict[str, Any] = field(default_factory=dict)
    test_type: str | None = None  # the tracker's `--type` (inference, benchmark, ...)
    labels: dict[str, str] = field(default_factory=dict)  # `--perf-label model=openai`


VerdictKind = Literal[
    "regression", "improvement", "unchanged", "new", "missing", "skipped_failed", "unstable"
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The comparison of one gated metric against its baseline."""

    test: str
    metric: str
    kind: VerdictKind
    direction: Direction
    unit: str
    threshold: float
    current: float | None = None
    baseline: float | None = None
    change: float | None = None  # signed so that worse is positive
    detail: str = ""
    # Step and other informational metrics are compared for the report but never fail.
    gated: bool = True

    @property
    def fails(self) -> bool:
        return self.gated and self.kind == "regression"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "metric": self.metric,
            "verdict": self.kind,
            "direction": self.direction,
            "unit": self.unit,
            "threshold": self.threshold,
            "current": self.current,
            "baseline": self.baseline,
            "change": self.change,
            "detail": self.detail,
            "gated": self.gated,
        }


def worse_is_positive(change: float, direction: str) -> float:
    """A relative change ``(new - old) / old`` signed so that worse is positive."""
    return -change if direction == "higher" else change


LABEL_KEY_MAX = 100
LABEL_VALUE_MAX = 255


def check_labels(labels: Mapping[str, object], where: str) -> dict[str, str]:
    """Labels as {key: text}: keys non-empty (at most 100 characters, no `=` or `,`),
    values as text (at most 255); ValueError naming `where` otherwise. The one rule for
    `--perf-label`, `track(labels=)` and the API."""
    checked: dict[str, str] = {}
    for key, value in labels.items():
        text = str(value)
        if (
            not isinstance(key, str)
            or not key.strip()
            or len(key) > LABEL_KEY_MAX
            or any(c in key for c in "=,[]")
        ):
            raise LabelError(f"{where}: label key {key!r} must be 1 to {LABEL_KEY_MAX} "
                             "characters without '=', ',', '[' or ']'")  # fmt: skip
        if len(text) > LABEL_VALUE_MAX or any(c in text for c in ",[]"):
            raise LabelError(f"{where}: label {key}={text!r}: at most {LABEL_VALUE_MAX} "
                             "characters without ',', '[' or ']'")  # fmt: skip
        checked[key.strip()] = text.strip()
    return checked


class LabelError(ValueError):
    """A label a user gave is not valid (the message names where it came from)."""


def is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judged_on(rows: Sequence[Measurement], metrics: Collection[str]) -> list[Measurement]:
    """`rows` with `metrics` (collector readings such as `instructions`) as the only gated
    metrics: those readings become gateable, and every other row that could be judged (the
    tests' own metrics, `perf.record` values, steps) is kept as a system metric, stored but
    never judged."""
    judged = []
    for row in rows:
        if row.metric in metrics and row.kind == "system":
            row = replace(row, kind="custom")
        elif row.kind in GATEABLE_KINDS or row.kind == "step":
            row = replace(row, kind="system")
        judged.append(row)
    return judged
