"""Alembic migrations of the history schema, shipped with the package.

`HEAD_REVISION` and `KNOWN_REVISIONS` let an up-to-date database be recognised without
importing alembic; a test keeps them equal to the scripts in `versions/`.
"""

from __future__ import annotations

KNOWN_REVISIONS: tuple[str, ...] = (
    "0001_base",
    "0002_history_indexes",
    "0003_run_test_type",
    "0004_test_results",
    "0005_experiments",
    "0006_run_labels",
    "0007_plain_blocks",
)
HEAD_REVISION = KNOWN_REVISIONS[-1]
SCRIPT_LOCATION = "pytest_perfguard.history:migrations"
