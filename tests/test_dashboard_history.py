"""Label filters on trends (API, CLI, the dashboard's trend charts), the browsable baseline
history, and the trend charts' axes: checked end to end, the dashboard in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from headless_chromium import driven_page, needs_chromium, shown_page

from pytest_perfguard.api import History
from pytest_perfguard.cli import Console, main
from pytest_perfguard.cli.dashboard_data import read_dashboard
from pytest_perfguard.report.dashboard import render_dashboard

TEST = "bench/answer.py"
# No comma: a label value cannot hold one.
EVIL = "<img src=x onerror=\"document.body.className='pwned'\">"
MODELS = (("openai", 1.0), ("gemini", 3.0), (EVIL, 2.0))
N_DAYS = 6
START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=N_DAYS + 1)


def _entry(value: float, reason: str) -> dict[str, object]:
    return {"value": value, "unit": "s", "reason": reason}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard-history") / "history.db"
    with History(path) as history:
        for day in range(N_DAYS):
            for model, latency in MODELS:
                # A 3 % wobble: under a 10 % threshold it must not fill the chart's height.
                wobble = 0.03 if day % 2 else 0.0
                history.record_run(
                    {"latency": (latency * (1 + wobble), "s")},
                    test=TEST,
                    platform="box",
                    labels={"model": model},
                    started_at=START + timedelta(days=day, minutes=len(model)),
                    git_commit=f"{day:02d}{model[:3]}cafe",
                )
        # Three updates of box[model=openai]: add two entries, change one, add a third.
        openai = "box[model=openai]"
        history.save_baseline_snapshot(
            openai,
            {TEST: {"latency": _entry(1.0, "new"), "p99": _entry(2.0, "new")}},
            reason="new",
            git_commit="aaaa111",
            who="ci",
        )
        history.save_baseline_snapshot(
            openai,
            {TEST: {"latency": _entry(1.2, "accepted regression")}},
            reason="accepted regression",
            git_commit="bbbb222",
            who="ci",
        )
        history.save_baseline_snapshot(
            openai,
            {"other": {"latency": _entry(5.0, "new")}},
            reason="new",
            git_commit=None,
            who="me",
        )
    return path


@pytest.fixture(scope="module")
def page(db: Path) -> str:
    with History(db, create=False) as history:
        return render_dashboard(read_dashboard(history, days=None))


def cli(db: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main([*args, "--db", str(db)], console=Console(stdout=out, stderr=err))
    return rc, out.getvalue(), err.getvalue()


def test_trend_and_export_filter_by_label(db: Path) -> None:
    with History(db, create=False) as history:
        gemini = history.trend(TEST, labels={"model": "gemini"})
        assert sorted({round(p.value, 6) for p in gemini}) == [3.0, 3.09]
        assert len(history.trend(TEST)) == N_DAYS * len(MODELS)
        out = io.StringIO()
        assert history.export("csv", out, labels={"model": "openai"}) == N_DAYS
    rc, text, err = cli(db, "trend", TEST, "--label", "model=gemini", "--json")
    assert rc == 0, err
    points = json.loads(text)
    assert len(points) == N_DAYS and {p["platform"] for p in points} == {"box[model=gemini]"}
    rc, text, err = cli(db, "export", "--label", "model=openai", "--format", "csv")
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == N_DAYS and {r["platform"] for r in rows} == {"box[model=openai]"}
    rc, text, _ = cli(db, "export", "--label", "model=nobody")
    assert rc == 0 and len(list(csv.DictReader(io.StringIO(text)))) == 0
    rc, _, err = cli(db, "trend", TEST, "--label", "model")
    assert rc == 2 and "is not KEY=VALUE" in err and err.count("\n") == 1


def test_the_batched_read_matches_run_by_run_on_both_backends(
    history_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_perfguard.history import queries

    monkeypatch.setattr(queries, "_RUN_BATCH", 2)  # several batches from five runs
    with History(history_url) as history:
        ids = [
            history.record_run(
                {"latency": (0.1 * (i + 1), "s"), "tokens": (10.0 + i, "tok")},
                test=TEST,
                platform="box",
                labels={"model": "openai" if i % 2 else "gemini"},
                started_at=START + timedelta(hours=i),
            )
            for i in range(5)
        ]
        batched = history.runs_measurements([*ids, ids[0], 10_000])
        assert sorted(batched) == sorted(ids)  # each run once; an unknown id is absent
        for run_id in ids:
            assert batched[run_id] == history.get_run(run_id).measurements
        assert [p.value for p in history.trend(TEST, "latency", labels={"model": "openai"})] == [
            pytest.approx(0.2),
            pytest.approx(0.4),
        ]
        out = io.StringIO()
        assert history.export("json", out, labels={"model": "gemini"}) == 6
        data = read_dashboard(history, days=None)
    assert len(data.points) == 10 and set(data.measurements) == set(ids)
    assert {p.platform for p in data.points} == {"box[model=gemini]", "box[model=openai]"}
    assert "perfguard-data" in render_dashboard(data)


def test_two_of_three_platforms_even_when_the_third_ran_last(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as history:
        for i, platform in enumerate(["a"] * 3 + ["b"] * 3 + ["c"] * 9):
            history.record_run(
                {"latency": (1.0, "s")}, test=TEST, platform=platform,
                started_at=START + timedelta(hours=i),
            )  # fmt: skip
        data = read_dashboard(history, days=None, platforms=["a", "b"])
    assert sorted(p.platform for p in data.points) == ["a"] * 3 + ["b"] * 3


def test_snapshot_history_in_the_payload(page: str) -> None:
    found = re.search(r'<script type="application/json" id="perfguard-data">(.*?)</script>', page)
    assert found is not None
    snaps = json.loads(found.group(1))["snapshots"]
    assert [s["commit"] for s in snaps] == ["aaaa111", "bbbb222", ""]  # oldest first
    # What each update changed, with the value the update before had left.
    assert snaps[0]["changes"] == [
        [TEST, "latency", None, "1.00 s", "", "new"],
        [TEST, "p99", None, "2.00 s", "", "new"],
    ]
    assert snaps[1]["changes"] == [
        [TEST, "latency", "1.00 s", "1.20 s", "+20.0%", "accepted regression"]
    ]


HARNESS = """
(function () {
  var out = document.body, log = {};
  function choose(id, value) {
    var select = document.getElementById(id);
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
  function rows(id) {
    var found = document.querySelectorAll("#" + id + " tbody tr");
    return Array.prototype.map.call(found, function (tr) {
      var cells = Array.prototype.map.call(tr.children, function (td) { return td.textContent; });
      return cells.join(";");
    }).join("|");
  }
  try {
    log.lines = out.getAttribute("data-trend-lines");
    choose("filter-label", "model=gemini");
    log.gemini = out.getAttribute("data-trend-lines");
    log.geminiPaths = document.querySelectorAll("#charts article:not([hidden]) path.series").length;
    // The chart's height: the 3 % wobble must not fill it.
    var path = document.querySelector("#charts article:not([hidden]) path.series");
    log.wobble = path.getBBox().height;
    log.note = Array.prototype.map.call(document.querySelectorAll("#charts text.scale-note"),
                                        function (t) { return t.textContent; }).join("|");
    choose("filter-label", "");
    log.all = out.getAttribute("data-trend-lines");
    log.dateTicks = document.querySelectorAll("#charts text.run-tick").length;
    choose("x-axis", "run");
    log.runTicks = Array.prototype.map.call(document.querySelectorAll("#charts text.run-tick"),
                                            function (t) { return t.textContent; }).join(",");
    log.newest = out.getAttribute("data-snapshot");
    log.newestChanges = rows("snap-changes");
    log.newestState = rows("snap-state");
    document.getElementById("snap-older").click();
    log.middle = out.getAttribute("data-snapshot");
    log.middleChanges = rows("snap-changes");
    log.middleState = rows("snap-state");
    document.getElementById("snap-older").click();
    log.oldestState = rows("snap-state");
    log.olderDisabled = document.getElementById("snap-older").disabled;
    out.setAttribute("data-log", JSON.stringify(log));
  } catch (e) { out.setAttribute("data-harness-error", String(e)); }
})();
"""


@needs_chromium
def test_filters_axes_and_snapshots_in_chromium(page: str, tmp_path: Path) -> None:
    dom, body = shown_page(tmp_path, page)
    assert "data-error" not in body and body.get("class") != "pwned"
    # The label with HTML in it is an option of the trends' label filter, as text.
    assert re.search(r"<option[^>]*>model=&lt;img src=x onerror=", dom)

    _, body = driven_page(tmp_path, page, HARNESS)
    assert "data-harness-error" not in body, body
    assert body.get("class") != "pwned"
    log = json.loads(body["data-log"])
    # The label filter keeps one model's line, then all three again.
    assert (log["lines"], log["gemini"], log["geminiPaths"], log["all"]) == ("3", "1", 1, "3")
    # 3 % of wobble under a 10 % threshold: well under half of the 188 px plot, and the
    # axis says it does not start at 0.
    assert 0 < log["wobble"] < 188 * 0.4, log["wobble"]
    assert log["note"].startswith("axis from ") and log["note"].endswith(", not 0")
    # Run numbers on the x axis: the run ids.
    assert log["dateTicks"] == 0
    ticks = log["runTicks"].split(",")
    assert ticks and all(re.fullmatch(r"#\d+", t) for t in ticks), ticks
    # The newest update: what it changed, and the baselines after it (all three entries,
    # each with the update that set it).
    assert log["newestChanges"] == "other;latency;(added);5.00 s;;new"
    newest = log["newestState"].split("|")
    assert [row.split(";")[:3] for row in newest] == [
        [TEST, "latency", "1.20 s"], [TEST, "p99", "2.00 s"], ["other", "latency", "5.00 s"]
    ]  # fmt: skip
    # One older: the change from 1.00 s to 1.20 s, and the baselines at that point.
    assert int(log["middle"]) == int(log["newest"]) - 1
    assert log["middleChanges"] == f"{TEST};latency;1.00 s;1.20 s;+20.0%;accepted regression"
    assert [row.split(";")[:3] for row in log["middleState"].split("|")] == [
        [TEST, "latency", "1.20 s"], [TEST, "p99", "2.00 s"]
    ]  # fmt: skip
    assert [row.split(";")[:3] for row in log["oldestState"].split("|")] == [
        [TEST, "latency", "1.00 s"], [TEST, "p99", "2.00 s"]
    ]  # fmt: skip
    assert log["olderDisabled"] is True
