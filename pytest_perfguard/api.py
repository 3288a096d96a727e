"""`History`: the one door to stored runs, for the plugin, the CLI and users' scripts.

    from pytest_perfguard.api import History

    with History() as history:                     # .perfguard/history.db, or $PERFGUARD_DB
        for run in history.recent_runs(limit=5):
            print(run.id, run.started_at, run.outcome)
        print(history.trend("tests/test_rag.py::test_query", "query_latency"))

Any problem a user can cause (bad URL, missing file, unknown run, a database written by a
newer version) raises `HistoryError` with a one-line message; passwords are masked.
Importing this module is cheap: SQLAlchemy is loaded on first use of a `History`.
"""

from __future__ import annotations

import json
import os
import platform as _platform
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

from pytest_perfguard.experiment_history import ExperimentHistory
from pytest_perfguard.history.errors import HistoryError, SchemaTooNewError
from pytest_perfguard.history.urls import mask_secrets, resolve_db_url
from pytest_perfguard.results import (
    DIRECTIONS,
    RUN_TYPES,
    LabelError,
    Measurement,
    PlainRuns,
    PlatformInfo,
    RunInfo,
    check_labels,
    is_finite_number,
)

if TYPE_CHECKING:
    from pytest_perfguard.history.queries import RunFilter
    from pytest_perfguard.history.store import HistoryStore
    from pytest_perfguard.records import (
        EXPORT_COLUMNS,
        BaselineSnapshotRecord,
        HistoryStats,
        MetricSeries,
        MetricSummary,
        PlatformRecord,
        RunDetail,
        RunDiff,
        RunSummary,
        TrendPoint,
    )

__all__ = [
    "EXPORT_COLUMNS",
    "NO_TEST",
    "BaselineSnapshotRecord",
    "History",
    "HistoryError",
    "HistoryStats",
    "MetricSeries",
    "MetricSummary",
    "PlatformRecord",
    "RunDetail",
    "RunDiff",
    "RunSummary",
    "SchemaTooNewError",
    "TrendPoint",
]

def __getattr__(name: str) -> Any:
    # The names of `__all__` not defined here are the stored-run records `History` hands
    # back, loaded on first use: a session that only writes its run does not build them.
    if name in __all__:
        from pytest_perfguard import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Environment variables naming the database when no URL or path is given, in order.
DB_ENV_VARS = ("PERFGUARD_DB", "PERFORMANCE_DB_PATH")
# The test id of metrics recorded with `record_run(test=None)`, like the seed project's
# flat metrics: they belong to no test.
NO_TEST = ""
_TRIGGERED_BY = {"manual": "user", "ci": "ci", "nightly": "automated"}
# Column sizes of runs.triggered_by and runs.test_type.
WHO_MAX = 20
TEST_TYPE_MAX = 50
_T = TypeVar("_T")


