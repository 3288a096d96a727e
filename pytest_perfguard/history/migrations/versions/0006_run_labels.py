"""run_labels: the labels of a run (`--perf-label KEY=VALUE`), one row each.

Revision ID: 0006_run_labels
Revises: 0005_experiments

A new table and nothing else changed: instant on any history. Runs stored before have no
labels. The downgrade drops the table (and the labels in it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_run_labels"
down_revision = "0005_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_labels",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_labels_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
    )
    op.create_index("ix_run_labels_key_value", "run_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_run_labels_key_value", table_name="run_labels")
    op.drop_table("run_labels")
