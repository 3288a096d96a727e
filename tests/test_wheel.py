"""The built wheel works: not the source tree, the wheel users install.

A module-scoped fixture builds the wheel with pip (as `pip install .` does) and installs it
into a directory of its own; each test runs Python with only that directory in front of the
path, in a directory outside the checkout, and checks that it imported the wheel. What the
source tree has but the wheel could lack (templates, static assets, migrations, the entry
points, `py.typed`) is exercised by using it: a recorded pytest session, the reports, the
dashboard, the console script, and every public name of the package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the build reads: setuptools builds inside the source tree
    # (build/), so two xdist workers building the checkout at once collide, and a stale
    # build/lib there could ship a module the source no longer has.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pytest_perfguard", source / "pytest_perfguard",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (built,) = out.glob("pytest_perfguard-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a directory of its own, console script included."""
    target = tmp_path_factory.mktemp("site")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    return target


def run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    for name in ("PERFGUARD", "PERFGUARD_DB", "PERFORMANCE_DB_PATH", "GITHUB_STEP_SUMMARY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def python(site: Path, cwd: Path, code: str) -> str:
    done = run(site, cwd, "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_it_is_the_wheel_that_is_imported(site: Path, tmp_path: Path) -> None:
    where = python(site, tmp_path, "import pytest_perfguard; print(pytest_perfguard.__file__)")
    assert Path(where.strip()).is_relative_to(site)


def test_every_public_name_works_from_the_wheel(site: Path, tmp_path: Path) -> None:
    # A star import fails on any name in __all__ that is missing; each one is then used.
    out = python(
        site,
        tmp_path,
        """
from pytest_perfguard import *
from pytest_perfguard import api
import pytest_perfguard

assert isinstance(__version__, str) and __version__
with History("h.db") as history:
    run_id = history.record_run({"tokens_per_s": 41.5}, platform="wheel_box",
                                directions={"tokens_per_s": "higher"})
    detail = history.get_run(run_id)
    assert [(m.metric, m.value) for m in detail.measurements] == [("tokens_per_s", 41.5)]
    try:
        history.record_run({"x": float("nan")}, platform="wheel_box")
    except HistoryError as exc:
        print("refused:", exc)
with track("pipeline", history="h.db", live=False, platform="wheel_box") as run:
    with run.step("load"):
        pass
with History("h.db") as history:
    when = history.get_run(run_id).started_at
    history.save_session(RunInfo(started_at=when, platform=PlatformInfo("wheel_box")),
                         [Measurement("t.py::test_a", "duration", 0.5)])
print("runs:", len(PerformanceHistory("h.db").get_recent_runs(limit=10)))
namespace = {}
exec("from pytest_perfguard.api import *", namespace)
assert set(api.__all__) <= set(namespace)
print("names:", sorted(pytest_perfguard.__all__))
""",
    )
    assert "metric 'x' needs a finite number" in out
    assert "runs: 3" in out


def test_a_recorded_session_reports_and_dashboard_from_the_wheel(
    site: Path, tmp_path: Path
) -> None:
    (tmp_path / "test_suite.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.perf(metric='latency')\n"
        "def test_latency(perf):\n"
        "    perf.record('latency', 1.0)\n"
    )
    # The pytest11 entry point of the wheel's metadata loads the plugin; the migrations
    # create the history; the report templates render.
    session = run(site, tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "--perf-record",
                  "--perf-report", "r.md", "--perf-json", "r.json")  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    assert "perfguard: stored run 1" in session.stdout
    assert "<!-- perfguard-report -->" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.json").read_text().startswith("{")

    def cli(*args: str) -> str:
        done = run(site, tmp_path, "-m", "pytest_perfguard", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert str(site) in cli("--version")
    cli("dashboard", "--output", "d.html")
    page = (tmp_path / "d.html").read_text()
    # Standalone: the chart code is inlined, no script is fetched from anywhere.
    assert "latency" in page and "<script" in page
    assert re.findall(r"<script[^>]*\ssrc=", page) == []
    assert cli("report", "--format", "html").lstrip().lower().startswith("<!doctype html")


def test_the_console_script_of_the_wheel(site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [str(site / "bin" / "perfguard"), "--version"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("perfguard ") and str(site) in done.stdout
