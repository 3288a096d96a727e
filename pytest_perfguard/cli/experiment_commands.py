"""`perfguard experiments list|show|compare|export|import`: experiments and their trials.

Each command is a few lines over `History`'s experiment methods; `add_parsers` declares them
under `perfguard experiments` (called by `parser.build_parser`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..experiments import best_trial
from ..formatting import NONE, format_percent
from ..results import DIRECTIONS
from .console import CLIError, clip, output, when
from .context import Context

if TYPE_CHECKING:
    from ..experiments import Trial

ExperimentRef = int | str


def experiment_ref(text: str) -> ExperimentRef:
    """An experiment id (digits) or name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an experiment id or name must not be empty")
    return int(text) if text.isdigit() else text


def add_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`perfguard experiments ...` under the top-level subparsers `sub`; `command` is the
    parser module's helper that adds one command with its `--db` option."""
    group = sub.add_parser(
        "experiments",
        help="experiments and their trials: list, show, compare, export, import",
        description="Experiments (parameter sweeps, optimisations) and their trials.",
    )
    group.set_defaults(group=group)
    esub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = command(esub, "list", list_, "experiments with their trials and validation failures")
    p.add_argument("--name", metavar="PATTERN", help="name glob, e.g. '*sweep*' (any case)")
    p.add_argument("--template", metavar="NAME", help="only this template")
    p.add_argument("--mode", metavar="NAME", help="only this mode")
    p.add_argument(
        "--filter",
        action="append",
        metavar="COND",
        help="a condition such as 'failure_rate<=0.2' or 'trials>=10' (repeat: all hold)",
    )
    _json(p)

    p = command(esub, "show", show, "one experiment: config, summary and every trial")
    p.add_argument("experiment", metavar="EXPERIMENT", type=experiment_ref, help="id or name")
    p.add_argument("--metric", metavar="NAME", help="mark the best trial by this metric")
    _direction(p)
    _json(p)

    p = command(esub, "compare", compare, "one metric over several experiments, side by side")
    p.add_argument(
        "experiments", metavar="EXPERIMENT", nargs="+", type=experiment_ref, help="ids or names"
    )
    p.add_argument("--metric", metavar="NAME", required=True, help="the metric to compare")
    _direction(p)
    _json(p)

    p = command(esub, "export", export, "experiments with every trial as one JSON document")
    p.add_argument(
        "experiments", metavar="EXPERIMENT", nargs="*", type=experiment_ref, help="default: all"
    )
    p.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")

    p = command(esub, "import", import_, "add the experiments of an export (idempotent)")
    p.add_argument("files", metavar="FILE", nargs="+", help="files written by export")
    _json(p)


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def _direction(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--direction",
        choices=list(DIRECTIONS),
        default="higher",
        help="which way is better for the metric (default higher)",
    )


