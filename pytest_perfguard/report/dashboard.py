"""The offline dashboard: one self-contained HTML file built from the history.

`render_dashboard(data)` renders what its caller read through the `History` API
(`DashboardData`; `cli/dashboard_data.read_dashboard` reads it; nothing here queries),
works out baselines and change points here in Python, takes every verdict from the gate's
own code with the project's settings (`dashboard_verdicts`), renders the tables with
jinja2 (autoescaped) and embeds the chart data as JSON for a small hand-written script
(`static/dashboard.js`) that draws inline SVG. Nothing is loaded from anywhere: no CDN, no
server, no fetch; a Content-Security-Policy that allows only the page's own script and
style (by hash) makes sure of it, and keeps injected markup inert even if some text were
ever left unescaped.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import statistics
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import jinja2
import markupsafe

from .._version import __version__
from ..baselines import BaselineFile
from ..formatting import format_delta, format_percent, format_value
from ..results import Verdict
from ..settings import PerfSettings
from .dashboard_experiments import experiments_view
from .dashboard_series import (
    DashboardData,
    Series,
    aware,
    build_series,
    chart_payload,
    judge,
    snapshot_segments,
)
from .dashboard_verdicts import VerdictKey, judge_runs

__all__ = ["render_dashboard"]

TRACKED_KINDS = frozenset({"primary", "custom"})  # what the gate judges: in the tables
_RECENT = 5  # platform comparison: median of the newest passing values
_MAX_SNAPSHOTS = 50
# Escapes that keep JSON inert inside <script>: no `</script>`, no `<!--`, and the two
# line separators that older JavaScript parsers treat as newlines.
_JSON_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def render_dashboard(
    data: DashboardData,
    *,
    baselines: BaselineFile | None = None,
    settings: PerfSettings | None = None,
) -> str:
    """The dashboard of `data` as one standalone HTML page (opens offline from disk).

    Baselines come from `baselines` (the committed file) when given, with earlier values
    from the baseline snapshots stored by updates; without it, from the snapshots alone.
    Verdicts are the gate's under `settings` (the project's; the defaults when None).
    """
    settings = PerfSettings() if settings is None else settings
    records = data.platforms
    keys = [r.key for r in records]
    snapshots = data.snapshots
    series = build_series(data.points, data.kinds, keys)
    segments = snapshot_segments(snapshots, settings.threshold)
    for s in series:
        for line in s.lines:
            stored = segments.get((line.platform, s.test, s.metric), [])
            judge(s, line, stored, baselines, settings.threshold)
    verdicts = judge_runs(data.measurements, series, settings)
    seen = {line.platform for s in series for line in s.lines}
    shown_platforms = [key for key in keys if key in seen]
    payload = chart_payload(series, shown_platforms)
    experiment_rows, payload["experiments"] = experiments_view(data.experiments, data.trials)
    payload["snapshots"] = _snapshot_history(snapshots)
    payload["threshold"] = settings.threshold
    snapshot = _snapshot_rows(series, verdicts)
    context = {
        "version": __version__,
        "generated": _utc_text(datetime.now(timezone.utc)),
        "url": data.url,
        "days": data.days,
        "platforms": [_platform_view(r) for r in records if r.key in shown_platforms],
        "missing": data.missing,
        "n_series": len(series),
        "n_runs": len(payload["runs"]),
        "span": _span(series),
        "baselines_given": baselines is not None,
        "snapshot": snapshot,
        "counts": _counts(snapshot),
        "regressions": [row for row in snapshot if row["verdict"] == "regression"],
        "steps": _change_rows(series),
        "comparison": _comparison_rows(series, shown_platforms),
        "shown_platforms": shown_platforms,
        "snapshots": [_snapshot_view(s) for s in snapshots[:_MAX_SNAPSHOTS]],
        "n_snapshots": len(snapshots),
        "default_threshold": format_percent(settings.threshold),
        "rule": settings.rule,
        "recent": _RECENT,
        "experiments": experiment_rows,
    }
    return _page(context, payload)


def _snapshot_rows(
    series: list[Series], verdicts: dict[VerdictKey, Verdict]
) -> list[dict[str, Any]]:
    """The newest value of each tracked metric per platform with the gate's verdict on it,
    regressions first."""
    rows: list[dict[str, Any]] = []
    for n, s in enumerate(series):
        if s.kind not in TRACKED_KINDS:
            continue
        for line in s.lines:
            i = line.latest
            if i is None:
                continue
            point = line.points[i]
            found = verdicts.get((point.run_id, s.test, s.metric))
            baseline = None if found is None else found.baseline
            trend = next((cp for cp in reversed(line.change_points) if cp[0] <= i), None)
            rows.append(
                {
                    "chart": n,
                    "test": s.test,
                    "metric": s.metric,
                    "platform": line.platform,
                    "value": format_value(point.value, s.unit),
                    "baseline": format_value(baseline, s.unit),
                    # How the value moved, as in the other reports (not direction-aware).
                    "change": format_delta(point.value, baseline),
                    "threshold": format_percent(found.threshold) if found else "—",
                    "verdict": _shown_kind(found),
                    "run_id": point.run_id,
                    "commit": (point.git_commit or "")[:10],
                    "when": _utc_text(point.started_at),
                    "step": None
                    if trend is None
                    else (f"{trend[1]:+.1%} at run #{line.points[trend[0]].run_id}"),
                }
            )
    rows.sort(key=lambda r: _SHOWN_KINDS.index(r["verdict"]))
    return rows


# What the snapshot says, in the order it lists rows: the gate's verdict kinds, a failed
# test's, and "not gated" where the gate judges nothing (an unmarked test under
# `perf_gate = marked`).
_SHOWN_KINDS = ("regression", "failed", "unstable", "improvement", "new", "unchanged", "missing",
                "not gated")  # fmt: skip


def _shown_kind(verdict: Verdict | None) -> str:
    if verdict is None:
        return "not gated"
    return "failed" if verdict.kind == "skipped_failed" else verdict.kind


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(_SHOWN_KINDS, 0)
    for row in rows:
        counts[row["verdict"]] += 1
    return counts


def _change_rows(series: list[Series]) -> list[dict[str, Any]]:
    """Steps for the worse found by change-point detection, newest first."""
    rows: list[dict[str, Any]] = []
    for n, s in enumerate(series):
        for line in s.lines:
            for i, change, worse in line.change_points:
                if worse <= 0:
                    continue
                point = line.points[i]
                before = [p.value for p in line.points[:i] if p.outcome == "passed"]
                after = [p.value for p in line.points[i:] if p.outcome == "passed"]
                rows.append(
                    {
                        "chart": n,
                        "test": s.test,
                        "metric": s.metric,
                        "platform": line.platform,
                        "run_id": point.run_id,
                        "commit": (point.git_commit or "")[:10],
                        "when": _utc_text(point.started_at),
                        "sort": point.started_at,
                        "before": format_value(statistics.median(before), s.unit),
                        "after": format_value(statistics.median(after), s.unit),
                        "change": f"{change:+.1%}",
                    }
                )
    rows.sort(key=lambda r: r["sort"], reverse=True)
    return rows


def _comparison_rows(series: list[Series], platforms: list[str]) -> list[dict[str, Any]]:
    """Median of the newest passing values per platform, against the best platform."""
    rows = []
    for n, s in enumerate(series):
        if s.kind not in TRACKED_KINDS or len(platforms) < 2:
            continue
        medians: dict[str, float] = {}
        for line in s.lines:
            recent = [p.value for p in line.points if p.outcome == "passed"][-_RECENT:]
            if recent:
                medians[line.platform] = statistics.median(recent)
        if not medians:
            continue
        best = (min if s.direction == "lower" else max)(medians.values())
        cells = []
        for key in platforms:
            if key not in medians:
                cells.append({"value": "—", "vs": "", "best": False})
                continue
            is_best = medians[key] == best
            cells.append(
                {
                    "value": format_value(medians[key], s.unit),
                    "best": is_best,
                    "vs": "" if is_best else format_delta(medians[key], best),
                }
            )
        rows.append({"chart": n, "test": s.test, "metric": s.metric, "cells": cells})
    return rows


def _snapshot_view(snapshot: Any) -> dict[str, Any]:
    entries = []
    for test, metrics in sorted(snapshot.entries.items()):
        for metric, entry in sorted(metrics.items()) if isinstance(metrics, dict) else ():
            entry = entry if isinstance(entry, dict) else {}
            value = entry.get("value")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            shown = value if number else None
            entries.append(
                {
                    "test": test,
                    "metric": metric,
                    "value": format_value(shown, str(entry.get("unit", ""))),
                    "number": shown,
                    "reason": str(entry.get("reason", "")),
                }
            )
    return {
        "when": _utc_text(snapshot.created_at),
        "platform": snapshot.platform,
        "commit": (snapshot.git_commit or "")[:10],
        "who": snapshot.who,
        "reason": snapshot.reason,
        "entries": entries,
    }


def _snapshot_history(snapshots: list[Any]) -> list[dict[str, Any]]:
    """Every baselines update, oldest first, with what it changed: each entry's value
    before (the one the previous update on that platform left, None when it was added)
    and after. An update stores only the entries it changed, so what the baselines were
    at any update is the replay of that platform's updates up to it (the page's script
    does it when a reader picks one)."""
    state: dict[str, dict[tuple[str, str], tuple[str, float | None]]] = {}
    out = []
    for snap in reversed(snapshots):  # newest first -> oldest first
        before = state.setdefault(snap.platform, {})
        changes = []
        for e in _snapshot_view(snap)["entries"]:
            key = (e["test"], e["metric"])
            old_text, old_number = before.get(key, (None, None))
            change = "" if old_text is None else format_delta(e["number"], old_number)
            changes.append([e["test"], e["metric"], old_text, e["value"], change, e["reason"]])
            before[key] = (e["value"], e["number"])
        out.append(
            {
                "id": snap.id,
                "when": _utc_text(snap.created_at),
                "platform": snap.platform,
                "commit": (snap.git_commit or "")[:10],
                "who": snap.who,
                "reason": snap.reason,
                "changes": changes,
            }
        )
    return out


def _platform_view(record: Any) -> dict[str, Any]:
    """A platform's fingerprint as the table shows it (any field may be missing)."""
    fp = record.fingerprint
    gpus = fp.get("gpus") if isinstance(fp.get("gpus"), list) else []
    memory = fp.get("memory_gb")
    return {
        "key": record.key,
        "n_runs": record.n_runs,
        "last_run": _utc_text(record.last_run) if record.last_run else "",
        "cpu": str(fp.get("cpu_model") or ""),
        "cores": str(fp.get("cpu_count") or ""),
        "memory": f"{memory} GB" if memory else "",
        "gpus": ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus),
        "python": str(fp.get("python_version") or ""),
    }


def _span(series: list[Series]) -> str:
    times = [p.started_at for s in series for line in s.lines for p in line.points]
    if not times:
        return ""
    return f"{_utc_text(min(times))} to {_utc_text(max(times))}"


def _utc_text(when: datetime) -> str:
    return aware(when).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _script_json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@functools.lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    static = resources.files("pytest_perfguard.report") / "static"
    script = (static / "dashboard.js").read_text(encoding="utf-8")
    style = (static / "dashboard.css").read_text(encoding="utf-8")
    if "</script" in script.lower() or "</style" in style.lower():  # inlined as is
        raise RuntimeError("dashboard assets must not close their own element")
    return script, style


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_perfguard.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _page(context: dict[str, Any], payload: dict[str, Any]) -> str:
    script, style = _assets()
    template = _environment().get_template("dashboard.html.j2")
    return template.render(
        **context,
        script=markupsafe.Markup(script),
        style=markupsafe.Markup(style),
        data=markupsafe.Markup(_script_json(payload)),
        script_hash=_csp_hash(script),
        style_hash=_csp_hash(style),
    )
