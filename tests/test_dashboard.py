"""The offline dashboard: its data, its escaping, its size, and the page in a real browser.

The browser tests drive headless Chromium (Debian package `chromium`; `.ci/run` installs it)
and are skipped where it is missing.
"""

from __future__ import annotations

import html as htmllib
import io
import json
import random
import re
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from headless_chromium import body_attributes, chromium, console_lines, needs_chromium

from pytest_perfguard.api import History
from pytest_perfguard.baselines import parse_baselines
from pytest_perfguard.cli.dashboard_data import read_dashboard
from pytest_perfguard.report.dashboard import render_dashboard
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

pytest_plugins = ["pytester"]

LINUX = "Linux_x86_64_EPYC_7763_4c_16GB"
MAC = "macOS_arm64_M2_8c_16GB"
QUERY = "tests/test_rag.py::test_query"
THROUGHPUT = "tests/test_rag.py::test_throughput"
# A test id and a metric name that would run script if they reached the page unescaped.
EVIL_TEST = "tests/test_x.py::test_a[<script>document.body.setAttribute('data-pwned','1')</script>]"
EVIL_METRIC = "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
N_RUNS = 24
STEP_AT = 16  # query_latency on LINUX is 40 % slower from this run on
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _run(platform: str, i: int) -> RunInfo:
    return RunInfo(
        started_at=NOW - timedelta(hours=6 * (N_RUNS - i)),
        platform=PlatformInfo(platform, {"cpu_model": "Test CPU", "cpu_count": 4}),
        git_commit=f"{i:02d}c0ffee{platform[:3].lower()}",
        run_type="ci",
    )


def build_history(path: Path) -> History:
    history = History(path)
    rng = random.Random(7)
    for i in range(N_RUNS):
        for platform, scale in ((LINUX, 1.0), (MAC, 1.5)):
            slow = 1.4 if platform == LINUX and i >= STEP_AT else 1.0
            latency = 0.010 * scale * slow * (1 + rng.uniform(-0.02, 0.02))
            failed = platform == MAC and i == 5
            measurements = [
                Measurement(
                    QUERY,
                    "query_latency",
                    latency,
                    "s",
                    marked=True,
                    outcome="failed" if failed else "passed",
                ),
                Measurement(QUERY, "step:embed", latency / 2, "s", kind="step", marked=True),
                Measurement(QUERY, "cpu_time", latency * 0.9, "s", kind="system"),
                Measurement(
                    THROUGHPUT,
                    "queries_per_second",
                    900 / scale * (1 + rng.uniform(-0.02, 0.02)),
                    "q/s",
                    direction="higher",
                    kind="custom",
                    marked=True,
                ),
                Measurement(EVIL_TEST, EVIL_METRIC, 1.0 + rng.uniform(0, 0.01), "s", marked=True),
            ]
            history.save_session(_run(platform, i), measurements)
    history.save_baseline_snapshot(
        LINUX,
        {
            QUERY: {"query_latency": {"value": 0.0102, "unit": "s", "reason": "new metric"}},
            EVIL_TEST: {EVIL_METRIC: {"value": 1.0, "unit": "s", "reason": "new metric"}},
        },
        reason="new metric",
        git_commit="abc1234",
        who="<b>ci</b>",
    )
    history.record_run(
        {"tokens_per_s": (41.5, "tok/s")},
        platform=LINUX,
        directions={"tokens_per_s": "higher"},
        started_at=NOW - timedelta(days=90),
    )
    return history


BASELINES = parse_baselines(
    {
        "schema": 1,
        "platforms": {
            LINUX: {
                "tests": {
                    QUERY: {"query_latency": {"value": 0.010, "unit": "s", "threshold": 0.2}},
                    THROUGHPUT: {"queries_per_second": {"value": 900, "unit": "q/s"}},
                }
            },
            MAC: {"tests": {QUERY: {"query_latency": {"value": 0.015, "unit": "s"}}}},
        },
    }
)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(tmp_path_factory.mktemp("dashboard") / "history.db")


@pytest.fixture(scope="module")
def page(history: History) -> str:
    return render_dashboard(read_dashboard(history, days=30), baselines=BASELINES)


def payload(page: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="perfguard-data">(.*?)</script>', page, re.S
    )
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def series(data: dict[str, Any], test: str, metric: str) -> dict[str, Any]:
    found = [s for s in data["series"] if s["test"] == test and s["metric"] == metric]
    assert len(found) == 1, (test, metric)
    first: dict[str, Any] = found[0]
    return first