def list_(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        records = history.experiments(
            args.filter, name=args.name, template=args.template, mode=args.mode
        )
    if args.json:
        ctx.console.json([r.to_dict() for r in records])
        return 0
    rows = [
        [
            str(r.id),
            clip(r.name, 40),
            clip(r.template, 20),
            clip(r.mode, 20),
            str(r.n_trials),
            f"{r.n_failed}/{r.n_validated}" if r.n_validated else NONE,
            format_percent(r.failure_rate),
            when(r.created_at),
        ]
        for r in records
    ]
    headers = ["id", "name", "template", "mode", "trials", "failed", "fail rate", "created (UTC)"]
    ctx.console.table(headers, rows, "no experiments match")
    return 0


def show(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        exp = history.get_experiment(args.experiment)
        trials = exp.trials()
    metric = args.metric or _first_metric(trials)
    best = None if metric is None else best_trial(trials, metric, args.direction)
    if args.json:
        ctx.console.json(
            {
                **exp.record.to_dict(),
                "best": None if best is None else {"metric": metric, **best.to_dict()},
                "trials": [t.to_dict() for t in trials],
            }
        )
        return 0
    out = ctx.console.out
    r = exp.record
    out(f"experiment {r.id}: {r.name}")
    out(f"  template {r.template or NONE}, mode {r.mode or NONE}, created {when(r.created_at)} UTC")
    out(f"  config   {json.dumps(r.config, sort_keys=True)}")
    if r.summary is not None:
        out(f"  summary  {json.dumps(r.summary, sort_keys=True)}")
    rate = format_percent(r.failure_rate)
    out(f"  trials   {r.n_trials} ({r.n_failed} of {r.n_validated} validated failed, {rate})")
    if best is not None:
        out(f"  best     trial {best.trial_number} by {metric} ({args.direction} is better)")
    out("")
    rows = []
    for t in trials:
        mark = "*" if best is not None and t.id == best.id else ""
        validation = NONE
        if t.validation is not None:
            validation = "passed" if t.validation.passed else "failed"
            if t.validation.violations:
                validation += f" ({t.validation.violations} violations)"
        rows.append([
            f"{t.trial_number}{mark}",
            clip(_pairs(t.params), 50),
            clip(_pairs(t.metrics), 50),
            validation,
        ])  # fmt: skip
    ctx.console.table(["trial", "params", "metrics", "validation"], rows, "no trials yet")
    return 0


def compare(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history:
        rows = history.compare_experiments(args.experiments, args.metric, args.direction)
    if args.json:
        ctx.console.json([row.to_dict() for row in rows])
        return 0
    table = [
        [
            str(row.experiment_id),
            clip(row.name, 40),
            f"{row.n_values}/{row.n_trials}",
            _number(row.best),
            NONE if row.best_trial is None else str(row.best_trial),
            _number(row.median),
            _number(row.first),
            _number(row.last),
            NONE if row.improvement is None else f"{row.improvement:+.1%}",
            format_percent(row.failure_rate),
        ]
        for row in rows
    ]
    headers = ["id", "name", "trials", f"best {args.metric}", "best trial", "median", "first",
               "last", "improvement", "fail rate"]  # fmt: skip
    ctx.console.out(f"{args.metric} ({args.direction} is better)")
    ctx.console.table(headers, table, "no experiments")
    return 0


def export(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.history(args.db) as history, output(args.output, ctx.cwd, ctx.console) as out:
        n = history.export_experiments(out, args.experiments or None)
    if args.output not in (None, "-"):
        ctx.console.err(f"exported {n} experiment(s) to {args.output}")
    return 0


def import_(args: argparse.Namespace, ctx: Context) -> int:
    paths = [ctx.cwd / Path(p).expanduser() for p in args.files]
    for path in paths:
        if not path.is_file():
            raise CLIError(f"{path}: no such file")
    results = []
    with ctx.history(args.db, create=True) as history:
        for path in paths:
            results.append((path, history.import_experiments(path)))
    if args.json:
        ctx.console.json([{"file": str(p), **r.to_dict()} for p, r in results])
        return 0
    for path, r in results:
        ctx.console.out(
            f"{path.name}: {r.created} experiment(s) created, {r.matched} already there; "
            f"{r.trials_added} trial(s) added, {r.trials_skipped} already stored"
        )
    return 0


def import_experiment_exports(
    paths: Sequence[Path], args: argparse.Namespace, ctx: Context
) -> list[Path]:
    """`perfguard import`: import the experiments exports among `paths` (files whose JSON
    is one) and return the other paths, for the run importers."""
    from ..experiment_history import is_experiments_export

    exports, rest = [], []
    for path in paths:
        if _is_export(path, is_experiments_export):
            exports.append(path)
        else:
            rest.append(path)
    if not exports:
        return rest
    if args.json and rest:
        raise CLIError("with --json, import experiments exports and runs in separate calls")
    results = []
    with ctx.history(args.db, create=not args.dry_run) as history:
        for path in exports:
            if args.dry_run:
                data = json.loads(path.read_text(encoding="utf-8"))
                n_trials = sum(len(e.get("trials") or []) for e in data["experiments"])
                ctx.console.out(
                    f"would import {path.name}: {len(data['experiments'])} experiment(s), "
                    f"{n_trials} trial(s) (experiments export)"
                )
                continue
            results.append((path, history.import_experiments(path)))
    if args.json:
        ctx.console.json([{"file": str(p), **r.to_dict()} for p, r in results])
    for path, r in [] if args.json else results:
        ctx.console.out(
            f"{path.name}: {r.created} experiment(s) created, {r.matched} already there; "
            f"{r.trials_added} trial(s) added, {r.trials_skipped} already stored"
        )
    return rest


def _is_export(path: Path, check: Callable[[Any], bool]) -> bool:
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    try:
        return check(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False  # the run importers say what is wrong with it


def _first_metric(trials: Sequence[Trial]) -> str | None:
    for trial in trials:
        for name in trial.metrics:
            return name
    return None


def _number(value: float | None) -> str:
    return NONE if value is None else f"{value:.6g}"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_number(v) if isinstance(v, float) else v}" for k, v in values.items())
