"""The history database: schema, migrations and `HistoryStore` (all the SQL).

Importing this package is cheap: SQLAlchemy is imported by `store` and `models`, which
`pytest_perfguard.api.History` loads on first use. Use `History`, not the store.
"""

from __future__ import annotations

from pytest_perfguard.history.errors import HistoryError, SchemaTooNewError

__all__ = ["HistoryError", "SchemaTooNewError"]
