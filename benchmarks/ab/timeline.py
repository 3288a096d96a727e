"""Where an A/B run's time goes: a pytest plugin that prints the head's phases and each
lane's pairings, with wall and CPU seconds, to stderr.

    cd <head checkout>
    PYTHONPATH=<this repo>/benchmarks/ab python -c \\
        "import sys, pytest, timeline; sys.exit(pytest.main(sys.argv[1:], plugins=[timeline]))" \\
        -q --perf-against=<base checkout> --perf-threshold 0.1

(Registered by `pytest.main`, not `-p timeline`: the A/B head workers would not load a
plugin the command line switches on, so with it there the head process collects and
runs the tests itself, the fallback of `ab/controller.py`.)

Lines:
- ``phase``: seconds since the plugin was imported, this process's CPU seconds and its
  children's (the workers', once reaped), at configure, collection's end, the loop's start,
  its first test (the lanes are done by then), its end, the session's finish and exit;
- ``pair``: one test's pairing in a lane (``L``) or a confirmation lane (``C``), its CPUs,
  start and end, and how many pairs it took.

The confirmation lanes' start is a phase of its own. RESULTS.md quotes runs of it.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Generator
from typing import Any

import pytest

from pytest_perfguard.ab import plugin as ab_plugin

T0 = time.perf_counter()


def _write(line: str) -> None:
    # The real stderr: pytest captures sys.stderr around tests.
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line)
        stream.flush()


def _phase(what: str) -> None:
    times = os.times()
    _write(
        f"phase {time.perf_counter() - T0:7.3f}s  cpu {times.user + times.system:6.2f}  "
        f"children {times.children_user + times.children_system:6.2f}  {what}\n"
    )


_pair_in_lane = ab_plugin.ABSession._pair_in_lane
_confirmation_lanes = ab_plugin.ABSession._confirmation_lanes


def _timed_pair_in_lane(self: Any, lane: Any, test: str, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter() - T0
    run = _pair_in_lane(self, lane, test, *args, **kwargs)
    kind = "C" if any(lane is other for other in self.confirming) else "L"
    _write(
        f"pair  {kind}{lane.cpus} {start:7.3f}-{time.perf_counter() - T0:7.3f}s  "
        f"{test.rpartition('::')[2]}  {len(run.head)} pairs\n"
    )
    return run


def _timed_confirmation_lanes(self: Any) -> Any:
    if not self.confirming:
        _phase("confirmation lanes start")
    return _confirmation_lanes(self)


ab_plugin.ABSession._pair_in_lane = _timed_pair_in_lane  # type: ignore[method-assign]
ab_plugin.ABSession._confirmation_lanes = _timed_confirmation_lanes  # type: ignore[method-assign]
atexit.register(_phase, "exit")


def pytest_configure(config: pytest.Config) -> None:
    _phase("configure")


def pytest_collection_finish(session: pytest.Session) -> None:
    _phase("collection finished")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection(session: pytest.Session) -> Generator[None, None, None]:
    yield
    _phase("collection done (in a head worker, when this process does not collect)")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, None, None]:
    _phase("loop start (the lanes pair first)")
    yield
    _phase("loop end")


_first_test = [True]


def pytest_runtest_protocol(item: pytest.Item) -> None:
    if _first_test[0]:
        _first_test[0] = False
        _phase("first test of the loop")


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    _phase("session finish (confirmations left, reports)")
    yield
    _phase("session finished")
