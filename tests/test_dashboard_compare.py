"""The dashboard's Compare view: one metric side by side per label value or platform, in
headless Chromium (the pickers change the table and the chart; label values stay text)."""

from __future__ import annotations

import html as htmllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from headless_chromium import driven_page, needs_chromium, shown_page

from pytest_perfguard.api import History
from pytest_perfguard.cli.dashboard_data import read_dashboard
from pytest_perfguard.report.dashboard import render_dashboard

# No comma: a label value cannot hold one.
EVIL = "<img src=x onerror=\"document.body.className='pwned'\">"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dashboard-compare") / "history.db"
    start = datetime.now(timezone.utc) - timedelta(days=3)
    with History(path) as history:
        for day in range(3):
            for model, latency, tokens in [("openai", 1.0, 40.0), ("gemini", 3.0, 55.0),
                                           (EVIL, 2.0, 10.0)]:  # fmt: skip
                history.record_run(
                    {"latency": (latency + day * 0.01, "s"), "tokens_per_s": (tokens, "tok/s")},
                    test="bench/answer.py",
                    platform="box",
                    labels={"model": model},
                    directions={"tokens_per_s": "higher"},
                    started_at=start + timedelta(days=day, minutes=len(model)),
                )
        return render_dashboard(read_dashboard(history, days=None))


def test_the_section_is_there_and_names_no_label_raw(page: str) -> None:
    assert '<a href="#compare">Compare</a>' in page and 'id="cmp-metric"' in page
    assert EVIL not in page


HARNESS = """
(function () {
  var out = document.body, log = [];
  function choose(id, value) {
    var select = document.getElementById(id);
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
  try {
    log.push(out.getAttribute("data-cmp"));
    choose("cmp-metric", "1");
    log.push(out.getAttribute("data-cmp"));
    choose("cmp-by", "");
    log.push(out.getAttribute("data-cmp"));
    out.setAttribute("data-cmp-log", log.join(" || "));
    out.setAttribute("data-cmp-paths", String(document.querySelectorAll("#cmp-chart path").length));
  } catch (e) { out.setAttribute("data-harness-error", String(e)); }
})();
"""


@needs_chromium
def test_pickers_change_the_comparison_in_chromium(page: str, tmp_path: Path) -> None:
    dom, body = shown_page(tmp_path, page)
    assert "data-error" not in body and body.get("class") != "pwned"
    # By the label `model` (the first label key), the first metric (latency): medians.
    assert body["data-cmp"] == f"{EVIL}:2.01 s|gemini:3.01 s|openai:1.01 s"
    # The label value with HTML in it is on the page as text.
    assert htmllib.escape("<img src=x onerror=", quote=False) in dom

    _, body = driven_page(tmp_path, page, HARNESS)
    assert "data-harness-error" not in body, body
    first, tokens, by_platform = body["data-cmp-log"].split(" || ")
    assert first == f"{EVIL}:2.01 s|gemini:3.01 s|openai:1.01 s"
    assert tokens == f"{EVIL}:10.0 tok/s|gemini:55.0 tok/s|openai:40.0 tok/s"
    # By platform: the labelled platform keys themselves.
    assert by_platform == (
        f"box[model={EVIL}]:10.0 tok/s|box[model=gemini]:55.0 tok/s|box[model=openai]:40.0 tok/s"
    )
    assert body["data-cmp-paths"] == "3"  # a trend line per group
