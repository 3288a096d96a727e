"""Importing results kept by other tools into the history (`perfguard import`).

Three formats are read: pytest-benchmark saved runs (`pytest_benchmark`), the seed
project's results JSON (`seed`), and the fallback files of runs a session could not store
(`unstored`).

Importing is idempotent: every run is stored with a source key (a hash of what it was
read from), and a run whose key is already stored is skipped. Errors a user can cause are
an `ImportFormatError` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import ImportedRun, ImportFormatError, ImportOutcome, ImportReport
from .pytest_benchmark import PYTEST_BENCHMARK, benchmark_platform, benchmark_run, is_benchmark_file
from .seed import SEED_RESULTS, is_seed_run, seed_direction, seed_run, seed_unit
from .unstored import UNSTORED, is_unstored_run, unstored_run

if TYPE_CHECKING:
    from ..api import History

__all__ = [
    "PYTEST_BENCHMARK",
    "SEED_RESULTS",
    "ImportFormatError",
    "ImportOutcome",
    "ImportReport",
    "ImportedRun",
    "benchmark_platform",
    "find_files",
    "import_paths",
    "read_runs",
    "seed_direction",
    "seed_unit",
]


def find_files(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """The files to read, each with whether it was named explicitly.

    Directories are walked for `*.json` (hidden ones included: `.benchmarks`), in sorted
    order so runs are stored oldest first for pytest-benchmark's numbered files.
    """
    found: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            found.extend((p, False) for p in sorted(path.rglob("*.json")) if p.is_file())
        elif path.is_file():
            found.append((path, True))
        else:
            raise ImportFormatError(f"{path}: no such file or directory")
    return found


def read_runs(path: Path, *, platform: str | None = None) -> list[ImportedRun]:
    """Every run in `path` (either format); ImportFormatError when it is neither."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not valid JSON (not UTF-8 text)") from None
    if is_benchmark_file(data):
        digest = hashlib.sha256(raw).hexdigest()
        return [benchmark_run(path, data, f"{PYTEST_BENCHMARK}:{digest}", platform)]
    if is_unstored_run(data):
        digest = hashlib.sha256(raw).hexdigest()
        return [unstored_run(path, data, f"{UNSTORED}:{digest}", platform)]
    entries = data if isinstance(data, list) else [data]
    if entries and all(isinstance(e, dict) and is_seed_run(e) for e in entries):
        return [
            seed_run(path, f"{path}[{i}]" if isinstance(data, list) else str(path), e, platform)
            for i, e in enumerate(entries)
        ]
    raise ImportFormatError(
        f"{path}: not a pytest-benchmark saved run nor a results JSON "
        "(a run object or a list of them, with a timestamp, platform or metrics)"
    )


def import_paths(
    history: History | None,
    paths: Sequence[Path],
    *,
    platform: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import every run found in `paths` into `history`; runs already imported are skipped.

    Files named explicitly must be importable: they are all checked before anything is
    stored, and the first bad one raises ImportFormatError. Files found by walking a
    directory that are not in a known format are reported as skipped. `history` None is
    an empty history (a dry run before the database exists).
    """
    if history is None and not dry_run:
        raise ValueError("import_paths: history None is only for a dry run")
    files = find_files(paths)
    for path, explicit in files:
        if explicit:
            read_runs(path, platform=platform)  # raises before anything is written
    report = ImportReport(dry_run=dry_run)
    for path, explicit in files:
        try:
            runs = read_runs(path, platform=platform)
        except ImportFormatError as exc:
            if explicit:  # pragma: no cover - checked above; the file changed meanwhile
                raise
            report.outcomes.append(ImportOutcome(str(path), None, skipped=_reason(exc, path)))
            continue
        if not runs:
            report.outcomes.append(ImportOutcome(str(path), None, skipped="no runs in the file"))
        for run in runs:
            report.outcomes.append(_store(history, run, dry_run=dry_run))
    return report


def _reason(exc: ImportFormatError, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ")


def _store(history: History | None, item: ImportedRun, *, dry_run: bool) -> ImportOutcome:
    from ..history.errors import HistoryError

    def outcome(**kwargs: Any) -> ImportOutcome:
        return ImportOutcome(
            item.label,
            item.format,
            n_results=len(item.measurements),
            platform=item.run.platform.key,
            notes=item.notes,
            **kwargs,
        )

    if not item.measurements:
        return outcome(skipped="no measurements in it")
    if history is not None and history.has_run_with_source_key(item.source_key):
        return outcome(skipped="already imported")
    if dry_run or history is None:
        return outcome()
    try:
        run_id = history.save_session(item.run, item.measurements, source_key=item.source_key)
    except HistoryError:
        # A concurrent import of the same file won the race: that is the same outcome.
        if history.has_run_with_source_key(item.source_key):
            return outcome(skipped="already imported")
        raise
    return outcome(run_id=run_id)
