"""This repository gates itself: a deliberate slowdown in the plugin fails perf.yml's gate.

The test copies the package, puts a busy loop on the plugin's per-test path, and runs the
self-suite (benchmarks/selfperf) under callgrind exactly as perf.yml does, against the
committed baselines/perf_baselines.json: the session of 100 tests regresses and pytest
exits 1, while the untouched session-end write reads unchanged (so the committed baselines
are what this machine counts). Needs valgrind, and CPython 3.11: the committed counts are
3.11's (their platform key says so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfguard import valgrind

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = "selfperf_callgrind_py3.11"
SESSION = "benchmarks/selfperf/test_selfperf.py::test_a_session_of_plain_tests"
WRITE = "benchmarks/selfperf/test_selfperf.py::test_session_end_write"
# The busy loop: about a million instructions on every test's call, before the test runs.
SLOWDOWN = "            for _ in range(50_000):\n                pass\n"

needs_callgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None or valgrind.unsupported_platform() is not None,
    reason="needs valgrind on Linux x86_64/aarch64",
)


def test_the_committed_baselines_gate_the_self_suite() -> None:
    data = json.loads((ROOT / "baselines" / "perf_baselines.json").read_text("utf-8"))
    section = data["platforms"][PLATFORM]
    assert section["metadata"]["hardware"]["cpu_count"] >= 1
    for test in (SESSION, WRITE):
        entry = section["tests"][test]["instructions"]
        assert entry["value"] > 1e6 and entry["threshold"] == 0.05 and entry["runs"] >= 3


def slowed_copy(tmp_path: Path) -> Path:
    """The repository's package, self-suite and baselines, the plugin slowed down."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "pytest_perfguard", project / "pytest_perfguard",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(ROOT / "benchmarks" / "selfperf", project / "benchmarks" / "selfperf",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (project / "baselines").mkdir()
    shutil.copy(ROOT / "baselines" / "perf_baselines.json", project / "baselines")
    (project / "pytest.ini").write_text("[pytest]\n")
    runlog = project / "pytest_perfguard" / "runlog.py"
    source = runlog.read_text("utf-8")
    # The first line of the function each plain test's measured call goes through, its
    # class's `runtest` (`RunLog.plain_runtest`; the self-suite's inner session measures
    # plain tests: `--perf-gate=all`).
    call = re.search(r"\n        def runtest\(item: pytest\.Item\) -> None:\n", source)
    assert call is not None, "the plugin's per-test start moved: update the injection point"
    runlog.write_text(source[: call.end()] + SLOWDOWN + source[call.end() :], "utf-8")
    return project


@needs_callgrind
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the committed counts are 3.11's")
def test_a_slowdown_in_the_plugin_fails_the_self_gate(tmp_path: Path) -> None:
    project = slowed_copy(tmp_path)
    (project / ".perfguard" / "callgrind").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGUARD", "PERFORMANCE"))}
    env.update(PYTHONPATH=str(project), PYTHONHASHSEED="0")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "-q",
         "--callgrind-out-file=.perfguard/callgrind/callgrind.out.%p",
         sys.executable, "-m", "pytest", "benchmarks/selfperf", "-p", "no:cacheprovider",
         "--perf-instructions", "--perf-platform", PLATFORM, "--perf-json", "report.json"],
        cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    verdicts = {v["test"]: v for v in json.loads((project / "report.json").read_text())[
        "comparisons"]}  # fmt: skip
    assert verdicts[SESSION]["verdict"] == "regression", output
    assert verdicts[SESSION]["change"] > 0.05
    # The untouched write reads unchanged: the committed counts are this machine's.
    assert verdicts[WRITE]["verdict"] == "unchanged", output
