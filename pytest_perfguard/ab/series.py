"""One test's pairs as metric series: which values of the two sides' rounds are compared.

Pure (no pytest). Per pair of rounds:
- the test's own metric (the marker's `metric=`): what `perf.record` gave under that name
  when both sides recorded it, else the round's busy time (`worker.run_round`: the
  thread's CPU time for a call that never blocked, else its wall time); gated;
- other `perf.record` names that both sides recorded in every round: gated, as today;
- `duration` (busy time, when the own metric is something else), `wall_time` and
  `cpu_time` (process CPU time) of the round: informational.
When both sides counted instructions (under callgrind), `instructions` is the one gated
metric, decided by one pair, and everything else is informational.
A value recorded several times in one round counts as that round's median.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..measure import MARKER_DEFAULTS, PerfSpec
from ..results import DIRECTIONS, Direction, MetricKind


@dataclass(frozen=True, slots=True)
class Round:
    """One measured call on one side: wall, CPU and busy seconds (see
    `worker.run_round`), when it started (``time.monotonic_ns()``) and what `perf.record`
    collected (name -> [values, unit, direction, threshold])."""

    wall: float
    cpu: float
    start: int
    records: dict[str, Any]
    received: int = 0  # when the base worker read the command (monotonic_ns)
    busy: float | None = None  # None: as `wall`
    instructions: int | None = None  # counted under callgrind

    @property
    def busy_time(self) -> float:
        return self.wall if self.busy is None else self.busy

    @classmethod
    def of(cls, message: dict[str, Any]) -> Round:
        return cls(
            message["wall"],
            message["cpu"],
            message["start"],
            message["records"],
            message.get("received", 0),
            message.get("busy"),
            message.get("instructions"),
        )


@dataclass(frozen=True, slots=True)
class Series:
    """One metric's values over a test's pairs, base and head in pair order."""

    metric: str
    unit: str
    direction: Direction
    kind: MetricKind
    gated: bool
    threshold: float | None
    base: list[float]
    head: list[float]
    exact: bool = False  # deterministic (an instruction count): one pair decides


def _recorded(rounds: Sequence[Round], name: str) -> list[float] | None:
    values = []
    for r in rounds:
        entry = r.records.get(name)
        if not entry or not entry[0]:
            return None
        values.append(statistics.median(entry[0]))
    return values


def _direction(text: object, default: Direction) -> Direction:
    for direction in DIRECTIONS:
        if text == direction:
            return direction
    return default


def pair_series(
    base: Sequence[Round], head: Sequence[Round], spec: PerfSpec | None, gated: bool
) -> list[Series]:
    """The compared metrics of one test (see the module docstring); `gated` says whether
    the test can fail the session."""
    if not base or len(base) != len(head):
        return []
    measured = _measured_series(base, head, spec, gated)
    if any(r.instructions is None for r in (*base, *head)):
        return measured
    # Both sides counted under callgrind: the count is the one gated metric (as the stored
    # gate judges `instructions` in place of the tests' own metrics); the rest is reported.
    counted = Series(
        "instructions", "instr", "lower", "custom", gated, None,
        [float(r.instructions or 0) for r in base], [float(r.instructions or 0) for r in head],
        exact=True,
    )  # fmt: skip
    return [counted, *(replace(s, gated=False, kind="system") for s in measured)]


def _measured_series(
    base: Sequence[Round], head: Sequence[Round], spec: PerfSpec | None, gated: bool
) -> list[Series]:
    """The own metric, the times and the `perf.record` values of one test's pairs."""
    own = spec or MARKER_DEFAULTS
    marked = spec is not None
    series = []
    busy_base, busy_head = [r.busy_time for r in base], [r.busy_time for r in head]
    own_base, own_head = _recorded(base, own.metric), _recorded(head, own.metric)
    if own_base is not None and own_head is not None:
        entry = head[-1].records[own.metric]
        direction = own.direction if marked else _direction(entry[2], "lower")
        unit = own.unit if marked else entry[1]
        threshold = own.threshold if own.threshold is not None else entry[3]
        series.append(
            Series(own.metric, unit, direction, "primary", gated, threshold, own_base, own_head)
        )
    else:
        series.append(
            Series(
                own.metric, own.unit, own.direction, "primary", gated, own.threshold,
                busy_base, busy_head,
            )
        )  # fmt: skip
    if own.metric != "duration":
        series.append(Series("duration", "s", "lower", "system", False, None, busy_base, busy_head))
    series.append(
        Series(
            "wall_time", "s", "lower", "system", False, None,
            [r.wall for r in base], [r.wall for r in head],
        )
    )  # fmt: skip
    series.append(
        Series(
            "cpu_time", "s", "lower", "system", False, None,
            [r.cpu for r in base], [r.cpu for r in head],
        )
    )  # fmt: skip
    for name in sorted(head[-1].records):
        if name == own.metric:
            continue
        values_base, values_head = _recorded(base, name), _recorded(head, name)
        if values_base is None or values_head is None:
            continue
        _, unit, direction, threshold = head[-1].records[name]
        series.append(
            Series(
                name, unit, _direction(direction, "lower"), "custom", gated, threshold,
                values_base, values_head,
            )
        )  # fmt: skip
    return series

