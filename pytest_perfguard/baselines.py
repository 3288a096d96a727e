"""The baselines file: loading (schema 1 and the seed's flat format), atomic writes, and the
model of `baselines_model` re-exported, so callers import everything from here.

Pure: imports neither pytest nor SQLAlchemy. Errors a user can cause are a
`BaselinesError` whose message is one line naming the file and the JSON path of the bad
entry; the plugin turns it into a usage error (exit 4), the CLI into exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .baselines_model import (
    SCHEMA_VERSION,
    BaselineEntry,
    BaselineFile,
    BaselineMetadata,
    PlatformBaselines,
    Problem,
    json_type,
    validate_entry,
    validate_file,
)

__all__ = [
    "DEFAULT_BASELINES_PATH",
    "SCHEMA_VERSION",
    "BaselineEntry",
    "BaselineFile",
    "BaselineMetadata",
    "BaselinesError",
    "PlatformBaselines",
    "baselines_lock",
    "load_baselines",
    "parse_baselines",
    "parse_entry",
    "write_baselines",
]

DEFAULT_BASELINES_PATH = Path("baselines/perf_baselines.json")


class BaselinesError(ValueError):
    """A baselines file that cannot be read or written; the message is one line."""


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
            f"{source}: expected a JSON object at the top level, got {json_type(data)}"
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
    file, problems = validate_file(data)
    if problems:
        raise BaselinesError(_describe(problems, raw, source))
    return file


def parse_entry(data: Any, *, source: str = "<baseline entry>") -> BaselineEntry:
    """Validate one decoded entry (as a file or a baseline snapshot holds it)."""
    entry, problems = validate_entry(data)
    if entry is None:
        raise BaselinesError(_describe(problems, data, source))
    return entry


def _flat_to_schema(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`{"<platform>": {"<metric>": number, "metadata": {...}}}` as schema-1 data."""
    platforms: dict[str, Any] = {}
    for platform, section in data.items():
        if not isinstance(section, dict):
            raise BaselinesError(
                f"{source}: {platform}: expected an object of metric values, "
                f"got {json_type(section)}"
            )
        metrics: dict[str, Any] = {}
        for name, value in section.items():
            if name == "metadata":
                continue
            # Entries as objects are accepted too; they are validated like schema entries.
            metrics[name] = value if isinstance(value, dict) else {"value": value}
        platforms[platform] = {"metadata": section.get("metadata", {}), "metrics": metrics}
    return {"schema": SCHEMA_VERSION, "platforms": platforms}


def _describe(problems: list[Problem], raw: Any, source: str) -> str:
    """The first problem as `file: json.path: what is wrong`, and how many more there are."""
    loc_parts, message = problems[0]
    loc = [str(part) for part in loc_parts]
    if not _is_schema_input(raw) and len(loc) >= 3:
        # Flat input: give the path as the user wrote it (platform.metric), not our rewrite.
        loc = [loc[1], *loc[3:]] if loc[2] == "metrics" else [loc[1], *loc[2:]]
        if len(loc) == 3 and loc[2] == "value" and not isinstance(_at(raw, loc[:2]), dict):
            loc = loc[:2]
    path = f"{'.'.join(loc)}: " if loc else ""
    more = len(problems) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}{message}{suffix}"


def _is_schema_input(data: Any) -> bool:
    return isinstance(data, dict) and ("schema" in data or "platforms" in data)


def _at(data: Any, loc: list[str]) -> Any:
    for key in loc:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


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
