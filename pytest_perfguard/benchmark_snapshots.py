"""The seed benchmark history's Supabase queries, on the history database: change only the
import line.

    from pytest_perfguard.benchmark_snapshots import create_client

    client = create_client(os.getenv('SUPABASE_URL'), os.getenv('SUPABASE_SERVICE_ROLE_KEY'))
    client.table('benchmark_snapshots').select('*').eq('is_current', True).execute().data

`SUPABASE_URL` holds what `--perf-db` takes (a SQLite path or a database URL); the key is
accepted and ignored: the history's own URL carries any credentials, and the key is neither
kept nor shown. One table, `benchmark_snapshots`, read only, through `History`:

- a snapshot is a stored run that carries a `model` label (`pytest --perf-record --perf-label
  model=openai`), as each pushed result was one in the seed; baselines updates are not rows
  here (the dashboard's Baseline history shows them);
- `model_version` is the `model` label, with `-<version>` appended when the run also carries a
  `version` label (`model=openai`, `version=v1.0`: `openai-v1.0`);
- `snapshot_version` is the run id, so later snapshots have higher versions;
- `is_current` marks the newest run of its platform key, which is the platform and the label
  set (docs/labels.md): the run that label set is judged against today;
- `metrics` maps each stored value's name (the metric, `<test id>::<metric>` for a test's) to
  its value.

Filters compare as PostgREST does, by text (`eq('snapshot_version', '7')` matches 7). New
code should use `History.recent_runs(labels=...)` directly
(docs/coming-from-benchmark-history.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .api import NO_TEST, History
from .records import RunDetail, RunSummary

__all__ = ["Client", "QueryResponse", "SnapshotQuery", "create_client"]

TABLE = "benchmark_snapshots"
COLUMNS = (
    "snapshot_version",
    "model_version",
    "model",
    "is_current",
    "created_at",
    "platform",
    "labels",
    "commit_sha",
    "git_branch",
    "environment",
    "outcome",
    "notes",
    "metrics",
)
# Mappings: selectable, but neither filtered nor sorted on.
_NESTED = frozenset({"labels", "metrics"})

Row = dict[str, Any]


@dataclass(frozen=True)
class QueryResponse:
    """What `execute()` returns: the rows in `data`, as supabase-py's response has them."""

    data: list[Row]
    count: int | None = None


def create_client(url: str | os.PathLike[str] | None, key: str | None = None) -> Client:
    """A client over the history at `url` (None: the project's history, as `History()`).

    `key` is the seed's service-role key: accepted so the seed's call runs, never used,
    stored or printed.
    """
    del key  # never kept: the history's URL carries its own credentials
    text = None if url is None else os.fspath(url).strip()
    if text is not None and text.lower().startswith(("http://", "https://")):
        raise ValueError(
            "create_client: SUPABASE_URL holds a web address; set it to the perfguard history "
            "(a SQLite path or a database URL such as postgresql://host/db)"
        )
    return Client(History(text or None, create=False))


class Client:
    """The seed's Supabase client, reduced to reading `benchmark_snapshots`."""

    def __init__(self, history: History) -> None:
        self.history = history

    def __repr__(self) -> str:
        return f"Client({self.history.url!r})"

    def table(self, name: str) -> SnapshotQuery:
        if name != TABLE:
            raise ValueError(f"table {name!r} does not exist; the only table is {TABLE!r}")
        return SnapshotQuery(self.history)

    from_ = table


@dataclass
class SnapshotQuery:
    """One query on `benchmark_snapshots`, built by chained calls and run by `execute()`."""

    history: History
    columns: tuple[str, ...] = COLUMNS
    filters: list[tuple[str, str]] = field(default_factory=list)
    ordering: list[tuple[str, bool]] = field(default_factory=list)
    row_limit: int | None = None

    def select(self, *columns: str) -> SnapshotQuery:
        """`'*'`, or column names (as arguments or comma-separated, as PostgREST takes them)."""
        names = [part.strip() for text in columns or ("*",) for part in text.split(",")]
        if names == ["*"]:
            self.columns = COLUMNS
            return self
        for name in names:
            _check_column(name, "select")
        self.columns = tuple(names)
        return self

    def eq(self, column: str, value: Any) -> SnapshotQuery:
        _check_column(column, "eq")
        if column in _NESTED:
            raise ValueError(f"eq: cannot filter on {column!r} (a mapping); filter on a column")
        self.filters.append((column, _as_text(value)))
        return self

    def order(self, column: str, *, desc: bool = False) -> SnapshotQuery:
        _check_column(column, "order")
        if column in _NESTED:
            raise ValueError(f"order: cannot sort on {column!r} (a mapping); sort on a column")
        self.ordering.append((column, desc))
        return self

    def limit(self, size: int) -> SnapshotQuery:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"limit: give a count of rows (0 or more), not {size!r}")
        self.row_limit = size
        return self

    def execute(self) -> QueryResponse:
        rows = [
            row
            for row in _snapshots(self.history)
            if all(_as_text(row[column]) == value for column, value in self.filters)
        ]
        # Stable sorts, last key first, so the first `order` call is the primary key.
        for column, desc in reversed(self.ordering):
            present = [r for r in rows if r[column] is not None]
            absent = [r for r in rows if r[column] is None]
            present.sort(key=_sort_key(column), reverse=desc)
            rows = present + absent  # nulls last, as PostgreSQL sorts ascending
        if self.row_limit is not None:
            rows = rows[: self.row_limit]
        return QueryResponse([{c: row[c] for c in self.columns} for row in rows])


def _check_column(name: str, where: str) -> None:
    if name not in COLUMNS:
        raise ValueError(f"{where}: {TABLE} has no column {name!r}; columns: {', '.join(COLUMNS)}")


def _as_text(value: Any) -> str:
    """A value as PostgREST compares it: by text, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _sort_key(column: str) -> Callable[[Row], Any]:
    return lambda row: row[column]


def _snapshots(history: History) -> list[Row]:
    """Every run with a `model` label, newest first."""
    total = history.stats().n_runs
    if total == 0:
        return []
    rows: list[Row] = []
    seen_keys: set[str] = set()
    for run in history.recent_runs(limit=total):
        current = run.platform not in seen_keys  # newest first: the first of its key
        seen_keys.add(run.platform)
        if not run.platform.endswith("]"):
            continue  # a labelled run's key ends in its label set; spare the read of the rest
        detail = history.get_run(run.id)
        if "model" in detail.labels:
            rows.append(_row(run, detail, current))
    return rows


def _row(run: RunSummary, detail: RunDetail, current: bool) -> Row:
    labels = detail.labels
    version = labels.get("version")
    model = labels["model"]
    return {
        "snapshot_version": run.id,
        "model_version": f"{model}-{version}" if version else model,
        "model": model,
        "is_current": current,
        "created_at": run.started_at.isoformat(),
        "platform": run.platform,
        "labels": dict(labels),
        "commit_sha": run.git_commit,
        "git_branch": run.git_branch,
        "environment": run.run_type,
        "outcome": run.outcome,
        "notes": run.notes,
        "metrics": _metrics(detail),
    }


def _metrics(detail: RunDetail) -> dict[str, float]:
    return {
        m.metric if m.test == NO_TEST else f"{m.test}::{m.metric}": m.value
        for m in detail.measurements
    }
