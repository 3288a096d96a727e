"""The `perfguard` argument parser; values are validated by their `type=` functions."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..config import parse_gate, parse_rule, parse_threshold
from ..results import DIRECTIONS, RUN_TYPES
from . import baseline_commands as bc
from . import experiment_commands as ec
from . import history_commands as hc
from . import write_commands as wc
from .console import CLIError

_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*")
_RUN_REF = re.compile(r"\d+|latest(~\d+)?")


class Parser(argparse.ArgumentParser):
    """Usage errors as a one-line CLIError (exit 2), not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        """As argparse's, except that a command taking free-form metric flags (`record`,
        as the seed tracker's `--accuracy 0.95 --latency 230ms`) gets the unknown
        `--NAME VALUE[UNIT]` pairs as its metrics."""
        parsed, extra = self.parse_known_args(args)
        if extra:
            if not hasattr(parsed, "free_metrics"):
                self.error(f"unrecognized arguments: {' '.join(extra)}")
            parsed.free_metrics = free_metrics(extra)
        return parsed


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number above 0")
    return value


def fraction(text: str) -> float:
    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def gate(text: str) -> str:
    try:
        return parse_gate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rule(text: str) -> str:
    try:
        return parse_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_ref(text: str) -> str:
    """A run id, `latest` or `latest~N`."""
    if not _RUN_REF.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run id (a number from 'perfguard runs', 'latest' or 'latest~N')"
        )
    return text


def metric_value(text: str) -> tuple[str, tuple[float, str]]:
    """`KEY=VALUE[UNIT]`, e.g. `latency=8.1s`, `tokens_per_s=41.5tok/s` -> (key, (value, unit))."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE[UNIT] (e.g. latency=8.1s)")
    match = _NUMBER.fullmatch(rest)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {rest.strip()!r} is not a number, optionally followed by a unit "
            "(e.g. latency=8.1s)"
        )
    value = float(match.group(1))
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a finite number")
    return key, (value, match.group(2))


_FLAG = re.compile(r"--([A-Za-z][A-Za-z0-9_.-]*)(?:=(.*))?", re.S)


def free_metrics(tokens: Sequence[str]) -> list[tuple[str, tuple[float, str]]]:
    """`--accuracy 0.95 --latency=230ms` -> [("accuracy", (0.95, "")), ("latency", (230.0,
    "ms"))]; dashes in a name become underscores. Anything else is a one-line CLIError."""
    found = []
    queue = list(tokens)
    while queue:
        token = queue.pop(0)
        flag = _FLAG.fullmatch(token)
        if flag is None:
            raise CLIError(
                f"record: unexpected {token!r}: give metrics as --NAME VALUE[UNIT] "
                "(e.g. --accuracy 0.95 --latency 230ms) or --metric NAME=VALUE[UNIT]"
            )
        name, value = flag[1].replace("-", "_"), flag[2]
        if value is None:
            if not queue or _FLAG.fullmatch(queue[0]):
                raise CLIError(f"record: --{flag[1]} needs a value, e.g. --{flag[1]} 0.95")
            value = queue.pop(0)
        try:
            found.append(metric_value(f"{name}={value}"))
        except argparse.ArgumentTypeError:
            raise CLIError(
                f"record: --{flag[1]}: {value!r} is not a number, optionally followed by a "
                f"unit (e.g. --{flag[1]} 0.95 or --{flag[1]} 230ms)"
            ) from None
    return found


def who(text: str) -> str:
    """Who ran it: user, ci, automated, or a name (at most 20 characters)."""
    if not 0 < len(text.strip()) <= 20:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give user, ci, automated or a name of 1 to 20 characters"
        )
    return text.strip()


def test_type(text: str) -> str:
    if not 0 < len(text.strip()) <= 50:
        raise argparse.ArgumentTypeError(f"{text!r}: give a test type of 1 to 50 characters")
    return text.strip()


def label(text: str) -> tuple[str, str]:
    """`KEY=VALUE`, one label."""
    from ..config import parse_labels

    try:
        [(key, value)] = parse_labels(text).items()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return key, value


def direction(text: str) -> tuple[str, str]:
    """`KEY=lower|higher`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or value.strip() not in DIRECTIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=lower or KEY=higher")
    return key.strip(), value.strip()


def _db(p: argparse.ArgumentParser, suppress: bool = True) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS if suppress else None,
        help="history database: SQLAlchemy URL or SQLite path (default: the plugin's, "
        "PERFGUARD_DB / PERFORMANCE_DB_PATH / ini perf_db / .perfguard/history.db)",
    )


def _platform(p: argparse.ArgumentParser, help: str = "only runs of this platform") -> None:
    p.add_argument("--platform", metavar="NAME", help=help)


def _days(p: argparse.ArgumentParser, type: Callable[[str], Any] = positive_float) -> None:
    p.add_argument("--days", metavar="N", type=type, help="only runs of the last N days")


def _limit(p: argparse.ArgumentParser, default: int | None, what: str) -> None:
    p.add_argument("--limit", metavar="N", type=positive_int, default=default, help=what)


