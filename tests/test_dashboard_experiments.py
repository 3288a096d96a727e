"""The dashboard's Experiments view: the table, the embedded trials, and the chart in headless
Chromium (pick an experiment, a metric, a param; the best trial is marked)."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from typing import Any

import markupsafe
import pytest
from headless_chromium import driven_page, needs_chromium, shown_page

from pytest_perfguard.api import History
from pytest_perfguard.cli.dashboard_data import read_dashboard
from pytest_perfguard.report.dashboard import render_dashboard

EVIL = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">sweep"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dashboard-experiments") / "history.db"
    with History(path) as history:
        history.record_run({"latency_s": (0.12, "s")}, test="bench/api.py", platform="box")
        sweep = history.experiment(EVIL, template="rag", mode="grid")
        for chunk, mrr, latency, passed in [
            (256, 0.61, 0.30, True), (512, 0.70, 0.42, True), (1024, 0.74, 0.80, False),
            (128, 0.52, 0.21, True),
        ]:  # fmt: skip
            sweep.log_trial(
                params={"chunk": chunk, "model": "small" if chunk < 512 else "large"},
                metrics={"mrr": mrr, "latency": latency},
                validation={"passed": passed, "violations": 0 if passed else 1, "metrics": {}},
            )
        other = history.experiment("random search", template="rag", mode="random")
        other.log_trial(params={"model": "a"}, metrics={"mrr": 0.4})
        other.log_trial(params={"model": "b"}, metrics={"mrr": 0.9})
        return render_dashboard(read_dashboard(history, days=None))


def payload(page: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="perfguard-data">(.*?)</script>', page, re.S
    )
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_table_lists_experiments_with_names_escaped(page: str) -> None:
    assert '<a href="#experiments">Experiments</a>' in page
    section = page[page.index('<section id="experiments">') :]
    assert str(markupsafe.escape(EVIL)) in section
    assert EVIL not in page  # nowhere raw, not even in the JSON block
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", section)
    assert rows == ["2", "1"]  # newest first
    assert "1/4" in section and "25%" in section


def test_the_trials_are_embedded_for_the_chart(page: str) -> None:
    [other, sweep] = payload(page)["experiments"]
    assert sweep["name"] == EVIL and sweep["params"] == ["chunk", "model"]
    assert sweep["metrics"] == ["mrr", "latency"]
    assert sweep["trials"][2] == [3, [1024, "large"], [0.74, 0.8], 0]
    assert other["trials"] == [[1, ["a"], [0.4], None], [2, ["b"], [0.9], None]]


def test_no_experiments_no_section(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as history:
        history.record_run({"latency_s": (0.12, "s")}, test="bench/api.py", platform="box")
        page = render_dashboard(read_dashboard(history, days=None))
    assert 'id="experiments"' not in page and payload(page)["experiments"] == []


# Test-only: picks other experiments, metrics, params and directions, and writes what the
# chart showed after each into body attributes that --dump-dom shows.
HARNESS = """
(function () {
  var out = document.body, log = [];
  function state(label) {
    log.push(label + "=" + out.getAttribute("data-exp-points") + "/" +
             out.getAttribute("data-exp-best") + "/" +
             document.querySelectorAll("#exp-chart .trial, #exp-chart .trial-failed").length);
  }
  function choose(id, value) {
    var select = document.getElementById(id);
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
  try {
    choose("exp-select", "1");  // the sweep (experiments are listed newest first)
    state("sweep-mrr-chunk");
    choose("exp-metric", "1"); choose("exp-direction", "lower");
    state("sweep-latency-lower");
    choose("exp-param", "1");
    state("sweep-latency-model");
    choose("exp-select", "0");
    state("random-mrr-model");
    out.setAttribute("data-exp-log", log.join(" "));
    out.setAttribute("data-exp-title", document.querySelector("#exp-chart h3").textContent);
  } catch (e) { out.setAttribute("data-harness-error", String(e)); }
})();
"""


@needs_chromium
def test_the_chart_follows_the_pickers_in_chromium(page: str, tmp_path: Path) -> None:
    _, body = shown_page(tmp_path, page)
    assert "data-error" not in body and "data-pwned" not in body
    # The newest experiment is drawn first: two trials, model on the x axis, best is trial 2.
    assert (body["data-exp-points"], body["data-exp-best"]) == ("2", "2")

    driven_dom, body = driven_page(tmp_path, page, HARNESS)
    assert "data-harness-error" not in body, body
    assert "data-error" not in body and "data-pwned" not in body
    assert body["data-exp-log"].split() == [
        "sweep-mrr-chunk=4/3/4",  # highest mrr: trial 3 (its validation failed: a cross)
        "sweep-latency-lower=4/4/4",  # lowest latency: trial 4
        "sweep-latency-model=4/4/4",  # against a text param: categories, same best
        "random-mrr-model=2/1/2",  # the direction picked stays: lower is better
    ]
    # The experiment's name reached the page as text, never as markup.
    assert body["data-exp-title"] == "random search"
    assert htmllib.escape("<img src=x onerror=", quote=False) in driven_dom
