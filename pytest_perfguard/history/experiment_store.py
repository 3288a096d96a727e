"""The SQL of experiments and trials (tables `experiments`, `trials`), on either backend.

Functions take a connection; `write` runs one in a write transaction (SQLite's lock taken
at BEGIN, retried while another writer holds it). `History` is the door to all of this.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RowMapping, and_, case, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from pytest_perfguard.experiments import (
    ExperimentComparison,
    ExperimentRecord,
    Trial,
    Validation,
    metric_comparison,
)
from pytest_perfguard.history.engine import WRITE_OPTION, is_locked
from pytest_perfguard.history.errors import HistoryError
from pytest_perfguard.history.models import experiments, trials
from pytest_perfguard.history.store import HistoryStore

_T = TypeVar("_T")
_RETRIES = 5
_STREAM_BATCH = 5000


def write(engine: Engine, fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(conn, *args)` in one write transaction; retried when the database is locked or
    a concurrent writer took the same trial number (the unique index refuses the second)."""
    for attempt in range(_RETRIES + 1):
        try:
            with engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    return fn(conn, *args)
        except OperationalError as exc:
            if attempt == _RETRIES or not is_locked(exc):
                raise
        except _NumberTaken:
            if attempt == _RETRIES:
                raise HistoryError(
                    "log_trial: no free trial number after several tries (concurrent writers)"
                ) from None
        time.sleep(0.02 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class _NumberTaken(Exception):
    """Another writer logged the trial number we picked; pick again."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def create_experiment(
    conn: Connection,
    name: str,
    template: str,
    mode: str,
    config: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> int:
    inserted = conn.execute(
        experiments.insert().values(
            name=name,
            template=template,
            mode=mode,
            config=dict(config),
            summary=None if summary is None else dict(summary),
            created_at=created_at or _utcnow(),
        )
    )
    key = inserted.inserted_primary_key
    assert key is not None
    return int(key[0])


def set_summary(conn: Connection, experiment_id: int, summary: Mapping[str, Any] | None) -> None:
    conn.execute(
        experiments.update()
        .where(experiments.c.id == experiment_id)
        .values(summary=None if summary is None else dict(summary))
    )


def insert_trial(
    conn: Connection,
    experiment_id: int,
    trial_number: int | None,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    validation: Validation | None,
    extra: Mapping[str, Any] | None,
    run_id: int | None,
    created_at: datetime | None = None,
) -> Trial:
    # Locking the experiment's row (PostgreSQL; SQLite's write lock is already held) makes
    # concurrent writers to one experiment take their trial numbers one after the other.
    found = select(experiments.c.id).where(experiments.c.id == experiment_id).with_for_update()
    if conn.scalar(found) is None:
        raise HistoryError(f"experiment {experiment_id} not found")
    auto = trial_number is None
    if trial_number is None:
        highest = conn.scalar(
            select(func.max(trials.c.trial_number)).where(trials.c.experiment_id == experiment_id)
        )
        trial_number = (highest or 0) + 1
    values = {
        "experiment_id": experiment_id,
        "trial_number": trial_number,
        "params": dict(params),
        "metrics": dict(metrics),
        "validation_passed": None if validation is None else validation.passed,
        "validation_violations": None if validation is None else validation.violations,
        "validation_metrics": None if validation is None else dict(validation.metrics),
        "extra": None if not extra else dict(extra),
        "run_id": run_id,
        "created_at": created_at or _utcnow(),
    }
    try:
        with conn.begin_nested():
            inserted = conn.execute(trials.insert().values(**values))
    except IntegrityError:
        if auto:
            raise _NumberTaken() from None
        taken = conn.scalar(
            select(trials.c.id).where(
                and_(trials.c.experiment_id == experiment_id, trials.c.trial_number == trial_number)
            )
        )
        if taken is not None:
            raise HistoryError(
                f"experiment {experiment_id} already has a trial {trial_number}"
            ) from None
        raise
    key = inserted.inserted_primary_key
    assert key is not None
    return _trial(int(key[0]), values)


def set_validation(conn: Connection, trial_id: int, validation: Validation | None) -> Trial:
    """Record (or replace) a logged trial's validation outcome; the trial after."""
    updated = conn.execute(
        trials.update()
        .where(trials.c.id == trial_id)
        .values(
            validation_passed=None if validation is None else validation.passed,
            validation_violations=None if validation is None else validation.violations,
            validation_metrics=None if validation is None else dict(validation.metrics),
        )
    )
    if updated.rowcount == 0:
        raise HistoryError(f"trial {trial_id} not found")
    row = conn.execute(select(trials).where(trials.c.id == trial_id)).one()
    return _trial(row.id, row._mapping)


def insert_trials_bulk(
    conn: Connection, experiment_id: int, items: Sequence[Mapping[str, Any]]
) -> None:
    """Insert checked trials (`trial_number`, `params`, `metrics`, `validation`, `extra`,
    `created_at`) whose numbers are known to be free, in one executemany."""
    if not items:
        return
    rows = []
    for item in items:
        validation = item["validation"]
        rows.append(
            {
                "experiment_id": experiment_id,
                "trial_number": item["trial_number"],
                "params": item["params"],
                "metrics": item["metrics"],
                "validation_passed": None if validation is None else validation.passed,
                "validation_violations": None if validation is None else validation.violations,
                "validation_metrics": None if validation is None else dict(validation.metrics),
                "extra": item["extra"] or None,
                "run_id": None,
                "created_at": item["created_at"],
            }
        )
    conn.execute(trials.insert(), rows)


def _trial(trial_id: int, row: Mapping[str, Any] | RowMapping) -> Trial:
    passed = row["validation_passed"]
    validation = None
    if passed is not None:
        validation = Validation(
            bool(passed),
            int(row["validation_violations"] or 0),
            dict(row["validation_metrics"] or {}),
        )
    return Trial(
        id=trial_id,
        experiment_id=int(row["experiment_id"]),
        trial_number=int(row["trial_number"]),
        params=dict(row["params"] or {}),
        metrics=dict(row["metrics"] or {}),
        validation=validation,
        created_at=row["created_at"],
        run_id=row["run_id"],
        extra=dict(row["extra"] or {}),
    )


def list_trials(conn: Connection, experiment_id: int) -> list[Trial]:
    query = (
        select(trials)
        .where(trials.c.experiment_id == experiment_id)
        .order_by(trials.c.trial_number)
    )
    return [_trial(row.id, row._mapping) for row in conn.execute(query)]


def _records_query() -> Any:
    failed = case((trials.c.validation_passed.is_(False), 1), else_=0)
    counts = (
        select(
            trials.c.experiment_id.label("experiment_id"),
            func.count(trials.c.id).label("n_trials"),
            func.count(trials.c.validation_passed).label("n_validated"),
            func.sum(failed).label("n_failed"),
            func.sum(func.coalesce(trials.c.validation_violations, 0)).label("violations"),
            func.max(trials.c.created_at).label("last_trial_at"),
        )
        .group_by(trials.c.experiment_id)
        .subquery()
    )
    return select(
        experiments,
        counts.c.n_trials,
        counts.c.n_validated,
        counts.c.n_failed,
        counts.c.violations,
        counts.c.last_trial_at,
    ).outerjoin(counts, counts.c.experiment_id == experiments.c.id)


def _record(row: Any) -> ExperimentRecord:
    last = row.last_trial_at
    if isinstance(last, str):  # SQLite hands max() of a datetime column back as text
        last = datetime.fromisoformat(last)
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=timezone.utc)
    return ExperimentRecord(
        id=row.id,
        name=row.name,
        template=row.template,
        mode=row.mode,
        config=dict(row.config or {}),
        summary=None if row.summary is None else dict(row.summary),
        created_at=row.created_at,
        n_trials=int(row.n_trials or 0),
        n_validated=int(row.n_validated or 0),
        n_failed=int(row.n_failed or 0),
        violations=int(row.violations or 0),
        last_trial_at=last,
    )