class History(ExperimentHistory):
    """A history database of perfguard runs: SQLite file or SQLAlchemy URL.

    `url_or_path` None means `$PERFGUARD_DB`, else `$PERFORMANCE_DB_PATH`, else
    `<rootdir>/.perfguard/history.db` (rootdir defaults to the current directory); a
    relative path is relative to rootdir. With `create=False` a missing SQLite file is an
    error, never created: use it for anything that only reads.
    Nothing is opened until the first call; use as a context manager or call `close()`.
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike[str] | None = None,
        *,
        rootdir: Path | None = None,
        create: bool = True,
    ) -> None:
        value = os.fspath(url_or_path) if url_or_path is not None else _db_from_env()
        self._url = resolve_db_url(value, Path(rootdir) if rootdir is not None else Path.cwd())
        self.create = create
        self._store: HistoryStore | None = None

    @property
    def url(self) -> str:
        """The database URL, password masked (safe to print)."""
        return mask_secrets(self._url)

    def __repr__(self) -> str:
        return f"History({self.url!r})"

    def exists(self) -> bool:
        """Whether there is a database to open: the SQLite file exists (server databases
        are taken to exist; connecting tells). Opens nothing."""
        from pytest_perfguard.history.urls import sqlite_path

        path = sqlite_path(self._url)
        return path is None or path.exists()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections; the History can be used again afterwards."""
        if self._store is not None:
            self._store.close()

    @contextmanager
    def _errors(self) -> Iterator[HistoryStore]:
        from pytest_perfguard.history.engine import readable_errors
        from pytest_perfguard.history.store import HistoryStore

        with readable_errors(self._url):
            if self._store is None:
                self._store = HistoryStore(self._url, create=self.create)
            yield self._store

    def _read(self, query: Callable[..., _T], *args: Any) -> _T:
        with self._errors() as store:
            return store.read(query, *args)

    # -- writing -------------------------------------------------------------------------

    def save_session(
        self,
        run: RunInfo,
        measurements: Sequence[Measurement],
        *,
        plain: PlainRuns | None = None,
        source_key: str | None = None,
    ) -> int:
        """Store one run and all its measurements (one transaction); its run id.

        `plain` adds plain tests' runs given as columns (the plugin's session end), stored
        after `measurements`. A `source_key` makes the run unique (see `record_run`):
        importers use it so that importing the same file twice stores nothing the second
        time.
        """
        if self._store is None:
            # A SQLite file, fresh or up to date, is written without loading SQLAlchemy.
            from pytest_perfguard.history.sqlite_writer import save_session

            run_id = save_session(
                self._url, run, measurements, plain=plain, source_key=source_key,
                create=self.create,
            )  # fmt: skip
            if run_id is not None:
                return run_id
        with self._errors() as store:
            return store.save_session(run, measurements, plain=plain, source_key=source_key)

    def record_run(
        self,
        metrics: Mapping[str, float | tuple[float, str]],
        *,
        platform: str | None = None,
        test: str | None = None,
        run_type: str = "manual",
        notes: str = "",
        success: bool = True,
        directions: Mapping[str, str] | None = None,
        started_at: datetime | None = None,
        source_key: str | None = None,
        git_commit: str | None = None,
        git_branch: str | None = None,
        who: str | None = None,
        test_type: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """Store results measured outside pytest, e.g. ``{"tokens_per_s": (41.5, "tok/s")}``.

        Each metric is stored as a custom, gated metric of `test` (None: no test, like the
        seed project's flat metrics), direction "lower" unless `directions` says otherwise.
        `platform` None detects this machine's platform. A `source_key` makes the run
        unique: storing a second run with the same key raises HistoryError. `who` (user, ci,
        automated or a name; default from the run type) ran it; `test_type` says what kind
        of test it was (the tracker's inference, benchmark, ...).
        """
        if not metrics:
            raise HistoryError("record_run: no metrics given")
        if run_type not in RUN_TYPES:
            raise HistoryError(f"record_run: run_type must be one of {', '.join(RUN_TYPES)}")
        if platform is not None and not platform.strip():
            raise HistoryError("record_run: platform must not be empty")
        if who is not None and not 0 < len(who.strip()) <= WHO_MAX:
            raise HistoryError(f"record_run: who must be 1 to {WHO_MAX} characters, not {who!r}")
        if test_type is not None and not 0 < len(test_type.strip()) <= TEST_TYPE_MAX:
            raise HistoryError(
                f"record_run: test type must be 1 to {TEST_TYPE_MAX} characters, not {test_type!r}"
            )
        directions = dict(directions or {})
        unknown = sorted(set(directions) - set(metrics))
        if unknown:
            raise HistoryError(f"record_run: directions given for unknown metrics: {unknown}")
        outcome: Any = "passed" if success else "failed"
        measurements = [
            _recorded(test or NO_TEST, name, spec, directions.get(name, "lower"), outcome)
            for name, spec in metrics.items()
        ]
        info, host, python = PlatformInfo(platform or ""), "", ""
        if platform is None:
            from pytest_perfguard.platform import detect_platform

            info, host, python = detect_platform(), _platform.node(), _platform.python_version()
        checked_labels = _labels(labels, "record_run")
        if checked_labels:
            from pytest_perfguard.platform import labelled_platform

            # A label set is kept apart like a platform, as in a pytest session.
            info = labelled_platform(info, checked_labels)
        run = RunInfo(
            started_at=started_at or datetime.now(timezone.utc),
            platform=info,
            git_commit=git_commit,
            git_branch=git_branch,
            python_version=python,
            run_type=run_type,
            triggered_by=who.strip() if who else _TRIGGERED_BY[run_type],
            host=host,
            outcome=outcome,
            notes=notes,
            test_type=test_type.strip() if test_type else None,
            labels=checked_labels,
        )
        return self.save_session(run, measurements, source_key=source_key)

    def save_baseline_snapshot(
        self,
        platform: str,
        entries: Mapping[str, Any],
        *,
        reason: str,
        git_commit: str | None,
        who: str,
    ) -> int:
        """Keep a record of an applied baselines update; returns the snapshot id."""
        with self._errors() as store:
            return store.save_baseline_snapshot(
                platform, entries, reason=reason, git_commit=git_commit, who=who
            )

    def rename_platform(self, old: str, new: str) -> int:
        """Move platform `old`'s runs and baseline snapshots to `new` (merging when `new`
        exists): how histories under 0.x detailed keys move to today's keys
        (``perfguard platform migrate``). Returns how many runs moved."""
        if not old.strip() or not new.strip():
            raise HistoryError("rename_platform: platform keys must not be empty")
        if old == new:
            return 0
        with self._errors() as store:
            return store.rename_platform(old, new)

    def has_run_with_source_key(self, key: str) -> bool:
        """Whether a run was stored with this import key (see `record_run`)."""
        with self._errors() as store:
            return store.has_run_with_source_key(key)

    # -- reading -------------------------------------------------------------------------

    def recent_runs(
        self,
        *,
        platform: str | None = None,
        limit: int = 20,
        days: float | None = None,
        test: str | None = None,
        outcome: str | None = None,
        run_type: str | None = None,
        test_type: str | None = None,
        who: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[RunSummary]:
        """The newest runs first; `test` is a glob on test ids (``'*rag*'``, case-insensitive);
        `test_type` and `who` (who ran it) pick runs by those fields, `labels` the runs that
        carry every one of those labels (``{"model": "openai"}``)."""
        from pytest_perfguard.history import queries

        flt = _filter(
            platform=platform,
            days=days,
            test=test,
            outcome=outcome,
            run_type=run_type,
            test_type=test_type,
            triggered_by=who,
            labels=labels,
        )
        return self._read(queries.recent_runs, flt, _positive("limit", limit))

    def get_run(self, run_id: int) -> RunDetail:
        """One run with all its measurements; HistoryError if there is no such run."""
        from pytest_perfguard.history import queries

        detail = self._read(queries.get_run, run_id)
        if detail is None:
            raise HistoryError(f"run {run_id} not found")
        return detail

    def runs_measurements(self, run_ids: Collection[int]) -> dict[int, list[Measurement]]:
        """The measurements of many runs, read in batches (not a query per run); a run id
        with nothing stored is absent from the result."""
        from pytest_perfguard.history import queries

        return self._read(queries.runs_measurements, list(run_ids))

    def trend(
        self,
        test: str,
        metric: str | None = None,
        *,
        platform: str | None = None,
        days: float | None = None,
        limit: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[TrendPoint]:
        """Values of `test`'s metric (all its metrics if None) over time, oldest first.

        `limit` keeps the newest points; `labels` the runs that carry every one of them.
        """
        from pytest_perfguard.history import queries

        if limit is not None:
            _positive("limit", limit)
        flt = _filter(platform=platform, days=days, labels=labels)
        return self._read(queries.trend, test, metric, flt, limit)

    def metric_history(
        self,
        platform: str,
        *,
        last_runs: int,
        kinds: Collection[str] = ("primary", "custom", "step"),
        passed_only: bool = True,
    ) -> dict[tuple[str, str], MetricSeries]:
        """Per (test, metric) on `platform`: values of its last `last_runs` runs, newest first."""
        from pytest_perfguard.history import series

        _positive("last_runs", last_runs)
        return self._read(series.metric_history, platform, last_runs, kinds, passed_only)

    def baseline(
        self, test: str, metric: str, *, platform: str | None = None, last_runs: int = 5
    ) -> float | None:
        """The median of the metric's last `last_runs` passing values (any platform if None)."""
        from pytest_perfguard.history import queries

        _positive("last_runs", last_runs)
        return self._read(queries.baseline, test, metric, platform, last_runs)

    def compare(self, run_a: int, run_b: int) -> list[RunDiff]:
        """Every (test, metric) stored in either run, with its value in each."""
        from pytest_perfguard.history import queries

        for run_id in (run_a, run_b):
            if not self._read(queries.run_exists, run_id):
                raise HistoryError(f"run {run_id} not found")
        return self._read(queries.compare, run_a, run_b)

    def summary(
        self,
        *,
        platform: str | None = None,
        days: float | None = None,
        test: str | None = None,
        metric: str | None = None,
        outcome: str | None = None,
        run_type: str | None = None,
        last_runs: int = 20,
        test_type: str | None = None,
        who: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[MetricSummary]:
        """Per (test, metric): its values in the newest `last_runs` matching runs.

        Runs are filtered like `recent_runs` (`outcome`, `run_type` are the run's, `labels`
        the ones they all carry); `test`
        (a glob) and `metric` also pick which results are summarised. Sorted by test, metric.
        """
        from pytest_perfguard.history import queries

        flt = _filter(
            platform=platform,
            days=days,
            test=test,
            metric=metric,
            outcome=outcome,
            run_type=run_type,
            test_type=test_type,
            triggered_by=who,
            labels=labels,
        )
        return self._read(queries.metric_summaries, flt, _positive("last_runs", last_runs))

    def tests(self, pattern: str | None = None, *, platform: str | None = None) -> list[str]:
        """Stored test ids, sorted; `pattern` is a glob like ``'*rag*'``."""
        from pytest_perfguard.history import queries

        return self._read(queries.find_tests, _filter(platform=platform, test=pattern))

    def platforms(self) -> list[PlatformRecord]:
        """Every platform with its fingerprint, number of runs and last run."""
        from pytest_perfguard.history import queries

        return self._read(queries.platform_records)

    def baseline_snapshots(self, platform: str | None = None) -> list[BaselineSnapshotRecord]:
        """Applied baselines updates, newest first."""
        from pytest_perfguard.history import queries

        return self._read(queries.baseline_snapshot_records, platform)

    def stats(self) -> HistoryStats:
        """Counts, time span and (SQLite) file size of the history."""
        from pytest_perfguard.history import queries
        from pytest_perfguard.records import HistoryStats

        counts = self._read(queries.counts)
        with self._errors() as store:
            return HistoryStats(
                url=self.url,
                schema_revision=store.revision,
                db_size_bytes=store.db_size_bytes(),
                **counts,
            )

    def export(
        self,
        fmt: Literal["csv", "json"],
        out: TextIO,
        *,
        platform: str | None = None,
        days: float | None = None,
        test: str | None = None,
        metric: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """Write every stored value (columns: EXPORT_COLUMNS) to `out`; rows written.

        Rows are streamed from the database and written one by one: memory stays flat
        however large the history. JSON is one array of objects. `labels` keeps the runs
        that carry every one of them.
        """
        if fmt not in ("csv", "json"):
            raise HistoryError(f"export: unknown format {fmt!r} (use csv or json)")
        from pytest_perfguard.history.export import write_csv, write_json

        flt = _filter(platform=platform, days=days, test=test, metric=metric, labels=labels)
        rows = self._stream(flt)
        return write_csv(rows, out) if fmt == "csv" else write_json(rows, out)

    def to_dataframe(
        self,
        *,
        platform: str | None = None,
        days: float | None = None,
        test: str | None = None,
        metric: str | None = None,
    ) -> Any:
        """The same rows as `export`, as a pandas DataFrame (needs pandas installed)."""
        try:
            import pandas
        except ImportError:
            raise HistoryError("to_dataframe needs pandas: pip install pandas") from None
        from pytest_perfguard.history.export import normalized
        from pytest_perfguard.records import EXPORT_COLUMNS

        flt = _filter(platform=platform, days=days, test=test, metric=metric)
        rows = []
        for cells in normalized(self._stream(flt)):
            cells[15] = json.loads(cells[15]) if cells[15] else []
            rows.append(cells)
        return pandas.DataFrame.from_records(rows, columns=list(EXPORT_COLUMNS))

    def _stream(self, flt: RunFilter) -> Iterator[tuple[Any, ...]]:
        from pytest_perfguard.history import queries

        with self._errors() as store:
            for row in store.stream(queries.export_rows, flt):
                yield tuple(row)

    # -- maintenance ---------------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to this version's head; returns (from, to) revisions."""
        with self._errors() as store:
            return store.upgrade()

    def vacuum(self) -> None:
        """Reclaim space (SQLite VACUUM, PostgreSQL VACUUM ANALYZE)."""
        with self._errors() as store:
            store.vacuum()


def _db_from_env() -> str | None:
    for name in DB_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HistoryError(f"{name} must be a positive integer, not {value!r}")
    return value


def _filter(
    *,
    days: float | None = None,
    labels: Mapping[str, str] | None = None,
    **fields: str | None,
) -> RunFilter:
    from pytest_perfguard.history.queries import RunFilter

    since = None
    if days is not None:
        if not is_finite_number(days) or days <= 0:
            raise HistoryError(f"days must be a positive number, not {days!r}")
        since = datetime.now(timezone.utc) - timedelta(days=days)
    chosen = tuple(sorted(_labels(labels, "labels").items()))
    return RunFilter(since=since, labels=chosen, **fields)


def _labels(labels: Mapping[str, str] | None, where: str) -> dict[str, str]:
    try:
        return check_labels(labels or {}, where)
    except LabelError as exc:
        raise HistoryError(str(exc)) from None


def _recorded(
    test: str, name: str, spec: float | tuple[float, str], direction: str, outcome: Any
) -> Measurement:
    value, unit = spec if isinstance(spec, tuple) else (spec, "")
    if not is_finite_number(value):
        raise HistoryError(f"record_run: metric {name!r} needs a finite number, not {value!r}")
    if direction not in DIRECTIONS:
        raise HistoryError(
            f"record_run: direction of {name!r} must be 'lower' or 'higher', not {direction!r}"
        )
    return Measurement(
        test=test,
        metric=name,
        value=float(value),
        unit=str(unit),
        direction=direction,
        kind="custom",
        marked=True,
        outcome=outcome,
    )