def _labels(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--label", type=label, action="append", default=[], metavar="KEY=VALUE", help=help
    )


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def _run_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", metavar="PATTERN", help="test id glob, e.g. '*rag*' (any case)")
    p.add_argument("--outcome", choices=["passed", "failed"], help="outcome of the run")
    p.add_argument("--run-type", choices=list(RUN_TYPES), help="type of the run")
    p.add_argument("--who", type=who, metavar="NAME", help="who ran it: user, ci, automated, ...")
    p.add_argument("--type", type=test_type, metavar="TYPE", help="test type (record --type)")


def _baselines(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baselines",
        metavar="PATH",
        help="baselines file (default: the plugin's, baselines/perf_baselines.json)",
    )


def _compare_options(p: argparse.ArgumentParser) -> None:
    _baselines(p)
    p.add_argument("--threshold", metavar="FLOAT", type=fraction, help="default threshold")
    p.add_argument("--gate", type=gate, metavar="{marked,all,none}", help="which tests count")
    p.add_argument("--rule", type=rule, metavar="{threshold,noise}", help="verdict rule")
    p.add_argument("--warn-only", action="store_true", help="never exit 1 on regressions")


def _command(
    sub: Any, name: str, func: Callable[..., int], help: str, description: str | None = None
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or help[:1].upper() + help[1:] + "."
    )
    p.set_defaults(func=func)
    _db(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="perfguard",
        description="The perfguard history and baselines, without running tests.",
        epilog="Run 'perfguard COMMAND --help' for a command's options. Reference: docs/cli.md",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _db(parser, suppress=False)
    parser.set_defaults(func=None, group=parser)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = _command(sub, "summary", hc.summary, "per test and metric: latest, median, change")
    _platform(p)
    _days(p)
    _run_filters(p)
    _labels(p, "only runs with this label (repeat: all of them)")
    p.add_argument("--metric", metavar="NAME", help="only this metric")
    _limit(p, 20, "look at the newest N matching runs (default 20)")
    _json(p)
    p.add_argument(
        "--markdown",
        metavar="FILE",
        help="rewrite FILE (e.g. PERFORMANCE_RESULTS.md) with the recent runs and this "
        "summary, in Markdown",
    )

    p = _command(sub, "runs", hc.runs, "list recorded runs, newest first")
    _platform(p)
    _days(p)
    _run_filters(p)
    _labels(p, "only runs with this label (repeat: all of them)")
    _limit(p, 20, "at most N runs (default 20)")
    _json(p)

    p = _command(sub, "show", hc.show, "one run: metadata, system info and every value")
    p.add_argument("run", metavar="RUN", type=run_ref, help="run id, latest or latest~N")
    _platform(p, "with latest: the newest run of this platform")
    _json(p)

    p = _command(sub, "trend", hc.trend, "values of a test's metrics over time")
    p.add_argument("test", metavar="TEST", help="test id (or a glob / part matching one)")
    p.add_argument("--metric", metavar="NAME", help="only this metric")
    _platform(p)
    _days(p)
    _limit(p, None, "only the newest N values")
    _labels(p, "only runs with this label (repeat: all of them)")
    _json(p)

    p = _command(sub, "compare", hc.compare, "every metric of two runs, with the change")
    p.add_argument("run_a", metavar="RUN_A", type=run_ref, help="run id, latest or latest~N")
    p.add_argument("run_b", metavar="RUN_B", type=run_ref, help="run id, latest or latest~N")
    _platform(p, "with latest: runs of this platform")
    _json(p)

    p = _command(sub, "export", hc.export, "every stored value as CSV or JSON (streamed)")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="default csv")
    p.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")
    _platform(p)
    _days(p)
    p.add_argument("--test", metavar="PATTERN", help="test id glob, e.g. '*rag*'")
    p.add_argument("--metric", metavar="NAME", help="only this metric")
    _labels(p, "only runs with this label (repeat: all of them)")

    p = _command(sub, "report", bc.report, "the report of a stored run against the baselines")
    p.add_argument("--format", choices=["markdown", "html", "json"], default="markdown")
    p.add_argument("--run", type=run_ref, default="latest", help="run id (default: latest)")
    p.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")
    _platform(p, "with latest: the newest run of this platform")
    _compare_options(p)

    p = _command(sub, "dashboard", bc.dashboard, "write the offline HTML dashboard")
    _days(p, positive_int)
    p.set_defaults(days=30)
    p.add_argument("--platforms", nargs="+", metavar="NAME", help="only these platforms")
    p.add_argument("--output", metavar="FILE", default="dashboard.html", help="- for stdout")
    _baselines(p)

    group = sub.add_parser(
        "baselines",
        help="show, update or check the baselines file",
        description="The baselines file.",
    )
    group.set_defaults(group=group)
    bsub = group.add_subparsers(title="commands", metavar="COMMAND")
    p = _command(bsub, "show", bc.baselines_show, "the baselines of every platform")
    _platform(p, "only this platform")
    _baselines(p)
    _json(p)

    p = _command(
        bsub,
        "update",
        bc.baselines_update,
        "update the baselines from recorded history",
        "Propose baselines from the median of recent runs (the --perf-update-baselines "
        "policy); in a terminal, ask before writing.",
    )
    _platform(p, "platform to update (default: this machine's)")
    _baselines(p)
    p.add_argument("--min-runs", type=positive_int, metavar="N", help="runs needed (default 5)")
    p.add_argument("--margin", type=fraction, metavar="FLOAT", help="improvement needed (0.05)")
    p.add_argument("--accept-regressions", action="store_true", help="also move worse ones")
    p.add_argument("--gate", type=gate, metavar="{marked,all,none}", help="which metrics")
    p.add_argument("--notes", default="", help="stored in the file's metadata")
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    p.add_argument("--yes", "-y", action="store_true", help="write without asking")
    p.add_argument(
        "--auto-approve-improvements",
        action="store_true",
        help="write new metrics and improvements without asking (CI)",
    )

    p = _command(
        bsub,
        "check",
        bc.baselines_check,
        "validate the file and compare the latest run with it",
        "Validate the baselines file (exit 2 naming a bad entry), then compare a stored run "
        "(default: the newest) with it: exit 1 on a regression.",
    )
    p.add_argument("--run", type=run_ref, default="latest", help="run id (default: latest)")
    _platform(p, "with latest: the newest run of this platform")
    _compare_options(p)
    p.add_argument("--verbose", "-v", action="store_true", help="every compared metric")
    _json(p)

    p = _command(
        sub,
        "record",
        wc.record,
        "store a result measured outside pytest",
        "Store a result measured outside pytest. Metrics are --NAME VALUE[UNIT] flags "
        "(--accuracy 0.95 --latency 230ms, as the seed tracker's record_test.py) or "
        "--metric NAME=VALUE[UNIT]; give at least one.",
    )
    p.set_defaults(free_metrics=[])
    p.allow_abbrev = False  # `--me 5` is a metric, not an abbreviation of --metric
    p.add_argument("name", metavar="NAME", help="what was measured (stored as its test id)")
    p.add_argument(
        "--metric",
        type=metric_value,
        action="append",
        default=[],
        metavar="KEY=VALUE[UNIT]",
        help="a metric, e.g. latency=8.1s or tokens_per_s=41.5tok/s (repeat)",
    )
    p.add_argument(
        "--direction",
        type=direction,
        action="append",
        default=[],
        metavar="KEY=higher",
        help="higher (or lower, the default) is better for KEY (repeat)",
    )
    outcome = p.add_mutually_exclusive_group()
    outcome.add_argument("--success", action="store_true", help="it worked (the default)")
    outcome.add_argument("--failed", action="store_true", help="the measured thing failed")
    p.add_argument("--who", type=who, metavar="NAME", help="user, ci, automated or a name")
    p.add_argument("--type", type=test_type, metavar="TYPE", help="test type, e.g. inference")
    p.add_argument("--notes", default="", metavar="TEXT", help="free text stored with the run")
    _labels(p, "a label of the run, e.g. model=openai (repeat); kept apart per label set")
    _platform(p, "platform key (default: this machine's)")
    p.add_argument("--run-type", choices=list(RUN_TYPES), help="default manual (ci under CI)")
    _json(p)

    p = _command(
        sub,
        "import",
        wc.import_,
        "import pytest-benchmark saved runs and results JSON",
        "Import pytest-benchmark saved runs (.benchmarks/**/*.json; directories are walked) "
        "and the seed project's results JSON. Importing the same run twice adds nothing.",
    )
    p.add_argument("files", metavar="FILE", nargs="+", help="files or directories")
    _platform(p, "store every imported run under this platform key")
    p.add_argument("--dry-run", action="store_true", help="show what would be imported")
    _json(p)

    p = _command(sub, "platform", hc.platform, "this machine's platform key and fingerprint")
    _platform(p, "override the key (like --perf-platform)")
    p.add_argument("--key", action="store_true", help="print only the key")
    p.add_argument(
        "--detailed",
        action="store_true",
        help="the detailed key, naming CPU model and cores (like --perf-platform-detailed)",
    )
    _json(p)
    psub = p.add_subparsers(title="commands", metavar="COMMAND")
    p = _command(
        psub,
        "migrate",
        wc.platform_migrate,
        "rename 0.x detailed platform keys to today's keys",
        "Rename platforms under 0.x detailed keys (GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB) "
        "to today's keys (GitHub_Actions_Linux), in the baselines file and in the history; "
        "sections that land on one key are merged, the newest entries winning.",
    )
    _baselines(p)
    p.add_argument("--dry-run", action="store_true", help="show the renames, change nothing")

    p = _command(sub, "stats", hc.stats, "database URL, schema, counts, time span, size")
    _json(p)

    group = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    group.set_defaults(group=group)
    dsub = group.add_subparsers(title="commands", metavar="COMMAND")
    _command(dsub, "upgrade", wc.db_upgrade, "migrate the schema to this version")
    _command(dsub, "vacuum", wc.db_vacuum, "reclaim space (VACUUM)")

    ec.add_parsers(sub, _command)
    return parser
