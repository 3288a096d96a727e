"""Reports: Markdown (PR comment), JSON, terminal summary.

Importing this package does not import jinja2: only rendering Markdown does.
"""

from __future__ import annotations

from .data import MetricRow, ReportData, StepBreakdown, StepRow, build_report
from .json_report import render_json, report_dict
from .terminal import terminal_lines


def render_markdown(data: ReportData) -> str:
    """The Markdown PR report (starts with the `<!-- perfguard-report -->` marker)."""
    from .markdown import render_markdown as render

    return render(data)


__all__ = [
    "MetricRow",
    "ReportData",
    "StepBreakdown",
    "StepRow",
    "build_report",
    "render_json",
    "render_markdown",
    "report_dict",
    "terminal_lines",
]
