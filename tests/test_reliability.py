"""The reliability table (docs/reliability.md): bad input through the plugin, the CLI and
the API ends in one line naming the input, with the exit code the contract gives, no
traceback, and nothing already stored lost.

Every case runs in a project that already holds a history (one run) and a baselines file;
after the case both are checked to be intact. Plugin cases run pytest in a subprocess (real
exit codes, real terminal output), CLI cases call `perfguard`'s `main`, API cases call
`History` and the baselines loader. We run as root in CI containers, so a directory we
cannot write is simulated by paths no one can create (under a regular file, inside /proc)
and a full disk by /dev/full, whose writes fail with ENOSPC.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_perfguard import api
from pytest_perfguard.api import History
from pytest_perfguard.baselines import load_baselines
from pytest_perfguard.cli import Console, main
from pytest_perfguard.collectors import GpuMemoryCollector
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo
from pytest_perfguard.runinfo import GitState, git_state

pytest_plugins = ["pytester"]

PLATFORM = "rel_box"
SECRET = "s3cr3t-pw"
DOWN_PG = f"postgresql://perf:{SECRET}@127.0.0.1:1/perf"  # nothing listens on port 1
SUITE = """
import pytest

@pytest.mark.perf(metric="latency")
def test_latency(perf):
    perf.record("latency", 1.0)

def test_plain():
    pass
"""
BASELINES = {
    "schema": 1,
    "platforms": {
        PLATFORM: {
            "metadata": {"last_updated": "2026-01-07T10:00:00Z"},
            "tests": {
                "test_suite.py::test_latency": {
                    "latency": {"value": 1.0, "unit": "s", "direction": "lower", "runs": 5}
                }
            },
        }
    },
}


@dataclass
class Outcome:
    """What a user sees: an exit code (the exception's class name for the API) and text."""

    code: int | str
    output: str
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Project:
    """A project with a history (run 1) and a baselines file that must survive every case."""

    pytester: pytest.Pytester
    monkeypatch: pytest.MonkeyPatch

    @property
    def path(self) -> Path:
        return self.pytester.path

    @property
    def db(self) -> Path:
        return self.path / "history.db"

    @property
    def baselines(self) -> Path:
        return self.path / "baselines" / "perf_baselines.json"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def pytest(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        for name, value in (env or {}).items():
            self.monkeypatch.setenv(name, value)
        result = self.pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--perf-platform", PLATFORM, "--tb=short", *args
        )
        return Outcome(int(result.ret), "\n".join([*result.outlines, *result.errlines]))

    def cli(self, *args: str) -> Outcome:
        out, err = io.StringIO(), io.StringIO()
        rc = main(list(args), console=Console(stdout=out, stderr=err))
        return Outcome(rc, err.getvalue(), {"stdout": out.getvalue(), "stderr": err.getvalue()})

    def api(self, call: Callable[[], object]) -> Outcome:
        try:
            call()
        except Exception as exc:
            return Outcome(type(exc).__name__, str(exc))
        return Outcome("no error", "")

    def runs(self) -> list[int]:
        with History(self.db, create=False) as history:
            return sorted(run.id for run in history.recent_runs())


def seed_history(path: Path) -> None:
    run = RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo(PLATFORM))
    with History(path) as history:
        history.save_session(run, [Measurement("seed.py::test_seed", "duration", 1.25)])