def line(data: dict[str, Any], s: dict[str, Any], platform: str) -> dict[str, Any]:
    p = data["platforms"].index(platform)
    return next(line for line in s["lines"] if line["p"] == p)


# -- content ---------------------------------------------------------------------------------


def test_one_chart_per_metric_and_one_line_per_platform(page: str) -> None:
    data = payload(page)
    assert data["platforms"] == [LINUX, MAC]
    names = {(s["test"], s["metric"]) for s in data["series"]}
    assert names == {
        (QUERY, "query_latency"),
        (QUERY, "step:embed"),
        (QUERY, "cpu_time"),
        (THROUGHPUT, "queries_per_second"),
        (EVIL_TEST, EVIL_METRIC),
    }
    query = series(data, QUERY, "query_latency")
    assert (query["kind"], query["dir"], query["unit"]) == ("primary", "lower", "s")
    assert series(data, QUERY, "cpu_time")["kind"] == "system"
    assert series(data, THROUGHPUT, "queries_per_second")["dir"] == "higher"
    for s in data["series"]:
        assert len(s["lines"]) == 2
        assert all(len(line["r"]) == len(line["v"]) == N_RUNS for line in s["lines"])
    assert len(data["runs"]) == 2 * N_RUNS
    run_id, when, _platform, commit = data["runs"][0]
    assert isinstance(run_id, int) and isinstance(when, int) and commit.startswith("00c0ffee")


def test_regressions_and_change_points_are_marked(page: str) -> None:
    data = payload(page)
    query = series(data, QUERY, "query_latency")
    linux, mac = line(data, query, LINUX), line(data, query, MAC)
    assert query["regressed"] is True
    assert linux["reg"] == list(range(STEP_AT, N_RUNS))  # 40 % over a 20 % threshold
    assert mac["reg"] == []
    assert [cp[0] for cp in linux["cp"]] == [STEP_AT]
    _index, change, worse = linux["cp"][0]
    assert change == pytest.approx(0.4, abs=0.05) and worse == change
    assert mac["cp"] == []
    assert mac["x"] == [5]  # the failed test's point: drawn, never judged
    throughput = series(data, THROUGHPUT, "queries_per_second")
    assert throughput["regressed"] is False and line(data, throughput, LINUX)["reg"] == []


def test_baseline_line_and_band_come_from_the_file_and_the_snapshots(
    page: str, history: History
) -> None:
    data = payload(page)
    linux = line(data, series(data, QUERY, "query_latency"), LINUX)
    # The snapshot's time, with the file's value (the committed file wins for "now").
    [(since, value, threshold)] = linux["bl"]
    assert isinstance(since, int) and (value, threshold) == (0.01, 0.2)
    assert line(data, series(data, THROUGHPUT, "queries_per_second"), MAC)["bl"] == []
    no_file = payload(render_dashboard(read_dashboard(history, days=30)))  # the snapshots alone
    [(_, value, threshold)] = line(no_file, series(no_file, QUERY, "query_latency"), LINUX)["bl"]
    assert (value, threshold) == (0.0102, 0.2)


def test_flat_baselines_apply_by_metric_name_to_tracked_metrics_only(history: History) -> None:
    flat = parse_baselines({LINUX: {"query_latency": 0.011, "cpu_time": 0.001}})
    data = payload(render_dashboard(read_dashboard(history, days=30), baselines=flat))
    [(_, value, _)] = line(data, series(data, QUERY, "query_latency"), LINUX)["bl"]
    assert value == 0.011
    assert line(data, series(data, QUERY, "cpu_time"), LINUX)["bl"] == []


def test_sections_and_tables(page: str) -> None:
    for heading in (
        "Current snapshot",
        "Trends",
        "Platform comparison",
        "Regressions",
        "Baseline history",
    ):
        assert f"<h2>{heading}</h2>" in page
    markup = page.split('<script type="application/json"')[0]
    text = htmllib.unescape(re.sub(r"<[^>]+>", " ", markup))
    assert "2 regressions" not in text  # one per platform line: only LINUX regressed
    assert re.search(r"\b1\s+regression\b", text)
    assert re.search(r"\+(3[5-9]|4[0-5])\.\d% at run #", text)  # the step, in the table
    assert "abc1234" in text and "new metric" in text  # the baselines snapshot
    assert "Test CPU" in text


