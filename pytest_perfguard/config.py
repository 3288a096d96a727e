"""The option table and its parsers: every setting's flag, env name, ini key and validation.

The settings object itself lives in :mod:`pytest_perfguard.settings`, built only when the
plugin is active; an inactive plugin needs nothing but this table to register its options.

This module knows nothing of pytest: the plugin hands it three plain mappings (what the
command line gave, the environment, the ini file) and turns `ConfigError` into a usage error.
The option table below is the single source for option names, env names and ini keys,
so the plugin registers exactly what is documented here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import GATE_SCOPES, RUN_TYPES, GateScope, RunType

# The relative threshold where neither the baselines file nor a setting gives one (20 %).
DEFAULT_THRESHOLD = 0.20
# Where the baselines file is, relative to the rootdir, unless set.
DEFAULT_BASELINES = "baselines/perf_baselines.json"


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the fix."""


def parse_threshold(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number; use a fraction such as 0.2 for 20 %") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a finite number >= 0, such as 0.2 for 20 %")
    return value


def parse_gate(text: str) -> GateScope:
    if text not in GATE_SCOPES:
        raise ValueError(f"{text!r} is not one of {', '.join(GATE_SCOPES)}")
    return text


def parse_run_type(text: str) -> RunType:
    if text not in RUN_TYPES:
        raise ValueError(f"{text!r} is not one of {', '.join(RUN_TYPES)}")
    return text


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean; use 1/0, true/false, yes/no")


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def parse_non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{text!r} must be 0 or more")
    return value


def _text(text: str) -> str:
    return text


def parse_labels(text: str) -> dict[str, str]:
    """`KEY=VALUE[,KEY=VALUE...]` as text: `model=openai,dataset=v2`."""
    from .results import LabelError, check_labels

    labels: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} is not KEY=VALUE (e.g. model=openai)")
        labels[key.strip()] = value.strip()
    try:
        return check_labels(labels, "label")
    except LabelError as exc:
        raise ValueError(str(exc)) from None


def parse_experiment_name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > 255:
        raise ValueError(f"{text!r} must be an experiment name of 1 to 255 characters")
    return name


def parse_params(text: str) -> dict[str, Any]:
    """`KEY=VALUE[,KEY=VALUE...]`; a value that reads as JSON (256, 0.5, true, null) is
    kept as that, anything else as text: `chunk=256,model=gpt-4o` -> {"chunk": 256, ...}."""
    import json

    params: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} is not KEY=VALUE (e.g. chunk=256)")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw.strip()
        finite = not isinstance(value, float) or math.isfinite(value)
        if isinstance(value, (dict, list)) or not finite:
            value = raw.strip()
        params[key.strip()] = value
    return params


# `--perf-mode` / BENCHMARK_MODE: defaults of rounds and budget, below any explicit setting.
# quick: one call per test, no confirm re-runs; comprehensive: ten times standard's
# budget for extra rounds and two confirm re-runs of a flagged test.
MODE_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"rounds_budget": 0.0, "confirm": 0},
    "standard": {},
    "comprehensive": {"rounds_budget": 0.5, "confirm": 2},
}


def parse_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in MODE_PRESETS:
        raise ValueError(f"{text!r} is not one of {', '.join(MODE_PRESETS)}")
    return mode


AB_MODES = ("duet", "interleave")


def parse_ab_mode(text: str) -> str:
    if text not in AB_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(AB_MODES)}")
    return text


def parse_non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty; give a git revision or a directory")
    return text.strip()


ESTIMATORS = ("min", "median", "mean")
RULES = ("threshold", "noise")


def parse_estimator(text: str) -> str:
    """`min`, `median`, `mean`, or `qNN` (the NN-th percentile from the best end, 1-99)."""
    name = text.strip().lower()
    if name in ESTIMATORS:
        return name
    if name.startswith("q") and name[1:].isdigit() and 1 <= int(name[1:]) <= 99:
        return f"q{int(name[1:])}"
    raise ValueError(f"{text!r} is not an estimator; use min, median, mean or q10..q49")


def parse_rule(text: str) -> str:
    if text not in RULES:
        raise ValueError(f"{text!r} is not one of {', '.join(RULES)}")
    return text


