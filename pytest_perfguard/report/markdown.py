"""The Markdown PR report, rendered from the jinja2 templates shipped in this package."""

from __future__ import annotations

import functools
import re

import jinja2

from ..formatting import format_delta, format_percent, format_value
from .data import ReportData

_SPECIAL = re.compile(r"([\\`*\[\]|~])")
# An underscore between two letters or digits can never start or end emphasis (CommonMark),
# so `test_query` stays readable; any other underscore is escaped.
_LOOSE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
_MENTION = re.compile(r"([@#])(?=\w)")


def escape_markdown(text: object) -> str:
    """Text safe inside a GitHub Markdown table cell or heading.

    Newlines become spaces; `|`, backticks and other Markdown punctuation (`_` unless
    inside a word) are backslash-escaped, so a test id stays one cell of one row; `<`, `>`
    and `&` become entities (no HTML injection); a zero-width space after `@` / `#` stops
    GitHub from turning `@name` into a mention and `#12` into an issue link.
    """
    value = re.sub(r"[\r\n]+", " ", str(text))
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _SPECIAL.sub(r"\\\1", value)
    value = _LOOSE_UNDERSCORE.sub(r"\\_", value)
    return _MENTION.sub("\\1\u200b", value)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_perfguard.report", "templates"),
        autoescape=False,  # Markdown, not HTML: values are escaped with the `md` filter
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = escape_markdown
    env.filters["value"] = format_value
    env.filters["delta"] = format_delta
    env.filters["percent"] = format_percent
    return env


def render_markdown(data: ReportData) -> str:
    run = data.run
    commit = escape_markdown(run.git_commit[:12]) if run.git_commit else "unknown"
    if run.git_dirty:
        commit += " (uncommitted changes)"
    text = (
        _environment()
        .get_template("report.md.j2")
        .render(
            data=data,
            run=run,
            commit=commit,
            summary=summary_line(data),
            improvements=data.of_kind("improvement"),
            new=data.of_kind("new"),
            unstable=data.of_kind("unstable"),
            failed_tests=data.of_kind("skipped_failed"),
            missing=data.of_kind("missing"),
        )
    )
    return re.sub(r"\n{3,}", "\n\n", text)


_LABELS = {
    "regression": ("regression", "regressions"),
    "improvement": ("improvement", "improvements"),
    "unchanged": ("unchanged", "unchanged"),
    "new": ("new", "new"),
    "unstable": ("unstable", "unstable"),
    "missing": ("missing", "missing"),
    "skipped_failed": ("not compared (test failed)", "not compared (test failed)"),
}


def summary_line(data: ReportData) -> str:
    counts = data.comparison.counts()
    parts = [f"{n} {_LABELS[kind][n != 1]}" for kind, n in counts.items() if n and kind in _LABELS]
    steps = len(data.comparison.step_regressions)
    if steps:
        parts.append(f"{steps} regressed step{'s' if steps != 1 else ''}")
    return " · ".join(parts) if parts else "No gated metrics were compared."