def test_days_and_platforms_filter(history: History) -> None:
    everything = payload(render_dashboard(read_dashboard(history, days=None)))
    assert any(s["metric"] == "tokens_per_s" for s in everything["series"])  # 90 days old
    recent = payload(render_dashboard(read_dashboard(history, days=30)))
    assert not any(s["metric"] == "tokens_per_s" for s in recent["series"])
    one = render_dashboard(read_dashboard(history, platforms=[MAC, "nowhere"]))
    data = payload(one)
    assert data["platforms"] == [MAC]
    assert all(len(s["lines"]) == 1 for s in data["series"])
    assert "No runs for platform: nowhere" in one


def test_empty_history_says_how_to_fill_it(tmp_path: Path) -> None:
    page = render_dashboard(read_dashboard(History(tmp_path / "empty.db")))
    assert payload(page)["series"] == []
    assert "pytest --perf-record" in page


# -- safety ----------------------------------------------------------------------------------


def test_names_are_escaped_and_cannot_break_out(page: str) -> None:
    assert EVIL_TEST not in page and EVIL_METRIC not in page
    assert "<img" not in page and 'onerror="' not in page and "<script>document" not in page
    # Exactly our two script elements: the JSON data and the program.
    assert page.count("<script") == 2 and page.lower().count("</script") == 2
    # In the tables the names are text (entities), in the JSON they round-trip exactly.
    assert htmllib.escape(EVIL_TEST, quote=False) in page or "&lt;script&gt;" in page
    data = payload(page)
    assert series(data, EVIL_TEST, EVIL_METRIC)["test"] == EVIL_TEST


def test_page_is_self_contained(page: str) -> None:
    """No URL the browser could fetch: no src/href to anything but the page's own anchors."""
    markup = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", page, flags=re.S)
    for tag in re.findall(r"<[a-zA-Z][^>]*>", markup):
        fetching = r"""\s(src|href|action|srcset|poster|data)\s*=\s*(?!["']?#)"""
        assert not re.search(fetching, tag), tag
    assert "@import" not in page and "url(http" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    assert "unsafe-inline" not in csp.group(1)


def test_size_of_50_metrics_by_100_runs(tmp_path: Path) -> None:
    history = History(tmp_path / "big.db")
    rng = random.Random(1)
    for i in range(100):
        run = RunInfo(
            started_at=NOW - timedelta(hours=100 - i),
            git_commit=f"{i:040x}",
            platform=PlatformInfo(LINUX),
        )
        history.save_session(
            run,
            [
                Measurement(
                    f"tests/test_m{m // 10}.py::test_case_{m}",
                    "duration",
                    0.001 * (1 + m % 7) * (1 + rng.gauss(0, 0.03)),
                    "s",
                    marked=True,
                )
                for m in range(50)
            ],
        )
    page = render_dashboard(read_dashboard(history, days=None))
    assert len(payload(page)["series"]) == 50
    size = len(page.encode("utf-8"))
    assert size < 250_000, size  # ~135 KB; the seed's Plotly page was 4-5 MB


# -- in a real browser -----------------------------------------------------------------------


# Test-only: drives the charts with synthetic pointer events and writes what happened into
# body attributes that --dump-dom shows. (The page's CSP is taken out of this copy only.)
HARNESS = """
(function () {
  var out = document.body;
  try {
    var card = document.querySelector(".card:not([hidden])");
    var chart = card.querySelector("svg.chart");
    var box = chart.getBoundingClientRect();
    var dot = chart.querySelector("circle:not(.hover)");
    function fire(type, x, y) {
      chart.dispatchEvent(new PointerEvent(type, {clientX: box.left + x, clientY: box.top + y,
        bubbles: true, pointerId: 1, button: 0, isPrimary: true}));
    }
    fire("pointermove", +dot.getAttribute("cx"), +dot.getAttribute("cy"));
    var tip = document.querySelector(".tooltip");
    out.setAttribute("data-tooltip", tip.hidden ? "" : tip.textContent);
    var before = chart.querySelectorAll("circle").length;
    fire("pointerdown", 90, 100); fire("pointermove", 200, 100); fire("pointerup", 200, 100);
    var reset = card.querySelector("button.reset");
    out.setAttribute("data-zoomed", reset.hidden ? "no" : "yes");
    out.setAttribute("data-points", before + ">" + chart.querySelectorAll("circle").length);
    chart.dispatchEvent(new MouseEvent("dblclick", {bubbles: true}));
    out.setAttribute("data-unzoomed", reset.hidden ? "yes" : "no");
    var input = document.getElementById("filter-text");
    input.value = "queries_per";
    input.dispatchEvent(new Event("input"));
    out.setAttribute("data-filtered", document.getElementById("chart-count").textContent);
  } catch (e) { out.setAttribute("data-harness-error", String(e)); }
})();
"""


