"""What happens around the tests: set up at configure time, then store → compare → report.

The plugin calls :func:`open_session` once (bad configuration fails here, before any test
runs) and :func:`finish_session` once at the end. No pytest in this module: errors come
back as :class:`~pytest_perfguard.config.ConfigError` or as lines in the result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError
from .platform import detect_platform, hardware, labelled_platform
from .results import Measurement, PlainRuns, PlatformInfo, RunInfo
from .runinfo import GitState, build_run_info, git_state
from .settings import PerfSettings

if TYPE_CHECKING:
    from .baselines import BaselineFile
    from .compare import Comparison
    from .measure import Confirmation
    from .records import TrendPoint
    from .updating import UpdateResult

Markup = dict[str, bool]


@dataclass
class SessionContext:
    """What a session needs before its first test: validated settings and loaded inputs."""

    settings: PerfSettings
    rootdir: Path
    platform: PlatformInfo
    baselines: BaselineFile
    db_url: str | None
    is_worker: bool
    # Said with the verdicts: baselines read from old platform keys, other hardware.
    notes: list[str] = field(default_factory=list)

    def baselined_tests(self) -> Collection[str]:
        """The tests this platform's baselines name. Only these need a session's selected
        test ids (a selected one that produced no row is `missing`) and plain tests' rows
        under the default gate."""
        section = self.baselines.platforms.get(self.platform.key)
        return section.tests if section is not None else ()

    def has_baselines(self) -> bool:
        """Whether anything measured here can be judged against a baseline: without one,
        no metric can be flagged as a regression."""
        section = self.baselines.platforms.get(self.platform.key)
        return section is not None and bool(section.tests or section.metrics)


def open_session(settings: PerfSettings, rootdir: Path, *, is_worker: bool) -> SessionContext:
    """Validate everything a user can get wrong, so it fails as a usage error up front."""
    from .baselines import BaselinesError, load_baselines
    from .platform_migration import adopt_legacy_baselines, hardware_note

    if settings.param and not settings.experiment:
        raise ConfigError("--perf-param: name the trial's experiment with --perf-experiment NAME")
    platform = detect_platform(settings.platform, detailed=settings.platform_detailed)
    # Each label set is a platform of its own: its baselines and series stay apart.
    platform = labelled_platform(platform, settings.labels)
    try:
        baselines = load_baselines(settings.baselines)
    except BaselinesError as exc:
        raise ConfigError(str(exc)) from None
    baselines, adopted = adopt_legacy_baselines(baselines, platform.key)
    notes = [note for note in (adopted, hardware_note(baselines, platform.key,
                                                      platform.fingerprint)) if note]  # fmt: skip
    db_url = None
    if not is_worker and (
        settings.record or settings.update_baselines or settings.db or settings.experiment
    ):
        from .history.errors import HistoryError
        from .history.urls import mask_secrets, resolve_db_url, sqlite_path

        try:
            db_url = resolve_db_url(settings.db, rootdir)
        except HistoryError as exc:
            raise ConfigError(mask_secrets(str(exc))) from None
        database = sqlite_path(db_url) if settings.record or settings.experiment else None
        if database is not None:
            check_writable(database, "--perf-db")
    if not is_worker:
        # A report that cannot be written would only be found out after the tests ran.
        if settings.report is not None:
            check_writable(settings.report, "--perf-report")
        if settings.json_report is not None:
            check_writable(settings.json_report, "--perf-json")
        if settings.update_baselines or settings.calibrate_write:
            check_writable(settings.baselines, "--perf-baselines")
    return SessionContext(settings, rootdir, platform, baselines, db_url, is_worker, notes)


def check_writable(path: Path, option: str) -> None:
    """Fail as a usage error now if `path` cannot be created or replaced.

    Missing parent directories are fine (they are made when the file is written); the
    nearest one that exists must be a writable directory. Writability is probed by
    creating and removing a temporary file there, since permission bits say nothing for
    root or on a read-only mount.
    """
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a directory, not a file")
    directory = path.parent
    while not directory.exists():
        if directory.is_symlink() or directory == directory.parent:
            break
        directory = directory.parent
    if not directory.is_dir():
        raise ConfigError(f"{option}: {path} cannot be created: {directory} is not a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option}: {path} cannot be written: permission denied")
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".perfguard-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{option}: {path} cannot be written: {directory}: {reason}") from None


@dataclass
class SessionResult:
    """The end of a session: what was stored, the verdicts, and what to print."""

    comparison: Comparison
    run: RunInfo
    run_id: int | None = None
    update: UpdateResult | None = None
    messages: list[tuple[str, Markup]] = field(default_factory=list)
    fail_session: bool = False
    # The marked tests' rows, for the terminal's step breakdown.
    measurements: Sequence[Measurement] = ()

    def terminal_lines(self, verbose: bool) -> list[tuple[str, Markup]]:
        from .report.terminal import terminal_lines

        return [*terminal_lines(self.comparison, verbose, self.measurements), *self.messages]


@dataclass
class CalibrationResult:
    """The end of a `--perf-calibrate` session: a table to print; it never fails."""

    rows: list[Any]
    messages: list[tuple[str, Markup]] = field(default_factory=list)
    fail_session: bool = False

    def terminal_lines(self, verbose: bool) -> list[tuple[str, Markup]]:
        return self.messages


def finish_calibration(
    context: SessionContext, passes: Sequence[Sequence[Measurement]]
) -> CalibrationResult:
    """Summarise the calibration passes; with `--perf-calibrate-write`, store the suggested
    thresholds (and entries for metrics without one) in the baselines file."""
    from .calibrate import apply_calibration, calibrate, format_calibration

    settings = context.settings
    try:
        rows = calibrate(
            passes,
            context.baselines,
            context.platform.key,
            gate=settings.gate,
            default_threshold=settings.threshold,
        )
    except Exception as exc:  # a bug: one line, never an INTERNALERROR
        failed = CalibrationResult([])
        _fail(failed, f"calibration not computed: {_bug(exc)}")
        return failed
    result = CalibrationResult(rows)
    result.messages.append(
        (
            f"perfguard calibrate: {len(passes)} A/A passes, platform {context.platform.key}",
            {"bold": True},
        )
    )
    result.messages.extend((line, {}) for line in format_calibration(rows, len(passes)))
    if settings.calibrate_write and rows:
        from .baselines import BaselinesError, baselines_lock, load_baselines, write_baselines

        try:
            with baselines_lock(settings.baselines):
                current = load_baselines(settings.baselines)
                write_baselines(
                    settings.baselines, apply_calibration(current, context.platform.key, rows)
                )
        except (BaselinesError, OSError) as exc:
            _fail(result, f"--perf-baselines {settings.baselines}: not written: {_reason(exc)}")
        else:
            result.messages.append(
                (f"perfguard: suggested thresholds written to {settings.baselines}", {})
            )
    return result


def _compare(
    context: SessionContext, measurements: Sequence[Measurement], selected: Collection[str]
) -> Comparison:
    from .compare import judge_run

    platform = context.platform.key
    return judge_run(
        measurements, context.baselines, platform, context.settings, selected_tests=selected
    )


def flagged_regressions(
    context: SessionContext, rows: Sequence[Measurement], selected: Collection[str]
) -> dict[tuple[str, str], float]:
    """The metrics that would fail the session now, with their change: what
    `--perf-confirm` re-runs."""
    comparison = _compare(context, rows, selected)
    return {(v.test, v.metric): v.change or 0.0 for v in comparison.verdicts if v.fails}


def unbaselined_tests(
    context: SessionContext, rows: Sequence[Measurement], selected: Collection[str]
) -> set[str]:
    """Marked tests with a gated metric that has no baseline yet. A recording session
    re-runs them with the confirm passes (each within its rounds budget), so the history a
    first baseline comes from holds values sampled at several moments, not one. An
    unmarked test is never re-run for this, whatever the gate: it is called once, unless
    `--perf-confirm` re-runs it as a flagged regression."""
    if not context.settings.record:
        return set()
    marked = [row for row in rows if row.marked]
    if not marked:
        return set()
    comparison = _compare(context, marked, selected)
    return {v.test for v in comparison.verdicts if v.kind == "new" and v.gated}


def finish_session(
    context: SessionContext,
    measurements: Sequence[Measurement],
    *,
    plain: PlainRuns | None = None,
    selected: Collection[str] = (),
    started_at: datetime,
    exitstatus: int,
    args: list[str],
    system_info: dict[str, Any],
    confirmations: dict[tuple[str, str], Confirmation] | None = None,
) -> SessionResult:
    """Compare, store, report. Never raises: whatever fails at this point becomes one
    line in `messages` and fails the session, and the measurements are kept, in the
    history or in a file whose path is printed (docs/reliability.md).

    `plain` holds the plain tests' runs as columns (`RunLog.session_results`): they are
    stored as they are, and become rows only for what reads rows (gate `all`, reports,
    trials)."""
    from .annotate import note_change_points, note_confirmations, session_notes
    from .compare import Comparison

    settings = context.settings
    measurements = valid_text(measurements)
    plain = _valid_ids(plain) if plain else PlainRuns()
    if not "".join(selected).isascii():
        selected = {_printable(test) for test in selected}
    reports = bool(settings.report or settings.json_report or os.environ.get("GITHUB_STEP_SUMMARY"))
    # The history stores plain runs as they are (one block), whatever reads rows below.
    stored_rows, stored_plain = measurements, plain
    if plain and (settings.gate == "all" or reports or settings.experiment):
        measurements, plain = [*measurements, *plain.measurements()], PlainRuns()
    # Under another gate plain rows are not judged; those of tests with a baseline entry
    # still tell which baselined metrics were measured (`missing` verdicts).
    judged = measurements
    baselined = context.baselined_tests()
    if plain and baselined:
        judged = [*measurements, *plain.measurements(tests=baselined)]
    run = build_run_info(
        platform=context.platform,
        started_at=started_at,
        run_type=settings.run_type,
        notes=settings.notes,
        args=args,
        exitstatus=exitstatus,
        # Only what is kept (the history, reports, trials, baseline snapshots) says which
        # commit ran: a session that keeps nothing spawns no `git`.
        git=git_state(context.rootdir)
        if settings.record or reports or settings.experiment or settings.update_baselines
        else GitState(),
        system_info=system_info,
    )
    run.labels = dict(settings.labels)
    result = SessionResult(
        comparison=Comparison(context.platform.key),
        run=run,
        measurements=[m for m in measurements if m.marked],
    )
    try:
        comparison = _compare(context, judged, selected)
        comparison.notes.extend(context.notes)
        if confirmations:
            note_confirmations(comparison, confirmations)
        if context.db_url is not None and comparison.regressions:
            trends = _regression_trends(context.db_url, context.platform.key, comparison)
            note_change_points(comparison, judged, trends)
        result.comparison = comparison
        result.messages.extend(session_notes(comparison, confirmations or {}))
        result.messages.extend(
            (f"perfguard: {note}", {"yellow": True}) for note in comparison.notes
        )
    except Exception as exc:  # a bug: still store and report what was measured
        _fail(result, f"verdicts not computed: {_bug(exc)}")
    comparison = result.comparison
    if settings.record and context.db_url is not None:
        _store(context, run, stored_rows, stored_plain, result)
    if settings.experiment and context.db_url is not None:
        _log_trial(context, measurements, exitstatus, result)
    _write_reports(context, run, comparison, measurements, result)
    if settings.update_baselines and context.db_url is not None:
        _update_baselines(context, run, result)
    _note_collector_errors(system_info, result)
    if comparison.failed and not settings.warn_only:
        result.fail_session = True
    if comparison.failed and settings.warn_only:
        result.messages.append(
            ("--perf-warn-only: regressions reported, session not failed", {"yellow": True})
        )
    return result


def _regression_trends(
    db_url: str, platform: str, comparison: Comparison
) -> dict[tuple[str, str], list[TrendPoint]]:
    """The recorded history of each regressed metric, for `annotate.note_change_points`:
    one query per regression. What cannot be read is left out: the notes are a nicety,
    and the store step reports database problems."""
    from .api import History
    from .history.errors import HistoryError

    trends: dict[tuple[str, str], list[TrendPoint]] = {}
    try:
        with History(db_url, create=False) as history:
            for verdict in comparison.verdicts:
                if verdict.kind == "regression":
                    trends[(verdict.test, verdict.metric)] = history.trend(
                        verdict.test, verdict.metric, platform=platform, limit=200
                    )
    except HistoryError:
        pass
    return trends


def _fail(result: SessionResult | CalibrationResult, what: str) -> None:
    """Something the user asked for did not happen: one red line, and the session fails
    (exit 1 when the tests passed; their own status otherwise)."""
    from .history.urls import mask_secrets

    line = " ".join(mask_secrets(f"perfguard: error: {what}").split())
    result.messages.append((line, {"red": True, "bold": True}))
    result.fail_session = True


def _reason(exc: BaseException) -> str:
    """One line for an expected failure (disk, database): the OS's words when it has them."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _bug(exc: BaseException) -> str:
    return f"unexpected {type(exc).__name__}: {_reason(exc)} (a bug in pytest-perfguard)"


