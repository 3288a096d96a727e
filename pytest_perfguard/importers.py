"""Importing results kept by other tools into the history (`perfguard import`).

Two formats are read:

- pytest-benchmark saved runs (`.benchmarks/<machine>/<NNNN>_<name>.json`): one run per
  file; each benchmark becomes the `duration` metric (unit s) of its test, valued at
  pytest-benchmark's median, with every sample kept when the file has them
  (`--benchmark-save-data`); `machine_info` becomes the platform and `commit_info` the run's
  commit, branch and dirty flag.
- the seed project's results JSON (`PerformanceHistory.export_to_json`): a list of runs,
  each a flat object of metadata (`timestamp`, `platform`, `git_commit`, ...) and metric
  values (`"query_latency": 8.1`), or an object with `metrics` and `metadata`; a single
  run object is read too.

Importing is idempotent: every run is stored with a source key (a hash of what it was
read from), and a run whose key is already stored is skipped. Errors a user can cause are
an `ImportFormatError` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import RUN_TYPES, Direction, Measurement, PlatformInfo, RunInfo, RunType

if TYPE_CHECKING:
    from .api import History

PYTEST_BENCHMARK = "pytest-benchmark"
SEED_RESULTS = "seed results"
# Keys of a seed run that describe the run rather than measure something.
_SEED_META = frozenset(
    {
        "id", "timestamp", "started_at", "git_commit", "git_branch", "platform",
        "python_version", "run_type", "notes", "num_test_queries", "test_duration_seconds",
        "test_name", "test", "success", "host",
    }
)  # fmt: skip
# The seed's rule, generalised: latencies and memory are lower-is-better, the rest
# (throughput, hit rates, quality scores) higher-is-better.
_LOWER_IS_BETTER = ("latency", "memory", "time", "duration", "seconds", "_gb", "_mb", "error")
_UNIT_SUFFIXES = (("_seconds", "s"), ("_ms", "ms"), ("_s", "s"), ("_gb", "GB"), ("_mb", "MB"))
_NO_COMMIT = ("", "unversioned")
_NO_BRANCH = ("", "(unknown)", "HEAD")


class ImportFormatError(ValueError):
    """A file that cannot be imported; the message is one line naming the file."""


@dataclass(frozen=True)
class ImportedRun:
    """One run read from a file, ready to store."""

    path: Path
    label: str  # the file, plus `[i]` for the i-th run of a seed file
    format: str
    source_key: str
    run: RunInfo
    measurements: list[Measurement]
    notes: list[str] = field(default_factory=list)  # what was left out, e.g. empty stats


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one run (or one file that held none): imported or skipped."""

    label: str
    format: str | None
    run_id: int | None = None
    n_results: int = 0
    platform: str | None = None
    skipped: str | None = None  # the reason, when skipped
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    outcomes: list[ImportOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def imported(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.skipped is None]

    @property
    def skipped(self) -> list[ImportOutcome]:
        return [o for o in self.outcomes if o.skipped is not None]


def find_files(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """The files to read, each with whether it was named explicitly.

    Directories are walked for `*.json` (hidden ones included: `.benchmarks`), in sorted
    order so runs are stored oldest first for pytest-benchmark's numbered files.
    """
    found: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            found.extend((p, False) for p in sorted(path.rglob("*.json")) if p.is_file())
        elif path.is_file():
            found.append((path, True))
        else:
            raise ImportFormatError(f"{path}: no such file or directory")
    return found


def read_runs(path: Path, *, platform: str | None = None) -> list[ImportedRun]:
    """Every run in `path` (either format); ImportFormatError when it is neither."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not valid JSON (not UTF-8 text)") from None
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        digest = hashlib.sha256(raw).hexdigest()
        return [_benchmark_run(path, data, f"{PYTEST_BENCHMARK}:{digest}", platform)]
    entries = data if isinstance(data, list) else [data]
    if entries and all(isinstance(e, dict) and _looks_like_seed_run(e) for e in entries):
        return [
            _seed_run(path, f"{path}[{i}]" if isinstance(data, list) else str(path), e, platform)
            for i, e in enumerate(entries)
        ]
    raise ImportFormatError(
        f"{path}: not a pytest-benchmark saved run nor a results JSON "
        "(a run object or a list of them, with a timestamp, platform or metrics)"
    )


def import_paths(
    history: History | None,
    paths: Sequence[Path],
    *,
    platform: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import every run found in `paths` into `history`; runs already imported are skipped.

    Files named explicitly must be importable: they are all checked before anything is
    stored, and the first bad one raises ImportFormatError. Files found by walking a
    directory that are not in a known format are reported as skipped. `history` None is
    an empty history (a dry run before the database exists).
    """
    if history is None and not dry_run:
        raise ValueError("import_paths: history None is only for a dry run")
    files = find_files(paths)
    for path, explicit in files:
        if explicit:
            read_runs(path, platform=platform)  # raises before anything is written
    report = ImportReport(dry_run=dry_run)
    for path, explicit in files:
        try:
            runs = read_runs(path, platform=platform)
        except ImportFormatError as exc:
            if explicit:  # pragma: no cover - checked above; the file changed meanwhile
                raise
            report.outcomes.append(ImportOutcome(str(path), None, skipped=_reason(exc, path)))
            continue
        if not runs:
            report.outcomes.append(ImportOutcome(str(path), None, skipped="no runs in the file"))
        for run in runs:
            report.outcomes.append(_store(history, run, dry_run=dry_run))
    return report


def _reason(exc: ImportFormatError, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ")


def _store(history: History | None, item: ImportedRun, *, dry_run: bool) -> ImportOutcome:
    from .history.errors import HistoryError

    def outcome(**kwargs: Any) -> ImportOutcome:
        return ImportOutcome(
            item.label,
            item.format,
            n_results=len(item.measurements),
            platform=item.run.platform.key,
            notes=item.notes,
            **kwargs,
        )

    if not item.measurements:
        return outcome(skipped="no measurements in it")
    if history is not None and history.has_run_with_source_key(item.source_key):
        return outcome(skipped="already imported")
    if dry_run or history is None:
        return outcome()
    try:
        run_id = history.save_session(item.run, item.measurements, source_key=item.source_key)
    except HistoryError:
        # A concurrent import of the same file won the race: that is the same outcome.
        if history.has_run_with_source_key(item.source_key):
            return outcome(skipped="already imported")
        raise
    return outcome(run_id=run_id)


# -- pytest-benchmark ------------------------------------------------------------------------


def _benchmark_run(
    path: Path, data: dict[str, Any], source_key: str, platform: str | None
) -> ImportedRun:
    machine = _mapping(data.get("machine_info"))
    commit = _mapping(data.get("commit_info"))
    measurements: list[Measurement] = []
    notes: list[str] = []
    for i, bench in enumerate(data["benchmarks"]):
        bench = _mapping(bench)
        test = str(bench.get("fullname") or bench.get("name") or f"benchmark[{i}]")
        stats = _mapping(bench.get("stats"))
        median = stats.get("median")
        if not isinstance(median, (int, float)) or not _finite(median):
            notes.append(f"{test}: no median in its stats")
            continue
        samples = stats.get("data")
        if not isinstance(samples, list) or not all(_finite(s) for s in samples):
            samples = []
        measurements.append(
            Measurement(
                test=test,
                metric="duration",
                value=float(median),
                unit="s",
                direction="lower",
                kind="primary",
                marked=True,  # a benchmark is a performance test: gated, like a marked test
                samples=tuple(float(s) for s in samples),
            )
        )
    version = data.get("version")
    run = RunInfo(
        started_at=_timestamp(data.get("datetime"), naive_is_utc=True, fallback=path),
        platform=benchmark_platform(machine, platform),
        git_commit=_text(commit.get("id"), empty=_NO_COMMIT),
        git_branch=_text(commit.get("branch"), empty=_NO_BRANCH),
        git_dirty=commit["dirty"] if isinstance(commit.get("dirty"), bool) else None,
        python_version=str(machine.get("python_version") or ""),
        host=str(machine.get("node") or ""),
        notes=f"imported from {PYTEST_BENCHMARK} {version or ''}".rstrip(),
        system_info={
            "imported_from": PYTEST_BENCHMARK,
            "source_file": path.name,
            "machine_info": machine,
            "commit_info": commit,
        },
    )
    return ImportedRun(path, str(path), PYTEST_BENCHMARK, source_key, run, measurements, notes)


def benchmark_fingerprint(machine_info: Mapping[str, Any]) -> dict[str, Any]:
    """Our platform fingerprint from pytest-benchmark's `machine_info` (py-cpuinfo's `cpu`)."""
    cpu = _mapping(machine_info.get("cpu"))
    fingerprint: dict[str, Any] = {
        "os": machine_info.get("system") or "",
        "os_release": machine_info.get("release") or "",
        "arch": machine_info.get("machine") or cpu.get("arch_string_raw") or "",
        "cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or "",
        "python_implementation": machine_info.get("python_implementation") or "",
        "python_version": machine_info.get("python_version") or "",
        "hostname": machine_info.get("node") or "",
        "source": PYTEST_BENCHMARK,
    }
    if isinstance(cpu.get("count"), int):
        fingerprint["cpu_count"] = cpu["count"]
    return fingerprint


def benchmark_platform(machine_info: Mapping[str, Any], override: str | None) -> PlatformInfo:
    """The platform of a pytest-benchmark run.

    `override` names it outright. A run saved on this very machine (same host name, OS,
    architecture, CPU model and count) gets this machine's key, so its history continues
    the one the plugin records here. Otherwise the key is built from `machine_info` like a
    detected one, without the memory size pytest-benchmark does not save.
    """
    from .platform import detect_platform, platform_key

    fingerprint = benchmark_fingerprint(machine_info)
    if override:
        return PlatformInfo(override, fingerprint)
    here = detect_platform()
    same = ("hostname", "os", "arch", "cpu_model", "cpu_count")
    if all(fingerprint.get(k) == here.fingerprint.get(k) for k in same):
        return here
    # platform_key always ends in the memory size; unknown here, it would read "0GB".
    return PlatformInfo(platform_key(fingerprint).removesuffix("_0GB"), fingerprint)


# -- the seed's results JSON -----------------------------------------------------------------


def _looks_like_seed_run(entry: Mapping[str, Any]) -> bool:
    return isinstance(entry.get("metrics"), dict) or bool(
        {"timestamp", "started_at", "platform"} & entry.keys()
    )


def _seed_run(path: Path, label: str, entry: dict[str, Any], platform: str | None) -> ImportedRun:
    metadata = _mapping(entry.get("metadata"))
    if isinstance(entry.get("metrics"), dict):
        values = dict(entry["metrics"])
        meta = {**metadata, **{k: v for k, v in entry.items() if k not in ("metrics", "metadata")}}
        strict = True
    else:
        values = {k: v for k, v in entry.items() if k not in _SEED_META and k != "metadata"}
        meta = {**metadata, **{k: v for k, v in entry.items() if k in _SEED_META}}
        strict = False
    extra: dict[str, Any] = {}
    test = str(meta.get("test_name") or meta.get("test") or "")
    success = meta.get("success", True) is not False
    measurements = []
    for name, spec in values.items():
        measurement = _seed_measurement(label, test, name, spec, success, strict=strict)
        if measurement is None:
            if spec is not None:
                extra[name] = spec
            continue
        measurements.append(measurement)
    for key in ("id", "num_test_queries", "test_duration_seconds"):
        if key in meta:
            extra["seed_" + key if key == "id" else key] = meta[key]
    run_type: RunType = meta["run_type"] if meta.get("run_type") in RUN_TYPES else "manual"
    run = RunInfo(
        started_at=_timestamp(
            meta.get("timestamp") or meta.get("started_at"), naive_is_utc=False, fallback=path
        ),
        platform=PlatformInfo(platform or str(meta.get("platform") or "unknown")),
        git_commit=_text(meta.get("git_commit"), empty=_NO_COMMIT),
        git_branch=_text(meta.get("git_branch"), empty=_NO_BRANCH),
        python_version=str(meta.get("python_version") or ""),
        run_type=run_type,
        triggered_by={"manual": "user", "ci": "ci", "nightly": "automated"}[run_type],
        host=str(meta.get("host") or ""),
        outcome="passed" if success else "failed",
        notes=str(meta.get("notes") or ""),
        system_info={"imported_from": SEED_RESULTS, "source_file": path.name, **extra},
    )
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    key = "seed:" + hashlib.sha256(canonical.encode()).hexdigest()
    return ImportedRun(path, label, SEED_RESULTS, key, run, measurements)


def _seed_measurement(
    label: str, test: str, name: str, spec: Any, success: bool, *, strict: bool
) -> Measurement | None:
    """A metric of a seed run; None for a null value, or (flat runs) a non-number field."""
    unit, direction = seed_unit(name), seed_direction(name)
    value = spec
    if isinstance(spec, dict):
        value = spec.get("value")
        unit = str(spec.get("unit", unit))
        if spec.get("direction") is not None:
            if spec["direction"] not in ("lower", "higher"):
                raise ImportFormatError(
                    f"{label}: {name}.direction: {spec['direction']!r} is not 'lower' or 'higher'"
                )
            direction = spec["direction"]
    if value is None:
        return None
    if not _finite(value):
        if strict or isinstance(spec, dict):
            raise ImportFormatError(f"{label}: {name}: {value!r} is not a finite number")
        return None
    return Measurement(
        test=test,
        metric=name,
        value=float(value),
        unit=unit,
        direction=direction,
        kind="custom",
        marked=True,
        outcome="passed" if success else "failed",
    )


def seed_direction(name: str) -> Direction:
    lowered = name.lower()
    if seed_unit(name) or any(hint in lowered for hint in _LOWER_IS_BETTER):
        return "lower"
    return "higher"


def seed_unit(name: str) -> str:
    lowered = name.lower()
    for suffix, unit in _UNIT_SUFFIXES:
        if lowered.endswith(suffix):
            return unit
    return ""


# -- small helpers ---------------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any, *, empty: tuple[str, ...]) -> str | None:
    if value is None or str(value).strip() in empty:
        return None
    return str(value).strip()


def _timestamp(value: Any, *, naive_is_utc: bool, fallback: Path) -> datetime:
    """A stored time as an aware datetime; the file's modification time when there is none.

    pytest-benchmark writes UTC (naive before 4.0); the seed wrote `datetime.now()`, local.
    """
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ImportFormatError(f"{fallback}: {value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc) if naive_is_utc else parsed.astimezone()
        return parsed
    return datetime.fromtimestamp(os.stat(fallback).st_mtime, tz=timezone.utc)
