"""The baselines file's model: its dataclasses, their JSON form, and the checking of decoded
JSON against them.

Checking collects every problem with its JSON path; `baselines` words the first as the
one-line error a user sees. Pure: imports neither pytest nor SQLAlchemy.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .results import Direction

SCHEMA_VERSION = 1

_NUMBER_LIST = re.compile(r"\[\n[-+0-9.eE,\s]+\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(number.strip() for number in match.group(0)[1:-1].split(",")) + "]"


@dataclass(slots=True)
class BaselineEntry:
    """The baseline of one metric of one test.

    `runs` is how many recorded runs `value` is the median of; `spread` is the median
    absolute deviation of those runs and `n` how many values it was computed from;
    `samples` are those runs' rounds, pooled (the noise rule's rank test compares a run's
    rounds with them). All are kept for noise-aware verdicts and are optional
    (hand-written files omit them). `extra` holds the keys this version does not know, so
    a file written by a newer perfguard does not lose them when an older one rewrites it.
    """

    value: float
    unit: str = ""
    # None: taken from the test (flat-format entries say nothing about direction).
    direction: Direction | None = None
    threshold: float | None = None
    runs: int | None = None
    spread: float | None = None
    n: int | None = None
    samples: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """The entry as JSON data: fields that are None left out, unknown keys last."""
        # float(): a number given as an int in code is written as the float it stands for
        # (8 -> 8.0), as a file has always had it.
        data: dict[str, Any] = {"value": float(self.value), "unit": self.unit}
        if self.direction is not None:
            data["direction"] = self.direction
        if self.threshold is not None:
            data["threshold"] = float(self.threshold)
        if self.runs is not None:
            data["runs"] = self.runs
        if self.spread is not None:
            data["spread"] = float(self.spread)
        if self.n is not None:
            data["n"] = self.n
        if self.samples is not None:
            data["samples"] = [float(sample) for sample in self.samples]
        if self.extra:
            data.update(_extra_data(self.extra))
        return data


@dataclass(slots=True)
class BaselineMetadata:
    """When and from what a platform's baselines were last updated; `extra` as for entries
    (updates record the `hardware` there)."""

    last_updated: str | None = None
    git_commit: str | None = None
    python_version: str | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.last_updated is not None:
            data["last_updated"] = self.last_updated
        if self.git_commit is not None:
            data["git_commit"] = self.git_commit
        if self.python_version is not None:
            data["python_version"] = self.python_version
        data["notes"] = self.notes
        if self.extra:
            data.update(_extra_data(self.extra))
        return data


def _extra_data(extra: dict[str, Any]) -> dict[str, Any]:
    # As the files have always been written: an unknown key set to null is left out, and a
    # non-finite number (JSON has none) becomes null.
    return {key: _json_ready(value) for key, value in extra.items() if value is not None}


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


@dataclass(slots=True)
class PlatformBaselines:
    """One platform's baselines.

    `tests` maps a test nodeid to its metrics. `metrics` holds platform-wide entries by
    metric name, matched against any test's metric of that name: this is where the seed's
    flat format lands, and it is written back under this key so its values survive.
    """

    metadata: BaselineMetadata = field(default_factory=BaselineMetadata)
    tests: dict[str, dict[str, BaselineEntry]] = field(default_factory=dict)
    metrics: dict[str, BaselineEntry] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata.to_data(),
            "tests": {
                test: {metric: entry.to_data() for metric, entry in metrics.items()}
                for test, metrics in self.tests.items()
            },
            "metrics": {metric: entry.to_data() for metric, entry in self.metrics.items()},
        }


@dataclass(slots=True)
class BaselineFile:
    """A whole baselines file: every platform's section."""

    schema: int = SCHEMA_VERSION
    platforms: dict[str, PlatformBaselines] = field(default_factory=dict)

    def lookup(
        self, platform: str, test: str, metric: str, *, by_name: bool = True
    ) -> BaselineEntry | None:
        """The baseline for `test`'s `metric` on `platform`.

        The test's own entry wins; otherwise, when `by_name`, a platform-wide entry of that
        metric name (the flat format).
        """
        section = self.platforms.get(platform)
        if section is None:
            return None
        entry = section.tests.get(test, {}).get(metric)
        if entry is None and by_name:
            entry = section.metrics.get(metric)
        return entry

    def to_data(self) -> dict[str, Any]:
        """The file as JSON data, every key in the order of the fields above."""
        return {
            "schema": self.schema,
            "platforms": {key: section.to_data() for key, section in self.platforms.items()},
        }

    def to_json(self) -> str:
        data = self.to_data()
        for section in data["platforms"].values():
            if not section["metrics"]:
                del section["metrics"]
        # allow_nan=False: a non-finite value set in code would make a file no load accepts.
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        # A list of numbers (an entry's `samples`) on one line: one line of diff per update.
        return _NUMBER_LIST.sub(_one_line, text) + "\n"


