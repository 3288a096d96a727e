"""Commands that bring in the baselines file: `baselines show|update|check`, `report`,
`dashboard`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..formatting import NONE, format_percent, format_value
from .console import CLIError, output, when
from .context import Context, resolve_run

if TYPE_CHECKING:
    from ..api import History, RunDetail
    from ..baselines import BaselineFile
    from ..report import ReportData


def baselines_show(args: argparse.Namespace, ctx: Context) -> int:
    from ..baselines import load_baselines

    path = ctx.baselines_path(args.baselines)
    file = load_baselines(path)
    platforms = {
        key: section
        for key, section in sorted(file.platforms.items())
        if args.platform is None or key == args.platform
    }
    if args.json:
        data = file.to_data()
        data["platforms"] = {k: v for k, v in data["platforms"].items() if k in platforms}
        ctx.console.json(data)
        return 0
    if not path.exists():
        ctx.console.out(f"{path}: no baselines file yet (perfguard baselines update writes one)")
        return 0
    rows = []
    for key, section in platforms.items():
        entries = [(t, metric, e) for t, ms in section.tests.items() for metric, e in ms.items()]
        entries += [("*", metric, e) for metric, e in section.metrics.items()]
        for test, metric, entry in sorted(entries, key=lambda t: (t[0], t[1])):
            rows.append(
                [
                    key, test, metric, format_value(entry.value, entry.unit),
                    entry.direction or NONE,
                    format_percent(entry.threshold) if entry.threshold is not None else NONE,
                    str(entry.runs) if entry.runs is not None else NONE,
                    section.metadata.last_updated or NONE,
                ]
            )  # fmt: skip
    ctx.console.out(f"{path}")
    ctx.console.table(
        ["platform", "test", "metric", "value", "direction", "threshold", "runs", "updated"],
        rows,
        empty=f"no baselines for platform {args.platform!r}"
        if args.platform
        else "no baselines in the file",
    )
    return 0


def baselines_update(args: argparse.Namespace, ctx: Context) -> int:
    from ..config import running_in_ci
    from ..runinfo import git_state
    from ..updating import format_update_table, update_baselines

    if args.auto_approve_improvements and args.accept_regressions:
        raise CLIError(
            "--auto-approve-improvements never accepts regressions: use --yes with "
            "--accept-regressions to write them without asking"
        )
    path = ctx.baselines_path(args.baselines)
    platform = ctx.platform(args.platform)
    settings = ctx.settings
    options: dict[str, Any] = {
        "min_runs": args.min_runs or settings.min_runs,
        "margin": settings.update_margin if args.margin is None else args.margin,
        "accept_regressions": args.accept_regressions,
        "git_commit": git_state(ctx.cwd).commit,
        "who": "ci" if running_in_ci(ctx.env) else "user",
        "gate": args.gate or settings.gate,
        "notes": args.notes,
    }
    with ctx.history(args.db) as history:
        options["hardware"] = _recorded_hardware(history, platform)
        preview = update_baselines(history, path, platform, dry_run=True, **options)
        changes = len(preview.applied)
        if args.dry_run or not changes:
            if not changes and not args.dry_run:
                tail = "dry run: nothing written"
                preview.message = preview.message.replace(tail, f"{path} unchanged")
            ctx.console.out(format_update_table(preview))
            return 0
        preview.message = f"{changes} change(s) to write to {path}"
        ctx.console.out(format_update_table(preview))
        if not (args.yes or args.auto_approve_improvements):
            if not ctx.console.is_interactive():
                raise CLIError(
                    "baselines update: not asking outside a terminal; pass --yes (write "
                    "these changes), --auto-approve-improvements (CI: new metrics and "
                    "improvements only) or --dry-run"
                )
            answer = ctx.console.ask(f"Write these {changes} change(s)? Type 'yes' to write: ")
            if answer.lower() != "yes":
                ctx.console.out(f"not written: {path} unchanged")
                return 0
        # Applied from history again, under the file lock: what was shown unless a run
        # was recorded in between.
        result = update_baselines(history, path, platform, dry_run=False, **options)
    ctx.console.out(result.message)
    return 0


def _recorded_hardware(history: History, platform: str) -> dict[str, Any]:
    """The hardware of the machine that recorded `platform`'s runs: this one when its key is
    this machine's, else the fingerprint the history keeps for the platform."""
    from ..platform import detect_platform, hardware

    here = detect_platform()
    if here.key == platform:
        return hardware(here.fingerprint)
    if not history.exists():
        return {}
    for record in history.platforms():
        if record.key == platform:
            return hardware(record.fingerprint)
    return {}


