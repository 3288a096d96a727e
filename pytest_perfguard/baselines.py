"""The baselines file: model, loading (schema 1 and the seed's flat format), atomic writes.

Pure: imports neither pytest nor SQLAlchemy. Errors a user can cause are a
`BaselinesError` whose message is one line naming the file and the JSON path of the bad
entry; the plugin turns it into a usage error (exit 4), the CLI into exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .results import Direction

SCHEMA_VERSION = 1
DEFAULT_BASELINES_PATH = Path("baselines/perf_baselines.json")


_NUMBER_LIST = re.compile(r"\[\n[-+0-9.eE,\s]+\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(number.strip() for number in match.group(0)[1:-1].split(",")) + "]"


class BaselinesError(ValueError):
    """A baselines file that cannot be read or written; the message is one line."""


class BaselineEntry(BaseModel):
    """The baseline of one metric of one test.

    `runs` is how many recorded runs `value` is the median of; `spread` is the median
    absolute deviation of those runs and `n` how many values it was computed from;
    `samples` are those runs' rounds, pooled (the noise rule's rank test compares a run's
    rounds with them). All are kept for noise-aware verdicts and are optional
    (hand-written files omit them).
    """

    # Strict: "8.0" (a string) is a wrong type, not a number. Unknown keys are kept so a
    # file written by a newer perfguard does not lose them when an older one rewrites it.
    model_config = ConfigDict(strict=True, extra="allow")

    value: float = Field(ge=0, allow_inf_nan=False)
    unit: str = ""
    # None: taken from the test (flat-format entries say nothing about direction).
    direction: Direction | None = None
    threshold: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    runs: int | None = Field(default=None, ge=0)
    spread: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    n: int | None = Field(default=None, ge=0)
    samples: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None


class BaselineMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    last_updated: str | None = None
    git_commit: str | None = None
    python_version: str | None = None
    notes: str = ""


class PlatformBaselines(BaseModel):
    """One platform's baselines.

    `tests` maps a test nodeid to its metrics. `metrics` holds platform-wide entries by
    metric name, matched against any test's metric of that name: this is where the seed's
    flat format lands, and it is written back under this key so its values survive.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    metadata: BaselineMetadata = Field(default_factory=BaselineMetadata)
    tests: dict[str, dict[str, BaselineEntry]] = Field(default_factory=dict)
    metrics: dict[str, BaselineEntry] = Field(default_factory=dict)


class BaselineFile(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")
    platforms: dict[str, PlatformBaselines] = Field(default_factory=dict)

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

    def to_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for section in data["platforms"].values():
            if not section["metrics"]:
                del section["metrics"]
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
        # A list of numbers (an entry's `samples`) on one line: one line of diff per update.
        return _NUMBER_LIST.sub(_one_line, text) + "\n"


def load_baselines(path: Path) -> BaselineFile:
    """Read a baselines file; a missing file is an empty one."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return BaselineFile()
    except json.JSONDecodeError as exc:
        raise BaselinesError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix or delete the file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselinesError(f"{path}: cannot be read: {exc}") from None
    return parse_baselines(data, source=str(path))


def parse_baselines(data: Any, *, source: str = "<baselines>") -> BaselineFile:
    """Validate decoded JSON (either format) into a `BaselineFile`."""
    if not isinstance(data, dict):
        raise BaselinesError(
            f"{source}: expected a JSON object at the top level, got {_json_type(data)}"
        )
    raw = data
    if "schema" not in data and "platforms" not in data:
        data = _flat_to_schema(data, source)
    elif "schema" in data and (
        data["schema"] != SCHEMA_VERSION or isinstance(data["schema"], bool)
    ):
        version = data["schema"]
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "; a newer pytest-perfguard wrote it, upgrade" if newer else ""
        raise BaselinesError(
            f"{source}: schema: unknown schema version {version!r} "
            f"(this pytest-perfguard reads schema {SCHEMA_VERSION}{hint})"
        )
    try:
        return BaselineFile.model_validate(data)
    except ValidationError as exc:
        raise BaselinesError(_describe(exc, raw, source)) from None


def _flat_to_schema(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`{"<platform>": {"<metric>": number, "metadata": {...}}}` as schema-1 data."""
    platforms: dict[str, Any] = {}
    for platform, section in data.items():
        if not isinstance(section, dict):
            raise BaselinesError(
                f"{source}: {platform}: expected an object of metric values, "
                f"got {_json_type(section)}"
            )
        metrics: dict[str, Any] = {}
        for name, value in section.items():
            if name == "metadata":
                continue
            # Entries as objects are accepted too; they are validated like schema entries.
            metrics[name] = value if isinstance(value, dict) else {"value": value}
        platforms[platform] = {"metadata": section.get("metadata", {}), "metrics": metrics}
    return {"schema": SCHEMA_VERSION, "platforms": platforms}


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "finite_number": "must be a finite number",
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}
_EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}


def _describe(exc: ValidationError, raw: Any, source: str) -> str:
    """The first validation error as `file: json.path: what is wrong`."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    if not _is_schema_input(raw) and len(loc) >= 3:
        # Flat input: give the path as the user wrote it (platform.metric), not our rewrite.
        loc = [loc[1], *loc[3:]] if loc[2] == "metrics" else [loc[1], *loc[2:]]
        if len(loc) == 3 and loc[2] == "value" and not isinstance(_at(raw, loc[:2]), dict):
            loc = loc[:2]
    path = ".".join(loc) if loc else "(top level)"
    kind = error["type"]
    ctx = {key: _number(value) for key, value in (error.get("ctx") or {}).items()}
    if kind == "literal_error" and loc and loc[-1] == "direction":
        message = f"unknown direction {error['input']!r} (expected 'lower' or 'higher')"
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(**ctx)
    elif kind in _EXPECTED:
        message = f"wrong type: expected {_EXPECTED[kind]}, got {_json_type(error['input'])}"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    more = exc.error_count() - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {message}{suffix}"


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_schema_input(data: Any) -> bool:
    return isinstance(data, dict) and ("schema" in data or "platforms" in data)


def _at(data: Any, loc: list[str]) -> Any:
    for key in loc:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _json_type(value: Any) -> str:
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


def write_baselines(path: Path, file: BaselineFile) -> None:
    """Write atomically: a crash or a concurrent writer never leaves a half-written file.

    The text goes to a temporary file in the same directory, is flushed to disk, then
    renamed over `path`. Keys are sorted and indented by two spaces so diffs stay small.
    Every platform in `file` is written; load, change and write to keep other platforms
    (`baselines_lock` serialises that against other writers).
    """
    text = file.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def baselines_lock(path: Path) -> Iterator[None]:
    """Serialise load-modify-write of `path` between processes and threads.

    Locks the file's directory (an advisory `flock`), so no lock file is left next to the
    baselines. Where `fcntl` is unavailable (Windows) this is a no-op: writes stay atomic,
    but two concurrent updaters may each write their own version.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
