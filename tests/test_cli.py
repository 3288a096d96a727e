"""The `perfguard` command end to end, on a history recorded by real pytest runs.

Most commands run in-process through `cli.main` with their own streams (fast); the console
script, `python -m pytest_perfguard` and the no-pytest-import rule run in subprocesses.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pytest_perfguard import api
from pytest_perfguard.cli import Console, build_parser, main
from pytest_perfguard.history.migrations import HEAD_REVISION
from pytest_perfguard.records import EXPORT_COLUMNS

pytest_plugins = ["pytester"]

PLATFORM = "cli_box"
LATENCY = "test_app.py::test_latency"
THROUGHPUT = "test_app.py::test_throughput"
UNMARKED = "test_app.py::test_unmarked"
SUITE = """
import os, time, pytest

@pytest.mark.perf(metric="query_latency", rounds=3)
def test_latency(perf):
    with perf.measure("retrieve"):
        time.sleep(0.002)

@pytest.mark.perf(metric="throughput", direction="higher", unit="items/s")
def test_throughput(perf):
    perf.record("throughput", float(os.environ.get("THROUGHPUT", 1000)), unit="items/s",
                direction="higher")

def test_unmarked():
    assert os.environ.get("FAIL") != "1"
"""
# Settings a developer's shell or CI could leak into the runs and the CLI.
_ENV = [
    *api.DB_ENV_VARS,
    "PERFGUARD",
    "PERFGUARD_PLATFORM",
    "PERFORMANCE_PLATFORM",
    "PERFGUARD_BASELINES",
    "PERFGUARD_THRESHOLD",
    "REGRESSION_THRESHOLD",
    "PERFGUARD_RECORD",
    "ENABLE_PERFORMANCE_RECORDING",
    "PERFGUARD_DEBUG",
]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _ENV}


@pytest.fixture(autouse=True)
def no_perfguard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three passing runs, then a nightly run where test_unmarked fails: made once."""
    path = tmp_path_factory.mktemp("recorded")
    (path / "test_app.py").write_text(textwrap.dedent(SUITE))
    (path / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--perf-record"]
    # No confirm passes: they would add samples to metrics without a baseline.
    command += ["--perf-platform", PLATFORM, "--perf-confirm", "0"]
    for _ in range(3):
        subprocess.run(command, cwd=path, check=True, capture_output=True, env=clean_env())
    done = subprocess.run(
        [*command, "--perf-run-type", "nightly"],
        cwd=path,
        capture_output=True,
        env={**clean_env(), "FAIL": "1"},
    )
    assert done.returncode == 1, done.stdout
    return path


@pytest.fixture
def project(recorded: Path, tmp_path: Path) -> Path:
    """A copy of the recorded project, for tests that write."""
    target = tmp_path / "project"
    shutil.copytree(recorded, target)
    return target


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, recorded: Path) -> Cli:
    """`cli("runs", "--limit", "2", cwd=..., stdin="no\\n", interactive=True)`."""

    def run(*args: str, cwd: Path = recorded, stdin: str = "", interactive: bool = False) -> Result:
        out, err = io.StringIO(), io.StringIO()
        console = Console(
            stdout=out, stderr=err, stdin=io.StringIO(stdin), interactive=lambda: interactive
        )
        monkeypatch.chdir(cwd)
        rc = main(list(args), console=console)
        return Result(rc, out.getvalue(), err.getvalue())

    return run


def one_line_error(result: Result) -> str:
    assert result.rc == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("perfguard: error: "), result.err
    assert "Traceback" not in result.err + result.out
    return result.err


def run_ids(result: Result) -> list[int]:
    assert result.rc == 0, result.err
    data = result.json()
    assert isinstance(data, list)
    return [run["id"] for run in data]


# -- history -------------------------------------------------------------------------------


