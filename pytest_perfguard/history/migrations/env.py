"""Alembic environment: always run programmatically with a connection handed over.

`pytest_perfguard.history.schema` opens the transaction (and takes the lock that keeps
two processes from migrating at once); the migrations run inside it.
"""

from __future__ import annotations

from alembic import context

from pytest_perfguard.history.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "perfguard migrations run from the library (History.upgrade / `perfguard db upgrade`), "
        "not from the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