def newer_schema_db(project: Project) -> Path:
    path = project.path / "newer.db"
    seed_history(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    # Into the main file, so the bytes compared afterwards are the whole database.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def fallback_files(project: Project, directory: Path | None = None) -> list[Path]:
    where = directory or project.path / ".perfguard" / "unstored"
    return sorted(where.glob("run-*.json")) if where.is_dir() else []


def kept_results(path: Path) -> set[tuple[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {(row["test"], row["metric"]) for row in data["results"]}


@dataclass(frozen=True)
class Case:
    """One bad input. `line` must match one line of the output and name the input."""

    id: str
    surface: str  # plugin | cli | api
    run: Callable[[Project], Outcome]
    code: int | str
    line: str
    check: Callable[[Project, Outcome], None] | None = None


def _unchanged(path_of: Callable[[Project], Path]) -> Callable[[Project, Outcome], None]:
    """The file the case handed over is byte for byte what it was (never rewritten)."""

    def check(project: Project, outcome: Outcome) -> None:
        path = path_of(project)
        assert path.read_bytes() == outcome.extra["before"], f"{path} was modified"

    return check


def _with_before(
    make: Callable[[Project], Path], run: Callable[[Project, Path], Outcome]
) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        path = make(project)
        before = path.read_bytes()
        outcome = run(project, path)
        outcome.extra["before"] = before
        return outcome

    return go


def _kept_in_fallback(project: Project, outcome: Outcome) -> None:
    match = re.search(r"measurements kept in (\S+\.json) \(perfguard import", outcome.output)
    assert match, outcome.output
    kept = Path(match.group(1))
    assert ("test_suite.py::test_latency", "latency") in kept_results(kept)
    assert ("test_suite.py::test_plain", "duration") in kept_results(kept)
    # Once a database is there, the file stores the run as the session would have.
    imported = project.cli("import", str(kept), "--db", str(project.db))
    assert imported.code == 0, imported.output
    assert project.runs() == [1, 2]
    with History(project.db) as history:
        run = history.get_run(2)
    assert (run.platform, run.outcome) == (PLATFORM, "passed")
    assert "--perf-record" in run.args
    assert {(m.test, m.metric) for m in run.measurements} >= {
        ("test_suite.py::test_latency", "latency"),
        ("test_suite.py::test_plain", "duration"),
    }
    again = project.cli("import", str(kept), "--db", str(project.db))
    assert "already imported" in str(again.extra["stdout"]) and project.runs() == [1, 2]


def _both(*checks: Callable[[Project, Outcome], None]) -> Callable[[Project, Outcome], None]:
    def check(project: Project, outcome: Outcome) -> None:
        for one in checks:
            one(project, outcome)

    return check


def _stored_anyway(project: Project, outcome: Outcome) -> None:
    assert project.runs() == [1, 2]  # the report failed; the history still got the run


def _truncated_baselines(project: Project) -> Path:
    text = json.dumps(BASELINES, indent=2)
    return project.file("cut.json", text[: len(text) // 2])


def _corrupt_db(project: Project) -> Path:
    return project.file("corrupt.db", b"this is not a database\n" * 100)


def _truncated_db(project: Project) -> Path:
    return project.file("truncated.db", project.db.read_bytes()[:3000])


def _bad_pyproject(text: str) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        project.file("pyproject.toml", text)
        return project.cli("runs")

    return go


def _export_to_full_stdout(project: Project) -> Outcome:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_perfguard", "export", "--format", "json",
             "--db", str(project.db)],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=project.path, check=False,
        )  # fmt: skip
    return Outcome(done.returncode, done.stderr, {"stderr": done.stderr})


def _record_nonfinite(value: float) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        with History(project.db) as history:
            return project.api(lambda: history.record_run({"tokens": value}, platform="p"))

    return go


def _down_server_both_ways(project: Project) -> Outcome:
    # .perfguard is a regular file: the fallback cannot go under the rootdir either, so it
    # goes to the temporary directory (TMPDIR, pointed into the project here).
    project.file(".perfguard", "not a directory")
    (project.path / "tmp").mkdir()
    return project.pytest(
        "--perf-record", "--perf-db", DOWN_PG, env={"TMPDIR": str(project.path / "tmp")}
    )


def _kept_in_tmp(project: Project, outcome: Outcome) -> None:
    (kept,) = fallback_files(project, project.path / "tmp" / "perfguard-unstored")
    assert str(kept) in outcome.output
    assert ("test_suite.py::test_latency", "latency") in kept_results(kept)


def _non_utf8_metric(project: Project) -> Outcome:
    project.file(
        "test_suite.py",
        'def test_bytes(perf):\n    perf.record(b"lat\\xffency".decode("utf-8", '
        '"surrogateescape"), 2.0)\n',
    )
    return project.pytest("--perf-record", "--perf-db", "history.db", "--perf-json", "r.json")


def _escaped_and_stored(project: Project, outcome: Outcome) -> None:
    with History(project.db) as history:
        run = history.get_run(2)
    assert "lat\\xffency" in {m.metric for m in run.measurements}
    report = json.loads((project.path / "r.json").read_text(encoding="utf-8"))
    assert report["run"]["platform"] == PLATFORM


def _marker(arguments: str) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        project.file(
            "test_suite.py",
            f"import pytest\n\n@pytest.mark.perf({arguments})\ndef test_m():\n    pass\n",
        )
        return project.pytest("--perf")

    return go


def _record_value(value: str) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        project.file(
            "test_suite.py", f'def test_v(perf):\n    perf.record("tokens", float("{value}"))\n'
        )
        return project.pytest("--perf")

    return go


def _pytest(*args: str, env: dict[str, str] | None = None) -> Callable[[Project], Outcome]:
    return lambda project: project.pytest(*args, env=env)


def _cli(*args: str) -> Callable[[Project], Outcome]:
    return lambda project: project.cli(*args)


def _given(
    setup: Callable[[Project], object], run: Callable[[Project], Outcome]
) -> Callable[[Project], Outcome]:
    def go(project: Project) -> Outcome:
        setup(project)
        return run(project)

    return go


def _a_file(project: Project) -> Path:
    """A regular file where a directory would have to be: nothing can be created below."""
    return project.file("afile", "x")


CASES = [
    # --- plugin: configuration, refused before any test runs (exit 4) ---
    Case("corrupt baselines JSON", "plugin",
         lambda p: p.pytest("--perf", "--perf-baselines",
                            str(p.file("bad.json", '{"schema": 1, "platforms": {')),),
         4, r"^ERROR: .*bad\.json: not valid JSON"),
    Case("truncated baselines JSON", "plugin",
         lambda p: p.pytest("--perf", "--perf-baselines", str(_truncated_baselines(p))),
         4, r"^ERROR: .*cut\.json: not valid JSON"),
    Case("baselines of a newer schema", "plugin",
         lambda p: p.pytest("--perf", "--perf-baselines",
                            str(p.file("new.json", '{"schema": 99, "platforms": {}}'))),
         4, r"^ERROR: .*new\.json: schema: unknown schema version 99"),
    Case("NaN in the baselines", "plugin",
         lambda p: p.pytest("--perf", "--perf-baselines", str(p.file("nan.json", json.dumps(
             {"schema": 1, "platforms": {"x": {"tests": {"t": {"m": {"value": "NaN"}}}}}}
         ).replace('"NaN"', "NaN")))),
         4, r"^ERROR: .*nan\.json: .*value: must be a finite number"),
    Case("--perf-threshold nan", "plugin", _pytest("--perf-threshold", "nan"),
         4, r"--perf-threshold: 'nan' must be a finite number"),
    Case("--perf-threshold inf", "plugin", _pytest("--perf-threshold", "inf"),
         4, r"--perf-threshold: 'inf' must be a finite number"),
    Case("ini perf_threshold not a number", "plugin",
         _given(lambda p: p.file("pytest.ini", "[pytest]\nperf_threshold = abc\n"),
                _pytest("--perf")),
         4, r"^ERROR: ini option perf_threshold: 'abc' is not a number"),
    Case("PERFGUARD_THRESHOLD=nan", "plugin", _pytest(env={"PERFGUARD_THRESHOLD": "nan"}),
         4, r"^ERROR: PERFGUARD_THRESHOLD: 'nan' must be a finite number"),
    Case("unknown option", "plugin", _pytest("--perf", "--perf-nonsense"),
         4, r"pytest: error: unrecognized arguments: --perf-nonsense$"),
    Case("--perf-gate out of its choices", "plugin", _pytest("--perf-gate", "sometimes"),
         4, r"argument --perf-gate: .*'sometimes'"),
    Case("bad database URL", "plugin", _pytest("--perf-record", "--perf-db", "nosuch://u@h/db"),
         4, r"^ERROR: --perf-db: 'nosuch://u@h/db' is not a supported database URL"),
    Case("libpq connection string as --perf-db", "plugin",
         _pytest("--perf-record", "--perf-db", f"host=db password={SECRET}"),
         4, r"^ERROR: --perf-db: 'host=db password=\*\*\*' looks like a libpq connection"),
    Case("--perf-db in a directory that cannot exist", "plugin",
         _given(_a_file, _pytest("--perf-record", "--perf-db", "afile/h.db")),
         4, r"^ERROR: --perf-db: .*afile/h\.db cannot be created: .*afile is not a directory"),
    Case("--perf-report in a directory that cannot exist", "plugin",
         _given(_a_file, _pytest("--perf", "--perf-report", "afile/r.md")),
         4, r"^ERROR: --perf-report: .*afile/r\.md cannot be created"),
    Case("--perf-json is a directory", "plugin",
         _given(lambda p: (p.path / "out").mkdir(), _pytest("--perf", "--perf-json", "out")),
         4, r"^ERROR: --perf-json: .*out is a directory, not a file"),
    Case("--perf-report in a read-only directory (/proc)", "plugin",
         _pytest("--perf", "--perf-report", "/proc/perfguard-report.md"),
         4, r"^ERROR: --perf-report: /proc/perfguard-report\.md cannot be written"),
    # --- plugin: failures after the tests ran: one line, the session fails, nothing lost ---
    Case("history server down", "plugin", _pytest("--perf-record", "--perf-db", DOWN_PG),
         1, r"^perfguard: error: run not stored: .*postgresql\+psycopg://perf:\*\*\*@127\.0\.0"
            r"\.1:1/perf.*; measurements kept in ", _kept_in_fallback),
    Case("history of a newer schema", "plugin",
         _with_before(newer_schema_db,
                      lambda p, db: p.pytest("--perf-record", "--perf-db", str(db))),
         1, r"^perfguard: error: run not stored: .*9999_from_the_future.*measurements kept in",
         _both(_kept_in_fallback, _unchanged(lambda q: q.path / "newer.db"))),
    Case("corrupt history file", "plugin",
         _with_before(_corrupt_db, lambda p, db: p.pytest("--perf-record", "--perf-db", str(db))),
         1, r"^perfguard: error: run not stored: .*corrupt\.db.*measurements kept in",
         _both(_kept_in_fallback, _unchanged(lambda q: q.path / "corrupt.db"))),
    Case("history down and no room for the fallback under the rootdir", "plugin",
         _down_server_both_ways,
         1, r"^perfguard: error: run not stored: .*measurements kept in .*perfguard-unstored",
         _kept_in_tmp),
    Case("full disk for --perf-report", "plugin",
         _pytest("--perf-record", "--perf-db", "history.db", "--perf-report=/dev/full"),
         1, r"^perfguard: error: --perf-report /dev/full: not written: No space left on device",
         _stored_anyway),
    Case("full disk for --perf-json", "plugin",
         _pytest("--perf-record", "--perf-db", "history.db", "--perf-json=/dev/full"),
         1, r"^perfguard: error: --perf-json /dev/full: not written: No space left on device",
         _stored_anyway),
    Case("full disk for GITHUB_STEP_SUMMARY", "plugin",
         _pytest("--perf-record", "--perf-db", "history.db",
                  env={"GITHUB_STEP_SUMMARY": "/dev/full"}),
         0, r"^perfguard: warning: GITHUB_STEP_SUMMARY /dev/full: not written: No space left",
         _stored_anyway),
    # --- plugin: bad input inside tests ---
    Case("marker direction='up'", "plugin", _marker("direction='up'"),
         2, r"test_suite\.py::test_m: @pytest\.mark\.perf: direction='up' is invalid"),
    Case("marker rounds=0", "plugin", _marker("rounds=0"),
         2, r"test_suite\.py::test_m: @pytest\.mark\.perf: rounds"),
    Case("perf.record NaN", "plugin", _record_value("nan"),
         1, r"perf\.record\('tokens'\): value=nan must be a finite number"),
    Case("perf.record inf", "plugin", _record_value("inf"),
         1, r"perf\.record\('tokens'\): value=inf must be a finite number"),
    Case("metric name that is not UTF-8", "plugin", _non_utf8_metric,
         0, r"^perfguard: stored run 2 ", _escaped_and_stored),
    # --- CLI: exit 2, one line on stderr ---
    Case("corrupt history file", "cli",
         _with_before(_corrupt_db, lambda p, db: p.cli("runs", "--db", str(db))),
         2, r"^perfguard: error: history database .*corrupt\.db: file is not a database",
         _unchanged(lambda q: q.path / "corrupt.db")),
    Case("truncated history file", "cli",
         _with_before(_truncated_db, lambda p, db: p.cli("runs", "--db", str(db))),
         2, r"^perfguard: error: history database .*truncated\.db: ",
         _unchanged(lambda q: q.path / "truncated.db")),
    Case("history of a newer schema", "cli",
         _with_before(newer_schema_db, lambda p, db: p.cli("runs", "--db", str(db))),
         2, r"^perfguard: error: .*newer\.db.*9999_from_the_future",
         _unchanged(lambda q: q.path / "newer.db")),
    Case("db upgrade of a newer schema", "cli",
         _with_before(newer_schema_db, lambda p, db: p.cli("db", "upgrade", "--db", str(db))),
         2, r"^perfguard: error: .*9999_from_the_future",
         _unchanged(lambda q: q.path / "newer.db")),
    Case("history server down", "cli", _cli("runs", "--db", DOWN_PG),
         2, r"^perfguard: error: history database postgresql\+psycopg://perf:\*\*\*@127\.0\.0\.1"),
    Case("bad database URL", "cli", _cli("runs", "--db", "nosuch://u@h/db"),
         2, r"^perfguard: error: --perf-db: 'nosuch://u@h/db' is not a supported database URL"),
    Case("corrupt baselines JSON", "cli",
         lambda p: p.cli("baselines", "show", "--baselines", str(p.file("bad.json", "{"))),
         2, r"^perfguard: error: .*bad\.json: not valid JSON"),
    Case("truncated import file", "cli",
         lambda p: p.cli("import", str(_truncated_baselines(p)), "--db", str(p.db)),
         2, r"^perfguard: error: .*cut\.json: not valid JSON"),
    Case("import file that is not UTF-8", "cli",
         lambda p: p.cli("import", str(p.file("latin.json", b'{"platform": "caf\xe9"}')),
                         "--db", str(p.db)),
         2, r"^perfguard: error: .*latin\.json: "),
    Case("record NaN", "cli", _cli("record", "x", "--metric", "a=nan", "--db", "history.db"),
         2, r"^perfguard: error: argument --metric: 'a=nan': 'nan' is not a number"),
    Case("record inf", "cli", _cli("record", "x", "--metric", "a=inf", "--db", "history.db"),
         2, r"^perfguard: error: argument --metric: 'a=inf': 'inf' is not a number"),
    Case("unknown option", "cli", _cli("runs", "--nonsense"),
         2, r"^perfguard: error: unrecognized arguments: --nonsense"),
    Case("pyproject: tool is not a table", "cli", _bad_pyproject('tool = 1\n'),
         2, r"^perfguard: error: .*pyproject\.toml: `tool` must be a table \(\[tool\]\), not an "
            r"integer"),
    Case("pyproject: tool.pytest is not a table", "cli", _bad_pyproject("[tool]\npytest = 3\n"),
         2, r"^perfguard: error: .*pyproject\.toml: `tool\.pytest` must be a table"),
    Case("pyproject: ini_options is not a table", "cli",
         _bad_pyproject('[tool.pytest]\nini_options = "perf"\n'),
         2, r"^perfguard: error: .*pyproject\.toml: `tool\.pytest\.ini_options` must be a table"),
    Case("pyproject: not TOML", "cli", _bad_pyproject("[tool.pytest.ini_options\n"),
         2, r"^perfguard: error: .*pyproject\.toml: not valid TOML"),
    Case("full disk on stdout", "cli", _export_to_full_stdout,
         2, r"^perfguard: error: standard output: No space left on device"),
    Case("full disk for --output", "cli",
         _cli("export", "--format", "csv", "--db", "history.db", "--output", "/dev/full"),
         2, r"^perfguard: error: /dev/full: No space left on device"),
    Case("--output in a directory that cannot exist", "cli",
         _given(_a_file, _cli("export", "--db", "history.db", "--output", "afile/x.csv")),
         2, r"^perfguard: error: .*afile/x\.csv: Not a directory$"),
    Case("unknown run", "cli", _cli("show", "999", "--db", "history.db"),
         2, r"^perfguard: error: run 999 not found"),
    # --- API: one exception, one line ---
    Case("bad database URL", "api", lambda p: p.api(lambda: History("nosuch://u@h/db")),
         "HistoryError", r"^--perf-db: 'nosuch://u@h/db' is not a supported database URL"),
    Case("history server down", "api", lambda p: p.api(lambda: History(DOWN_PG).recent_runs()),
         "HistoryError", r"^history database postgresql\+psycopg://perf:\*\*\*@127\.0\.0\.1:1"),
    Case("history of a newer schema", "api",
         _with_before(newer_schema_db, lambda p, db: p.api(lambda: History(db).recent_runs())),
         "SchemaTooNewError", r"newer\.db.*9999_from_the_future",
         _unchanged(lambda q: q.path / "newer.db")),
    Case("corrupt history file", "api",
         _with_before(_corrupt_db, lambda p, db: p.api(lambda: History(db).recent_runs())),
         "HistoryError", r"^history database .*corrupt\.db: file is not a database",
         _unchanged(lambda q: q.path / "corrupt.db")),
    Case("history in a directory that cannot exist", "api",
         _given(_a_file, lambda p: p.api(lambda: History(p.path / "afile" / "h.db").recent_runs())),
         "HistoryError",
         r"^history database .*afile/h\.db cannot be created: .*afile: not a directory$"),
    Case("record_run NaN", "api", _record_nonfinite(float("nan")),
         "HistoryError", r"metric 'tokens' needs a finite number"),
    Case("record_run inf", "api", _record_nonfinite(float("inf")),
         "HistoryError", r"metric 'tokens' needs a finite number"),
    Case("truncated baselines JSON", "api",
         lambda p: p.api(lambda: load_baselines(_truncated_baselines(p))),
         "BaselinesError", r"cut\.json: not valid JSON"),
]  # fmt: skip


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    for name in (*api.DB_ENV_VARS, "PERFGUARD", "GITHUB_STEP_SUMMARY", "PERFGUARD_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    made = Project(pytester, monkeypatch)
    made.file("test_suite.py", SUITE)
    made.file("baselines/perf_baselines.json", json.dumps(BASELINES, indent=2))
    seed_history(made.db)
    return made


def test_the_table_has_at_least_30_cases_across_plugin_cli_and_api() -> None:
    assert len(CASES) >= 30
    assert {case.surface for case in CASES} == {"plugin", "cli", "api"}
    assert len({(case.surface, case.id) for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.surface}: {c.id}" for c in CASES])
def test_bad_input(case: Case, project: Project) -> None:
    baselines_before = project.baselines.read_bytes()
    outcome = case.run(project)
    text = outcome.output
    assert outcome.code == case.code, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert SECRET not in text
    matching = [line for line in text.splitlines() if re.search(case.line, line)]
    assert matching, f"no line matches {case.line!r} in:\n{text}"
    if case.surface == "cli":
        assert str(outcome.extra["stderr"]).count("\n") == 1, text  # one line, nothing else
    if case.surface == "api":
        assert "\n" not in text
    # Nothing already stored is lost: the history's run and the baselines file are intact.
    assert project.baselines.read_bytes() == baselines_before
    with History(project.db, create=False) as history:
        (seeded,) = history.get_run(1).measurements
    assert (seeded.test, seeded.value) == ("seed.py::test_seed", 1.25)
    if case.check is not None:
        case.check(project, outcome)


def test_the_reliability_table_in_the_docs_lists_every_case() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    for case in CASES:
        assert f"| {case.surface} | {case.id} |" in docs, case.id


# --- the CI fallbacks of git_state (GitHub's basics are in test_ci.py) ---

GITLAB = {"GITLAB_CI": "true", "CI": "true", "CI_COMMIT_SHA": "d" * 40, "CI_COMMIT_REF_NAME": "dev"}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "f.txt").write_text("x")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_git_state_of_a_branch_checkout_ignores_the_ci(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    assert git_state(checkout, GITLAB) == GitState(head, "main", False)
    (checkout / "f.txt").write_text("changed")
    assert git_state(checkout, GITLAB).dirty is True


def test_gitlab_detached_checkout_and_no_repository(checkout: Path, tmp_path: Path) -> None:
    git(checkout, "checkout", "-q", "--detach")
    assert git_state(checkout, GITLAB).branch == "dev"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert git_state(empty, GITLAB) == GitState(commit="d" * 40)


def test_a_push_build_has_an_empty_head_ref(checkout: Path) -> None:
    git(checkout, "checkout", "-q", "--detach")
    push = {"GITHUB_ACTIONS": "true", "GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": "release"}
    assert git_state(checkout, push).branch == "release"


def test_no_git_program_takes_the_commit_from_the_ci(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "no-git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git"))
    assert git_state(checkout, GITLAB) == GitState(commit="d" * 40)
    assert git_state(checkout, {}) == GitState()


# --- the GPU sampler keeps going through NVML errors ---

MB = 1024 * 1024


class FlakyNvml:
    """NVML whose memory reads follow a script: a number of bytes, or an error to raise.

    Until `arm()` every read returns the first value (the test's starting point, whichever
    thread reads it); then the script plays, and when it has run out `finished` is set and
    the last value repeats: a test waits on that event instead of sleeping."""

    class NVMLError(Exception):
        pass

    def __init__(self, first: int, script: list[int | str]) -> None:
        self.last = first
        self.script = list(script)
        self.armed = False
        self.finished = threading.Event()

    def arm(self) -> None:
        self.armed = True

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> SimpleNamespace:
        if self.armed and self.script:
            step = self.script.pop(0)
            if isinstance(step, str):
                raise self.NVMLError(step)
            self.last = step
        elif self.armed:
            self.finished.set()
        return SimpleNamespace(used=self.last)

    def nvmlShutdown(self) -> None:
        pass


def test_the_gpu_sampler_keeps_sampling_after_nvml_errors() -> None:
    nvml = FlakyNvml(100 * MB, ["GPU is lost", "Unknown Error", 900 * MB, 100 * MB])
    collector = GpuMemoryCollector(nvml, [object()], interval=0.0005)
    collector.start()  # 100 MB
    nvml.arm()  # the sampler thread meets two errors, then the peak
    assert nvml.finished.wait(10)
    ((metric, peak, unit),) = collector.stop(1)
    collector.close()
    # The peak came after two failed reads: a sampler that stopped at the first missed it.
    assert (metric, peak, unit) == ("gpu_mem_peak_mb", 800.0, "MB")
    info = collector.describe()
    assert info["gpu_sample_errors"] == 2
    assert info["gpu_last_error"] == "NVMLError: Unknown Error"


def test_a_failed_read_at_the_start_or_end_of_a_test_is_not_an_error_of_the_test() -> None:
    nvml = FlakyNvml(300 * MB, ["driver hiccup", "driver hiccup"])
    collector = GpuMemoryCollector(nvml, [object()], interval=60)  # no sampling in between
    collector.start()
    assert collector.stop(1) == (("gpu_mem_peak_mb", 0.0, "MB"),)
    nvml.arm()
    collector.start()  # no reading: the last peak is the starting point
    assert collector.stop(1) == (("gpu_mem_peak_mb", 0.0, "MB"),)
    collector.close()
    assert collector.describe()["gpu_sample_errors"] == 2


def test_the_session_says_when_gpu_sampling_failed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from types import SimpleNamespace
        from pytest_perfguard.collectors import GpuMemoryCollector

        class BrokenNvml:
            def nvmlDeviceGetMemoryInfo(self, handle):
                raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

            def nvmlShutdown(self):
                pass

        def pytest_perfguard_collectors(config):
            return [GpuMemoryCollector(BrokenNvml(), [0], interval=60)]
        """
    )
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-record", "--perf-db", "h.db"
    )  # fmt: skip
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["perfguard: warning: GPU memory sampling failed 2 time(s) (last: RuntimeError: "
         "NVML_ERROR_GPU_IS_LOST); gpu_mem_peak_mb may be under-reported"]
    )  # fmt: skip
    with History(pytester.path / "h.db") as history:
        run = history.get_run(1)
    assert run.system_info["gpu_sample_errors"] == 2