def test_runs_lists_recorded_runs_newest_first_in_an_aligned_table(cli: Cli) -> None:
    result = cli("runs")
    assert result.rc == 0, result.err
    header, rule, *rows = result.out.splitlines()
    assert header.split()[:3] == ["id", "started", "(UTC)"]
    assert [row.split()[0] for row in rows] == ["4", "3", "2", "1"]
    column = header.index("outcome")
    assert [row[column:].split()[0] for row in rows] == ["failed", "passed", "passed", "passed"]
    assert all(row[header.index("platform") :].startswith(PLATFORM) for row in rows)
    assert set(rule) == {"-", " "}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--outcome", "failed"], [4]),
        (["--run-type", "nightly"], [4]),
        (["--outcome", "passed", "--limit", "2"], [3, 2]),
        (["--test", "*THROUGH*"], [4, 3, 2, 1]),
        (["--test", "*nothing*"], []),
        (["--platform", "other_box"], []),
        (["--days", "1", "--platform", PLATFORM], [4, 3, 2, 1]),
    ],
)
def test_runs_filters(cli: Cli, args: list[str], expected: list[int]) -> None:
    assert run_ids(cli("runs", "--json", *args)) == expected


def test_runs_json_has_the_run_metadata(cli: Cli) -> None:
    [run] = cli("runs", "--json", "--limit", "1").json()
    assert run["run_type"] == "nightly" and run["outcome"] == "failed"
    assert run["n_failed"] == 1 and run["started_at"].endswith("+00:00")


def test_summary_per_test_and_metric(cli: Cli) -> None:
    data = cli("summary", "--json").json()
    assert isinstance(data, list)
    by_key = {(s["test"], s["metric"]): s for s in data}
    throughput = by_key[(THROUGHPUT, "throughput")]
    assert (throughput["n"], throughput["latest"], throughput["median"]) == (4, 1000.0, 1000.0)
    assert throughput["direction"] == "higher" and throughput["change"] == 0.0
    unmarked = by_key[(UNMARKED, "duration")]
    assert (unmarked["n"], unmarked["n_failed"]) == (3, 1)
    assert by_key[(LATENCY, "step:retrieve")]["n"] == 4

    table = cli("summary", "--metric", "query_latency")
    assert table.rc == 0
    header, _rule, row, note = table.out.splitlines()
    assert header.split()[:5] == ["test", "metric", "n", "latest", "median"]
    assert row.startswith(LATENCY) and " ms " in row
    assert "newest 20 matching runs" in note
    assert cli("summary", "--limit", "1", "--json").json()[0]["n"] in (0, 1)


def test_show_prints_metadata_and_every_value(cli: Cli) -> None:
    result = cli("show", "latest")
    assert result.rc == 0, result.err
    assert result.out.startswith("run 4  ") and f"platform {PLATFORM}" in result.out
    assert "type nightly" in result.out and "outcome failed" in result.out
    assert re.search(r"test_app\.py::test_latency\s+query_latency\s+\S+ ms\s+primary", result.out)
    detail = cli("show", "1", "--json").json()
    assert isinstance(detail, dict) and detail["id"] == 1
    latency = next(m for m in detail["measurements"] if m["metric"] == "query_latency")
    assert len(latency["samples"]) == 3 and latency["unit"] == "s"
    assert cli("show", "latest~3", "--json").json()["id"] == 1


def test_trend_resolves_a_test_and_lists_values_oldest_first(cli: Cli) -> None:
    result = cli("trend", "test_latency", "--metric", "query_latency")
    assert result.rc == 0, result.err
    title, header, _rule, *rows = result.out.splitlines()
    assert title == LATENCY and "vs previous" in header
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4"]
    points = cli("trend", LATENCY, "--json", "--limit", "2").json()
    assert isinstance(points, list)
    assert [p["run_id"] for p in points] == [4, 4]  # the newest 2 values, of any metric
    metrics = cli("trend", LATENCY, "--json", "--metric", "step:retrieve").json()
    assert [p["run_id"] for p in metrics] == [1, 2, 3, 4]


def test_trend_names_ambiguous_and_unknown_tests(cli: Cli) -> None:
    assert "matches 3 tests" in one_line_error(cli("trend", "test_app.py::*"))
    assert "no test matching 'nope'" in one_line_error(cli("trend", "nope"))