def baselines_check(args: argparse.Namespace, ctx: Context) -> int:
    from ..baselines import load_baselines
    from ..report import report_dict, terminal_lines

    path = ctx.baselines_path(args.baselines)
    baselines = load_baselines(path)  # a corrupt file fails here, naming the entry
    with ctx.history(args.db) as history:
        run = history.get_run(resolve_run(history, args.run, args.platform))
    data = _report_data(run, baselines, args, ctx)
    failed = data.comparison.failed and not args.warn_only
    if args.json:
        ctx.console.json(report_dict(data))
        return 1 if failed else 0
    n = sum(len(s.tests) + len(s.metrics) for s in baselines.platforms.values())
    state = f"valid, {n} test entr{'y' if n == 1 else 'ies'}" if path.exists() else "not found"
    ctx.console.out(f"baselines {path}: {state}")
    ctx.console.out(f"run {run.id} ({when(run.started_at)} UTC, platform {run.platform}):")
    for text, _markup in terminal_lines(data.comparison, verbose=args.verbose):
        ctx.console.out(text)
    for note in data.comparison.notes:
        ctx.console.out(f"note: {note}")
    if data.comparison.failed and args.warn_only:
        ctx.console.out("--warn-only: regressions reported, exit status 0")
    return 1 if failed else 0


def report(args: argparse.Namespace, ctx: Context) -> int:
    from ..baselines import load_baselines
    from ..report import render_json, render_markdown
    from ..report.html_report import render_html

    baselines = load_baselines(ctx.baselines_path(args.baselines))
    with ctx.history(args.db) as history:
        run = history.get_run(resolve_run(history, args.run, args.platform))
    data = _report_data(run, baselines, args, ctx)
    render = {"markdown": render_markdown, "json": render_json, "html": render_html}
    text = render[args.format](data)
    with output(args.output, ctx.cwd, ctx.console) as out:
        out.write(text)
    if args.output not in (None, "-"):
        ctx.console.err(f"wrote the {args.format} report of run {run.id} to {args.output}")
    return 0


def _report_data(
    run: RunDetail, baselines: BaselineFile, args: argparse.Namespace, ctx: Context
) -> ReportData:
    """A stored run compared with the baselines of its platform, as the plugin would
    (same threshold, gate and rule settings unless the options say otherwise)."""
    from ..compare import judge_run
    from ..platform_migration import adopt_legacy_baselines, hardware_note
    from ..report import build_report
    from ..results import PlatformInfo, RunInfo

    info = RunInfo(
        started_at=run.started_at,
        platform=PlatformInfo(run.platform),
        finished_at=run.finished_at,
        git_commit=run.git_commit,
        git_branch=run.git_branch,
        git_dirty=run.git_dirty,
        python_version=run.python_version,
        run_type=cast(Any, run.run_type),
        triggered_by=run.triggered_by,
        host=run.host,
        args=run.args,
        outcome=cast(Any, run.outcome),
        notes=run.notes,
        system_info=run.system_info,
    )
    given = {"gate": args.gate, "threshold": args.threshold, "rule": args.rule}
    settings = replace(ctx.settings, **{k: v for k, v in given.items() if v is not None})
    selected = {m.test for m in run.measurements}
    baselines, adopted = adopt_legacy_baselines(baselines, run.platform)
    comparison = judge_run(
        run.measurements, baselines, run.platform, settings, selected_tests=selected
    )
    measured_on = run.system_info.get("hardware")  # the plugin stores it with each run
    other = hardware_note(baselines, run.platform, measured_on) if measured_on else None
    comparison.notes.extend(note for note in (adopted, other) if note)
    return build_report(info, comparison, run.measurements, warn_only=args.warn_only)


def dashboard(args: argparse.Namespace, ctx: Context) -> int:
    from ..baselines import load_baselines
    from ..report.dashboard import render_dashboard
    from .dashboard_data import read_dashboard

    path = ctx.baselines_path(args.baselines)
    baselines = load_baselines(path) if path.exists() else None
    with ctx.history(args.db) as history:
        data = read_dashboard(history, days=args.days, platforms=args.platforms or None)
    page = render_dashboard(data, baselines=baselines, settings=ctx.settings)
    with output(args.output, ctx.cwd, ctx.console) as out:
        out.write(page)
    if args.output != "-":
        target = ctx.cwd / Path(args.output)
        ctx.console.out(f"wrote {args.output} ({target.stat().st_size / 1024:.0f} KiB)")
    return 0