# Where (the keys and list indexes from the top of the JSON) and what is wrong.
Problem = tuple[tuple[str | int, ...], str]
_Check = Callable[[Any, tuple[str | int, ...], list[Problem]], Any]
_MAX = sys.float_info.max
_FILE_FIELDS = frozenset({"schema", "platforms"})
_PLATFORM_FIELDS = frozenset({"metadata", "tests", "metrics"})
_METADATA_FIELDS = frozenset({"last_updated", "git_commit", "python_version", "notes"})
_ENTRY_FIELDS = frozenset(
    {"value", "unit", "direction", "threshold", "runs", "spread", "n", "samples"}
)
_DIRECTIONS = ("lower", "higher")


def validate_file(data: dict[str, Any]) -> tuple[BaselineFile, list[Problem]]:
    """Schema-1 data as a `BaselineFile`, and every problem in it in document order
    (fields in the order of the dataclasses, then unknown keys); valid when there is none."""
    problems: list[Problem] = []
    return _file(data, problems), problems


def validate_entry(data: Any) -> tuple[BaselineEntry | None, list[Problem]]:
    """One entry, or None and why not."""
    problems: list[Problem] = []
    return _common_entry(data) or _entry(data, (), problems), problems


def _file(data: dict[str, Any], problems: list[Problem]) -> BaselineFile:
    file = BaselineFile()
    if not _is_int(data.get("schema", SCHEMA_VERSION)):
        problems.append((("schema",), _wrong_type("an integer", data["schema"])))
    platforms = data.get("platforms", {})
    if isinstance(platforms, dict):
        for key, section in platforms.items():
            found = _platform(section, ("platforms", key), problems)
            if found is not None:
                file.platforms[key] = found
    else:
        problems.append((("platforms",), _wrong_type("an object", platforms)))
    _unknown_fields(data, _FILE_FIELDS, (), problems)
    return file


def _platform(
    data: Any, loc: tuple[str | int, ...], problems: list[Problem]
) -> PlatformBaselines | None:
    if not isinstance(data, dict):
        problems.append((loc, _wrong_type("an object", data)))
        return None
    section = PlatformBaselines()
    if "metadata" in data:
        section.metadata = _metadata(data["metadata"], (*loc, "metadata"), problems)
    tests = data.get("tests", {})
    tests_loc = (*loc, "tests")
    if isinstance(tests, dict):
        for test, metrics in tests.items():
            section.tests[test] = _entries(metrics, tests_loc, test, problems)
    else:
        problems.append((tests_loc, _wrong_type("an object", tests)))
    section.metrics = _entries(data.get("metrics", {}), loc, "metrics", problems)
    _unknown_fields(data, _PLATFORM_FIELDS, loc, problems)
    return section


def _entries(
    data: Any, parent: tuple[str | int, ...], key: str, problems: list[Problem]
) -> dict[str, BaselineEntry]:
    """The entries by metric name at `parent`'s `key` (the path is only built for an error:
    this runs once per test)."""
    found: dict[str, BaselineEntry] = {}
    if not isinstance(data, dict):
        problems.append(((*parent, key), _wrong_type("an object", data)))
        return found
    for metric, value in data.items():
        entry = _common_entry(value) or _entry(value, (*parent, key, metric), problems)
        if entry is not None:
            found[metric] = entry
    return found