def test_compare_two_runs(cli: Cli) -> None:
    result = cli("compare", "1", "latest")
    assert result.rc == 0, result.err
    assert result.out.startswith("A = run 1, B = run 4")
    assert re.search(r"throughput\s+throughput\s+1000 items/s\s+1000 items/s\s+0\.0%", result.out)
    data = cli("compare", "latest~1", "latest", "--json").json()
    assert isinstance(data, dict) and (data["run_a"], data["run_b"]) == (3, 4)
    diff = next(d for d in data["diffs"] if d["metric"] == "throughput")
    assert (diff["a"], diff["b"], diff["direction"]) == (1000.0, 1000.0, "higher")


def test_export_streams_every_stored_value(cli: Cli, recorded: Path, tmp_path: Path) -> None:
    with api.History(recorded / ".perfguard" / "history.db") as history:
        n_results = history.stats().n_results
    result = cli("export", "--format", "csv")
    assert result.rc == 0, result.err
    rows = list(csv.reader(io.StringIO(result.out)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == n_results + 1

    target = tmp_path / "out.json"
    done = cli("export", "--format", "json", "--output", str(target), "--test", "*throughput*")
    assert done.rc == 0 and done.out == ""
    assert done.err == f"exported 16 rows to {target}\n"  # 4 runs x (throughput + 3 system)
    data = json.loads(target.read_text())
    assert {r["test"] for r in data} == {THROUGHPUT} and len(data) == 16
    assert not list(tmp_path.glob(".*partial"))


def test_stats_platform_and_db_maintenance(cli: Cli, project: Path) -> None:
    stats = cli("stats", "--json").json()
    assert isinstance(stats, dict)
    assert (stats["n_runs"], stats["n_platforms"], stats["n_tests"]) == (4, 1, 3)
    assert stats["platforms"][0]["key"] == PLATFORM
    text = cli("stats").out
    assert re.search(r"^runs\s+4$", text, re.M) and "history.db" in text

    platform = cli("platform", "--json").json()
    assert isinstance(platform, dict) and platform["key"] and "cpu_model" in platform["fingerprint"]
    assert cli("platform", "--platform", "my_box", "--key").out == "my_box\n"

    upgraded = cli("db", "upgrade", cwd=project)
    assert upgraded.rc == 0 and f"schema already at {HEAD_REVISION}" in upgraded.out
    vacuumed = cli("db", "vacuum", cwd=project)
    assert vacuumed.rc == 0 and "vacuumed" in vacuumed.out


def test_record_then_runs_shows_it(cli: Cli, project: Path) -> None:
    done = cli(
        "record", "nightly-gen", "--metric", "tokens_per_s=41.5tok/s", "--metric",
        "first_token=0.21s", "--direction", "tokens_per_s=higher", "--notes", "from CI",
        "--platform", "gpu_box", cwd=project,
    )  # fmt: skip
    assert done.rc == 0, done.err
    assert done.out == "recorded run 5: nightly-gen: tokens_per_s=41.5 tok/s, first_token=210 ms\n"
    listed = cli("runs", "--limit", "1", cwd=project)
    assert re.search(r"^5\s+\S+ \S+\s+gpu_box\s.*from CI$", listed.out, re.M), listed.out
    detail = cli("show", "5", "--json", cwd=project).json()
    assert isinstance(detail, dict)
    by_metric = {m["metric"]: m for m in detail["measurements"]}
    assert by_metric["tokens_per_s"]["unit"] == "tok/s"
    assert by_metric["tokens_per_s"]["direction"] == "higher"
    assert (by_metric["first_token"]["value"], by_metric["first_token"]["unit"]) == (0.21, "s")
    assert {m["test"] for m in detail["measurements"]} == {"nightly-gen"}

    failed = cli("record", "job", "--metric", "x=3", "--failed", "--json", cwd=project).json()
    assert isinstance(failed, dict) and failed["outcome"] == "failed"


def test_cli_reads_a_history_written_by_pytester(pytester: pytest.Pytester, cli: Cli) -> None:
    pytester.makepyfile(test_app=SUITE)
    pytester.runpytest("--perf-record", "--perf-platform", "px_box").assert_outcomes(passed=3)
    result = cli("runs", "--json", cwd=pytester.path)
    assert isinstance(result.json(), list) and result.json()[0]["platform"] == "px_box"
    assert "query_latency" in cli("show", "latest", cwd=pytester.path).out


def test_history_is_found_from_a_subdirectory_and_through_the_ini(cli: Cli, project: Path) -> None:
    (project / "sub" / "deeper").mkdir(parents=True)
    assert run_ids(cli("runs", "--json", cwd=project / "sub" / "deeper")) == [4, 3, 2, 1]
    (project / "data").mkdir()
    (project / ".perfguard" / "history.db").rename(project / "data" / "perf.db")
    (project / "pytest.ini").write_text("[pytest]\nperf_db = data/perf.db\n")
    assert run_ids(cli("runs", "--json", cwd=project / "sub")) == [4, 3, 2, 1]
    # --db is relative to the current directory, like any path typed in a shell.
    assert run_ids(cli("runs", "--json", "--db", "../data/perf.db", cwd=project / "sub")) == [
        4, 3, 2, 1,
    ]  # fmt: skip


# -- reports, baselines, dashboard ---------------------------------------------------------


def write_baselines(path: Path, throughput: float, latency: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {
        THROUGHPUT: {"throughput": {"value": throughput, "unit": "items/s", "direction": "higher"}},
        LATENCY: {"query_latency": {"value": latency, "unit": "s"}},
    }
    path.write_text(json.dumps({"schema": 1, "platforms": {PLATFORM: {"tests": entries}}}))
    return path


def test_baselines_check_exits_1_on_a_regression_of_the_latest_run(cli: Cli, project: Path) -> None:
    path = write_baselines(project / "baselines" / "perf_baselines.json", throughput=2000)
    result = cli("baselines", "check", cwd=project)
    assert result.rc == 1, result.err
    assert f"baselines {path}: valid" in result.out
    assert "run 4 (" in result.out and "1 performance regression" in result.out
    assert re.search(r"throughput\s+throughput\s+2000 items/s\s+1000 items/s\s+-50\.0%", result.out)
    assert cli("baselines", "check", "--warn-only", cwd=project).rc == 0
    assert cli("baselines", "check", "--threshold", "0.6", cwd=project).rc == 0
    assert cli("baselines", "check", "--rule", "noise", cwd=project).rc in (0, 1)
    data = cli("baselines", "check", "--json", cwd=project)
    assert data.rc == 1
    report = data.json()
    assert isinstance(report, dict) and report["summary"]["regressions"] == 1

    write_baselines(project / "baselines" / "perf_baselines.json", throughput=1000)
    clean = cli("baselines", "check", "--run", "2", "-v", cwd=project)
    assert clean.rc == 0 and "no performance regressions" in clean.out
    assert "all compared metrics" in clean.out


def test_baselines_show(cli: Cli, project: Path) -> None:
    assert "no baselines file yet" in cli("baselines", "show", cwd=project).out
    write_baselines(project / "baselines" / "perf_baselines.json", throughput=1000)
    result = cli("baselines", "show", cwd=project)
    assert re.search(rf"{PLATFORM}\s+{THROUGHPUT}\s+throughput\s+1000 items/s\s+higher", result.out)
    data = cli("baselines", "show", "--json", "--platform", "elsewhere", cwd=project).json()
    assert data == {"schema": 1, "platforms": {}}


def test_report_in_every_format(cli: Cli, project: Path) -> None:
    write_baselines(project / "baselines" / "perf_baselines.json", throughput=2000)
    markdown = cli("report", cwd=project)
    assert markdown.rc == 0, markdown.err
    assert markdown.out.startswith("<!-- perfguard-report -->")
    assert "1 performance regression" in markdown.out
    data = json.loads(cli("report", "--format", "json", "--run", "1", cwd=project).out)
    assert data["summary"]["regressions"] == 1 and data["run"]["platform"] == PLATFORM
    page = project / "report.html"
    html = cli("report", "--format", "html", "--output", str(page), cwd=project)
    assert html.rc == 0 and "wrote the html report of run 4" in html.err
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Regressions (1)" in text
    assert "<script" not in text and THROUGHPUT in text


def test_dashboard_writes_one_html_file(cli: Cli, project: Path) -> None:
    result = cli("dashboard", "--days", "7", "--output", "dash.html", cwd=project)
    assert result.rc == 0, result.err
    assert result.out.startswith("wrote dash.html (")
    page = (project / "dash.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html>") and PLATFORM in page


def baselines_of(project: Path) -> Path:
    return project / "baselines" / "perf_baselines.json"


UPDATE = ("baselines", "update", "--platform", PLATFORM, "--min-runs", "3")


def test_baselines_update_dry_run_shows_the_table_and_writes_nothing(
    cli: Cli, project: Path
) -> None:
    result = cli(*UPDATE, "--dry-run", cwd=project)
    assert result.rc == 0, result.err
    assert re.search(rf"{THROUGHPUT}\s+throughput\s+—\s+1000 items/s\s+—\s+add", result.out)
    assert "dry run: nothing written" in result.out
    assert not baselines_of(project).exists()


def test_interactive_update_answered_no_writes_nothing(cli: Cli, project: Path) -> None:
    result = cli(*UPDATE, cwd=project, stdin="no\n", interactive=True)
    assert result.rc == 0, result.err
    assert "Type 'yes' to write:" in result.out and "not written" in result.out
    assert not baselines_of(project).exists()
    with api.History(project / ".perfguard" / "history.db") as history:
        assert history.baseline_snapshots() == []


def test_interactive_update_answered_yes_writes(cli: Cli, project: Path) -> None:
    result = cli(*UPDATE, cwd=project, stdin="yes\n", interactive=True)
    assert result.rc == 0, result.err
    assert "written to" in result.out
    tests = json.loads(baselines_of(project).read_text())["platforms"][PLATFORM]["tests"]
    assert tests[THROUGHPUT]["throughput"]["value"] == 1000.0


def test_update_outside_a_terminal_needs_yes(cli: Cli, project: Path) -> None:
    assert "--yes" in one_line_error(cli(*UPDATE, cwd=project))
    assert not baselines_of(project).exists()
    assert cli(*UPDATE, "--auto-approve-improvements", cwd=project).rc == 0
    assert baselines_of(project).exists()
    again = cli(*UPDATE, "--yes", cwd=project)
    assert again.rc == 0 and again.out.endswith(f"3 kept; {baselines_of(project)} unchanged\n")
    assert "never accepts regressions" in one_line_error(
        cli(*UPDATE, "--auto-approve-improvements", "--accept-regressions", cwd=project)
    )


# -- errors --------------------------------------------------------------------------------


def _stamp_future_schema(db: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--db", "missing/nope.db"], "history database not found: "),
        (["show", "999"], "run 999 not found"),
        (["compare", "1", "999"], "run 999 not found"),
        (["show", "latest~9"], "no run latest~9: only 4 run(s) recorded"),
        (["show", "first"], "argument RUN: 'first' is not a run id"),
        (["export", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["report", "--format", "pdf"], "argument --format: invalid choice: 'pdf'"),
        (["record", "job", "--metric", "latency=fast"], "'fast' is not a number"),
        (["record", "job", "--metric", "latency"], "is not KEY=VALUE[UNIT]"),
        (["record", "job", "--metric", "latency=1e999"], "must be a finite number"),
        (["record", "job", "--metric", "a=1", "--direction", "b=higher"], "no --metric b="),
        (["record", "job", "--metric", "a=1", "--direction", "a=up"], "KEY=lower or KEY=higher"),
        (["runs", "--days", "-1"], "argument --days: '-1' must be a number above 0"),
        (["runs", "--limit", "0"], "argument --limit: '0' must be at least 1"),
        (["runs", "--outcome", "meh"], "argument --outcome: invalid choice"),
        (["baselines", "check", "--rule", "vibes"], "argument --rule: 'vibes'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["baselines", "check", "--baselines", "corrupt.json"], "corrupt.json: not valid JSON"),
        (["baselines", "show", "--baselines", "corrupt.json"], "corrupt.json: not valid JSON"),
        (["report", "--baselines", "corrupt.json"], "corrupt.json: not valid JSON"),
        (["baselines", "check", "--baselines", "wrong.json"], "value: must be >= 0"),
        (["trend", LATENCY, "--days", "x"], "argument --days: 'x' is not a number"),
        (["import", "missing.json"], "missing.json: no such file or directory"),
    ],
)
def test_errors_are_one_line_with_exit_2(
    cli: Cli, project: Path, args: list[str], message: str
) -> None:
    (project / "corrupt.json").write_text('{"schema": 1, "platforms": {')
    (project / "wrong.json").write_text(
        json.dumps({"schema": 1, "platforms": {"p": {"tests": {"t": {"m": {"value": -1}}}}}})
    )
    assert message in one_line_error(cli(*args, cwd=project))


def test_a_newer_schema_is_an_error_and_left_alone(cli: Cli, project: Path) -> None:
    db = project / ".perfguard" / "history.db"
    _stamp_future_schema(db)
    before = db.read_bytes()
    for args in (["runs"], ["record", "x", "--metric", "a=1"], ["db", "upgrade"]):
        error = one_line_error(cli(*args, cwd=project))
        assert "schema revision '9999_future', unknown to this pytest-perfguard" in error
    assert db.read_bytes() == before


def test_read_commands_never_create_a_missing_database(cli: Cli, tmp_path: Path) -> None:
    for args in (
        ["runs"], ["summary"], ["show", "latest"], ["trend", "t"], ["compare", "1", "2"],
        ["export"], ["stats"], ["report"], ["baselines", "check"], ["db", "vacuum"],
        ["baselines", "update", "--dry-run"], ["dashboard"],
    ):  # fmt: skip
        assert "history database not found" in one_line_error(cli(*args, cwd=tmp_path)), args
    assert list(tmp_path.iterdir()) == []


def test_passwords_are_masked_in_errors(cli: Cli, tmp_path: Path) -> None:
    url = "postgresql://perf:hunter2@127.0.0.1:1/history"
    error = one_line_error(cli("runs", "--db", url, cwd=tmp_path))
    assert "hunter2" not in error and "perf:***@" in error


def test_unexpected_errors_are_one_line_too(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(api.History, "recent_runs", broken)
    error = one_line_error(cli("runs", cwd=project))
    assert "unexpected ZeroDivisionError: boom" in error and "PERFGUARD_DEBUG=1" in error


# -- the real command ----------------------------------------------------------------------


def perfguard_script() -> Path:
    script = Path(sys.executable).with_name("perfguard")
    if not script.exists():
        pytest.skip("the perfguard console script is not installed next to this Python")
    return script


def test_console_script_end_to_end(recorded: Path, tmp_path: Path) -> None:
    script = perfguard_script()
    done = subprocess.run(
        [script, "runs", "--limit", "2"], cwd=recorded, capture_output=True, text=True,
        env=clean_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == ["4", "3"]
    missing = subprocess.run(
        [script, "show", "1"], cwd=tmp_path, capture_output=True, text=True, env=clean_env(),
        check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("perfguard: error: history database not found")
    assert missing.stderr.count("\n") == 1


def test_version_names_this_package(cli: Cli) -> None:
    import pytest_perfguard

    package = Path(pytest_perfguard.__file__).resolve().parent
    expected = f"perfguard {pytest_perfguard.__version__} (pytest-perfguard from {package})\n"
    assert cli("--version").out == expected
    done = subprocess.run(
        [sys.executable, "-m", "pytest_perfguard", "--version"], capture_output=True, text=True,
        check=True, env=clean_env(),
    )  # fmt: skip
    assert done.stdout == expected


NO_PYTEST = """
import sys
from pytest_perfguard.cli import main
for args in {commands!r}:
    assert main(args) in (0, 1), args
loaded = sorted(m for m in sys.modules
                if m in ("pytest", "pytest_perfguard.plugin") or m.startswith("_pytest"))
print("LOADED", loaded)
"""


def test_the_cli_never_imports_pytest_or_the_plugin(recorded: Path, tmp_path: Path) -> None:
    write_baselines(tmp_path / "b.json", throughput=1000)
    commands = [
        ["runs"], ["summary"], ["show", "latest"], ["trend", LATENCY], ["compare", "1", "2"],
        ["export", "--output", str(tmp_path / "x.csv")], ["stats"], ["platform"],
        ["report", "--baselines", str(tmp_path / "b.json"), "--format", "html"],
        ["baselines", "check", "--baselines", str(tmp_path / "b.json")],
        ["baselines", "update", "--dry-run", "--platform", PLATFORM],
        ["dashboard", "--output", str(tmp_path / "d.html")],
        ["record", "x", "--metric", "a=1", "--db", str(tmp_path / "h.db")],
        ["import", str(tmp_path / "b.json"), "--dry-run", "--db", str(tmp_path / "h.db")],
    ]  # fmt: skip
    # b.json is a baselines file, not importable: swap in a results file for `import`.
    (tmp_path / "r.json").write_text('[{"timestamp": "2026-01-01T00:00:00", "x_latency": 1}]')
    commands[-1][1] = str(tmp_path / "r.json")
    done = subprocess.run(
        [sys.executable, "-c", NO_PYTEST.format(commands=commands)],
        cwd=recorded, capture_output=True, text=True, env=clean_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


def test_every_subcommand_is_in_the_parser() -> None:
    parser = build_parser()
    text = parser.format_help()
    for name in ("summary", "runs", "show", "trend", "compare", "export", "report", "dashboard",
                 "baselines", "record", "import", "platform", "stats", "db"):  # fmt: skip
        assert re.search(rf"^\s+{name}\b", text, re.M), name


def test_parser_value_types() -> None:
    from pytest_perfguard.cli import parser as p

    assert p.metric_value("tokens_per_s=41.5tok/s") == ("tokens_per_s", (41.5, "tok/s"))
    assert p.metric_value("latency = 8.1 s") == ("latency", (8.1, "s"))
    assert p.metric_value("x=1e-3ms") == ("x", (0.001, "ms"))
    assert p.metric_value("n=-2") == ("n", (-2.0, ""))
    assert p.metric_value("hits=5events") == ("hits", (5.0, "events"))
    assert p.direction("a=higher") == ("a", "higher")
    assert p.run_ref("latest~2") == "latest~2"
    for bad in ("=1", "x=", "x=s1", "x=inf"):
        with pytest.raises(Exception, match=r"KEY=VALUE|not a number|finite"):
            p.metric_value(bad)


def test_record_runs_export_on_each_backend(cli: Cli, history_url: str, tmp_path: Path) -> None:
    """The CLI is the same over SQLite and PostgreSQL (set PERFGUARD_TEST_DATABASE_URL)."""
    for value in ("1.5", "2.5"):
        done = cli("record", "job", "--metric", f"x={value}s", "--db", history_url, cwd=tmp_path)
        assert done.rc == 0, done.err
    assert run_ids(cli("runs", "--json", "--db", history_url, cwd=tmp_path)) == [2, 1]
    rows = list(csv.DictReader(io.StringIO(cli("export", "--db", history_url, cwd=tmp_path).out)))
    assert [(r["run_id"], r["test"], r["value"], r["unit"]) for r in rows] == [
        ("1", "job", "1.5", "s"), ("2", "job", "2.5", "s")
    ]  # fmt: skip
    summary = cli("summary", "--json", "--db", history_url, cwd=tmp_path).json()
    assert summary[0]["values"] == [1.5, 2.5] and summary[0]["change"] == pytest.approx(2 / 3)
