"""Run metadata: git state, who ran it, and the RunInfo stored with every run."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import ci_branch, ci_commit, running_in_ci
from .history.urls import mask_secrets
from .platform import hardware, python_version
from .results import PlatformInfo, RunInfo, RunOutcome, RunType


@dataclass(frozen=True)
class GitState:
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None


def _git(rootdir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=rootdir, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(rootdir: Path, env: Mapping[str, str] | None = None) -> GitState:
    """The commit being tested; tolerant of no git, no repository and detached CI checkouts."""
    env = os.environ if env is None else env
    # Commit and branch from one process: each `git` costs a fork of this whole process.
    names = _git(rootdir, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
    lines = names.splitlines() if names else []
    if len(lines) != 2:
        return GitState(commit=ci_commit(env))
    commit, branch = lines[0], lines[1] or None
    if branch in (None, "HEAD"):
        branch = ci_branch(env) or branch
    status = _git(rootdir, "status", "--porcelain", "--untracked-files=no")
    return GitState(commit=commit, branch=branch, dirty=None if status is None else bool(status))


def triggered_by(run_type: RunType, env: Mapping[str, str]) -> str:
    if run_type == "nightly":
        return "automated"
    return "ci" if running_in_ci(env) else "user"


def run_outcome(exitstatus: int) -> RunOutcome:
    if exitstatus == 0:
        return "passed"
    if exitstatus == 2:  # pytest.ExitCode.INTERRUPTED
        return "interrupted"
    return "failed"


def _user() -> str:
    try:
        import getpass  # lazy: it loads termios and pwd

        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return ""


def build_run_info(
    *,
    platform: PlatformInfo,
    started_at: datetime,
    run_type: RunType,
    notes: str,
    args: list[str],
    exitstatus: int,
    git: GitState,
    system_info: dict[str, Any],
) -> RunInfo:
    return RunInfo(
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
        platform=platform,
        git_commit=git.commit,
        git_branch=git.branch,
        git_dirty=git.dirty,
        python_version=python_version(),
        run_type=run_type,
        triggered_by=triggered_by(run_type, os.environ),
        host=socket.gethostname(),
        # `--perf-db postgresql://user:pw@...` must not reach the history or a report.
        args=[mask_secrets(arg) for arg in args],
        outcome=run_outcome(exitstatus),
        notes=mask_secrets(notes),
        # The machine this run measured on: under one platform key, CI runners rotate CPUs.
        system_info={"user": _user(), "hardware": hardware(platform.fingerprint), **system_info},
    )
