"""A perfguard option's value given apart from its flag (`--perf-json /elsewhere/r.json`)
that moves pytest's rootdir stops the session with one line, instead of a gate that
compares nothing under changed test ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_perfguard.rootdir_check import values_given_apart

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.mark.perf
def test_quick():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_quick=SUITE)
    return pytester


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An existing report file outside the project, as on a CI runner's temp directory."""
    path = tmp_path_factory.mktemp("reports") / "perf.json"
    path.write_text("{}")
    return path


def test_a_value_apart_that_moves_the_rootdir_is_a_usage_error(
    project: pytest.Pytester, elsewhere: Path
) -> None:
    result = project.runpytest_subprocess("--perf", "--perf-json", str(elsewhere))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    # No ini file above the report: pytest falls back to the paths' common ancestor.
    moved_to = os.path.commonpath([elsewhere, project.path])
    assert errors == [
        f"ERROR: perfguard: pytest read {elsewhere}, the value of --perf-json, as a test "
        f"path when it chose its rootdir ({moved_to} instead of {project.path}): "
        f"write --perf-json={elsewhere}"
    ]
    assert elsewhere.read_text() == "{}"


def test_a_base_directory_apart_is_named_too(
    project: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("base")
    result = project.runpytest_subprocess("--perf-against", str(base))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*the value of --perf-against*write --perf-against={base}"])


def test_the_same_value_with_equals_runs(project: pytest.Pytester, elsewhere: Path) -> None:
    result = project.runpytest_subprocess("--perf", f"--perf-json={elsewhere}")
    assert result.ret == pytest.ExitCode.OK
    assert '"test_quick.py::test_quick"' in elsewhere.read_text()


def test_a_value_apart_inside_the_project_runs(project: pytest.Pytester) -> None:
    """A path under the rootdir leaves the rootdir where it is: nothing to refuse."""
    (project.path / "reports").mkdir()
    (project.path / "reports" / "perf.json").write_text("{}")
    result = project.runpytest_subprocess("--perf", "--perf-json", "reports/perf.json")
    assert result.ret == pytest.ExitCode.OK
    assert "test_quick.py::test_quick" in (project.path / "reports" / "perf.json").read_text()


def test_an_explicit_rootdir_wins(project: pytest.Pytester, elsewhere: Path) -> None:
    result = project.runpytest_subprocess(
        "--rootdir", str(project.path), "--perf", "--perf-json", str(elsewhere)
    )
    assert result.ret == pytest.ExitCode.OK


def test_values_given_apart(tmp_path: Path) -> None:
    (tmp_path / "there.json").write_text("")
    tokens = ["-q", "--perf-json", "there.json", "--perf-report", "absent.md", "--perf-db=x"]
    flags = ("--perf-json", "--perf-report", "--perf-db")
    assert values_given_apart(tokens, flags, tmp_path) == [("--perf-json", "there.json")]
    assert values_given_apart(["--perf-json", "-q"], flags, tmp_path) == []
    assert values_given_apart(["there.json"], flags, tmp_path) == []