@needs_chromium
def test_charts_render_in_chromium_without_console_errors(page: str, tmp_path: Path) -> None:
    path = tmp_path / "dashboard.html"
    path.write_text(page, encoding="utf-8")
    result = chromium(tmp_path, path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result) == []
    dom = result.stdout
    body = body_attributes(dom)
    assert "data-error" not in body and "data-pwned" not in body
    shown = [s for s in payload(page)["series"] if s["kind"] != "system"]  # hidden by default
    assert body["data-rendered"] == str(len(shown))
    assert dom.count("<svg") >= len(shown)
    assert dom.count('class="series"') >= 2 * len(shown)  # a line per platform
    assert 'class="regression"' in dom and 'class="cp worse"' in dom
    assert 'class="baseline"' in dom and 'class="band"' in dom
    # The evil names are on the page as text, and did nothing.
    assert htmllib.escape("<script>document.body", quote=False) in dom


@needs_chromium
def test_hover_zoom_and_filter_in_chromium(page: str, tmp_path: Path) -> None:
    driven = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    driven = driven.replace("</body>", f"<script>{HARNESS}</script></body>")
    path = tmp_path / "driven.html"
    path.write_text(driven, encoding="utf-8")
    result = chromium(tmp_path, path, "--dump-dom", "--window-size=1280,2000")
    body = body_attributes(result.stdout)
    assert "data-harness-error" not in body, body
    assert "data-error" not in body and console_lines(result) == []
    assert "run #" in body["data-tooltip"] and LINUX in body["data-tooltip"]
    assert body["data-zoomed"] == "yes" and body["data-unzoomed"] == "yes"
    before, after = map(int, body["data-points"].split(">"))
    assert after < before  # zoomed in: fewer points in view
    assert body["data-filtered"].startswith("1 of ")


