"""Shared test setup.

pytester's in-process runs restore ``sys.modules`` afterwards, dropping every module the inner
run imported. Importing the plugin's heavy dependencies here, once, keeps one copy of
SQLAlchemy, alembic and jinja2 for the whole test session (two copies of SQLAlchemy
in one process break its inspection registry).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import alembic.command  # noqa: F401
import jinja2  # noqa: F401
import pytest
import sqlalchemy  # noqa: F401

import pytest_perfguard.api
import pytest_perfguard.baselines
import pytest_perfguard.collectors
import pytest_perfguard.compare
import pytest_perfguard.history.store
import pytest_perfguard.report.markdown
import pytest_perfguard.session
import pytest_perfguard.updating  # noqa: F401

PG_URL_ENV = "PERFGUARD_TEST_DATABASE_URL"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.stress` tests run only when asked: `-m stress` or PERFGUARD_STRESS=1."""
    if "stress" in (config.getoption("markexpr") or "") or os.environ.get("PERFGUARD_STRESS"):
        return
    skip = pytest.mark.skip(reason="stress test: run with -m stress or PERFGUARD_STRESS=1")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards.

    Skips unless PERFGUARD_TEST_DATABASE_URL names a database to use.
    """
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"set {PG_URL_ENV} to run the PostgreSQL tests")
    from sqlalchemy import create_engine, make_url, text

    from pytest_perfguard.history.urls import resolve_db_url

    base = resolve_db_url(base, Path.cwd())
    schema = f"perfguard_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty history database, once per backend (PostgreSQL: see pg_url)."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))
