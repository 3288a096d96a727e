"""The project the CLI works in: pytest's rootdir and ini file, read the way pytest reads them.

The plugin resolves its settings (history database, baselines file, platform, threshold)
from the command line, the environment and the ini file, relative to pytest's rootdir.
The CLI finds the same rootdir and ini file without importing pytest, so `perfguard runs`
reads the database `pytest --perf-record` wrote, from any directory of the project.
"""

from __future__ import annotations

import configparser
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..settings import PerfSettings, resolve
from .console import CLIError

# pytest's order: the first directory upwards holding one of these (that has a pytest
# section, for the shared files) is the rootdir, the file the ini file.
_INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


@dataclass(frozen=True)
class Project:
    rootdir: Path
    inifile: Path | None = None
    ini: dict[str, str] = field(default_factory=dict)

    def settings(self, env: Mapping[str, str]) -> PerfSettings:
        """The plugin's settings for a run without `--perf*` options: env > ini > default."""
        try:
            return resolve({}, env, self.ini, self.rootdir)
        except ConfigError as exc:
            raise CLIError(str(exc)) from None


def find_project(cwd: Path) -> Project:
    """pytest's rootdir and ini values for a run started in `cwd` with no arguments."""
    for directory in (cwd, *cwd.parents):
        for name in _INI_FILES:
            path = directory / name
            if path.is_file():
                ini = read_ini(path)
                if ini is not None:
                    return Project(directory, path, ini)
    for directory in (cwd, *cwd.parents):
        if (directory / "pyproject.toml").is_file() or (directory / "setup.py").is_file():
            return Project(directory)
    return Project(cwd)


def read_ini(path: Path) -> dict[str, str] | None:
    """The pytest options in `path`; None when it has no pytest section."""
    if path.name == "pyproject.toml":
        return _read_pyproject(path)
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise CLIError(f"{path}: cannot be read as an ini file ({exc})") from None
    section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if not parser.has_section(section):
        # pytest.ini counts even without a [pytest] section.
        return {} if path.name in ("pytest.ini", ".pytest.ini") else None
    return dict(parser.items(section))


def _read_pyproject(path: Path) -> dict[str, str] | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - pytest itself depends on tomli before 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path}: not valid TOML ({exc})") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise CLIError(f"{path}: `tool` must be a table ([tool]), not {_toml_type(tool)}")
    pytest_table = tool.get("pytest")
    if pytest_table is None:
        return None
    if not isinstance(pytest_table, dict):
        raise CLIError(
            f"{path}: `tool.pytest` must be a table ([tool.pytest]), not {_toml_type(pytest_table)}"
        )
    # [tool.pytest.ini_options], or pytest 9's native [tool.pytest] table itself.
    options: Any = pytest_table.get("ini_options", pytest_table)
    if not isinstance(options, dict):
        raise CLIError(
            f"{path}: `tool.pytest.ini_options` must be a table "
            f"([tool.pytest.ini_options]), not {_toml_type(options)}"
        )
    return {str(key): _ini_text(value) for key, value in options.items()}


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    return names.get(type(value), "an array" if isinstance(value, list) else "a value")


def _ini_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)
