"""The seed project's Python API, as its guide's snippets call it, over `History`.

The RAG performance guide this project replaces (docs/seed-guide.md walks it) has scripts
call ``PerformanceHistory`` and ``detect_platform`` / ``get_git_metadata``; they run here
unchanged but for their import lines::

    from pytest_perfguard.seed_api import PerformanceHistory, detect_platform, get_git_metadata

Runs come back as the seed's flat dicts: ``{"id", "timestamp" (ISO 8601), "platform",
"git_commit", "git_branch", "run_type", "notes", "<metric>": value, ...}``, newest first.
A run's metrics are the ones that can be gated (a marked test's metric, a `perf.record`
value, a recorded metric); a name two tests of one run share is given once, the first
stored. Everything else of the history is `History`'s (``pytest_perfguard.History``);
this module only translates shapes.
"""

from __future__ import annotations

import io
import json
import os
import platform as _platform
import statistics
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from .api import NO_TEST, History, HistoryError
from .compare import classify, relative_change, relative_difference
from .config import DEFAULT_THRESHOLD, OPTIONS_BY_FIELD, env_value, parse_threshold
from .importers.seed import seed_direction, seed_unit
from .records import RunDetail
from .results import GATEABLE_KINDS, RUN_TYPES, Measurement, PlatformInfo, RunInfo, RunType

__all__ = ["PerformanceHistory", "detect_platform", "get_git_metadata"]

# Where the seed kept its baselines; read when the plugin's default file is absent.
SEED_BASELINES = Path("tests/performance_baselines.json")
# Runs looked at by `get_baseline` when the baselines file has no value: the median of the
# metric's last five, the seed's "5+ runs" rule.
BASELINE_RUNS = 5
# Seed metadata keys that are columns of the run; the rest go to its system info.
_RUN_KEYS = frozenset(
    {"platform", "git_commit", "git_branch", "git_dirty", "run_type", "notes", "timestamp",
     "python_version", "success", "who_ran", "test_type"}
)  # fmt: skip


def detect_platform() -> str:
    """This machine's platform key, as the seed's `detect_platform()` returned it: a string
    (`PERFORMANCE_PLATFORM` / `PERFGUARD_PLATFORM` override it, as for the plugin)."""
    from .platform import detect_platform as detect

    found = env_value(OPTIONS_BY_FIELD["platform"], os.environ)
    return detect(found[1] if found else None).key


def get_git_metadata() -> dict[str, Any]:
    """``{"git_commit", "git_branch", "git_dirty"}`` of the current directory's checkout
    (None where there is no git), for `record_run(metadata={**get_git_metadata(), ...})`."""
    from .runinfo import git_state

    git = git_state(Path.cwd())
    return {"git_commit": git.commit, "git_branch": git.branch, "git_dirty": git.dirty}


