"""Running tests again after the main loop: confirm re-runs and A/A calibration passes.

A re-run is pytest's own protocol (setup, call, teardown) with `log=False`, as rerun
plugins do: fixtures are set up again, nothing is reported, so pass/fail counts stay those of
the main loop. The plugin's call hooks measure each re-run as usual into the session's
`RunLog`; its `pooled_reruns` and `separate_pass` say whether the samples pool into the
test's first run (confirm) or stand alone (calibration).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .measure import Confirmation, run_outcome

if TYPE_CHECKING:
    import pytest

    from .results import Measurement
    from .runlog import RunLog
    from .session import SessionContext

# Confirm passes start at least this far apart, so they sample different moments of a
# machine whose speed comes and goes in spells (see docs/noise.md).
CONFIRM_SPACING = 0.25

_clock = time.perf_counter


def rerun(items: list[pytest.Item]) -> None:
    """Run `items` again, in order, sharing fixtures between neighbours as the main loop does."""
    from _pytest.runner import runtestprotocol

    for index, item in enumerate(items):
        nextitem = items[index + 1] if index + 1 < len(items) else None
        runtestprotocol(item, log=False, nextitem=nextitem)


def confirm(
    log: RunLog, context: SessionContext, session: pytest.Session
) -> tuple[dict[tuple[str, str], Confirmation], list[Measurement] | None]:
    """Re-run the tests flagged as regressions up to `--perf-confirm` times, passes at least
    `CONFIRM_SPACING` apart; a test whose regressions cleared is not re-run again. Recording,
    marked tests without a baseline yet take the same passes (`session.unbaselined_tests`);
    unmarked tests only ever re-run as flagged regressions.

    Returns, per metric first flagged, its first change and how often its test was re-run;
    and, when nothing re-ran, the session's rows (already built for the check).
    """
    from .session import flagged_regressions, unbaselined_tests

    selected = log.selected
    if not log.specs and (context.settings.gate != "all" or not context.has_baselines()):
        # No test can be gated, or none has a baseline to regress from: none can be flagged,
        # and a recording re-samples only marked tests.
        return {}, None
    # Under the default gate only marked tests' rows can be flagged: plain tests' runs stay
    # columns for the session end (`RunLog.session_results`).
    every_row = context.settings.gate == "all" or bool(log.gated_readings)
    rows = log.rows(plain=every_row)
    flagged = flagged_regressions(context, rows, selected)
    sampled = unbaselined_tests(context, rows, selected)
    if not flagged and not sampled:
        return {}, rows if every_row else None
    first = dict(flagged)
    reruns: dict[str, int] = {}
    last_pass = _clock()
    for n in range(log.settings.confirm_runs):
        tests = {test for test, _ in flagged} | sampled
        # In collection order, so module- and class-scoped fixtures are shared as usual.
        items = [item for item in session.items if item.nodeid in tests]
        if not items:
            break
        if n:
            time.sleep(max(0.0, CONFIRM_SPACING - (_clock() - last_pass)))
        last_pass = _clock()
        with log.pooled_reruns():
            rerun(items)
        for item in items:
            reruns[item.nodeid] = reruns.get(item.nodeid, 0) + 1
        still = flagged_regressions(context, log.rows(plain=every_row), selected)
        flagged = {key: change for key, change in still.items() if key in first}
    confirmations = {
        (test, metric): Confirmation(change, reruns[test])
        for (test, metric), change in first.items()
        if reruns.get(test)
    }
    return confirmations, None


def calibrate(log: RunLog, session: pytest.Session) -> list[list[Measurement]]:
    """A/A calibration: the main loop is pass 1; `--perf-calibrate N` - 1 more passes over
    the tests that passed, each pass's rows kept apart, not pooled."""
    passes = [log.rows()]
    items = [
        item
        for item in session.items
        if (run := log.runs.get(item.nodeid)) is not None and run_outcome(run) == "passed"
    ]
    for _ in range((log.settings.calibrate or 1) - 1):
        with log.separate_pass():
            rerun(items)
            passes.append(log.rows())
    return passes
