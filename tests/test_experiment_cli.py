"""`perfguard experiments list|show|compare|export|import`, through `main` and as a process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.cli import Console, main

FAILED = {"passed": False, "violations": 2, "metrics": {}}
PASSED = {"passed": True, "violations": 0, "metrics": {}}


@dataclass
class Result:
    rc: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def db(history_url: str) -> str:
    with History(history_url) as history:
        a = history.experiment("chunk sweep", template="rag", mode="grid", config={"k": 5})
        for chunk, mrr, validation in [(256, 0.5, PASSED), (512, 0.7, PASSED), (1024, 0.6, FAILED)]:
            a.log_trial(params={"chunk": chunk}, metrics={"mrr": mrr}, validation=validation)
        a.summary = {"winner": 512}
        b = history.experiment("<b>tpe</b>", template="rag", mode="tpe")
        b.log_trial(params={"lr": 0.1}, metrics={"mrr": 0.8, "latency": 2.0})
    return history_url


@pytest.fixture
def cli(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    for name in ("PERFGUARD_DB", "PERFORMANCE_DB_PATH"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, database: str = db) -> Result:
        out, err = io.StringIO(), io.StringIO()
        rc = main(["experiments", *args, "--db", database], console=Console(stdout=out, stderr=err))
        return Result(rc, out.getvalue(), err.getvalue())

    return run


def test_list_shows_counts_and_filters_by_rate(cli: Cli) -> None:
    result = cli("list")
    assert result.rc == 0, result.err
    header, _rule, *rows = result.out.splitlines()
    assert header.split()[:6] == ["id", "name", "template", "mode", "trials", "failed"]
    assert "<b>tpe</b>" in rows[0] and "chunk sweep" in rows[1]
    assert "1/3" in rows[1] and "33.3%" in rows[1]
    filtered = cli("list", "--filter", "failure_rate<=0.5", "--json")
    assert [e["name"] for e in json.loads(filtered.out)] == ["chunk sweep"]
    assert cli("list", "--name", "*SWEEP*", "--mode", "tpe").out == "no experiments match\n"


def test_show_marks_the_best_trial(cli: Cli) -> None:
    result = cli("show", "chunk sweep", "--metric", "mrr")
    assert result.rc == 0, result.err
    assert "experiment 1: chunk sweep" in result.out
    assert 'summary  {"winner": 512}' in result.out
    assert "best     trial 2 by mrr (higher is better)" in result.out
    trial_rows = [line for line in result.out.splitlines() if line[:1].isdigit()]
    assert trial_rows[1].startswith("2*") and "chunk=512" in trial_rows[1]
    assert "failed (2 violations)" in trial_rows[2]
    data = json.loads(cli("show", "1", "--metric", "mrr", "--direction", "lower", "--json").out)
    assert data["best"]["trial_number"] == 1 and len(data["trials"]) == 3


def test_compare_side_by_side(cli: Cli) -> None:
    result = cli("compare", "chunk sweep", "<b>tpe</b>", "--metric", "mrr")
    assert result.rc == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "mrr (higher is better)"
    assert "3/3" in lines[3] and "0.7" in lines[3] and "+40.0%" in lines[3]
    rows = json.loads(cli("compare", "1", "2", "--metric", "latency", "--json").out)
    assert [(r["n_values"], r["best"]) for r in rows] == [(0, None), (1, 2.0)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "experiment 'nope' not found"),
        (["compare", "1", "--metric", "mrr", "--direction", "up"], "invalid choice"),
        (["compare", "1"], "--metric"),
        (["list", "--filter", "speed<1"], "unknown field 'speed'"),
        (["import", "missing.json"], "missing.json: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.rc == 2 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("perfguard: error: ")
    assert message in result.err


def test_export_then_import_into_a_fresh_database(cli: Cli, tmp_path: Path) -> None:
    result = cli("export", "--output", "exp.json")
    assert result.rc == 0 and result.err == "exported 2 experiment(s) to exp.json\n"
    target = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = cli("import", "exp.json", database=target)
    assert first.out == (
        "exp.json: 2 experiment(s) created, 0 already there; 4 trial(s) added, 0 already stored\n"
    )
    again = cli("import", "exp.json", "--json", database=target)
    assert json.loads(again.out)[0]["trials_skipped"] == 4
    listed = cli("compare", "chunk sweep", "--metric", "mrr", "--json", database=target)
    assert json.loads(listed.out)[0]["best"] == 0.7


def test_perfguard_import_takes_an_experiments_export(
    cli: Cli, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("export", "--output", "exp.json").rc == 0
    target = f"sqlite:///{tmp_path / 'fresh.db'}"

    def top_level(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        rc = main([*args, "--db", target], console=Console(stdout=out, stderr=err))
        return Result(rc, out.getvalue(), err.getvalue())

    dry = top_level("import", "exp.json", "--dry-run")
    assert dry.rc == 0, dry.err
    assert dry.out == "would import exp.json: 2 experiment(s), 4 trial(s) (experiments export)\n"
    assert not (tmp_path / "fresh.db").exists()
    done = top_level("import", "exp.json")
    assert done.rc == 0 and "2 experiment(s) created" in done.out
    assert json.loads(cli("list", "--json", database=target).out)[0]["n_trials"] == 1
    (tmp_path / "other.json").write_text("[]")
    mixed = top_level("import", "exp.json", "other.json", "--json")
    assert mixed.rc == 2 and "separate calls" in mixed.err


def test_the_console_script_runs_it(db: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_perfguard", "experiments", "list", "--db", db, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {e["name"] for e in json.loads(done.stdout)} == {"chunk sweep", "<b>tpe</b>"}
