"""History query indexes, baseline snapshots, runs.source_key for idempotent imports.

Revision ID: 0002_history_indexes
Revises: 0001_base
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_history_indexes"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN and CREATE INDEX work in place on SQLite too: no table rebuild needed.
    op.add_column("runs", sa.Column("source_key", sa.String(255), nullable=True))
    op.create_index("ix_runs_source_key", "runs", ["source_key"], unique=True)
    op.create_index("ix_runs_platform_started", "runs", ["platform_id", "started_at"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_results_test_metric_run", "results", ["test", "metric", "run_id"])
    op.create_index("ix_results_run_id", "results", ["run_id"])
    op.create_table(
        "baseline_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name="fk_baseline_snapshots_platform_id_platforms"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_baseline_snapshots"),
    )
    op.create_index(
        "ix_baseline_snapshots_platform_created",
        "baseline_snapshots",
        ["platform_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_baseline_snapshots_platform_created", table_name="baseline_snapshots")
    op.drop_table("baseline_snapshots")
    op.drop_index("ix_results_run_id", table_name="results")
    op.drop_index("ix_results_test_metric_run", table_name="results")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_index("ix_runs_platform_started", table_name="runs")
    op.drop_index("ix_runs_source_key", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("source_key")
