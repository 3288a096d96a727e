"""test_results: one row per test for the built-in readings (duration, cpu_time, rss_peak_mb).

Revision ID: 0004_test_results
Revises: 0003_run_test_type

Rows already stored stay in `results`, where readers keep finding them (they read both
tables as one): the upgrade creates a table and copies nothing, so it is instant on any
history. The downgrade moves the new table's readings back into `results` as rows, with the
ids readers ordered them by, before dropping it: nothing is lost either way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_test_results"
down_revision = "0003_run_test_type"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# (metric, unit, kind) of each column, in their order within a test's rows.
_READINGS = (
    ("duration", "s", "primary"),
    ("cpu_time", "s", "system"),
    ("rss_peak_mb", "MB", "system"),
)


def upgrade() -> None:
    op.create_table(
        "test_results",
        sa.Column("id", _BIG_ID, autoincrement=False, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("test", sa.Text(), nullable=False),
        sa.Column("marked", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("cpu_time", sa.Float(), nullable=True),
        sa.Column("rss_peak_mb", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_test_results"),
    )
    # No foreign key and no run_id index: ids are run_id * 2**32 + position (see models).
    op.create_index("ix_test_results_test_run", "test_results", ["test", "run_id"])


def downgrade() -> None:
    for index, (metric, unit, kind) in enumerate(_READINGS):
        # A reading's id is its row's id plus the number of readings before it in the row.
        offset = " + ".join(
            ["0", *(f"(CASE WHEN {m} IS NULL THEN 0 ELSE 1 END)" for m, _, _ in _READINGS[:index])]
        )
        op.execute(
            "INSERT INTO results (id, run_id, test, metric, value, unit, direction, kind,"
            " marked, outcome)"
            f" SELECT id + {offset}, run_id, test, '{metric}', {metric}, '{unit}', 'lower',"
            f" '{kind}', marked, outcome FROM test_results WHERE {metric} IS NOT NULL"
        )
    op.drop_index("ix_test_results_test_run", table_name="test_results")
    op.drop_table("test_results")
