"""`metric_history`: each metric's last N values on a platform, for the baselines update.

"The last N runs in which it was recorded" is a top-N per (test, metric) group. A window
function over the platform's whole history sorts every row (about 3 s for 1M results on
SQLite), so the query first ranks the newest runs only: a metric with N values there is
complete, since every other run is older. Then one pass over the older runs lists which
tests they hold; only the tests with a metric not complete yet (new, flaky or no longer
run tests), usually none, are ranked over the whole history, a batch of tests at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Subquery, Table, func, select

from pytest_perfguard.history.blocks import reading_value
from pytest_perfguard.history.layout import (
    READINGS,
    RECENT_FACTOR,
    lateral_runs,
    stored_results,
)
from pytest_perfguard.history.models import (
    layout_tests,
    plain_blocks,
    platforms,
    results,
    runs,
    test_results,
)
from pytest_perfguard.records import MetricSeries

# Tests per query of the last pass (bound parameters stay well under every backend's limit).
_BATCH = 500


def metric_history(
    conn: Connection, platform: str, last_runs: int, kinds: Collection[str], passed_only: bool
) -> dict[tuple[str, str], MetricSeries]:
    def passed(table: Table) -> list[ColumnElement[bool]]:
        return [table.c.outcome == "passed"] if passed_only else []

    on_platform = (
        select(runs.c.id)
        .join(platforms, platforms.c.id == runs.c.platform_id)
        .where(platforms.c.key == platform)
    )
    recent = list(
        conn.execute(
            on_platform.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(
                last_runs * RECENT_FACTOR
            )
        ).scalars()
    )
    series: dict[tuple[str, str], MetricSeries] = {}
    if not recent:
        return series
    newest = stored_results(passed, kinds=kinds, run_ids=recent, lateral=lateral_runs(conn))
    for row in conn.execute(_top_values(newest, last_runs)):
        _add(series, row)
    complete = {key for key, item in series.items() if len(item.values) >= last_runs}
    older_runs = on_platform.where(runs.c.id.not_in(recent)).scalar_subquery()
    # Which tests the older runs hold: results rows by (test, metric); test_results rows by
    # test alone, from its (test, run_id) index without reading the table; blocks by their
    # layouts' tests. A test is ranked again over the whole history when one of its metrics
    # could lack values.
    narrow = select(results.c.test, results.c.metric).distinct()
    narrow = narrow.where(results.c.run_id.in_(older_runs), results.c.kind.in_(sorted(kinds)))
    if passed_only:
        narrow = narrow.where(results.c.outcome == "passed")
    pending = {test for test, metric in conn.execute(narrow) if (test, metric) not in complete}
    readings = [name for name, _, kind in READINGS if kind in kinds]
    if readings:
        wide = select(test_results.c.test).distinct()
        wide = wide.where(test_results.c.run_id.in_(older_runs))
        # The blocks' tests: those of the older runs' layouts.
        older_layouts = select(plain_blocks.c.layout_id).where(
            plain_blocks.c.run_id.in_(older_runs),
            plain_blocks.c.chunk == 0,  # every chunk of a run has the run's layout
        )
        in_blocks = select(layout_tests.c.test).distinct()
        in_blocks = in_blocks.where(layout_tests.c.layout_id.in_(older_layouts))
        for query in (wide, in_blocks):
            for test in conn.execute(query).scalars():
                if any((test, name) not in complete for name in readings):
                    pending.add(test)
    for key in [key for key in series if key[0] in pending]:
        del series[key]  # ranked again below, with their older values
    on_platform_ids = on_platform.scalar_subquery()
    tests = sorted(pending)
    for start in range(0, len(tests), _BATCH):
        batch = tests[start : start + _BATCH]

        def in_batch(table: Table, batch: list[str] = batch) -> list[ColumnElement[bool]]:
            return [table.c.test.in_(batch), table.c.run_id.in_(on_platform_ids), *passed(table)]

        ranked = _top_values(stored_results(in_batch, kinds=kinds, by_test=True), last_runs)
        for row in conn.execute(ranked):
            _add(series, row)
    return dict(sorted(series.items()))


def _top_values(stored: Subquery, last_runs: int) -> Select[Any]:
    rank = (
        func.row_number()
        .over(
            partition_by=(stored.c.test, stored.c.metric),
            order_by=(runs.c.started_at.desc(), runs.c.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(
            stored.c.test,
            stored.c.metric,
            stored.c.value,
            stored.c.unit,
            stored.c.direction,
            stored.c.kind,
            stored.c.marked,
            stored.c.run_id,
            stored.c.samples,
            rank,
        )
        .select_from(stored.join(runs, runs.c.id == stored.c.run_id))
        .subquery()
    )
    return (
        select(ranked)
        .where(ranked.c.rank <= last_runs)
        .order_by(ranked.c.test, ranked.c.metric, ranked.c.rank)
    )


def _add(series: dict[tuple[str, str], MetricSeries], row: Any) -> None:
    key = (row.test, row.metric)
    if key not in series:  # the newest row carries the current unit/direction/kind
        series[key] = MetricSeries(
            test=row.test,
            metric=row.metric,
            unit=row.unit,
            direction=row.direction,
            kind=row.kind,
            marked=bool(row.marked),
            values=[],
            run_ids=[],
            samples=[],
        )
    series[key].values.append(reading_value(row.value))
    series[key].run_ids.append(row.run_id)
    series[key].samples.append(tuple(row.samples or ()))
