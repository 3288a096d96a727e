"""What every command shares: the console, the project's settings, opening the history."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .console import CLIError, Console
from .project import Project, find_project

if TYPE_CHECKING:
    from ..api import History, RunSummary
    from ..settings import PerfSettings


@dataclass
class Context:
    console: Console
    cwd: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @cached_property
    def project(self) -> Project:
        return find_project(self.cwd)

    @cached_property
    def settings(self) -> PerfSettings:
        return self.project.settings(self.env)

    def history(self, db: str | None, *, create: bool = False) -> History:
        """The history database: `--db` (relative to the current directory), else the
        plugin's (`PERFGUARD_DB`, `PERFORMANCE_DB_PATH`, ini `perf_db`, else
        `.perfguard/history.db`, relative to the rootdir). Read commands never create it.
        """
        from ..api import History

        if db is not None:
            return History(db, rootdir=self.cwd, create=create)
        return History(self.settings.db, rootdir=self.project.rootdir, create=create)

    def baselines_path(self, explicit: str | None) -> Path:
        if explicit is not None:
            path = Path(explicit).expanduser()
            return path if path.is_absolute() else self.cwd / path
        return self.settings.baselines

    def platform(self, explicit: str | None) -> str:
        """This machine's platform key: `--platform`, else the plugin's setting, else detected."""
        if explicit:
            return explicit
        if self.settings.platform:
            return self.settings.platform
        from ..platform import detect_platform

        return detect_platform().key


def resolve_run(history: History, ref: str, platform: str | None = None) -> int:
    """A run id from `12`, `latest` or `latest~N` (the N-th run before the newest)."""
    if ref.isdigit():
        return int(ref)
    back = 0 if ref == "latest" else int(ref.removeprefix("latest~"))
    found: list[RunSummary] = history.recent_runs(platform=platform, limit=back + 1)
    if len(found) <= back:
        where = f" on platform {platform!r}" if platform else ""
        if not found:
            raise CLIError(f"no runs recorded{where} yet: record some with pytest --perf-record")
        raise CLIError(f"no run {ref}: only {len(found)} run(s) recorded{where}")
    return found[back].id
