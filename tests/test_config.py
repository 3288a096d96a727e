"""Settings resolution (CLI > env > ini > default) and the option parsers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_perfguard.config import (
    OPTIONS,
    ConfigError,
    is_active,
    parse_bool,
    parse_gate,
    parse_positive_int,
    parse_run_type,
    parse_threshold,
    without_own_options,
)
from pytest_perfguard.settings import PerfSettings, resolve

ROOT = Path("/project")


@pytest.mark.parametrize(("text", "value"), [("0.2", 0.2), ("0", 0.0), ("1.5", 1.5)])
def test_parse_threshold_accepts(text: str, value: float) -> None:
    assert parse_threshold(text) == value


@pytest.mark.parametrize("text", ["abc", "-0.1", "nan", "inf", ""])
def test_parse_threshold_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"0\.2 for 20 %"):
        parse_threshold(text)


@pytest.mark.parametrize("text", ["marked", "all", "none"])
def test_parse_gate_accepts(text: str) -> None:
    assert parse_gate(text) == text


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_gate, "some"),
        (parse_run_type, "weekly"),
        (parse_bool, "maybe"),
        (parse_positive_int, "0"),
        (parse_positive_int, "x"),
    ],
)
def test_parsers_reject(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=repr(text)):
        parse(text)


def test_defaults() -> None:
    settings = resolve({}, {}, {}, ROOT)
    assert settings.threshold == 0.20
    assert settings.gate == "marked"
    assert settings.baselines == ROOT / "baselines" / "perf_baselines.json"
    assert settings.run_type == "manual" and settings.min_runs == 5
    assert not settings.active


def test_precedence_cli_over_env_over_ini() -> None:
    ini = {"perf_threshold": "0.3", "perf_gate": "all"}
    env = {"PERFGUARD_THRESHOLD": "0.4"}
    assert resolve({}, {}, ini, ROOT).threshold == 0.3
    assert resolve({}, env, ini, ROOT).threshold == 0.4
    assert resolve({"threshold": 0.5}, env, ini, ROOT).threshold == 0.5
    assert resolve({"threshold": 0.5}, env, ini, ROOT).gate == "all"


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"ENABLE_PERFORMANCE_RECORDING": "1"}, "record", True),
        ({"PERFORMANCE_PLATFORM": "box"}, "platform", "box"),
        ({"PERFORMANCE_DB_PATH": "x.db"}, "db", "x.db"),
        ({"REGRESSION_THRESHOLD": "0.1"}, "threshold", 0.1),
        ({"PERFORMANCE_RUN_TYPE": "nightly"}, "run_type", "nightly"),
    ],
)
def test_seed_env_aliases(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(resolve({}, env, {}, ROOT), field) == value


def test_own_env_name_wins_over_alias() -> None:
    env = {"PERFGUARD_PLATFORM": "mine", "PERFORMANCE_PLATFORM": "seed"}
    assert resolve({}, env, {}, ROOT).platform == "mine"


def test_run_type_defaults_to_ci_under_ci() -> None:
    assert resolve({}, {"GITHUB_ACTIONS": "true"}, {}, ROOT).run_type == "ci"


@pytest.mark.parametrize(
    ("env", "ini", "message"),
    [
        ({"PERFGUARD_THRESHOLD": "x"}, {}, "PERFGUARD_THRESHOLD: 'x' is not a number"),
        ({}, {"perf_gate": "most"}, "ini option perf_gate: 'most' is not one of"),
        ({"PERFGUARD_MIN_RUNS": "0"}, {}, "PERFGUARD_MIN_RUNS: '0' must be at least 1"),
    ],
)
def test_bad_values_name_their_source(
    env: dict[str, str], ini: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve({}, env, ini, ROOT)


@pytest.mark.parametrize(
    ("cli", "env", "ini", "active"),
    [
        ({}, {}, {}, False),
        ({"threshold": 0.1}, {}, {}, True),
        ({"enabled": True}, {}, {}, True),
        ({}, {"PERFGUARD": "1"}, {}, True),
        ({}, {"PERFGUARD": "0"}, {}, False),
        ({}, {}, {"perf": "true"}, True),
        ({}, {}, {"perf_threshold": "0.1"}, False),
        # A variable the user set is never silently ignored: it switches perfguard on.
        ({}, {"PERFGUARD_THRESHOLD": "0.1"}, {}, True),
        ({}, {"REGRESSION_THRESHOLD": "0.30"}, {}, True),
        ({}, {"PERFORMANCE_PLATFORM": "M1_Mac_16GB"}, {}, True),
        ({}, {"BENCHMARK_MODE": "quick"}, {}, True),
        ({}, {"PERFGUARD_MODE": "comprehensive"}, {}, True),
        ({}, {"ENABLE_PERFORMANCE_RECORDING": "1"}, {}, True),
        ({}, {"ENABLE_PERFORMANCE_RECORDING": "0"}, {}, False),
        ({}, {"PERFGUARD": "0", "REGRESSION_THRESHOLD": "0.3"}, {}, False),
        ({}, {"UNRELATED": "1"}, {}, False),
    ],
)
def test_is_active(
    cli: dict[str, object], env: dict[str, str], ini: dict[str, str], active: bool
) -> None:
    assert is_active(cli, env, ini) is active


def test_option_names_follow_one_pattern() -> None:
    for option in OPTIONS:
        assert option.flag.startswith("--perf")
        assert option.ini.startswith("perf")
        assert option.env.startswith("PERFGUARD")


@pytest.mark.parametrize(
    ("ini", "active"),
    [
        ({}, True),
        ({"perf": "false"}, False),
        ({"perf_baselines": "elsewhere.json"}, False),
    ],
)
def test_a_baselines_file_switches_perfguard_on(
    tmp_path: Path, ini: dict[str, str], active: bool
) -> None:
    """Marked tests are gated wherever baselines were committed; `perf = false` opts out."""
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "perf_baselines.json").write_text("{}")
    assert is_active({}, {}, ini, tmp_path) is active
    assert is_active({}, {}, {}, tmp_path / "baselines") is False


@pytest.mark.parametrize(
    ("env", "rounds_budget", "confirm"),
    [
        ({}, 0.05, None),
        ({"BENCHMARK_MODE": "quick"}, 0.0, 0),
        ({"PERFGUARD_MODE": "standard"}, 0.05, None),
        ({"BENCHMARK_MODE": "comprehensive"}, 0.5, 2),
        # An explicit setting wins over the mode's preset.
        ({"BENCHMARK_MODE": "comprehensive", "PERFGUARD_CONFIRM": "1"}, 0.5, 1),
    ],
)
def test_benchmark_mode_presets(
    tmp_path: Path, env: dict[str, str], rounds_budget: float, confirm: int | None
) -> None:
    settings = resolve({}, env, {}, tmp_path)
    assert (settings.rounds_budget, settings.confirm) == (rounds_budget, confirm)


def test_a_bad_benchmark_mode_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BENCHMARK_MODE: 'fast' is not one of quick"):
        resolve({}, {"BENCHMARK_MODE": "fast"}, {}, tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "fast"),
        ("gate", "some"),
        ("run_type", "weekly"),
        ("rule", "strict"),
        ("ab_mode", "parallel"),
    ],
)
def test_settings_reject_an_unknown_choice(field: str, value: str) -> None:
    """The parsers check choices; code that builds or copies settings is checked too."""
    with pytest.raises(ConfigError, match=rf"setting {field}: '{value}' is not one of"):
        PerfSettings(**{field: value})
    with pytest.raises(ConfigError, match=rf"setting {field}: '{value}' is not one of"):
        dataclasses.replace(PerfSettings(), **{field: value})


def test_settings_are_frozen_and_know_their_fields() -> None:
    settings = PerfSettings(ab_mode="duet", labels={"model": "a"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.gate = "all"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'gates'"):
        PerfSettings(gates="all")  # type: ignore[call-arg]
    assert PerfSettings().labels == {} and PerfSettings().labels is not PerfSettings().labels
    assert dataclasses.replace(settings, confirm=0).confirm_runs == 0


def test_without_own_options_keeps_the_users_other_options() -> None:
    args = [
        "-p", "no:cacheprovider", "--perf-threshold", "0.1", "--perf", "-x",
        "--perf-json=r.json", "--perf-gate", "all", "-k", "fast", "--perfect", "--perf-record",
    ]  # fmt: skip
    assert without_own_options(args) == ["-p", "no:cacheprovider", "-x", "-k", "fast", "--perfect"]
    assert without_own_options([]) == []