def find_experiments(
    conn: Connection,
    *,
    ids: Sequence[int] | None = None,
    name: str | None = None,
    name_glob: str | None = None,
    template: str | None = None,
    mode: str | None = None,
) -> list[ExperimentRecord]:
    """Experiments with their trial counts, newest first."""
    query = _records_query()
    if ids is not None:
        query = query.where(experiments.c.id.in_(list(ids)))
    if name is not None:
        query = query.where(experiments.c.name == name)
    if name_glob is not None:
        pattern = name_glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = pattern.replace("*", "%").replace("?", "_")
        query = query.where(func.lower(experiments.c.name).like(pattern.lower(), escape="\\"))
    if template is not None:
        query = query.where(experiments.c.template == template)
    if mode is not None:
        query = query.where(experiments.c.mode == mode)
    query = query.order_by(experiments.c.created_at.desc(), experiments.c.id.desc())
    return [_record(row) for row in conn.execute(query)]


def find_experiments_read(store: HistoryStore, **filters: Any) -> list[ExperimentRecord]:
    """`find_experiments` on a fresh read connection of `store`."""
    return store.read(lambda conn: find_experiments(conn, **filters))


def metric_values(
    conn: Connection, experiment_ids: Sequence[int], metric: str
) -> Iterator[tuple[int, int, float | None]]:
    """(experiment id, trial number, value of `metric` or None) of every trial of the
    experiments, in trial order; the value is read inside the database's JSON and the
    rows streamed, so memory stays small however many trials there are."""
    value = trials.c.metrics[metric].as_float()
    query = (
        select(trials.c.experiment_id, trials.c.trial_number, value.label("value"))
        .where(trials.c.experiment_id.in_(list(experiment_ids)))
        .order_by(trials.c.experiment_id, trials.c.trial_number)
    )
    result = conn.execution_options(stream_results=True, yield_per=_STREAM_BATCH).execute(query)
    for rows in result.partitions():
        yield from rows


