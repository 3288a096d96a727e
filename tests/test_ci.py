"""CI detection: one rule for "this variable says yes", used by the run type's default, who
triggered a run, the platform's provider and the git fallbacks of a detached checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_perfguard.config import ci_provider, env_says_yes, running_in_ci
from pytest_perfguard.platform import fingerprint
from pytest_perfguard.runinfo import git_state, triggered_by
from pytest_perfguard.settings import resolve

ROOT = Path(".")


@pytest.mark.parametrize(
    ("value", "yes"),
    [
        ("true", True),
        ("1", True),
        ("TRUE ", True),
        ("https://jenkins.example/", True),  # JENKINS_URL
        ("2024.1", True),  # TEAMCITY_VERSION
        ("", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        (None, False),
    ],
)
def test_every_consumer_reads_a_ci_variable_the_same_way(value: str | None, yes: bool) -> None:
    assert env_says_yes(value) is yes
    for variable, provider in (("CI", "CI"), ("GITHUB_ACTIONS", "GitHub_Actions")):
        env = {} if value is None else {variable: value}
        assert running_in_ci(env) is yes
        assert (ci_provider(env) == provider) is yes
        assert fingerprint(env)["ci_provider"] == (provider if yes else None)
        assert resolve({}, env, {}, ROOT).run_type == ("ci" if yes else "manual")
        assert triggered_by("manual", env) == ("ci" if yes else "user")


def test_the_first_provider_names_the_platform_and_a_gpu_host_is_not_ci() -> None:
    assert ci_provider({"CI": "true", "GITHUB_ACTIONS": "true"}) == "GitHub_Actions"
    assert ci_provider({"CI": "true", "TRAVIS": "true"}) == "Travis_CI"
    assert ci_provider({"RUNPOD_POD_ID": "abc123"}) == "RunPod"
    assert not running_in_ci({"RUNPOD_POD_ID": "abc123"})
    assert running_in_ci({"RUNPOD_POD_ID": "abc123", "CI": "1"})


def test_git_falls_back_to_the_ci_variables_only_in_ci(tmp_path: Path) -> None:
    github = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "f" * 40, "GITHUB_REF_NAME": "main"}
    assert git_state(tmp_path, github).commit == "f" * 40  # no repository: CI says
    assert git_state(tmp_path, {**github, "GITHUB_ACTIONS": "false"}).commit is None
    assert git_state(tmp_path, {"GITHUB_SHA": "f" * 40}).commit is None
    # A detached checkout names no branch: the CI's variable does.
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    assert git_state(repo, github).branch == "main"
    pr = {**github, "GITHUB_HEAD_REF": "feature"}
    assert git_state(repo, pr).branch == "feature"
    assert git_state(repo, {"GITHUB_REF_NAME": "main"}).branch == "HEAD"
