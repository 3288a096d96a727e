"""The seed project's results JSON (`PerformanceHistory.export_to_json`).

A list of runs, each a flat object of metadata (`timestamp`, `platform`, `git_commit`, ...)
and metric values (`"query_latency": 8.1`), or an object with `metrics` and `metadata`; a
single run object is read too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results import RUN_TYPES, Direction, Measurement, PlatformInfo, RunInfo, RunType
from .model import (
    NO_BRANCH,
    NO_COMMIT,
    ImportedRun,
    ImportFormatError,
    finite,
    mapping,
    text,
    timestamp,
)

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


def is_seed_run(entry: Mapping[str, Any]) -> bool:
    return isinstance(entry.get("metrics"), dict) or bool(
        {"timestamp", "started_at", "platform"} & entry.keys()
    )


def seed_run(path: Path, label: str, entry: dict[str, Any], platform: str | None) -> ImportedRun:
    metadata = mapping(entry.get("metadata"))
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
        started_at=timestamp(
            meta.get("timestamp") or meta.get("started_at"), naive_is_utc=False, fallback=path
        ),
        platform=PlatformInfo(platform or str(meta.get("platform") or "unknown")),
        git_commit=text(meta.get("git_commit"), empty=NO_COMMIT),
        git_branch=text(meta.get("git_branch"), empty=NO_BRANCH),
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
    if not finite(value):
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
