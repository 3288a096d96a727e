"""The machine-readable JSON report (schema documented in docs/reports.md)."""

from __future__ import annotations

import json
from typing import Any

from .._version import __version__
from .data import ReportData

JSON_SCHEMA_VERSION = 1


def report_dict(data: ReportData) -> dict[str, Any]:
    """`{"schema": 1, "run": {...}, "summary": {...}, "comparisons": [...]}`."""
    run = data.run
    comparison = data.comparison
    return {
        "schema": JSON_SCHEMA_VERSION,
        "run": {
            "perfguard_version": __version__,
            "platform": run.platform.key,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "git_commit": run.git_commit,
            "git_branch": run.git_branch,
            "git_dirty": run.git_dirty,
            "python_version": run.python_version,
            "run_type": run.run_type,
            "triggered_by": run.triggered_by,
            "host": run.host,
            "outcome": run.outcome,
            "side_by_side": data.side_by_side,
        },
        "summary": {
            "counts": comparison.counts(),
            "regressions": len(comparison.regressions),
            "failed": comparison.failed,
            "warn_only": data.warn_only,
            "notes": list(comparison.notes),
        },
        "comparisons": [v.to_dict() for v in comparison.verdicts],
    }


def render_json(data: ReportData) -> str:
    return json.dumps(report_dict(data), indent=2) + "\n"
