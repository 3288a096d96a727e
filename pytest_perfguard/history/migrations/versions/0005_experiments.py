"""experiments and trials: the experiment tracker's tables, in the history database.

Revision ID: 0005_experiments
Revises: 0004_test_results

Two new tables and nothing else changed: the upgrade is instant on any history, and the
downgrade drops them (and the experiments in them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_experiments"
down_revision = "0004_test_results"
branch_labels = None
depends_on = None

# Frozen copy of the type as it is at this revision; models.py may move on.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("template", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    op.create_index("ix_experiments_name", "experiments", ["name"])
    op.create_table(
        "trials",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("validation_passed", sa.Boolean(), nullable=True),
        sa.Column("validation_violations", sa.Integer(), nullable=True),
        sa.Column("validation_metrics", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_trials_experiment_id_experiments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_trials_run_id_runs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
    )
    op.create_index(
        "ix_trials_experiment_number", "trials", ["experiment_id", "trial_number"], unique=True
    )
    op.create_index("ix_trials_run_id", "trials", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_trials_run_id", table_name="trials")
    op.drop_index("ix_trials_experiment_number", table_name="trials")
    op.drop_table("trials")
    op.drop_index("ix_experiments_name", table_name="experiments")
    op.drop_table("experiments")
