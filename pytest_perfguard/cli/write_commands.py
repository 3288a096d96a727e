"""Commands that write the history: `record`, `import`, `db upgrade`, `db vacuum`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..formatting import format_value
from .console import CLIError
from .context import Context


def record(args: argparse.Namespace, ctx: Context) -> int:
    from ..importers.seed import seed_direction
    from ..runinfo import git_state

    metrics: dict[str, tuple[float, str]] = {}
    for key, value in [*args.metric, *args.free_metrics]:
        if key in metrics:
            raise CLIError(f"record: metric {key!r} given twice")
        metrics[key] = value
    if not metrics:
        raise CLIError(
            "record: no metrics given: add --NAME VALUE[UNIT] (e.g. --accuracy 0.95) or "
            "--metric NAME=VALUE[UNIT]"
        )
    unknown = [key for key, _ in args.direction if key not in metrics]
    if unknown:
        raise CLIError(f"--direction {unknown[0]}: no --metric {unknown[0]}=VALUE given")
    # Free-form flags follow the seed's names (latency, memory: lower; accuracy, fps:
    # higher); --metric keeps its default, lower.
    directions = {key: seed_direction(key) for key, _ in args.free_metrics}
    directions.update(dict(args.direction))
    git = git_state(ctx.cwd)
    with ctx.history(args.db, create=True) as history:
        run_id = history.record_run(
            metrics,
            platform=args.platform or ctx.settings.platform,
            test=args.name,
            run_type=args.run_type or ctx.settings.run_type,
            notes=args.notes,
            success=not args.failed,
            directions=directions,
            git_commit=git.commit,
            git_branch=git.branch,
            who=args.who,
            test_type=args.type,
            labels=dict(args.label),
        )
        run = history.get_run(run_id) if args.json else None
    if run is not None:
        ctx.console.json(run)
    else:
        names = ", ".join(f"{k}={format_value(v, u)}" for k, (v, u) in metrics.items())
        tags = [f"[{args.type}]" if args.type else "", f"by {args.who}" if args.who else ""]
        tags.append("(failed)" if args.failed else "")
        said = "".join(f" {tag}" for tag in tags if tag)
        ctx.console.out(f"recorded run {run_id}: {args.name}{said}: {names}")
    return 0


def import_(args: argparse.Namespace, ctx: Context) -> int:
    from ..importers import import_paths
    from .experiment_commands import import_experiment_exports

    files = [ctx.cwd / Path(p).expanduser() for p in args.files]
    files = import_experiment_exports(files, args, ctx)
    if not files:
        return 0
    with ctx.history(args.db, create=not args.dry_run) as history:
        report = import_paths(
            # A dry run never creates the database; without one, nothing is imported yet.
            history if history.exists() or not args.dry_run else None,
            files,
            platform=args.platform,
            dry_run=args.dry_run,
        )
    if args.json:
        ctx.console.json(report)
        return 0
    out = ctx.console.out
    here = f"{ctx.cwd}{os.sep}"
    for o in report.outcomes:
        label = o.label.removeprefix(here)
        if o.skipped is not None:
            out(f"skipped   {label}: {o.skipped}")
            continue
        target = "would import" if report.dry_run else f"run {o.run_id}"
        out(
            f"imported  {label}: {target}, {o.n_results} result(s) "
            f"({o.format}, platform {o.platform})"
        )
        for note in o.notes:
            out(f"          left out {note}")
    n_results = sum(o.n_results for o in report.imported)
    verb = "would be imported (dry run)" if report.dry_run else "imported"
    out(
        f"{len(report.imported)} run(s) {verb} with {n_results} result(s); "
        f"{len(report.skipped)} skipped"
    )
    return 0


def platform_migrate(args: argparse.Namespace, ctx: Context) -> int:
    import contextlib

    from ..baselines import baselines_lock, load_baselines, write_baselines
    from ..platform_migration import legacy_targets, migrate_baselines

    out = ctx.console.out
    verb = "would rename" if args.dry_run else "renamed"
    path = ctx.baselines_path(args.baselines)
    with contextlib.nullcontext() if args.dry_run else baselines_lock(path):
        migrated, moves = migrate_baselines(load_baselines(path))
        if moves and not args.dry_run:
            write_baselines(path, migrated)
    for old, new in sorted(moves.items()):
        out(f"{path.name}: {verb} {old} -> {new}")
    renamed = 0
    with ctx.history(args.db) as history:
        if history.exists():
            for old, new in sorted(legacy_targets([p.key for p in history.platforms()]).items()):
                runs = "" if args.dry_run else f" ({history.rename_platform(old, new)} runs)"
                out(f"history: {verb} {old} -> {new}{runs}")
                renamed += 1
    if not moves and not renamed:
        out("no platform keys of the 0.x detailed form: nothing to migrate")
    return 0


def db_upgrade(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        before, after = history.upgrade()
    if before == after:
        ctx.console.out(f"{history.url}: schema already at {after}")
    else:
        ctx.console.out(f"{history.url}: schema upgraded from {before or 'empty'} to {after}")
    return 0


def db_vacuum(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        before = history.stats().db_size_bytes
        history.vacuum()
        after = history.stats().db_size_bytes
    if before is None or after is None:
        ctx.console.out(f"{history.url}: vacuumed")
    else:
        ctx.console.out(
            f"{history.url}: vacuumed, {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB"
        )
    return 0
