from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib.resources import files
from typing import Any

import pytest

from pytest_perfguard.baselines import BaselineEntry, BaselineFile, PlatformBaselines
from pytest_perfguard.compare import Comparison, compare
from pytest_perfguard.formatting import format_delta, format_percent, format_value
from pytest_perfguard.report import (
    build_report,
    render_json,
    render_markdown,
    terminal_lines,
)
from pytest_perfguard.report.markdown import escape_markdown
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

P = "linux_x86"
NASTY = "tests/test_x.py::test_q[a|b`c`<script>@octocat\n#12]"
PIPE = "tests/test_rag.py::test_pipeline"


def run_info(**kw: Any) -> RunInfo:
    return RunInfo(started_at=datetime(2026, 1, 7, 10, tzinfo=timezone.utc),
                   platform=PlatformInfo(P), git_commit="0123456789abcdef0123",
                   git_branch="feature/x", run_type="ci", python_version="3.11.9", **kw)


def m(test: str, metric: str, value: float, **kw: Any) -> Measurement:
    kw.setdefault("marked", True)
    kw.setdefault("unit", "s")
    return Measurement(test=test, metric=metric, value=value, **kw)


MEASUREMENTS = [
    m(NASTY, "latency`@here", 2.0),
    m(PIPE, "query_latency", 1.0),
    m(PIPE, "duration", 1.0, kind="system", marked=False),
    m(PIPE, "step:embed", 0.6, kind="step"),
    m(PIPE, "step:retrieve", 0.3, kind="step"),
    m(PIPE, "step:rerank", 0.002, kind="step", error="ValueError: boom\nsecond line"),
    m("tests/test_t.py::test_tput", "tokens_per_s", 2400.0, kind="custom",
      direction="higher", unit="tokens/s"),
    m("tests/test_n.py::test_new", "latency", 0.0042),
]
BASELINES = BaselineFile(platforms={P: PlatformBaselines(tests={
    NASTY: {"latency`@here": BaselineEntry(value=1.0)},
    PIPE: {"query_latency": BaselineEntry(value=0.5), "step:embed": BaselineEntry(value=0.1),
           "step:retrieve": BaselineEntry(value=0.25)},
    "tests/test_t.py::test_tput": {"tokens_per_s": BaselineEntry(value=1200.0)},
    "tests/test_gone.py::test_gone": {"latency": BaselineEntry(value=3.0, unit="s")},
})})


def comparison() -> Comparison:
    selected = [*{mm.test for mm in MEASUREMENTS}, "tests/test_gone.py::test_gone"]
    return compare(MEASUREMENTS, BASELINES, P, gate="marked", default_threshold=0.2,
                   selected_tests=selected)


@pytest.fixture
def markdown() -> str:
    return render_markdown(build_report(run_info(), comparison(), MEASUREMENTS))


def split_row(line: str) -> list[str]:
    """Cells of a GFM table row: split on pipes not escaped with a backslash."""
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])


def section(markdown: str, title: str) -> list[str]:
    text = markdown.split(f"### {title}", 1)[1]
    lines = text.split("\n###", 1)[0].split("<details>", 1)[0].splitlines()
    return [line for line in lines if line.startswith("|")]


def test_header_verdict_and_marker(markdown: str) -> None:
    assert markdown.startswith("<!-- perfguard-report -->\n")
    assert "## ❌ 2 performance regressions, 1 regressed step\n" in markdown
    assert "**Platform** linux_x86" in markdown
    assert "0123456789ab" in markdown and "**Run type** ci" in markdown
    assert "\n\n2 regressions · 1 improvement · 1 new · 1 missing · 1 regressed step\n" in markdown


def test_no_regressions_headline() -> None:
    data = build_report(run_info(), Comparison(platform=P), [])
    text = render_markdown(data)
    assert "## ✅ No performance regressions" in text
    assert "No gated metrics were compared." in text


