"""No credential is ever stored, printed, logged or reported.

A password is given in each form users write one: URL userinfo
(`postgresql://user:pw@host/db`), a password query parameter (`?password=pw`) and a libpq
setting (`host=h password=pw`). Each test then searches every output for it: the terminal,
the Markdown and JSON reports, the GitHub step summary, the history's rows (read straight
from the database), `perfguard show`, `runs`, `export`, `report`, `dashboard`, the fallback
file of an unstored run, and every error message. The masked form must show up where the
value was, so a test cannot pass because nothing was written at all.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from pytest_perfguard import api
from pytest_perfguard.api import History, HistoryError
from pytest_perfguard.cli import Console, main
from pytest_perfguard.history.urls import mask_secrets
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

pytest_plugins = ["pytester"]

USERINFO, QUERY, LIBPQ = "pw-userinfo-7Hq", "pw-query-3Zx", "pw-libpq-9Kd"
SECRETS = (USERINFO, QUERY, LIBPQ)
# All three forms in one text, as a user might paste them into the run's notes.
NOTES = (
    f"db postgresql://app:{USERINFO}@db.internal/perf "
    f"replica postgresql://app@replica/perf?sslmode=require&password={QUERY} "
    f"legacy host=db.internal password={LIBPQ} dbname=perf"
)
MASKED_NOTES = (
    "db postgresql://app:***@db.internal/perf "
    "replica postgresql://app@replica/perf?sslmode=require&password=*** "
    "legacy host=db.internal password=*** dbname=perf"
)
DOWN = "127.0.0.1:1"  # nothing listens there
SUITE = """
import pytest

@pytest.mark.perf(metric="latency")
def test_latency(perf):
    perf.record("latency", 1.0)
"""


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql+psycopg://u:p@ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        ("postgresql://u@h/db?sslmode=require&PASSWORD=s%40x&x=1",
         "postgresql://u@h/db?sslmode=require&PASSWORD=***&x=1"),
        ("host=h password=secret dbname=d", "host=h password=*** dbname=d"),
        ("host=h password='with space' dbname=d", "host=h password=*** dbname=d"),
        ("host=h password = secret", "host=h password = ***"),
        ("PGPASSWORD=secret pytest", "PGPASSWORD=*** pytest"),
        ("db at postgresql://u:pw@h/db?password=pw: refused",
         "db at postgresql://u:***@h/db?password=***: refused"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/history.db", "sqlite:////tmp/history.db"),
        ("compass=3 bypass", "compass=3 bypass"),
    ],
)  # fmt: skip
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), console=Console(stdout=out, stderr=err))
    return rc, out.getvalue() + err.getvalue()


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a password:\n{text}"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in (*api.DB_ENV_VARS, "PERFGUARD", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def every_cli_output(db: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(command, what it printed or wrote) for every command that shows a stored run."""
    for args in (
        ["show", "latest"],
        ["show", "latest", "--json"],
        ["runs"],
        ["runs", "--json"],
        ["summary"],
        ["export", "--format", "json"],
        ["export", "--format", "csv"],
        ["report", "--format", "markdown"],
        ["report", "--format", "json"],
        ["report", "--format", "html"],
    ):
        rc, text = cli(*args, "--db", db)
        assert rc == 0, text
        yield " ".join(args), text
    dashboard = workdir / "dashboard.html"
    rc, text = cli("dashboard", "--db", db, "--output", str(dashboard))
    assert rc == 0, text
    yield "dashboard", text + dashboard.read_text(encoding="utf-8")


def test_a_recorded_run_never_shows_a_password(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = project.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-record", "--perf-db", "history.db",
        "--perf-notes", NOTES, "--perf-report", "r.md", "--perf-json", "r.json",
    )  # fmt: skip
    assert result.ret == 0
    assert_clean("the terminal", "\n".join(result.outlines + result.errlines))
    for name in ("r.md", "r.json", "step-summary.md"):
        assert_clean(name, (project.path / name).read_text(encoding="utf-8"))

    db = project.path / "history.db"
    with sqlite3.connect(db) as conn:
        rows = "\n".join(conn.iterdump())
    assert_clean("the history's rows", rows)
    assert MASKED_NOTES in rows  # the notes and args were stored, masked
    with History(db) as history:
        run = history.get_run(history.recent_runs()[0].id)
    assert run.notes == MASKED_NOTES
    assert MASKED_NOTES in run.args

    shown = dict(every_cli_output(str(db), project.path))
    for command, text in shown.items():
        assert_clean(f"perfguard {command}", text)
    assert MASKED_NOTES in shown["show latest --json"]


