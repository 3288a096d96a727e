"""runs.test_type: the kind of test a run was (the tracker's `--type`, e.g. inference).

Revision ID: 0003_run_test_type
Revises: 0002_history_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_run_test_type"
down_revision = "0002_history_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable ADD COLUMN works in place on SQLite: no table rebuild (a rebuild of `runs`
    # would cascade-delete its results while foreign keys are on). Older runs read as NULL.
    op.add_column("runs", sa.Column("test_type", sa.String(50), nullable=True))
    op.create_index("ix_runs_test_type", "runs", ["test_type"])


def downgrade() -> None:
    op.drop_index("ix_runs_test_type", table_name="runs")
    # Native DROP COLUMN (SQLite >= 3.35), not a batch rebuild: see upgrade().
    op.drop_column("runs", "test_type")
