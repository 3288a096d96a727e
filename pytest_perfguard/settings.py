"""Settings: one validated object, resolved CLI > env > ini > default.

Only imported when perfguard is active (see :mod:`pytest_perfguard.config` for why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import (
    AB_MODES,
    DEFAULT_THRESHOLD,
    MODE_PRESETS,
    OPTIONS,
    RULES,
    ConfigError,
    env_value,
    running_in_ci,
)
from .results import GATE_SCOPES, RUN_TYPES, GateScope, RunType


@dataclass(frozen=True, slots=True)
class PerfSettings:
    """The resolved settings of one session.

    The values come from the option parsers of :mod:`pytest_perfguard.config`, which
    validate them; only the choices are checked again here, as a wrong one would otherwise
    pass silently through every comparison (an unknown field is a TypeError already).
    """

    enabled: bool = False
    record: bool = False
    db: str | None = None
    baselines: Path = Path("baselines/perf_baselines.json")
    platform: str | None = None
    platform_detailed: bool = False
    mode: Literal["quick", "standard", "comprehensive"] = "standard"
    threshold: float = DEFAULT_THRESHOLD
    gate: GateScope = "marked"
    report: Path | None = None
    json_report: Path | None = None
    warn_only: bool = False
    update_baselines: bool = False
    accept_regressions: bool = False
    min_runs: int = 5
    update_margin: float = 0.05
    run_type: RunType = "manual"
    notes: str = ""
    estimator: str = "min"
    rule: Literal["threshold", "noise"] = "threshold"
    q: float = 0.05
    confirm: int | None = None
    rounds_budget: float = 0.05
    calibrate: int | None = None
    calibrate_write: bool = False
    instructions: bool = False
    against: str | None = None
    against_python: str | None = None
    ab_mode: Literal["duet", "interleave"] | None = None
    ab_budget: float = 2.0
    ab_lanes: int | None = None  # None: one lane per CPU (two in duet)
    experiment: str | None = None
    param: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices: tuple[tuple[str, object, tuple[object, ...]], ...] = (
            ("mode", self.mode, tuple(MODE_PRESETS)),
            ("gate", self.gate, GATE_SCOPES),
            ("run_type", self.run_type, RUN_TYPES),
            ("rule", self.rule, RULES),
            ("ab_mode", self.ab_mode, (None, *AB_MODES)),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                spelled = ", ".join(str(choice) for choice in allowed if choice is not None)
                raise ConfigError(f"setting {name}: {value!r} is not one of {spelled}")

    @property
    def active(self) -> bool:
        return (
            self.enabled
            or self.record
            or self.update_baselines
            or bool(self.calibrate)
            or bool(self.against)
            or bool(self.experiment)
        )

    @property
    def confirm_runs(self) -> int:
        """Re-runs of flagged tests: as set, else 1 when something can fail the session."""
        if self.calibrate:
            return 0
        if self.confirm is not None:
            return self.confirm
        return 0 if self.gate == "none" else 1


def resolve(
    cli: Mapping[str, Any], env: Mapping[str, str], ini: Mapping[str, str], rootdir: Path
) -> PerfSettings:
    """Build the settings from CLI (already parsed), env and ini, in that order of precedence.

    Relative paths are anchored at rootdir so results do not depend on the working directory.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        cli_value = cli.get(option.field)
        if option.repeatable and isinstance(cli_value, list):
            cli_value = {key: value for given in cli_value for key, value in given.items()}
        if cli_value is not None and cli_value is not False:
            values[option.field] = cli_value
            continue
        found = env_value(option, env)
        if found is not None:
            source, raw = found
        elif ini.get(option.ini):
            source, raw = f"ini option {option.ini}", ini[option.ini]
        else:
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for name, preset in MODE_PRESETS[values.get("mode", "standard")].items():
        values.setdefault(name, preset)
    if "run_type" not in values:
        values["run_type"] = "ci" if running_in_ci(env) else "manual"
    for name in ("baselines", "report", "json"):
        if name in values:
            path = Path(values[name])
            values[name] = path if path.is_absolute() else rootdir / path
    values.setdefault("baselines", rootdir / "baselines" / "perf_baselines.json")
    if "json" in values:
        values["json_report"] = values.pop("json")
    return PerfSettings(**values)
