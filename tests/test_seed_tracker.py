"""The seed's test tracker (`record_test.py`, `search_performance.py`, PERFORMANCE_RESULTS.md)
as `perfguard record` / `runs` / `summary`: its commands, taken from its template, work."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.cli import Console, main
from pytest_perfguard.config import CI_PROVIDERS

CI_VARIABLES = [variable for variable, _ in CI_PROVIDERS]
TEMPLATE = Path(__file__).parent / "seed_docs" / "tracker_template.md"


def perfguard(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), console=Console(stdout=out, stderr=err, stdin=io.StringIO()))
    return rc, out.getvalue(), err.getvalue()


def template_commands() -> list[list[str]]:
    """Each `python3 record_test.py ...` command of the template, as `perfguard record` argv
    (the CI example's `${{ ... }}` expressions given values, as the CI runner would)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("${{ env.BENCHMARK_FPS }}", "29.5").replace("${{ github.run_number }}", "7")
    commands = []
    for match in re.finditer(r"python3 record_test\.py (.*?)(?<!\\)\n", text.replace("\\\n", " ")):
        commands.append(["record", *shlex.split(match[1])])
    return commands


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    # Who ran a record defaults to "ci" in a CI job: these tests run as a developer would.
    for name in ("PERFGUARD_DB", "PERFORMANCE_DB_PATH", "PERFGUARD_PLATFORM", "CI", *CI_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERFORMANCE_PLATFORM", "Jetson_Orin")
    return tmp_path


def test_the_templates_record_commands_are_found() -> None:
    assert [argv[1] for argv in template_commands()] == [
        "experiment_name", "advanced_test.py", "CI Benchmark"
    ]  # fmt: skip


def test_the_templates_commands_record_and_say_what_is_wrong() -> None:
    simple, multiple, ci = template_commands()
    # The template's first line is a placeholder: `--metric1 value1` is no number.
    rc, _, err = perfguard(*simple)
    assert rc == 2
    assert err.strip() == (
        "perfguard: error: record: --metric1: 'value1' is not a number, optionally followed by "
        "a unit (e.g. --metric1 0.95 or --metric1 230ms)"
    )
    rc, out, _ = perfguard(*multiple)
    assert (rc, out) == (
        0,
        "recorded run 1: advanced_test.py: accuracy=0.95, latency=230, memory=512\n",
    )
    rc, out, _ = perfguard(*ci)
    assert (rc, out) == (0, "recorded run 2: CI Benchmark by automated: fps=29.5\n")
    with History() as history:
        first, second = (history.get_run(n) for n in (1, 2))
    assert first.notes == "Optimized parameters, batch size 32"
    assert (first.outcome, first.triggered_by, first.platform) == ("passed", "user", "Jetson_Orin")
    directions = {m.metric: m.direction for m in first.measurements}
    assert directions == {"accuracy": "higher", "latency": "lower", "memory": "lower"}
    assert (second.triggered_by, second.notes) == ("automated", "CI run 7")
    assert [(m.metric, m.value, m.direction) for m in second.measurements] == [
        ("fps", 29.5, "higher")
    ]


def test_a_metric_flag_is_never_read_as_an_abbreviated_option() -> None:
    assert perfguard("record", "x", "--me", "5", "--no", "2")[0] == 0
    with History() as history:
        run = history.get_run(1)
    assert ([m.metric for m in run.measurements], run.notes) == (["me", "no"], "")


def test_who_ran_and_test_type_are_stored_shown_and_filterable() -> None:
    assert perfguard("record", "vision.py", "--type", "realtime", "--who", "claude",
                     "--fps", "30.1", "--processing-time-ms", "33ms")[0] == 0  # fmt: skip
    assert perfguard("record", "vision.py", "--type", "stress", "--failed", "--who",
                     "automated", "--fps=12", "--notes", "thermal throttling")[0] == 0  # fmt: skip
    assert perfguard("record", "llm.py", "--type", "inference", "--success",
                     "--tokens-per-second", "45.2tok/s")[0] == 0  # fmt: skip
    _, out, _ = perfguard("runs", "--who", "claude")
    assert re.search(r"^1 .* realtime +claude +passed", out, re.M), out
    assert len(out.splitlines()) == 3
    _, out, _ = perfguard("runs", "--type", "stress", "--json")
    (run,) = json.loads(out)
    assert (run["test_type"], run["triggered_by"], run["outcome"]) == (
        "stress",
        "automated",
        "failed",
    )
    _, out, _ = perfguard("show", "3")
    assert "by user  outcome passed  test type inference" in out
    _, out, _ = perfguard("summary", "--type", "realtime", "--json")
    assert {(s["metric"], s["latest"]) for s in json.loads(out)} == {
        ("fps", 30.1), ("processing_time_ms", 33.0)
    }  # fmt: skip
    with History() as history:
        assert [r.id for r in history.recent_runs(who="automated")] == [2]
        assert [r.id for r in history.recent_runs(test_type="inference")] == [3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["record", "x"], "record: no metrics given: add --NAME VALUE[UNIT]"),
        (["record", "x", "--fps"], "record: --fps needs a value, e.g. --fps 0.95"),
        (["record", "x", "--fps", "1", "--fps", "2"], "record: metric 'fps' given twice"),
        (["record", "x", "--success", "--failed", "--fps", "1"], "not allowed with argument"),
        (["record", "x", "--who", "a" * 21, "--fps", "1"], "a name of 1 to 20 characters"),
        (["record", "x", "--fps", "1", "stray"], "record: unexpected 'stray'"),
        (["runs", "--fps", "1"], "unrecognized arguments: --fps 1"),
    ],
)
def test_bad_tracker_commands_are_one_line_errors(args: list[str], message: str) -> None:
    rc, out, err = perfguard(*args)
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err, err


def test_summary_markdown_rewrites_performance_results(project: Path) -> None:
    results = project / "PERFORMANCE_RESULTS.md"
    results.write_text("notes kept by hand are replaced\n")
    perfguard("record", "vision.py", "--type", "benchmark", "--fps", "30", "--notes", "a|b")
    perfguard("record", "vision.py", "--type", "benchmark", "--fps", "33", "--who", "ci")
    rc, _, err = perfguard("summary", "--markdown", "PERFORMANCE_RESULTS.md")
    assert rc == 0 and "PERFORMANCE_RESULTS.md rewritten (2 recent runs)" in err
    text = results.read_text()
    assert "by hand" not in text
    assert text.startswith("<!-- perfguard-results")
    assert "| 2 | " in text and "| vision.py | benchmark | ci | ✅ success | fps 33.0 |" in text
    assert "a\\|b" in text  # a pipe in the notes stays inside its cell
    assert "| vision.py | fps | 2 | 33.0 | 31.5 | 33.0 | +10.0% |" in text
    again = results.read_text()
    perfguard("summary", "--markdown", "PERFORMANCE_RESULTS.md")
    assert results.read_text() == again  # same history, same file: nothing to commit


def test_summary_markdown_of_an_empty_history(project: Path) -> None:
    History(project / ".perfguard" / "history.db").upgrade()
    assert perfguard("summary", "--markdown", "R.md")[0] == 0
    assert "No runs recorded yet" in (project / "R.md").read_text()
