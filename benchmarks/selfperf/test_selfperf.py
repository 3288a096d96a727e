"""pytest-perfguard's own performance suite: what the plugin costs, in instructions.

Run under valgrind's callgrind (see docs/metrics.md, "instructions") with the committed
baselines, this gates the plugin's pull requests (.github/workflows/perf.yml); a count
does not move with the runner's CPU, so a hosted runner can gate it::

    mkdir -p .perfguard/callgrind
    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no -q \\
        --callgrind-out-file=.perfguard/callgrind/callgrind.out.%p \\
        .venv/bin/python -m pytest benchmarks/selfperf -p no:cacheprovider \\
        --perf-instructions --perf-platform selfperf_callgrind_py3.11

- ``test_a_session_of_plain_tests``: a whole pytest session of 100 empty tests with the plugin
  measuring and comparing them all (``--perf --perf-gate=all``: with the default gate an
  unmarked test is not measured at all), in this process: the plugin's per-test path times
  100, plus pytest's own (the same on both sides of a change).
- ``test_session_end_write``: storing a session of 2 000 results in a SQLite history.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_perfguard.api import History
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

INNER_TESTS = 100
RESULTS = 2000


@pytest.fixture(scope="module")
def inner_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inner")
    (path / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: no project ini
    (path / "test_inner.py").write_text(
        "\n".join(f"def test_{n}():\n    pass\n" for n in range(INNER_TESTS))
    )
    return path


@contextmanager
def inner_environment() -> Iterator[None]:
    """The inner session must not count instructions itself (its client requests would
    reset the counts of this test): valgrind is known to it by its preloaded library. And
    it loads only perfguard (`-p`), not every installed plugin, so the plugin's share of
    the count is not lost among the others'."""
    saved = {
        name: os.environ.get(name) for name in ("LD_PRELOAD", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    }
    preload = saved["LD_PRELOAD"]
    if preload is not None:
        os.environ["LD_PRELOAD"] = ":".join(p for p in preload.split(":") if "vgpreload" not in p)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.perf(metric="session_of_100_tests", warmup=1)
def test_a_session_of_plain_tests(inner_suite: Path) -> None:
    args = [str(inner_suite), "-qq", "-p", "no:cacheprovider", "-p", "pytest_perfguard.plugin",
            "--perf", "--perf-gate=all", "--perf-confirm=0"]  # fmt: skip
    with inner_environment():
        status = pytest.main(args)
    assert status == 0


RUN = RunInfo(
    started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    platform=PlatformInfo("selfperf"),
    python_version="3",
)
ROWS = [
    Measurement(test=f"tests/test_x.py::test_{n // 4}", metric=f"m{n % 4}", value=n * 0.001)
    for n in range(RESULTS)
]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "history.db") as opened:
        opened.upgrade()
        yield opened


@pytest.mark.perf(metric="session_write_2000_results", warmup=1, rounds=3)
def test_session_end_write(history: History) -> None:
    history.save_session(RUN, ROWS)