class PerformanceHistory:
    """The seed's ``PerformanceHistory(db_path=None)``: the perfguard history behind it.

    `db_path` None means the plugin's database (``PERFGUARD_DB``, ``PERFORMANCE_DB_PATH``,
    else ``.perfguard/history.db``); `baselines_path` None means
    ``baselines/perf_baselines.json``, else the seed's ``tests/performance_baselines.json``.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        baselines_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.history = History(db_path)
        self.baselines_path = _baselines_path(baselines_path)

    def close(self) -> None:
        self.history.close()

    def __enter__(self) -> PerformanceHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def record_run(
        self, metrics: Mapping[str, float], metadata: Mapping[str, Any] | None = None
    ) -> int:
        """Store one run of flat metrics; returns its id.

        `metadata` keys: ``platform`` (default: detected), ``git_commit``, ``git_branch``,
        ``run_type`` (manual / ci / nightly; any other, such as the seed's ``custom``, is
        stored as the run's test type with run type manual), ``notes``, ``timestamp``,
        ``success``, ``who_ran``; others are kept in the run's system info. Directions
        and units follow the seed's names (latency, memory: lower is better).
        """
        meta = dict(metadata or {})
        if not metrics:
            raise HistoryError("record_run: no metrics given")
        run_type = str(meta.get("run_type") or "manual")
        test_type = meta.get("test_type")
        if run_type not in RUN_TYPES:
            run_type, test_type = "manual", test_type or run_type
        success = meta.get("success", True) is not False
        platform = str(meta.get("platform") or detect_platform())
        who = meta.get("who_ran") or {"nightly": "automated", "ci": "ci"}.get(run_type, "user")
        run = RunInfo(
            started_at=_timestamp(meta.get("timestamp")),
            platform=PlatformInfo(platform),
            git_commit=_text(meta.get("git_commit")),
            git_branch=_text(meta.get("git_branch")),
            git_dirty=meta.get("git_dirty") if isinstance(meta.get("git_dirty"), bool) else None,
            python_version=str(meta.get("python_version") or _platform.python_version()),
            run_type=cast(RunType, run_type),  # one of RUN_TYPES: checked above
            triggered_by=str(who),
            host=_platform.node(),
            outcome="passed" if success else "failed",
            notes=str(meta.get("notes") or ""),
            system_info={k: v for k, v in meta.items() if k not in _RUN_KEYS},
            test_type=None if test_type is None else str(test_type),
        )
        measurements = [_measurement(name, value, success) for name, value in metrics.items()]
        return self.history.save_session(run, measurements)

    # -- reading -------------------------------------------------------------------------

    def get_recent_runs(self, platform: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The newest `limit` runs of `platform` (all platforms if None), newest first."""
        summaries = self.history.recent_runs(platform=platform, limit=limit)
        return [_seed_run(self.history.get_run(s.id)) for s in summaries]

    def get_trend(self, platform: str, metric_name: str, days: int = 30) -> list[dict[str, Any]]:
        """``[{"timestamp", "value", "run_id", "git_commit", "test", "direction"}]`` of a
        metric on a platform over the last `days` days, oldest first (failed tests left out)."""
        buffer = io.StringIO()
        self.history.export("json", buffer, platform=platform, days=days, metric=metric_name)
        points = [
            {
                "timestamp": row["started_at"],
                "value": row["value"],
                "run_id": row["run_id"],
                "git_commit": row["git_commit"],
                "test": row["test"],
                "direction": row["direction"],
            }
            for row in json.loads(buffer.getvalue())
            if row["outcome"] == "passed" and row["kind"] in GATEABLE_KINDS and row["marked"]
        ]
        return sorted(points, key=lambda p: (p["timestamp"], p["run_id"]))

    def get_baseline(self, platform: str, metric_name: str) -> float | None:
        """The metric's baseline on `platform`: the baselines file's value (flat, or the one
        test's entry of that name), else the median of its last five recorded values."""
        from .baselines import load_baselines

        section = load_baselines(self.baselines_path).platforms.get(platform)
        if section is not None:
            if metric_name in section.metrics:
                return section.metrics[metric_name].value
            found = [m[metric_name].value for m in section.tests.values() if metric_name in m]
            if len(found) == 1:
                return found[0]
        values = [p["value"] for p in self.get_trend(platform, metric_name, days=36500)]
        return statistics.median(values[-BASELINE_RUNS:]) if values else None

    def compare_to_baseline(
        self,
        current_metrics: Mapping[str, float],
        platform: str | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        """Each metric against its baseline, by the gate's rule (worse by more than the
        threshold: a regression). Returns ``{"platform", "threshold", "metrics": {name:
        {...}}, "regressions": [...], "improvements": [...], "stable": [...], "new": [...]}``;
        each metric's dict holds ``metric, current, baseline, change (up positive),
        change_percent, direction, status``."""
        platform = platform or detect_platform()
        limit = _threshold() if threshold is None else threshold
        result: dict[str, Any] = {"platform": platform, "threshold": limit, "metrics": {}}
        for status in ("regressions", "improvements", "stable", "new"):
            result[status] = []
        for name, value in current_metrics.items():
            baseline = self.get_baseline(platform, name)
            direction = self._direction(platform, name)
            entry: dict[str, Any] = {"metric": name, "current": float(value),
                                     "baseline": baseline, "direction": direction}  # fmt: skip
            change = None if baseline is None else relative_difference(float(value), baseline)
            worse = None if baseline is None else relative_change(float(value), baseline, direction)
            entry["change"] = change
            entry["change_percent"] = None if change is None else round(change * 100, 2)
            if worse is None:
                entry["status"] = "new"
            else:
                entry["status"] = {"regression": "regression", "improvement": "improvement",
                                   "unchanged": "stable"}[classify(worse, limit)]  # fmt: skip
            result["metrics"][name] = entry
            plural = {"regression": "regressions", "improvement": "improvements"}
            result[plural.get(entry["status"], entry["status"])].append(entry)
        return result

    def _direction(self, platform: str, metric_name: str) -> str:
        """As the baselines file or the newest stored value says, else by the seed's
        names (latency, memory: lower is better)."""
        from .baselines import load_baselines

        section = load_baselines(self.baselines_path).platforms.get(platform)
        if section is not None:
            entries = [section.metrics.get(metric_name)]
            entries += [m.get(metric_name) for m in section.tests.values()]
            for entry in entries:
                if entry is not None and entry.direction is not None:
                    return entry.direction
        stored = self.get_trend(platform, metric_name, days=36500)
        return str(stored[-1]["direction"]) if stored else seed_direction(metric_name)

    def get_stats(self) -> dict[str, Any]:
        """``{"total_runs", "num_platforms", "first_run", "last_run", "total_results",
        "num_tests", "db_path", "db_size_bytes"}`` (times as ISO 8601 strings)."""
        if not self.history.exists():
            return {"total_runs": 0, "num_platforms": 0, "first_run": None, "last_run": None,
                    "total_results": 0, "num_tests": 0, "db_path": self.history.url,
                    "db_size_bytes": None}  # fmt: skip
        stats = self.history.stats()
        return {
            "total_runs": stats.n_runs,
            "num_platforms": stats.n_platforms,
            "first_run": _iso(stats.first_run),
            "last_run": _iso(stats.last_run),
            "total_results": stats.n_results,
            "num_tests": stats.n_tests,
            "db_path": stats.url,
            "db_size_bytes": stats.db_size_bytes,
        }

    def get_available_platforms(self) -> list[str]:
        """Platform keys with recorded runs, sorted."""
        if not self.history.exists():
            return []
        return sorted(p.key for p in self.history.platforms() if p.n_runs)

    def export_to_json(
        self, platform: str, output_path: str | os.PathLike[str], limit: int = 100_000
    ) -> int:
        """Write the platform's runs (`get_recent_runs` dicts) to a JSON file; returns how
        many. `perfguard import` reads the file back."""
        runs = self.get_recent_runs(platform, limit=limit)
        Path(output_path).write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
        return len(runs)


def _baselines_path(given: str | os.PathLike[str] | None) -> Path:
    if given is not None:
        return Path(given)
    default = Path("baselines/perf_baselines.json")
    return default if default.exists() or not SEED_BASELINES.exists() else SEED_BASELINES


def _threshold() -> float:
    found = env_value(OPTIONS_BY_FIELD["threshold"], os.environ)
    if found is None:
        return DEFAULT_THRESHOLD
    try:
        return parse_threshold(found[1])
    except ValueError as exc:
        raise HistoryError(f"{found[0]}: {exc}") from None


def _measurement(name: str, value: Any, success: bool) -> Measurement:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HistoryError(f"record_run: metric {name!r} needs a number, not {value!r}")
    return Measurement(
        test=NO_TEST,
        metric=str(name),
        value=float(value),
        unit=seed_unit(name),
        direction=seed_direction(name),
        kind="custom",
        marked=True,
        outcome="passed" if success else "failed",
    )


def _seed_run(run: RunDetail) -> dict[str, Any]:
    flat: dict[str, Any] = {
        "id": run.id,
        "timestamp": _iso(run.started_at),
        "platform": run.platform,
        "git_commit": run.git_commit,
        "git_branch": run.git_branch,
        "run_type": run.test_type or run.run_type,
        "who_ran": run.triggered_by,
        "success": run.outcome == "passed",
        "notes": run.notes,
    }
    ordered = sorted(run.measurements, key=lambda m: m.test != NO_TEST)
    for m in ordered:
        if m.marked and m.kind in GATEABLE_KINDS and m.metric not in flat:
            flat[m.metric] = m.value
    return flat


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise HistoryError(f"record_run: timestamp {value!r} is not ISO 8601") from None
        return parsed if parsed.tzinfo else parsed.astimezone()
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