def compare(
    conn: Connection, records: Sequence[ExperimentRecord], metric: str, direction: str
) -> list[ExperimentComparison]:
    """One metric over each experiment's trials, in the order of `records`; one
    experiment's values in memory at a time."""
    by_id = {record.id: record for record in records}
    compared: dict[int, ExperimentComparison] = {}
    rows = metric_values(conn, list(by_id), metric)
    for experiment_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        numbers, values = [], []
        for _, number, value in group:
            numbers.append(number)
            values.append(value)
        compared[experiment_id] = metric_comparison(
            by_id[experiment_id], metric, direction, numbers, values
        )
    return [compared.get(r.id) or metric_comparison(r, metric, direction, [], []) for r in records]


def trial_numbers(conn: Connection, experiment_id: int) -> set[int]:
    query = select(trials.c.trial_number).where(trials.c.experiment_id == experiment_id)
    return set(conn.execute(query).scalars())


def iter_trials(conn: Connection, experiment_ids: Sequence[int]) -> Iterator[Trial]:
    """Every trial of the experiments, by experiment and trial number, streamed: consume
    it while `conn` is open."""
    query = (
        select(trials)
        .where(trials.c.experiment_id.in_(list(experiment_ids)))
        .order_by(trials.c.experiment_id, trials.c.trial_number)
    )
    result = conn.execution_options(stream_results=True, yield_per=_STREAM_BATCH).execute(query)
    for row in result:
        yield _trial(row.id, row._mapping)


__all__ = [
    "compare",
    "create_experiment",
    "find_experiments",
    "find_experiments_read",
    "insert_trial",
    "insert_trials_bulk",
    "iter_trials",
    "list_trials",
    "metric_values",
    "set_summary",
    "set_validation",
    "trial_numbers",
    "write",
]
