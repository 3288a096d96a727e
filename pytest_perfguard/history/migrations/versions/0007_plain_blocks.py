"""plain_blocks: plain tests' built-in readings as blocks per run, keyed by a layout.

Revision ID: 0007_plain_blocks
Revises: 0006_run_labels

Each run's block is stored in chunks of 128 tests, one row each (`rows.CHUNK_TESTS`), so
that a query by test reads a row small enough to stay whole on its page (on PostgreSQL,
with plain_blocks' toast_tuple_target set to a page). Rows already
stored stay where they are (`test_results`, `results`), where readers keep finding them;
readers see the blocks as test_results rows. The upgrade creates three tables and copies
nothing, so it is instant on any history. The downgrade turns every block back into the
test_results rows it stands for, with the ids readers ordered them by, before dropping the
tables: nothing is lost either way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_plain_blocks"
down_revision = "0006_run_labels"
branch_labels = None
depends_on = None

_BLOCK = sa.LargeBinary().with_variant(postgresql.ARRAY(sa.Float()), "postgresql")
_READINGS = ("duration", "cpu_time", "rss_peak_mb")
_OUTCOMES = (("p", "passed"), ("f", "failed"), ("s", "skipped"))
# The tests per chunk this revision stores (`rows.CHUNK_TESTS` when it was written).
_CHUNK = 128


def upgrade() -> None:
    op.create_table(
        "test_layouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("set_digest", sa.String(64), nullable=False),
        sa.Column("n_tests", sa.Integer(), nullable=False),
        sa.Column("tests", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_layouts"),
    )
    op.create_index("ix_test_layouts_digest", "test_layouts", ["digest"], unique=True)
    op.create_index("ix_test_layouts_set_digest", "test_layouts", ["set_digest"])
    op.create_table(
        "layout_tests",
        sa.Column("layout_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("test", sa.Text(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("layout_id", "position", name="pk_layout_tests"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_layout_tests_test", "layout_tests", ["test", "chunk"])
    op.create_table(
        "plain_blocks",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layout_id", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("stride", sa.Integer(), nullable=False),
        sa.Column("outcomes", sa.Text(), nullable=False),
        *(sa.Column(name, _BLOCK, nullable=True) for name in _READINGS),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_plain_blocks_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["layout_id"],
            ["test_layouts.id"],
            name="fk_plain_blocks_layout_id_test_layouts",
        ),
        sa.PrimaryKeyConstraint("run_id", "chunk", name="pk_plain_blocks"),
    )
    if op.get_bind().dialect.name == "postgresql":  # `models.PLAIN_BLOCKS_STORAGE`
        op.execute("ALTER TABLE plain_blocks SET (toast_tuple_target = 8160)")
    op.create_index(
        "ix_plain_blocks_layout_chunk_run", "plain_blocks", ["layout_id", "chunk", "run_id"]
    )
    failed = sa.text("outcomes LIKE '%f%' OR outcomes LIKE '%e%'")  # `models.FAILED_CHUNK`
    op.create_index(
        "ix_plain_blocks_failed",
        "plain_blocks",
        ["run_id"],
        sqlite_where=failed,
        postgresql_where=failed,
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"

    at = f"(t.position - b.chunk * {_CHUNK})"  # the test's place in its chunk

    def reading(name: str) -> str:
        if postgres:
            return f"b.{name}[{at} + 1]"
        # Registered on every connection of a history engine (history/engine.py).
        return f"perfguard_reading(substr(b.{name}, {at} * 8 + 1, 8))"

    letter = f"substr(b.outcomes, {at} + 1, 1)"
    outcome = " ".join(f"WHEN '{code}' THEN '{name}'" for code, name in _OUTCOMES)
    op.execute(
        "INSERT INTO test_results (id, run_id, test, marked, outcome,"
        f" {', '.join(_READINGS)})"
        f" SELECT b.first_id + t.position * b.stride, b.run_id, t.test,"
        f" {'false' if postgres else '0'}, CASE {letter} {outcome} ELSE 'error' END,"
        f" {', '.join(reading(name) for name in _READINGS)}"
        " FROM plain_blocks b JOIN layout_tests t"
        " ON t.layout_id = b.layout_id AND t.chunk = b.chunk"
    )
    op.drop_index("ix_plain_blocks_failed", table_name="plain_blocks")
    op.drop_index("ix_plain_blocks_layout_chunk_run", table_name="plain_blocks")
    op.drop_table("plain_blocks")
    op.drop_index("ix_layout_tests_test", table_name="layout_tests")
    op.drop_table("layout_tests")
    op.drop_index("ix_test_layouts_set_digest", table_name="test_layouts")
    op.drop_index("ix_test_layouts_digest", table_name="test_layouts")
    op.drop_table("test_layouts")
