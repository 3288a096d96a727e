"""The report as one standalone HTML page (`perfguard report --format html`).

The same `ReportData` as the Markdown report, laid out as tables: regressions first, then
improvements, new and unstable metrics, then every measured value. No script, no external
resource; every value is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ..formatting import format_delta, format_percent, format_value
from ..results import Verdict
from .data import ReportData

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #1f2328; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; } code { font-size: .95em; }
.regression { color: #cf222e; } .improvement { color: #1a7f37; } .muted { color: #656d76; }
"""
_VERDICT_HEADERS = ("test", "metric", "baseline", "current", "change", "threshold", "note")


def render_html(data: ReportData) -> str:
    run = data.run
    commit = escape(run.git_commit[:12]) if run.git_commit else "unknown"
    if run.git_dirty:
        commit += " (uncommitted changes)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>perfguard report: {escape(run.platform.key)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(data.headline)}</h1>",
        f'<p class="muted">Platform <code>{escape(run.platform.key)}</code> · commit '
        f"<code>{commit}</code> · branch {escape(run.git_branch or '—')} · "
        f"{escape(run.started_at.isoformat(timespec='seconds'))} · run type "
        f"{escape(run.run_type)} · outcome {escape(run.outcome)}</p>",
    ]
    sections = (
        ("Regressions", "regression"),
        ("Improvements", "improvement"),
        ("Unstable", "unstable"),
        ("New (no baseline)", "new"),
        ("Missing (baseline, no measurement)", "missing"),
        ("Not compared (test failed)", "skipped_failed"),
    )
    for title, kind in sections:
        verdicts = data.of_kind(kind)
        if verdicts:
            parts.append(f'<h2 class="{kind}">{escape(title)} ({len(verdicts)})</h2>')
            parts.append(_verdict_table(verdicts))
    if not data.comparison.verdicts:
        parts.append("<p>No gated metrics were compared.</p>")
    rows = [
        [
            row.measurement.test,
            row.measurement.metric,
            format_value(row.measurement.value, row.measurement.unit),
            row.measurement.kind,
            row.measurement.outcome,
            row.verdict.kind.replace("_", " ") if row.verdict else "",
        ]
        for row in data.rows
    ]
    if rows:
        parts.append(f"<h2>All measured values ({len(rows)})</h2>")
        parts.append(
            _table(("test", "metric", "value", "kind", "outcome", "verdict"), rows, numeric={2})
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _verdict_table(verdicts: Sequence[Verdict]) -> str:
    rows = [
        [
            v.test,
            v.metric,
            format_value(v.baseline, v.unit),
            format_value(v.current, v.unit),
            format_delta(v.current, v.baseline),
            format_percent(v.threshold),
            v.detail,
        ]
        for v in verdicts
    ]
    return _table(_VERDICT_HEADERS, rows, numeric={2, 3, 4, 5})


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ""
            text = f"<code>{escape(cell)}</code>" if i == 0 else escape(cell)
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