def test_regressions_table_comes_first_with_numbers(markdown: str) -> None:
    assert markdown.index("### Regressions") < markdown.index("### New metrics")
    header, _rule, *rows = section(markdown, "Regressions")
    assert split_row(header) == [" Test ", " Metric ", " Baseline ", " Current ", " Change ",
                                 " Threshold ", " Note "]
    assert len(rows) == 3  # the regressed step last
    assert [c.strip() for c in split_row(rows[2])][:5] == [
        "tests/test_rag.py::test_pipeline", "step:embed", "100 ms", "600 ms", "+500.0%"]
    cells = [c.strip() for c in split_row(rows[1])]
    assert cells == ["tests/test_rag.py::test_pipeline", "query_latency", "500 ms",
                     "1.00 s", "+100.0%", "20%", ""]
    assert "test_q" in rows[0]
    assert not any("tokens" in row for row in rows)  # the throughput rose: an improvement


def test_test_id_with_pipes_backticks_and_mentions_is_one_row(markdown: str) -> None:
    rows = [line for line in markdown.splitlines() if "test_q" in line]
    assert rows, markdown
    regressions = section(markdown, "Regressions")
    for row in rows:
        cells = split_row(row)
        assert len(cells) == (7 if row in regressions else 6), row
    cell = split_row(rows[0])[0].strip()
    assert cell == ("tests/test_x.py::test_q\\[a\\|b\\`c\\`&lt;script&gt;@\u200boctocat "
                    "#\u200b12\\]")
    assert "<script>" not in markdown
    assert "@octocat" not in markdown and "@here" not in markdown


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a|b", "a\\|b"), ("`x`", "\\`x\\`"), ("<b>", "&lt;b&gt;"), ("@team", "@\u200bteam"),
     ("a\nb\r\nc", "a b c"), ("x_y*z", "x_y\\*z"), ("a__b", "a\\_\\_b"),
     ("_em_ [_a_]", "\\_em\\_ \\[\\_a\\_\\]"), ("a@b", "a@\u200bb"), ("@", "@"),
     ("back\\slash", "back\\\\slash")],
)
def test_escape_markdown(raw: str, escaped: str) -> None:
    assert escape_markdown(raw) == escaped


def test_new_missing_and_improvement_sections(markdown: str) -> None:
    new = section(markdown, "New metrics")
    assert any("test_new" in row and "4.20 ms" in row for row in new)
    missing = section(markdown, "Missing")
    assert any("test_gone" in row and "3.00 s" in row for row in missing)


def test_throughput_drop_is_a_regression_and_rise_an_improvement() -> None:
    measured = [m("t::tput", "tokens_per_s", 600.0, kind="custom", direction="higher",
                  unit="tokens/s")]
    file = BaselineFile(platforms={P: PlatformBaselines(tests={
        "t::tput": {"tokens_per_s": BaselineEntry(value=1200.0)}})})
    text = render_markdown(build_report(
        run_info(), compare(measured, file, P, gate="marked", default_threshold=0.2), measured))
    [_, _, row] = section(text, "Regressions")
    assert [c.strip() for c in split_row(row)][2:5] == ["1200 tokens/s", "600 tokens/s", "-50.0%"]


def test_step_breakdown(markdown: str) -> None:
    breakdown = markdown.split("### Step breakdown", 1)[1].split("<details>")[0]
    assert "#### tests/test_rag.py::test_pipeline ❌" in breakdown
    assert "Slowest step: **embed** (600 ms, 60% of 1.00 s)." in breakdown
    assert "Grew most: **embed**, 100 ms → 600 ms (+500.0%)." in breakdown
    assert "Regressed step: **embed**, 100 ms → 600 ms (+500.0%, threshold 20%)." in breakdown
    rows = [r for r in breakdown.splitlines() if r.startswith("|")]
    assert len(rows) == 5
    rerank = [c.strip() for c in split_row(rows[4])]
    assert rerank[0] == "rerank ❌ failed: ValueError: boom second line"
    assert rerank[1:3] == ["2.00 ms", "0.2%"]
    retrieve = [c.strip() for c in split_row(rows[3])]
    assert retrieve == ["retrieve", "300 ms", "30%", "250 ms", "+20.0%"]


