"""Writing exported history rows (see EXPORT_COLUMNS) as CSV or JSON, one row at a time."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, TextIO

from pytest_perfguard.records import EXPORT_COLUMNS

_STARTED_AT = EXPORT_COLUMNS.index("started_at")
_MARKED = EXPORT_COLUMNS.index("marked")
_SAMPLES = EXPORT_COLUMNS.index("samples")


def normalized(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[Any]]:
    """Rows of `queries.export_rows` with started_at an aware UTC datetime, marked a bool.

    The query hands both over raw (SQLite: text and 0/1); rows come grouped by run, so the
    time is parsed once per run.
    """
    last_run, started_at = None, None
    for row in rows:
        cells = list(row)
        if cells[0] != last_run:
            last_run, started_at = cells[0], _utc(cells[_STARTED_AT])
        cells[_STARTED_AT] = started_at
        cells[_MARKED] = bool(cells[_MARKED])
        yield cells


def write_csv(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """A header line, then one line per row; samples stay a JSON list. Rows written.

    None is written as an empty cell, floats in their shortest exact form (csv's default).
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    last_started_at, iso = None, ""
    for cells in normalized(rows):
        if cells[_STARTED_AT] is not last_started_at:
            last_started_at = cells[_STARTED_AT]
            iso = last_started_at.isoformat()
        cells[_STARTED_AT] = iso
        cells[_MARKED] = "true" if cells[_MARKED] else "false"
        writer.writerow(cells)
        n += 1
    return n


def write_json(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """One JSON array of objects, written object by object. Rows written."""
    out.write("[")
    n = 0
    for cells in normalized(rows):
        record = dict(zip(EXPORT_COLUMNS, cells, strict=True))
        record["started_at"] = cells[_STARTED_AT].isoformat()
        record["samples"] = json.loads(cells[_SAMPLES]) if cells[_SAMPLES] else []
        out.write(("\n" if n == 0 else ",\n") + json.dumps(record))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def _utc(value: datetime | str) -> datetime:
    """A stored run time (naive UTC; SQLite hands it over as text) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)
