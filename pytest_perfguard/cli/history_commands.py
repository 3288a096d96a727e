"""Commands that read the history database: each a few lines over `History`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ..compare import relative_change, relative_difference
from ..formatting import NONE, format_value
from .console import CLIError, clip, output, short_commit, signed_change, when
from .context import Context, resolve_run

if TYPE_CHECKING:
    from ..api import History, MetricSummary, RunDetail


def summary(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        rows = history.summary(
            platform=args.platform,
            days=args.days,
            test=args.test,
            metric=args.metric,
            outcome=args.outcome,
            run_type=args.run_type,
            last_runs=args.limit,
            test_type=args.type,
            who=args.who,
            labels=dict(args.label),
        )
        recent = _recent_details(history, args) if args.markdown else []
    if args.markdown:
        _write_results_markdown(args, ctx, recent, rows)
    if args.json:
        ctx.console.json(
            [
                {
                    "test": s.test,
                    "metric": s.metric,
                    "unit": s.unit,
                    "direction": s.direction,
                    "kind": s.kind,
                    "n": len(s.values),
                    "n_failed": s.n_failed,
                    "latest": s.latest,
                    "median": s.median,
                    "min": min(s.values, default=None),
                    "max": max(s.values, default=None),
                    "change": s.change,
                    "values": s.values,
                    "run_ids": s.run_ids,
                }
                for s in rows
            ]
        )
        return 0
    table = [
        [
            s.test or "(no test)",
            s.metric,
            str(len(s.values)),
            format_value(s.latest, s.unit),
            format_value(s.median, s.unit),
            format_value(min(s.values, default=None), s.unit),
            format_value(max(s.values, default=None), s.unit),
            signed_change(s.change, s.worse_change),
            str(s.n_failed) if s.n_failed else "",
        ]
        for s in rows
    ]
    ctx.console.table(
        ["test", "metric", "n", "latest", "median", "min", "max", "latest vs before", "failed"],
        table,
        empty="no recorded values match",
    )
    if rows:
        ctx.console.out(f"(passing values of the newest {args.limit} matching runs)")
    return 0


# Runs listed by `summary --markdown`, newest first.
MARKDOWN_RUNS = 20


def _recent_details(history: History, args: argparse.Namespace) -> list[RunDetail]:
    found = history.recent_runs(
        platform=args.platform,
        limit=MARKDOWN_RUNS,
        days=args.days,
        test=args.test,
        outcome=args.outcome,
        run_type=args.run_type,
        test_type=args.type,
        who=args.who,
    )
    return [history.get_run(r.id) for r in found]


def _write_results_markdown(
    args: argparse.Namespace, ctx: Context, recent: list[RunDetail], rows: list[MetricSummary]
) -> None:
    from ..report.results_markdown import render_results_markdown

    text = render_results_markdown(recent, rows, last_runs=args.limit)
    with output(args.markdown, ctx.cwd, ctx.console) as out:
        out.write(text)
    if args.markdown not in (None, "-"):
        ctx.console.err(f"perfguard: {args.markdown} rewritten ({len(recent)} recent runs)")


def runs(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        found = history.recent_runs(
            platform=args.platform,
            limit=args.limit,
            days=args.days,
            test=args.test,
            outcome=args.outcome,
            run_type=args.run_type,
            test_type=args.type,
            who=args.who,
            labels=dict(args.label),
        )
    if args.json:
        ctx.console.json(found)
        return 0
    ctx.console.table(
        ["id", "started (UTC)", "platform", "commit", "branch", "type", "test type", "by",
         "outcome", "results", "failed", "notes"],
        [
            [
                str(r.id), when(r.started_at), r.platform, short_commit(r.git_commit),
                r.git_branch or NONE, r.run_type, r.test_type or "", r.triggered_by, r.outcome,
                str(r.n_results), str(r.n_failed) if r.n_failed else "", clip(r.notes),
            ]
            for r in found
        ],
        empty="no runs match",
    )  # fmt: skip
    return 0


def show(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        run = history.get_run(resolve_run(history, args.run, args.platform))
    if args.json:
        ctx.console.json(run)
        return 0
    out = ctx.console.out
    commit = short_commit(run.git_commit)
    if run.git_dirty:
        commit += " (uncommitted changes)"
    out(f"run {run.id}  {when(run.started_at)} UTC  platform {run.platform}")
    out(f"commit   {commit}  branch {run.git_branch or NONE}")
    out(
        f"python   {run.python_version or NONE}  host {run.host or NONE}  "
        f"type {run.run_type}  by {run.triggered_by}  outcome {run.outcome}"
        + (f"  test type {run.test_type}" if run.test_type else "")
    )
    if run.args:
        out(f"args     {' '.join(run.args)}")
    if run.notes:
        out(f"notes    {run.notes}")
    if run.source_key:
        out(f"imported {run.source_key}")
    if run.labels:
        out("labels   " + ", ".join(f"{k}={v}" for k, v in run.labels.items()))
    for key, value in sorted(run.system_info.items()):
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out(f"  {key}: {clip(text, 100)}")
    out()
    ctx.console.table(
        ["test", "metric", "value", "kind", "outcome", "samples", "error"],
        [
            [
                m.test or "(no test)",
                m.metric,
                format_value(m.value, m.unit),
                m.kind + (" (marked)" if m.marked and m.kind != "custom" else ""),
                m.outcome,
                str(len(m.samples)) if m.samples else "",
                clip(m.error),
            ]
            for m in run.measurements
        ],
        empty="(no measurements)",
    )
    return 0


def trend(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        test = _one_test(history, args.test, args.platform)
        points = history.trend(
            test,
            args.metric,
            platform=args.platform,
            days=args.days,
            limit=args.limit,
            labels=dict(args.label),
        )
    if args.json:
        ctx.console.json(points)
        return 0
    previous: dict[str, float] = {}
    rows = []
    # One metric after the other, each oldest first (sorted() keeps the time order).
    for p in sorted(points, key=lambda p: p.metric):
        before = previous.get(p.metric)
        change = None if before is None else relative_difference(p.value, before)
        worse = None if before is None else relative_change(p.value, before, p.direction)
        rows.append(
            [
                str(p.run_id), when(p.started_at), p.platform, short_commit(p.git_commit),
                p.metric, format_value(p.value, p.unit), signed_change(change, worse), p.outcome,
            ]
        )  # fmt: skip
        previous[p.metric] = p.value
    ctx.console.out(f"{test}")
    ctx.console.table(
        ["run", "started (UTC)", "platform", "commit", "metric", "value", "vs previous",
         "outcome"],
        rows,
        empty="no values in this window" + (f" for metric {args.metric!r}" if args.metric else ""),
    )  # fmt: skip
    return 0


def _one_test(history: History, name: str, platform: str | None) -> str:
    """`name` itself when stored; a glob or a part of a test id when it matches exactly one."""
    pattern = name if any(c in name for c in "*?") else None
    if pattern is None:
        if name in history.tests(name, platform=platform):
            return name
        pattern = f"*{name}*"
    matches = history.tests(pattern, platform=platform)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CLIError(f"no test matching {name!r} in the history (perfguard summary lists them)")
    shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
    raise CLIError(f"{name!r} matches {len(matches)} tests: {shown}; give one test id")


def compare(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        run_a = resolve_run(history, args.run_a, args.platform)
        run_b = resolve_run(history, args.run_b, args.platform)
        diffs = history.compare(run_a, run_b)
    if args.json:
        ctx.console.json(
            {
                "run_a": run_a,
                "run_b": run_b,
                "diffs": [
                    {
                        "test": d.test, "metric": d.metric, "unit": d.unit,
                        "direction": d.direction, "a": d.a, "b": d.b, "change": d.change,
                        "worse_change": d.worse_change,
                    }
                    for d in diffs
                ],
            }
        )  # fmt: skip
        return 0
    ctx.console.out(f"A = run {run_a}, B = run {run_b}")
    ctx.console.table(
        ["test", "metric", "A", "B", "B vs A"],
        [
            [
                d.test or "(no test)",
                d.metric,
                format_value(d.a, d.unit),
                format_value(d.b, d.unit),
                "only in A"
                if d.b is None
                else "only in B"
                if d.a is None
                else signed_change(d.change, d.worse_change),
            ]
            for d in diffs
        ],
        empty="neither run has stored values",
    )
    return 0


def export(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history, output(args.output, ctx.cwd, ctx.console) as out:
        n = history.export(
            args.format,
            out,
            platform=args.platform,
            days=args.days,
            test=args.test,
            metric=args.metric,
            labels=dict(args.label),
        )
    if args.output not in (None, "-"):
        ctx.console.err(f"exported {n} rows to {args.output}")
    return 0


def stats(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        info = history.stats()
        platforms = history.platforms()
    if args.json:
        ctx.console.json({**_asdict(info), "platforms": platforms})
        return 0
    size = NONE if info.db_size_bytes is None else f"{info.db_size_bytes / 2**20:.1f} MiB"
    for label, value in (
        ("database", info.url),
        ("schema", info.schema_revision or NONE),
        ("runs", str(info.n_runs)),
        ("results", str(info.n_results)),
        ("tests", str(info.n_tests)),
        ("platforms", str(info.n_platforms)),
        ("first run", f"{when(info.first_run)} UTC" if info.first_run else NONE),
        ("last run", f"{when(info.last_run)} UTC" if info.last_run else NONE),
        ("size", size),
    ):
        ctx.console.out(f"{label:<10} {value}")
    if platforms:
        ctx.console.out()
        ctx.console.table(
            ["platform", "runs", "last run (UTC)"],
            [[p.key, str(p.n_runs), when(p.last_run)] for p in platforms],
            empty="",
        )
    return 0


def _asdict(value: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(value)


def platform(args: argparse.Namespace, ctx: Context) -> int:
    from ..platform import detect_platform

    detailed = args.detailed or ctx.settings.platform_detailed
    info = detect_platform(args.platform or ctx.settings.platform, detailed=detailed)
    if args.key:
        ctx.console.out(info.key)
    elif args.json:
        ctx.console.json({"key": info.key, "fingerprint": info.fingerprint})
    else:
        ctx.console.out(info.key)
        ctx.console.json(info.fingerprint)
    return 0
