"""Whether a perfguard option's value, given as a separate argument, moved pytest's rootdir.

pytest chooses its rootdir and ini file before the options of installed plugins exist, and
at that point reads an argument it does not know as a test path. In
``pytest --perf-json /tmp/perf.json`` an existing ``/tmp/perf.json`` counts as one: the
rootdir becomes ``/tmp`` and the project's ini file is not read. Every test id then
changes, so no stored baseline matches and an A/B base shares no test with the head: the
gate passes having compared nothing. `rootdir_moved_by_option` finds that case so that the
plugin can stop with one line that says how to write the option (``--perf-json=PATH``).
"""

from __future__ import annotations

import inspect
import itertools
import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest


def values_given_apart(
    tokens: Sequence[str], flags: Iterable[str], invocation_dir: Path
) -> list[tuple[str, str]]:
    """Each (flag, value) where one of `flags` is followed by its value as the next argument
    and that value names an existing path: what pytest took for a test path."""
    wanted = set(flags)
    found = []
    for flag, value in itertools.pairwise(tokens):
        if flag in wanted and not value.startswith("-"):
            path = Path(value.partition("::")[0])
            if (invocation_dir / path).exists():
                found.append((flag, value))
    return found


def _rootdir_for(config: pytest.Config, args: Sequence[str]) -> Path | None:
    """The rootdir pytest's own rule picks for these test paths, with this session's
    ``-c`` / ``--rootdir`` / ``-o``; None where this pytest's rule cannot be called."""
    try:
        from _pytest.config.findpaths import determine_setup
    except ImportError:  # pragma: no cover - a pytest without the private module
        return None
    offered: dict[str, Any] = {
        "inifile": config.option.inifilename,
        "override_ini": config.option.override_ini,
        "args": list(args),
        "rootdir_cmd_arg": config.option.rootdir or None,
        "invocation_dir": config.invocation_params.dir,
        "config": None,
    }
    parameters = inspect.signature(determine_setup).parameters
    if any(name not in offered for name in parameters):  # a rule of another shape
        return None
    try:
        return Path(determine_setup(**{name: offered[name] for name in parameters})[0])
    except Exception:  # a check that cannot run must not stop the session
        return None


def rootdir_moved_by_option(config: pytest.Config, flags: Iterable[str]) -> str | None:
    """One line naming the option whose separate value moved the rootdir, or None."""
    tokens = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.invocation_params.args]
    given = values_given_apart(tokens, flags, config.invocation_params.dir)
    if not given or config.option.rootdir:
        return None
    paths = [str(arg) for arg in config.option.file_or_dir or ()]
    without = _rootdir_for(config, paths)
    taken = _rootdir_for(config, [*paths, *(value for _, value in given)])
    if without is None or taken != config.rootpath or without == taken:
        return None
    from .history.urls import mask_secrets  # lazy: only for the error

    flag, value = given[0]
    # A value of --perf-db could be a URL with a password (if a directory so named existed).
    return mask_secrets(
        f"pytest read {value}, the value of {flag}, as a test path when it chose its rootdir "
        f"({taken} instead of {without}): write {flag}={value}"
    )