def test_details_lists_every_metric(markdown: str) -> None:
    details = markdown.split("<details>", 1)[1]
    assert f"<summary>All metrics ({len(MEASUREMENTS)})</summary>" in details
    assert details.rstrip().endswith("</details>")
    rows = [r for r in details.splitlines() if r.startswith("|")]
    assert len(rows) == 2 + len(MEASUREMENTS)
    assert all(len(split_row(r)) == 6 for r in rows)


def test_json_report_schema() -> None:
    data = json.loads(render_json(build_report(run_info(), comparison(), MEASUREMENTS)))
    assert data["schema"] == 1
    assert set(data) == {"schema", "run", "summary", "comparisons"}
    assert data["run"]["platform"] == P
    assert data["run"]["git_commit"] == "0123456789abcdef0123"
    assert data["run"]["started_at"] == "2026-01-07T10:00:00+00:00"
    assert data["summary"]["counts"]["regression"] == 2
    assert data["summary"]["failed"] is True
    by_key = {(c["test"], c["metric"]): c for c in data["comparisons"]}
    tput = by_key[("tests/test_t.py::test_tput", "tokens_per_s")]
    assert tput["verdict"] == "improvement"
    assert tput["change"] == pytest.approx(-1.0)
    assert set(tput) >= {"baseline", "current", "change", "threshold", "verdict", "unit",
                         "direction", "gated"}
    assert by_key[(PIPE, "step:embed")]["gated"] is True  # a step with a baseline is gated


def test_terminal_lines_regressions_first_then_counts() -> None:
    lines = terminal_lines(comparison(), verbose=False)
    texts = [text for text, _ in lines]
    assert texts[0] == "2 performance regressions, 1 regressed step:"
    assert lines[0][1] == {"red": True, "bold": True}
    assert texts[1].split() == ["test", "metric", "baseline", "current", "change", "threshold"]
    assert "query_latency" in texts[4] and "+100.0%" in texts[4] and "20%" in texts[4]
    assert lines[4][1] == {"red": True}
    assert "step:embed" in texts[5] and "+500.0%" in texts[5]  # the regressed step
    assert texts[6] == "1 improvement; 1 new; 1 missing"
    assert len(lines) == 7


def test_terminal_verbose_shows_every_compared_metric() -> None:
    comp = comparison()
    lines = terminal_lines(comp, verbose=True)
    assert len(lines) == 7 + 4 + len(comp.verdicts)
    assert any("step:embed" in text and text.endswith("regression") for text, _ in lines)


def test_terminal_without_verdicts() -> None:
    assert terminal_lines(Comparison(platform=P), verbose=False) == [
        ("no gated metrics were compared", {})]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(0.0042, "s", "4.20 ms"), (2.5e-5, "s", "25.0 µs"), (3e-9, "s", "3.00 ns"),
     (12.345, "s", "12.3 s"), (0, "s", "0 s"), (1500, "ms", "1.50 s"),
     (1234.5, "tokens/s", "1234 tokens/s"), (0.95, "", "0.95"), (None, "s", "—")],
)
def test_format_value(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_format_change_and_percent() -> None:
    assert format_delta(1.5, 1.0) == "+50.0%"
    assert format_delta(600, 1200) == "-50.0%"
    assert format_delta(1.0, 0.0) == "—"
    assert (format_percent(0.2), format_percent(0.125)) == ("20%", "12.5%")


def test_templates_are_package_data() -> None:
    templates = files("pytest_perfguard.report").joinpath("templates")
    assert templates.joinpath("report.md.j2").is_file()


def test_importing_report_does_not_import_jinja2() -> None:
    code = ("import sys, pytest_perfguard.report, pytest_perfguard.updating; "
            "assert 'jinja2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
