"""The base side's checkout: a directory given as is, or a git revision checked out into a
temporary worktree that is removed again at the end (also after Ctrl-C and SIGTERM).

No pytest here: errors are `BaseError`, one line naming what failed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class BaseError(ValueError):
    """BASE cannot be used: one line naming what failed."""


def _git(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass
class BaseCheckout:
    """Where the base's code is, and how to name it in reports."""

    path: Path
    label: str  # what the user gave: a revision or a directory
    commit: str | None = None
    # Set when perfguard made a worktree (of repository `repo`) and must remove it.
    worktree: Path | None = None
    repo: Path | None = None

    @property
    def describe(self) -> str:
        """`main (1a2b3c4d5e6f)`, or the directory (with its commit when it is a checkout)."""
        if self.commit and self.label != self.commit:
            return f"{self.label} ({self.commit[:12]})"
        return self.commit[:12] if self.commit else self.label

    def remove(self) -> None:
        """Remove the worktree perfguard made (nothing for a user's directory); idempotent."""
        if self.worktree is None or self.repo is None:
            return
        worktree, self.worktree = self.worktree, None
        repo = self.repo
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _git(repo, "worktree", "remove", "--force", str(worktree), timeout=60)
        shutil.rmtree(worktree, ignore_errors=True)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _git(repo, "worktree", "prune", timeout=60)


def _commit_of(path: Path) -> str | None:
    """The commit checked out in `path`, when `path` is the top of a git checkout (a
    directory inside some other repository is not that repository's commit)."""
    try:
        top = _git(path, "rev-parse", "--show-toplevel", timeout=10)
        done = _git(path, "rev-parse", "HEAD", timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if top.returncode != 0 or done.returncode != 0:
        return None
    if Path(top.stdout.strip()).resolve() != path.resolve():
        return None
    return done.stdout.strip()


def resolve_base(spec: str, rootdir: Path) -> BaseCheckout:
    """BASE as the user gave it: an existing directory (relative to `rootdir` or the
    working directory), else a git revision of the repository holding `rootdir`, checked
    out with ``git worktree add --detach`` into a temporary directory."""
    text = spec.strip()
    if not text:
        raise BaseError("--perf-against: empty; give a git revision or a directory")
    for candidate in (Path(text).expanduser(), rootdir / text):
        if candidate.is_dir():
            path = candidate.resolve()
            return BaseCheckout(path, text, _commit_of(path))
    try:
        toplevel = _git(rootdir, "rev-parse", "--show-toplevel", timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BaseError(
            f"--perf-against {text}: not a directory, and git is unusable: {exc}"
        ) from None
    if toplevel.returncode != 0:
        raise BaseError(
            f"--perf-against {text}: not a directory, and {rootdir} is not in a git repository"
        )
    repo = Path(toplevel.stdout.strip())
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{text}^{{commit}}", timeout=10)
    if found.returncode != 0:
        raise BaseError(
            f"--perf-against {text}: neither a directory nor a git revision of {repo}"
            " (for a pull request's base, fetch with full depth)"
        )
    commit = found.stdout.strip()
    where = Path(tempfile.mkdtemp(prefix="perfguard-base-"))
    added = _git(repo, "worktree", "add", "--detach", str(where), commit)
    if added.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        raise BaseError(
            f"--perf-against {text}: git worktree add failed: {_first_line(added.stderr)}"
        )
    # The head's rootdir may sit below the repository's top (a monorepo): root the base at
    # the same place inside its worktree.
    root, top = rootdir.resolve(), repo.resolve()
    inner = root.relative_to(top) if root.is_relative_to(top) else Path(".")
    return BaseCheckout(where / inner, text, commit, worktree=where, repo=repo)
