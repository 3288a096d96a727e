"""Writing exported history rows (see EXPORT_COLUMNS) as CSV or JSON, one row at a time."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

from pytest_perfguard.history.records import EXPORT_COLUMNS

_SAMPLES = EXPORT_COLUMNS.index("samples")


def write_csv(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """A header line, then one line per row; samples stay a JSON list. Rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
        n += 1
    return n


def write_json(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """One JSON array of objects, written object by object. Rows written."""
    out.write("[")
    n = 0
    for row in rows:
        record = dict(zip(EXPORT_COLUMNS, row, strict=True))
        record["started_at"] = row[1].isoformat()
        record["samples"] = json.loads(row[_SAMPLES]) if row[_SAMPLES] else []
        out.write(("\n" if n == 0 else ",\n") + json.dumps(record))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # shortest exact form
    return value