@needs_chromium
def test_screenshot_is_not_blank(page: str, tmp_path: Path) -> None:
    path = tmp_path / "dashboard.html"
    path.write_text(page, encoding="utf-8")
    shot = tmp_path / "dashboard.png"
    result = chromium(tmp_path, path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.exists(), result.stderr[-2000:]
    assert console_lines(result) == []
    width, height, colours = png_colours(shot.read_bytes())
    assert (width, height) == (1280, 2000)
    assert colours > 200, colours  # a blank page has 1; text, tables and charts have thousands


def png_colours(data: bytes) -> tuple[int, int, int]:
    """Width, height and number of distinct colours (sampled) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    previous, colours = bytes(stride), set[bytes]()
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, bpp)
        if y % 4 == 0:
            colours.update(row[i : i + 3] for i in range(0, stride, 2 * bpp))
        previous = row
    return width, height, len(colours)


def _unfilter(kind: int, line: bytes, previous: bytes, bpp: int) -> bytes:
    if kind == 0:
        return line
    if kind == 2:  # Up, the common one: a bytewise add at C speed (carry-free big-int add)
        n = len(line)
        low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
        x, y = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "big")
    out = bytearray(line)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        if kind == 1:
            out[i] = (out[i] + a) & 255
        elif kind == 3:
            out[i] = (out[i] + ((a + previous[i]) >> 1)) & 255
        else:  # Paeth
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return bytes(out)


# -- the dashboard's verdicts are the gate's ----------------------------------------------------

AGREE_SUITE = """
import os
import pytest

@pytest.mark.perf(metric="small_step")
def test_small_step(perf):
    perf.record("small_step", 115.0)  # +15 %: a regression at the project's 10 %, not at 20 %

@pytest.mark.perf(metric="own_threshold", threshold=0.5)
def test_own_threshold(perf):
    perf.record("own_threshold", 140.0)  # +40 %: within the marker's 50 %

@pytest.mark.perf(metric="throughput", direction="higher")
def test_throughput(perf):
    perf.record("throughput", 88.0, direction="higher")  # 12 % fewer: worse by 12 %

@pytest.mark.perf(metric="faster")
def test_faster(perf):
    perf.record("faster", 80.0)

@pytest.mark.perf(metric="baseline_threshold")
def test_baseline_threshold(perf):
    perf.record("baseline_threshold", 125.0)  # +25 %: within the baseline entry's 30 %

@pytest.mark.perf(metric="unbaselined")
def test_unbaselined(perf):
    perf.record("unbaselined", 1.0)

@pytest.mark.perf(metric="broken")
def test_broken(perf):
    perf.record("broken", 500.0)
    assert False, "fails after recording"

def test_unmarked():
    pass
"""


def _snapshot_verdicts(page: str) -> dict[tuple[str, str], str]:
    section = page.split('<section id="snapshot">')[1].split("</section>")[0]
    rows = re.findall(
        r'<tr><td class="id">(.*?)</td><td><a [^>]*>(.*?)</a></td>.*?'
        r'<td class="verdict [^"]*">(.*?)</td>',
        section,
    )
    return {(htmllib.unescape(t), htmllib.unescape(m)): v for t, m, v in rows}


def test_dashboard_shows_the_verdicts_the_gate_gave(pytester: pytest.Pytester) -> None:
    """A session at the project's 10 % threshold, with a marker threshold, a baseline entry's
    threshold and a higher-is-better metric, and `perfguard dashboard` from the same project:
    every verdict on the dashboard is the one in the session's JSON report."""
    from pytest_perfguard.cli import Console, main

    platform = "agree_box"
    pytester.makepyfile(test_agree=AGREE_SUITE)
    pytester.makepyprojecttoml(
        f"""
        [tool.pytest.ini_options]
        perf_threshold = "0.10"
        perf_platform = "{platform}"
        perf_db = "history.db"
        """
    )
    tests = {
        "test_agree.py::test_small_step": {"small_step": {"value": 100.0}},
        "test_agree.py::test_own_threshold": {"own_threshold": {"value": 100.0}},
        "test_agree.py::test_throughput": {"throughput": {"value": 100.0, "direction": "higher"}},
        "test_agree.py::test_faster": {"faster": {"value": 100.0}},
        "test_agree.py::test_baseline_threshold": {
            "baseline_threshold": {"value": 100.0, "threshold": 0.3}
        },
        "test_agree.py::test_broken": {"broken": {"value": 100.0}},
    }
    baselines = pytester.path / "baselines" / "perf_baselines.json"
    baselines.parent.mkdir()
    baselines.write_text(json.dumps({"schema": 1, "platforms": {platform: {"tests": tests}}}))

    result = pytester.runpytest("--perf-record", "--perf-json", "r.json")
    assert result.ret == 1  # the failing test and the regressions
    report = json.loads((pytester.path / "r.json").read_text())
    gate = {(c["test"], c["metric"]): c["verdict"] for c in report["comparisons"]}
    assert gate == {
        ("test_agree.py::test_small_step", "small_step"): "regression",
        ("test_agree.py::test_own_threshold", "own_threshold"): "unchanged",
        ("test_agree.py::test_throughput", "throughput"): "regression",
        ("test_agree.py::test_faster", "faster"): "improvement",
        ("test_agree.py::test_baseline_threshold", "baseline_threshold"): "unchanged",
        ("test_agree.py::test_unbaselined", "unbaselined"): "new",
        ("test_agree.py::test_broken", "broken"): "skipped_failed",
    }

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path)
        rc = main(["dashboard", "--output", "dash.html"], console=Console(stdout=out, stderr=err))
    assert rc == 0, err.getvalue()
    page = (pytester.path / "dash.html").read_text()
    shown = _snapshot_verdicts(page)
    for key, kind in gate.items():
        assert shown[key] == ("failed" if kind == "skipped_failed" else kind), key
    # What the gate does not judge (an unmarked test under `perf_gate = marked`) says so.
    assert shown[("test_agree.py::test_unmarked", "duration")] == "not gated"
    assert "threshold 10% unless the test" in htmllib.unescape(page)
    # The chart marks the same regression as the table.
    data = payload(page)
    small = series(data, "test_agree.py::test_small_step", "small_step")
    assert small["regressed"] is True and small["lines"][0]["reg"] == [0]
    assert series(data, "test_agree.py::test_own_threshold", "own_threshold")["regressed"] is False
