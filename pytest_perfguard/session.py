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
from .platform import detect_platform
from .results import Measurement, PlatformInfo, RunInfo
from .runinfo import build_run_info, git_state
from .settings import PerfSettings

if TYPE_CHECKING:
    from .baselines import BaselineFile
    from .compare import Comparison
    from .measure import Confirmation
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


def open_session(settings: PerfSettings, rootdir: Path, *, is_worker: bool) -> SessionContext:
    """Validate everything a user can get wrong, so it fails as a usage error up front."""
    from .baselines import BaselinesError, load_baselines

    platform = detect_platform(settings.platform)
    try:
        baselines = load_baselines(settings.baselines)
    except BaselinesError as exc:
        raise ConfigError(str(exc)) from None
    db_url = None
    if not is_worker and (settings.record or settings.update_baselines or settings.db):
        from .history.errors import HistoryError
        from .history.urls import resolve_db_url

        try:
            db_url = resolve_db_url(settings.db, rootdir)
        except HistoryError as exc:
            raise ConfigError(str(exc)) from None
    return SessionContext(settings, rootdir, platform, baselines, db_url, is_worker)


@dataclass
class SessionResult:
    """The end of a session: what was stored, the verdicts, and what to print."""

    comparison: Comparison
    run: RunInfo
    run_id: int | None = None
    update: UpdateResult | None = None
    messages: list[tuple[str, Markup]] = field(default_factory=list)
    fail_session: bool = False

    def terminal_lines(self, verbose: bool) -> list[tuple[str, Markup]]:
        from .report.terminal import terminal_lines

        return [*terminal_lines(self.comparison, verbose), *self.messages]


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
    rows = calibrate(
        passes,
        context.baselines,
        context.platform.key,
        gate=settings.gate,
        default_threshold=settings.threshold,
    )
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
            result.messages.append((f"perfguard: baselines not written: {exc}", {"red": True}))
        else:
            result.messages.append(
                (f"perfguard: suggested thresholds written to {settings.baselines}", {})
            )
    return result


def _compare(
    context: SessionContext, measurements: Sequence[Measurement], selected: Collection[str]
) -> Comparison:
    from .compare import compare, make_rule

    settings = context.settings
    return compare(
        measurements,
        context.baselines,
        context.platform.key,
        gate=settings.gate,
        default_threshold=settings.threshold,
        selected_tests=selected,
        rule=make_rule(settings.rule, settings.q),
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
    """Tests with a gated metric that has no baseline yet. A recording session re-runs
    them with the confirm passes, so the history a first baseline comes from holds values
    sampled at several moments, not one."""
    if not context.settings.record:
        return set()
    comparison = _compare(context, rows, selected)
    return {v.test for v in comparison.verdicts if v.kind == "new" and v.gated}


def finish_session(
    context: SessionContext,
    measurements: Sequence[Measurement],
    *,
    selected: Collection[str] = (),
    started_at: datetime,
    exitstatus: int,
    args: list[str],
    system_info: dict[str, Any],
    confirmations: dict[tuple[str, str], Confirmation] | None = None,
) -> SessionResult:
    from .annotate import note_change_points, note_confirmations, session_notes

    settings = context.settings
    run = build_run_info(
        platform=context.platform,
        started_at=started_at,
        run_type=settings.run_type,
        notes=settings.notes,
        args=args,
        exitstatus=exitstatus,
        git=git_state(context.rootdir),
        system_info=system_info,
    )
    comparison = _compare(context, measurements, selected)
    if confirmations:
        note_confirmations(comparison, confirmations)
    if context.db_url is not None and comparison.regressions:
        note_change_points(comparison, measurements, context.db_url, context.platform.key)
    result = SessionResult(comparison=comparison, run=run)
    result.messages.extend(session_notes(comparison, confirmations or {}))
    if settings.record and context.db_url is not None:
        _store(context, run, measurements, result)
    _write_reports(context, run, comparison, measurements, result)
    if settings.update_baselines and context.db_url is not None:
        _update_baselines(context, run, result)
    result.fail_session = comparison.failed and not settings.warn_only
    if comparison.failed and settings.warn_only:
        result.messages.append(
            ("--perf-warn-only: regressions reported, session not failed", {"yellow": True})
        )
    return result


def _store(
    context: SessionContext,
    run: RunInfo,
    measurements: Sequence[Measurement],
    result: SessionResult,
) -> None:
    from .api import History
    from .history.errors import HistoryError

    try:
        with History(context.db_url) as history:
            result.run_id = history.save_session(run, measurements)
    except HistoryError as exc:
        saved = _save_unstored(context.rootdir, run, measurements)
        result.messages.append(
            (
                f"perfguard: run not stored: {exc}; measurements kept in {saved}",
                {"red": True, "bold": True},
            )
        )
        return
    result.messages.append(
        (
            f"perfguard: stored run {result.run_id} "
            f"({len(measurements)} results, platform {run.platform.key})",
            {},
        )
    )


def _save_unstored(rootdir: Path, run: RunInfo, measurements: Sequence[Measurement]) -> Path:
    """Never lose a session's numbers because the database was unreachable."""
    directory = rootdir / ".perfguard" / "unstored"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.strftime("%Y%m%dT%H%M%S")
    path = directory / f"run-{stamp}-{os.getpid()}.json"
    payload = {
        "platform": run.platform.key,
        "git_commit": run.git_commit,
        "started_at": run.started_at.isoformat(),
        "results": [m.to_dict() for m in measurements],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


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

    data = build_report(run, comparison, measurements, warn_only=settings.warn_only)
    if settings.report or summary_path:
        from .report.markdown import render_markdown

        markdown = render_markdown(data)
        if settings.report:
            _write_text(settings.report, markdown, result, "Markdown report")
        if summary_path:
            with open(summary_path, "a", encoding="utf-8") as summary:
                summary.write(markdown + "\n")
    if settings.json_report:
        from .report.json_report import render_json

        _write_text(settings.json_report, render_json(data), result, "JSON report")


def _write_text(path: Path, text: str, result: SessionResult, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result.messages.append((f"perfguard: {what} written to {path}", {}))


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
                who=run.triggered_by,
                gate=settings.gate,
            )
    except (HistoryError, BaselinesError, OSError) as exc:
        result.messages.append((f"perfguard: baselines not updated: {exc}", {"red": True}))
        return
    result.update = update
    result.messages.append(
        (f"perfguard: baselines update for platform {context.platform.key}", {"bold": True})
    )
    result.messages.extend((line, {}) for line in format_update_table(update).splitlines())
