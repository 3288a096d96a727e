"""PERFORMANCE_RESULTS.md, the seed tracker's running summary, rendered from history.

`perfguard summary --markdown FILE` rewrites the whole file from the runs and summaries it
is handed (the newest runs first, then per test and metric): nothing in it is kept by hand,
so the history is the one record and the file never drifts from it. The text depends only
on the data, so an unchanged history rewrites an identical file (no diff to commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timezone

from ..formatting import NONE, format_value
from ..records import MetricSummary, RunDetail
from ..results import GATEABLE_KINDS
from .markdown import escape_markdown

MARKER = "<!-- perfguard-results: rewritten by `perfguard summary --markdown`; edits are lost -->"


def render_results_markdown(
    runs: Sequence[RunDetail], summaries: Sequence[MetricSummary], *, last_runs: int
) -> str:
    lines = [MARKER, "# Performance results", ""]
    if not runs:
        lines += ["No runs recorded yet: `perfguard record NAME --METRIC VALUE` stores one.", ""]
        return "\n".join(lines)
    newest = runs[0].started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"{len(runs)} most recent runs, newest {newest}.", "", "## Recent runs", ""]
    lines += [
        "| Run | When (UTC) | What | Type | Who | Result | Metrics | Notes |",
        "|---:|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            "| "
            + " | ".join(
                [
                    str(run.id),
                    run.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    escape_markdown(_what(run)),
                    escape_markdown(run.test_type or run.run_type),
                    escape_markdown(run.triggered_by),
                    "✅ success" if run.outcome == "passed" else f"❌ {run.outcome}",
                    escape_markdown(_metrics(run)),
                    escape_markdown(" ".join(run.notes.split())),
                ]
            )
            + " |"
        )
    lines += ["", f"## Per test and metric (passing values of the newest {last_runs} runs)", ""]
    lines += [
        "| Test | Metric | Runs | Latest | Median | Best | Change |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        best = (min if s.direction == "lower" else max)(s.values, default=None)
        change = NONE if s.change is None else f"{s.change:+.1%}"
        lines.append(
            f"| {escape_markdown(s.test or '(no test)')} | {escape_markdown(s.metric)} | "
            f"{len(s.values)} | {escape_markdown(format_value(s.latest, s.unit))} | "
            f"{escape_markdown(format_value(s.median, s.unit))} | "
            f"{escape_markdown(format_value(best, s.unit))} | {change} |"
        )
    lines.append("")
    return "\n".join(lines)


def _what(run: RunDetail) -> str:
    tests = sorted({m.test for m in run.measurements})
    if len(tests) == 1:
        return tests[0] or "(no test)"
    return f"{len(tests)} tests"


def _metrics(run: RunDetail) -> str:
    shown = [m for m in run.measurements if m.kind in GATEABLE_KINDS and m.marked]
    text = ", ".join(f"{m.metric} {format_value(m.value, m.unit)}" for m in shown[:6])
    return text + (f", +{len(shown) - 6} more" if len(shown) > 6 else "")