def test_a_password_in_the_database_url_is_masked_in_the_stored_args(
    project: pytest.Pytester, pg_url: str
) -> None:
    # The test server trusts local connections: the passwords are sent and ignored.
    url = sa.make_url(pg_url).set(password=USERINFO).render_as_string(hide_password=False)
    url_with_query = f"{pg_url}&password={QUERY}"
    for given in (url, url_with_query):
        result = project.runpytest_subprocess(
            "-p", "no:cacheprovider", "--perf-record", "--perf-db", given
        )  # fmt: skip
        assert result.ret == 0, result.outlines
        assert_clean("the terminal", "\n".join(result.outlines + result.errlines))
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT args::text, notes FROM runs")).all()
    engine.dispose()
    assert len(stored) == 2
    assert_clean("the history's rows", repr(stored))
    assert "postgresql+psycopg://postgres:***@" in repr(stored)
    assert "password=***" in repr(stored)
    for command, text in every_cli_output(pg_url, project.path):
        assert_clean(f"perfguard {command}", text)


def test_errors_never_show_a_password(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = [
        f"postgresql://app:{USERINFO}@{DOWN}/perf",
        f"postgresql://app@{DOWN}/perf?password={QUERY}",
    ]
    for url in down:
        # The plugin: the run is kept in the fallback file, the line masks the URL.
        result = project.runpytest_subprocess(
            "-p", "no:cacheprovider", "--perf-record", "--perf-db", url
        )  # fmt: skip
        assert result.ret == 1
        terminal = "\n".join(result.outlines + result.errlines)
        assert_clean("the terminal", terminal)
        assert "run not stored: history database postgresql+psycopg://app" in terminal
        for kept in (project.path / ".perfguard" / "unstored").glob("*.json"):
            assert_clean(kept.name, kept.read_text(encoding="utf-8"))
        # The CLI and the API.
        rc, text = cli("runs", "--db", url)
        assert rc == 2 and text.startswith("perfguard: error: history database ")
        assert_clean("perfguard runs", text)
        with pytest.raises(HistoryError) as raised:
            History(url).recent_runs()
        assert_clean("HistoryError", str(raised.value))
        assert_clean("repr(History)", repr(History(url)))
    # A libpq string is refused up front, masked.
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-record", "--perf-db", f"host=db password={LIBPQ}"
    )  # fmt: skip
    assert result.ret == 4
    assert_clean("the usage error", "\n".join(result.outlines + result.errlines))
    rc, text = cli("runs", "--db", f"host=db password={LIBPQ}")
    assert rc == 2 and "password=***" in text
    assert_clean("perfguard runs", text)
    # The environment's database URL is no different.
    monkeypatch.setenv("PERFGUARD_DB", down[0])
    rc, text = cli("runs")
    assert rc == 2 and text.count("\n") == 1
    assert_clean("perfguard runs with PERFGUARD_DB", text)


def test_a_password_stored_through_the_api_or_by_an_older_version_is_never_shown(
    tmp_path: Path,
) -> None:
    # Before 0.2 the arguments went to the history verbatim: such rows stay in old
    # databases, so reading masks them too.
    db = tmp_path / "old.db"
    run = RunInfo(
        started_at=datetime.now(timezone.utc),
        platform=PlatformInfo("old_box"),
        args=["--perf-db", f"postgresql://app:{USERINFO}@db/perf", f"password={LIBPQ}"],
        notes=NOTES,
    )
    with History(db) as history:
        history.save_session(run, [Measurement("t.py::test_a", "duration", 1.0)])
    conn = sqlite3.connect(db)
    with conn:
        assert USERINFO not in "\n".join(conn.iterdump())  # masked on the way in
        conn.execute(  # now as an old version stored it
            "UPDATE runs SET args = ?, notes = ?", (json.dumps(run.args), NOTES)
        )
        assert USERINFO in "\n".join(conn.iterdump())
    conn.close()
    with History(db) as history:
        detail = history.get_run(1)
    assert detail.args == ["--perf-db", "postgresql://app:***@db/perf", "password=***"]
    assert detail.notes == MASKED_NOTES
    for command, text in every_cli_output(str(db), tmp_path):
        assert_clean(f"perfguard {command}", text)