def _metadata(data: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> BaselineMetadata:
    metadata = BaselineMetadata()
    if not isinstance(data, dict):
        problems.append((loc, _wrong_type("an object", data)))
        return metadata
    for name in ("last_updated", "git_commit", "python_version", "notes"):
        if name in data and (data[name] is not None or name == "notes"):
            setattr(metadata, name, _string(data[name], (*loc, name), problems))
    metadata.extra = _unknown(data, _METADATA_FIELDS)
    return metadata


def _common_entry(data: Any) -> BaselineEntry | None:
    """The entry when it is as perfguard writes it: each field it has of its exact type
    and in range, no unknown key. None for anything else, which `_entry` converts or
    reports.

    A shortcut, as a file holds thousands of entries: every entry it accepts, `_entry`
    accepts as the same entry (a test checks).
    """
    if type(data) is not dict or not data.keys() <= _ENTRY_FIELDS:
        return None
    get = data.get
    value = get("value")
    unit = get("unit", "")
    direction = get("direction")
    threshold = get("threshold")
    runs = get("runs")
    spread = get("spread")
    n = get("n")
    samples = get("samples")
    if (
        type(value) is float
        and 0.0 <= value <= _MAX
        and type(unit) is str
        and (direction is None or direction == "lower" or direction == "higher")
        and (threshold is None or (type(threshold) is float and 0.0 < threshold <= _MAX))
        and (runs is None or (type(runs) is int and runs >= 0))
        and (spread is None or (type(spread) is float and 0.0 <= spread <= _MAX))
        and (n is None or (type(n) is int and n >= 0))
        and (samples is None or type(samples) is list)
    ):
        if samples is not None:
            top = _MAX
            for sample in samples:
                if type(sample) is not float or not 0.0 <= sample <= top:
                    return None
        return BaselineEntry(value, unit, direction, threshold, runs, spread, n, samples)
    return None


def _entry(data: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> BaselineEntry | None:
    """One entry, checked field by field in the order of `BaselineEntry`; None when wrong."""
    if not isinstance(data, dict):
        problems.append((loc, _wrong_type("an object", data)))
        return None
    failed = len(problems)
    if "value" not in data:
        problems.append(((*loc, "value"), "required field is missing"))
    fields = {
        name: check(data[name], (*loc, name), problems)
        for name, check in _ENTRY_CHECKS
        if name in data and (data[name] is not None or name in _NOT_NULL)
    }
    if len(problems) > failed:
        return None
    return BaselineEntry(**fields, extra=_unknown(data, _ENTRY_FIELDS))


def _number(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    """A finite number >= 0, as a float: an int is one too, a string or a boolean is not."""
    return _float(value, loc, problems, positive=False)


def _positive_number(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    return _float(value, loc, problems, positive=True)


def _float(
    value: Any, loc: tuple[str | int, ...], problems: list[Problem], *, positive: bool
) -> Any:
    if _is_int(value):
        try:
            value = float(value)
        except OverflowError:
            problems.append((loc, _wrong_type("a number", value)))
            return None
    if not isinstance(value, float):
        problems.append((loc, _wrong_type("a number", value)))
    elif not math.isfinite(value):
        problems.append((loc, "must be a finite number"))
    elif positive and not value > 0:
        problems.append((loc, "must be > 0"))
    elif not value >= 0:
        problems.append((loc, "must be >= 0"))
    return value


def _count(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    """A whole number >= 0: an int, not a float (3.0) or a boolean."""
    if not _is_int(value):
        problems.append((loc, _wrong_type("an integer", value)))
    elif value < 0:
        problems.append((loc, "must be >= 0"))
    return value


def _string(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    if not isinstance(value, str):
        problems.append((loc, _wrong_type("a string", value)))
    return value


def _direction(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    if value not in _DIRECTIONS:
        problems.append((loc, f"unknown direction {value!r} (expected 'lower' or 'higher')"))
    return value


def _samples(value: Any, loc: tuple[str | int, ...], problems: list[Problem]) -> Any:
    if not isinstance(value, list):
        problems.append((loc, _wrong_type("an array", value)))
        return value
    return [_number(sample, (*loc, i), problems) for i, sample in enumerate(value)]


_ENTRY_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("value", _number),
    ("unit", _string),
    ("direction", _direction),
    ("threshold", _positive_number),
    ("runs", _count),
    ("spread", _number),
    ("n", _count),
    ("samples", _samples),
)
# null is a wrong type for these; for the others it is the default.
_NOT_NULL = frozenset({"value", "unit"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown(data: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in known}


def _unknown_fields(
    data: dict[str, Any],
    known: frozenset[str],
    loc: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    problems.extend(((*loc, key), "unknown field") for key in _unknown(data, known))


def _wrong_type(expected: str, value: Any) -> str:
    return f"wrong type: expected {expected}, got {json_type(value)}"


def json_type(value: Any) -> str:
    """A value's JSON type as an error message says it: `null`, `a string ('8.0')`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) <= 30 else "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
