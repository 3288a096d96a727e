"""Shared test setup.

pytester's in-process runs restore ``sys.modules`` afterwards, dropping every module the inner
run imported. Importing the plugin's heavy dependencies here, once, keeps one copy of
SQLAlchemy, alembic, jinja2 and pydantic for the whole test session (two copies of SQLAlchemy
in one process break its inspection registry).
"""

from __future__ import annotations

import alembic.command  # noqa: F401
import jinja2  # noqa: F401
import pydantic  # noqa: F401
import sqlalchemy  # noqa: F401

import pytest_perfguard.api  # noqa: F401
import pytest_perfguard.baselines  # noqa: F401
import pytest_perfguard.collectors  # noqa: F401
import pytest_perfguard.compare  # noqa: F401
import pytest_perfguard.history.store  # noqa: F401
import pytest_perfguard.report.markdown  # noqa: F401
import pytest_perfguard.session  # noqa: F401
import pytest_perfguard.updating  # noqa: F401
