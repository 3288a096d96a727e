"""Hooks other plugins implement to add what perfguard measures.

pytest only calls hook functions named ``pytest_*``, hence the prefix. The built-in
collectors (CPU time, peak RSS, GPU memory) are registered through these same hooks by
:mod:`pytest_perfguard.collectors`, so a third-party metric never touches the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import pytest

    from .measure import Collector

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_perfguard_collectors(config: pytest.Config) -> Sequence[Collector] | None:
    """Return collectors to run around every measured test's call phase.

    Called once per session, only when perfguard is active. Each collector's ``start()``
    runs just before the test's counted rounds and ``stop(rounds)`` just after; ``stop``
    returns ``(metric, value, unit)`` readings, stored as lower-is-better system metrics.
    Keep both cheap: they run for every test. A collector may define ``close()``, called
    at session end, and ``describe() -> dict`` whose items are stored in the run's
    ``system_info`` (e.g. which memory method ran). A collector whose readings do not
    depend on the clock may name them in ``gated_metrics``: the session then judges those
    readings (kind ``custom``) in place of the tests' own metrics, which are stored as system
    metrics, and takes no extra rounds or confirm re-runs (``instructions`` under callgrind).
    """