def _printable(text: str) -> str:
    """`text` as valid UTF-8: undecodable bytes of a file name or an id (which Python keeps
    as lone surrogates) become `\\xNN` escapes instead of failing every write."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _valid_ids(plain: PlainRuns) -> PlainRuns:
    """`plain` with its test ids valid UTF-8 (see `_printable`), in place."""
    if not "".join(plain.ids).isascii():
        plain.ids = [_printable(test) for test in plain.ids]
    return plain


_TEXTS = ("test", "metric", "unit")


def valid_text(measurements: Sequence[Measurement]) -> Sequence[Measurement]:
    """The measurements with test ids, metric names and units valid UTF-8; the same
    sequence when they already are (the common case: one `isascii` over all of them)."""
    import dataclasses
    from operator import attrgetter

    if all("".join(map(attrgetter(name), measurements)).isascii() for name in _TEXTS):
        return measurements
    fixed: list[Measurement] | None = None
    for index, row in enumerate(measurements):
        test, metric, unit = _printable(row.test), _printable(row.metric), _printable(row.unit)
        if (test, metric, unit) != (row.test, row.metric, row.unit):
            if fixed is None:
                fixed = list(measurements)
            fixed[index] = dataclasses.replace(row, test=test, metric=metric, unit=unit)
    return measurements if fixed is None else fixed


def _store(
    context: SessionContext,
    run: RunInfo,
    measurements: Sequence[Measurement],
    plain: PlainRuns,
    result: SessionResult,
) -> None:
    from .api import History
    from .history.errors import HistoryError

    try:
        with History(context.db_url) as history:
            result.run_id = history.save_session(run, measurements, plain=plain)
    except Exception as exc:
        reason = _reason(exc) if isinstance(exc, (HistoryError, OSError)) else _bug(exc)
        everything = [*measurements, *plain.measurements()]
        saved = _save_unstored(context.rootdir, run, everything)
        kept = (
            f"measurements kept in {saved} (perfguard import stores them)"
            if saved
            else "measurements NOT kept"
        )
        _fail(result, f"run not stored: {reason}; {kept}")
        return
    stored = len(measurements) + len(plain) * (1 + len(plain.readings))
    result.messages.append(
        (
            f"perfguard: stored run {result.run_id} "
            f"({stored} results, platform {run.platform.key})",
            {},
        )
    )


def _log_trial(
    context: SessionContext,
    measurements: Sequence[Measurement],
    exitstatus: int,
    result: SessionResult,
) -> None:
    """`--perf-experiment`: this run becomes a trial; its validation passed when the tests
    passed and no metric regressed."""
    from .api import History
    from .experiments import trial_metrics

    settings = context.settings
    assert settings.experiment is not None
    failed_tests = {m.test for m in measurements if m.outcome in ("failed", "error")}
    regressions = len(result.comparison.regressions)
    validation = {
        "passed": exitstatus == 0 and not failed_tests and not regressions,
        "violations": len(failed_tests) + regressions,
        "metrics": {"failed_tests": len(failed_tests), "regressions": regressions},
    }
    metrics = trial_metrics(measurements)
    try:
        with History(context.db_url) as history:
            trial = history.experiment(settings.experiment).log_trial(
                params=settings.param, metrics=metrics, validation=validation,
                run_id=result.run_id,
            )  # fmt: skip
    except Exception as exc:
        _fail(result, f"trial of experiment {settings.experiment!r} not logged: {_reason(exc)}")
        return
    result.messages.append(
        (
            f"perfguard: trial {trial.trial_number} of experiment {settings.experiment!r} "
            f"logged ({len(metrics)} metric(s))",
            {},
        )
    )


def _save_unstored(rootdir: Path, run: RunInfo, measurements: Sequence[Measurement]) -> Path | None:
    """Never lose a session's numbers because the database was unreachable: they go to
    `.perfguard/unstored/` under the rootdir, else to the temporary directory."""
    import tempfile

    from .importers.unstored import unstored_payload

    # `perfguard import <file>` stores it once the database is back.
    payload = unstored_payload(run, [m.to_dict() for m in measurements])
    # ASCII JSON: nothing in it can fail to encode.
    text = json.dumps(payload, indent=2, default=str) + "\n"
    name = f"run-{run.started_at.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    for directory in (
        rootdir / ".perfguard" / "unstored",
        Path(tempfile.gettempdir()) / "perfguard-unstored",
    ):
        path = directory / name
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _replace_text(path, text)
        except OSError:
            continue
        return path
    return None


def _write_reports(
    context: SessionContext,
    run: RunInfo,
    comparison: Comparison,
    measurements: Sequence[Measurement],
    result: SessionResult,
) -> None:
    settings = context.settings
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not (settings.report or settings.json_report or summary_path):
        return
    from .report import build_report

    try:
        data = build_report(run, comparison, measurements, warn_only=settings.warn_only)
    except Exception as exc:
        _fail(result, f"reports not written: {_bug(exc)}")
        return
    if settings.report or summary_path:
        from .report.markdown import render_markdown

        try:
            markdown = render_markdown(data)
        except Exception as exc:
            _fail(result, f"Markdown report not written: {_bug(exc)}")
        else:
            if settings.report:
                _write_text(settings.report, markdown, result, "--perf-report")
            if summary_path:
                _append_step_summary(Path(summary_path), markdown, result)
    if settings.json_report:
        from .report.json_report import render_json

        try:
            text = render_json(data)
        except Exception as exc:
            _fail(result, f"JSON report not written: {_bug(exc)}")
        else:
            _write_text(settings.json_report, text, result, "--perf-json")


def _append_step_summary(path: Path, markdown: str, result: SessionResult) -> None:
    """The GitHub job summary is a courtesy the user did not ask for by name: a failure
    to append to it is a warning, not a failed session."""
    try:
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as summary:
            summary.write(markdown + "\n")
    except OSError as exc:
        result.messages.append(
            (
                f"perfguard: warning: GITHUB_STEP_SUMMARY {path}: not written: {_reason(exc)}",
                {"yellow": True},
            )
        )


def _write_text(path: Path, text: str, result: SessionResult, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_text(path, text)
    except OSError as exc:
        _fail(result, f"{option} {path}: not written: {_reason(exc)}")
        return
    result.messages.append((f"perfguard: {option} written to {path}", {}))


def _replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: a full disk leaves the previous file.

    Not a regular file (a pipe, `/dev/stdout`): written in place, there is nothing to
    replace."""
    data = text.encode("utf-8", "backslashreplace")
    if path.exists() and not path.is_file():
        with open(path, "wb") as out:
            out.write(data)
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def _update_baselines(context: SessionContext, run: RunInfo, result: SessionResult) -> None:
    from .api import History
    from .baselines import BaselinesError
    from .history.errors import HistoryError
    from .updating import format_update_table, update_baselines

    settings = context.settings
    try:
        with History(context.db_url) as history:
            update = update_baselines(
                history,
                settings.baselines,
                context.platform.key,
                min_runs=settings.min_runs,
                margin=settings.update_margin,
                accept_regressions=settings.accept_regressions,
                dry_run=False,
                git_commit=run.git_commit,
                hardware=hardware(context.platform.fingerprint),
                who=run.triggered_by,
                gate=settings.gate,
            )
    except Exception as exc:
        expected = isinstance(exc, (HistoryError, BaselinesError, OSError))
        _fail(result, f"baselines not updated: {_reason(exc) if expected else _bug(exc)}")
        return
    result.update = update
    result.messages.append(
        (f"perfguard: baselines update for platform {context.platform.key}", {"bold": True})
    )
    result.messages.extend((line, {}) for line in format_update_table(update).splitlines())


def _note_collector_errors(system_info: dict[str, Any], result: SessionResult) -> None:
    """A collector that kept going through errors (NVML) says how often it failed: its
    peaks may be under-reported."""
    errors = system_info.get("gpu_sample_errors")
    if errors:
        last = system_info.get("gpu_last_error", "")
        result.messages.append(
            (
                f"perfguard: warning: GPU memory sampling failed {errors} time(s) "
                f"(last: {last}); gpu_mem_peak_mb may be under-reported",
                {"yellow": True},
            )
        )