def parse_fdr(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number; use a rate such as 0.05") from None
    if not 0 < value < 1:
        raise ValueError(f"{text!r} must be between 0 and 1 (exclusive), such as 0.05")
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a number of seconds >= 0, such as 0.05")
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its field name, how users spell it in each source, and its parser."""

    field: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    is_flag: bool = False
    metavar: str | None = None
    env_aliases: tuple[str, ...] = ()
    # Mode settings switch the plugin on from env or ini too; value settings
    # (threshold, paths) only configure it, so a project can keep them in its ini.
    activates: bool = False
    # Given several times on the command line (`--perf-param a=1 --perf-param b=2`); the
    # parser turns each value into a dict and the values are merged, later keys winning.
    repeatable: bool = False

    @property
    def env(self) -> str:
        if self.field == "enabled":
            return "PERFGUARD"
        return "PERFGUARD_" + self.field.upper()

    @property
    def ini(self) -> str:
        return "perf" if self.field == "enabled" else "perf_" + self.field

    @property
    def dest(self) -> str:
        return "perfguard_" + self.field


OPTIONS: tuple[Option, ...] = (
    Option(
        "enabled",
        "--perf",
        parse_bool,
        "measure, compare and report without writing history",
        is_flag=True,
        activates=True,
    ),
    Option(
        "record",
        "--perf-record",
        parse_bool,
        "also write this run to the history DB",
        is_flag=True,
        activates=True,
        env_aliases=("ENABLE_PERFORMANCE_RECORDING",),
    ),
    Option(
        "db",
        "--perf-db",
        _text,
        "SQLAlchemy URL or SQLite file path of the history DB "
        "(default: .perfguard/history.db under rootdir)",
        metavar="URL",
        env_aliases=("PERFORMANCE_DB_PATH",),
    ),
    Option(
        "baselines",
        "--perf-baselines",
        _text,
        "multi-platform baselines JSON (default: baselines/perf_baselines.json)",
        metavar="PATH",
    ),
    Option(
        "platform",
        "--perf-platform",
        _text,
        "override the detected platform key",
        metavar="NAME",
        env_aliases=("PERFORMANCE_PLATFORM",),
    ),
    Option(
        "platform_detailed",
        "--perf-platform-detailed",
        parse_bool,
        "name CPU model and core count in the detected platform key "
        "(e.g. GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB, the 0.x key)",
        is_flag=True,
    ),
    Option(
        "mode",
        "--perf-mode",
        parse_mode,
        "preset of rounds and budget: quick (one call, no re-runs), standard (default), "
        "comprehensive (10x the rounds budget, 2 confirm re-runs)",
        metavar="{quick,standard,comprehensive}",
        env_aliases=("BENCHMARK_MODE",),
    ),
    Option(
        "threshold",
        "--perf-threshold",
        parse_threshold,
        "default relative threshold (0.2 = 20 %%)",
        metavar="FLOAT",
        env_aliases=("REGRESSION_THRESHOLD",),
    ),
    Option(
        "gate",
        "--perf-gate",
        parse_gate,
        "which tests can fail the session: marked (default), all, none",
        metavar="{marked,all,none}",
    ),
    Option(
        "report", "--perf-report", _text, "write the Markdown PR report to PATH", metavar="PATH"
    ),
    Option("json", "--perf-json", _text, "write the JSON report to PATH", metavar="PATH"),
    Option(
        "warn_only",
        "--perf-warn-only",
        parse_bool,
        "report regressions but do not fail the session",
        is_flag=True,
    ),
    Option(
        "update_baselines",
        "--perf-update-baselines",
        parse_bool,
        "update the baselines file from recorded history",
        is_flag=True,
        activates=True,
    ),
    Option(
        "accept_regressions",
        "--perf-accept-regressions",
        parse_bool,
        "with --perf-update-baselines, also move baselines that got worse",
        is_flag=True,
    ),
    Option(
        "min_runs",
        "--perf-min-runs",
        parse_positive_int,
        "recorded runs needed to update a baseline (default 5)",
        metavar="N",
    ),
    Option(
        "update_margin",
        "--perf-update-margin",
        parse_threshold,
        "improvement needed to replace a baseline (default 0.05)",
        metavar="FLOAT",
    ),
    Option(
        "run_type",
        "--perf-run-type",
        parse_run_type,
        "stored with the run: manual, ci, nightly (default: ci under CI, else manual)",
        metavar="{manual,ci,nightly}",
        env_aliases=("PERFORMANCE_RUN_TYPE",),
    ),
    Option("notes", "--perf-notes", _text, "free text stored with the run", metavar="TEXT"),
    Option(
        "estimator",
        "--perf-estimator",
        parse_estimator,
        "how a metric's samples make its value: min (default: the best sample), median, "
        "mean, or qNN (NN-th percentile from the best end)",
        metavar="NAME",
    ),
    Option(
        "rule",
        "--perf-rule",
        parse_rule,
        "how a change is judged: threshold (default: the change against the threshold) or "
        "noise (also against the baseline's spread, corrected for the number of metrics)",
        metavar="{threshold,noise}",
    ),
    Option(
        "q",
        "--perf-q",
        parse_fdr,
        "false-discovery rate of the noise rule across the session's gated metrics (default 0.05)",
        metavar="FLOAT",
    ),
    Option(
        "confirm",
        "--perf-confirm",
        parse_non_negative_int,
        "re-run tests flagged as regressions N more times after the session and keep only "
        "the regressions that hold (default 1 when gating; 0: off)",
        metavar="N",
    ),
    Option(
        "rounds_budget",
        "--perf-rounds-budget",
        parse_seconds,
        "seconds a marked test without rounds= may spend on extra calls (default 0.05; "
        "0: one call)",
        metavar="SECONDS",
    ),
    Option(
        "calibrate",
        "--perf-calibrate",
        parse_positive_int,
        "A/A calibration: run the selected tests N times, report each metric's noise and "
        "suggest rounds and thresholds; compares nothing, fails nothing",
        metavar="N",
        activates=True,
    ),
    Option(
        "instructions",
        "--perf-instructions",
        parse_bool,
        "require instruction counts: fail unless pytest runs under valgrind's callgrind, "
        "whose counts are then gated instead of time (see docs/metrics.md)",
        is_flag=True,
    ),
    Option(
        "calibrate_write",
        "--perf-calibrate-write",
        parse_bool,
        "with --perf-calibrate, write the suggested thresholds into the baselines file",
        is_flag=True,
    ),
    Option(
        "against",
        "--perf-against",
        parse_non_empty,
        "A/B: measure the base (a git revision or a checkout directory) side by side with "
        "this checkout and gate on their ratio; no baselines file involved (docs/ab.md)",
        metavar="REV_OR_DIR",
        activates=True,
    ),
    Option(
        "against_python",
        "--perf-against-python",
        parse_non_empty,
        "interpreter for the base side of --perf-against (default: this one)",
        metavar="PATH",
    ),
    Option(
        "ab_mode",
        "--perf-ab-mode",
        parse_ab_mode,
        "how the two sides of --perf-against share the machine: duet (both at once, one "
        "per CPU) or interleave (one after the other on one CPU, the default)",
        metavar="{duet,interleave}",
    ),
    Option(
        "ab_budget",
        "--perf-ab-budget",
        parse_seconds,
        "seconds a test may spend on pairs with --perf-against beyond its first look "
        "(default 2)",
        metavar="SECONDS",
    ),
    Option(
        "ab_lanes",
        "--perf-ab-lanes",
        parse_positive_int,
        "parallel lanes of --perf-against: each a base and a head worker process on CPUs of "
        "their own, the gated tests spread over them (default: one per CPU, two CPUs each "
        "in duet; 1: the head process pairs with one base worker)",
        metavar="N",
    ),
    Option(
        "labels",
        "--perf-label",
        parse_labels,
        "a label of this run, e.g. model=openai (repeat, or KEY=VALUE,KEY=VALUE): stored with "
        "the run; baselines and verdicts are kept apart per label set",
        metavar="KEY=VALUE",
        repeatable=True,
    ),
    Option(
        "experiment",
        "--perf-experiment",
        parse_experiment_name,
        "this run is a trial of experiment NAME: its measurements become the trial's metrics",
        metavar="NAME",
    ),
    Option(
        "param",
        "--perf-param",
        parse_params,
        "a parameter of this trial (repeat, or KEY=VALUE,KEY=VALUE); with --perf-experiment",
        metavar="KEY=VALUE",
        repeatable=True,
    ),
)

OPTIONS_BY_FIELD: dict[str, Option] = {option.field: option for option in OPTIONS}


def without_own_options(args: Sequence[str]) -> list[str]:
    """`args` (pytest's, as in `PYTEST_ADDOPTS`) without perfguard's options and their
    values: for a pytest that runs with perfguard blocked (an A/B worker), where they would
    be unrecognised arguments."""
    flags = {option.flag: option.is_flag for option in OPTIONS}
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        flag, equals, _ = arg.partition("=")
        if flag in flags:
            skip_value = not equals and not flags[flag]
            continue
        kept.append(arg)
    return kept

# Who runs the process, by the variable each service sets; ordered, the first set one names
# it (GitHub sets CI too). RunPod hosts machines, not CI jobs: it names a platform (the
# fingerprint's `ci_provider`) but does not make a run "ci".
CI_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("GITHUB_ACTIONS", "GitHub_Actions"),
    ("GITLAB_CI", "GitLab_CI"),
    ("CIRCLECI", "CircleCI"),
    ("BUILDKITE", "Buildkite"),
    ("JENKINS_URL", "Jenkins"),
    ("TF_BUILD", "Azure_Pipelines"),
    ("TEAMCITY_VERSION", "TeamCity"),
    ("TRAVIS", "Travis_CI"),
    ("BITBUCKET_BUILD_NUMBER", "Bitbucket"),
    ("RUNPOD_POD_ID", "RunPod"),
    ("CODEBUILD_BUILD_ID", "AWS_CodeBuild"),
)
_HOSTS_NOT_CI = frozenset({"RunPod"})
_NOT_SET = frozenset({"", "0", "false", "no", "off"})


def env_says_yes(value: str | None) -> bool:
    """The one rule for a CI variable: set to anything but empty, 0, false, no or off
    (`JENKINS_URL` holds a URL, `TEAMCITY_VERSION` a version, `CI` usually "true")."""
    return value is not None and value.strip().lower() not in _NOT_SET


def ci_provider(env: Mapping[str, str]) -> str | None:
    """The service running this process (a CI service, or a machine host such as RunPod);
    "CI" when only `CI` says so; None on a developer's machine."""
    for variable, name in CI_PROVIDERS:
        if env_says_yes(env.get(variable)):
            return name
    return "CI" if env_says_yes(env.get("CI")) else None


def running_in_ci(env: Mapping[str, str]) -> bool:
    """Whether this is a CI job: the run type's default (`ci`) and who triggered it."""
    if env_says_yes(env.get("CI")):
        return True
    return any(
        env_says_yes(env.get(variable))
        for variable, name in CI_PROVIDERS
        if name not in _HOSTS_NOT_CI
    )


def ci_commit(env: Mapping[str, str]) -> str | None:
    """The commit a CI job checked out, for when git cannot tell (no repository there)."""
    if not running_in_ci(env):
        return None
    return env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA") or None


def ci_branch(env: Mapping[str, str]) -> str | None:
    """The branch a CI job builds, for a detached checkout (pull requests: the head)."""
    if not running_in_ci(env):
        return None
    names = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME")
    return next((env[name] for name in names if env.get(name)), None)


def env_value(option: Option, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The (source name, raw value) the environment gives for an option, if any."""
    for name in (option.env, *option.env_aliases):
        raw = env.get(name)
        if raw is not None and raw != "":
            return name, raw
    return None


def is_active(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, str],
    rootdir: Path | None = None,
) -> bool:
    """Cheap check, before any settings are built: is the plugin switched on?

    In this order:
    - any ``--perf*`` flag on the command line switches it on;
    - ``PERFGUARD=0`` (or false/no/off) switches it off, whatever else is set;
    - any perfguard variable set in the environment switches it on: ``PERFGUARD_*`` and the
      seed's names (``REGRESSION_THRESHOLD``, ``PERFORMANCE_PLATFORM``, ``BENCHMARK_MODE``,
      ...), so a variable the user set is never silently ignored;
    - in the ini file, the mode settings (``perf = true``, recording, updating baselines);
      value settings there (threshold, paths) only configure the plugin;
    - a baselines file (``perf_baselines``, default ``baselines/perf_baselines.json`` under
      `rootdir`) switches it on, so marked tests are gated wherever baselines were
      committed, the way an assertion always runs; ``perf = false`` in the ini opts out.
    """
    if any(value not in (None, False) for value in cli.values()):
        return True
    switch = env.get(OPTIONS_BY_FIELD["enabled"].env, "")
    if switch.strip():
        try:
            return parse_bool(switch)
        except ValueError:
            return True  # let resolve() report the bad value
    for option in OPTIONS:
        found = env_value(option, env)
        if found is None:
            continue
        if not option.activates:
            return True
        try:
            if parse_bool(found[1]):  # ENABLE_PERFORMANCE_RECORDING=0 asks for nothing
                return True
        except ValueError:
            return True
    for option in OPTIONS:
        raw = ini.get(option.ini)
        if not option.activates or raw is None or raw == "":
            continue
        try:
            if parse_bool(raw):
                return True
        except ValueError:
            return True
        if option.field == "enabled":
            return False  # `perf = false`: explicitly off, baselines file or not
    if rootdir is None:
        return False
    baselines = Path(ini.get(OPTIONS_BY_FIELD["baselines"].ini) or DEFAULT_BASELINES)
    return (baselines if baselines.is_absolute() else rootdir / baselines).is_file()


def current_env() -> Mapping[str, str]:
    return os.environ
