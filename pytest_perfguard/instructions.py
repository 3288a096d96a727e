"""`instructions`: the machine instructions each counted test's call executes, counted by
valgrind's callgrind when pytest itself runs under it.

Time on a shared virtual machine comes and goes in slow spells (docs/noise.md). An
instruction count does not: the same code on the same inputs executes the same instructions
whatever the neighbours do. Under callgrind, perfguard counts each counted test's rounds and
gates on that count instead of on time (see `gated_metrics` in ``hookspecs``). The counting
itself (client requests, dumps read back) is `valgrind.CallgrindCounter`.

Nothing here imports pytest, so the CLI can use it too; nothing heavier than an environment
lookup runs unless the process is under valgrind.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from .valgrind import (
    CallgrindCounter,
    CallgrindError,
    open_callgrind_counter,
    unsupported_platform,
    valgrind_tool,
)

if TYPE_CHECKING:
    import pytest

    from .measure import Reading

hookimpl = pluggy.HookimplMarker("pytest")

METRIC = "instructions"
UNIT = "instr"


class InstructionCollector:
    """``instructions``: the instructions the counted rounds executed, per round.

    Counted tests are those that can be gated: marked tests, and every test with
    ``--perf-gate all``; others pay one flag check. It is also a pytest plugin, for
    ``pytest_runtest_setup``, which says whether the next call is counted.
    """

    gated_metrics = (METRIC,)

    def __init__(self, counter: CallgrindCounter, *, count_all: bool):
        self._counter = counter
        self._count_all = count_all
        self._counted_next = False
        self._counting = False
        self.counted = 0

    @hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._counted_next = self._count_all or item.get_closest_marker("perf") is not None
        if self._counted_next:
            self._counter.set_label(item.nodeid)

    def start(self) -> None:
        if not self._counted_next:
            return
        self._counting = True
        self._counter.start()

    def stop(self, rounds: int) -> Sequence[Reading]:
        if not self._counting:
            return ()
        self._counting = False
        try:
            count = self._counter.stop()
        except CallgrindError as exc:
            import pytest

            pytest.fail(f"perfguard: {exc}", pytrace=False)
        self.counted += 1
        return ((METRIC, count / rounds, UNIT),)

    def describe(self) -> dict[str, Any]:
        return {
            "instructions_method": "callgrind",
            "callgrind_out_file": str(self._counter.out_file),
            "instructions_counted_tests": self.counted,
        }


def open_instruction_collector(
    *, count_all: bool, environ: Mapping[str, str] | None = None
) -> InstructionCollector | None:
    """The collector when this process runs under callgrind, else None.

    Raises CallgrindError (one line) when it runs under callgrind but cannot count here.
    """
    counter = open_callgrind_counter(environ)
    return None if counter is None else InstructionCollector(counter, count_all=count_all)


def suggested_command() -> str:
    """The command line that runs this Python's pytest under callgrind, as docs/metrics.md
    gives it. The interpreter is named by its path: valgrind run on a launcher script
    (a pyenv shim) would count the shell, not Python."""
    return (
        "PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no -q "
        f"{sys.executable} -m pytest ..."
    )


def why_not_counted(environ: Mapping[str, str] | None = None) -> str:
    """Why this process does not count instructions, and what to do instead."""
    reason = unsupported_platform()
    if reason is not None:
        return reason
    tool = valgrind_tool(environ)
    if tool is not None and tool != "callgrind":
        return f"pytest runs under valgrind's {tool}, not callgrind; run {suggested_command()}"
    if shutil.which("valgrind") is None:
        return (
            "valgrind is not installed (e.g. apt-get install valgrind); then run "
            f"{suggested_command()}"
        )
    return f"pytest is not running under valgrind's callgrind; run {suggested_command()}"


class InstructionCounting:
    """The built-in `instructions` collector's hook. The plugin registers one with what the
    session's settings ask for, so this module needs nothing from the plugin."""

    def __init__(self, *, count_all: bool, required: bool) -> None:
        self.count_all = count_all  # --perf-gate all: count every test, not just marked ones
        self.required = required  # --perf-instructions: not counting is a usage error

    @hookimpl
    def pytest_perfguard_collectors(self, config: pytest.Config) -> Sequence[InstructionCollector]:
        import pytest

        try:
            collector = open_instruction_collector(count_all=self.count_all)
        except CallgrindError as exc:
            raise pytest.UsageError(f"perfguard: {exc}") from None
        if collector is None:
            if self.required:
                raise pytest.UsageError(f"perfguard: --perf-instructions: {why_not_counted()}")
            return ()
        if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
            # Workers are other processes, which callgrind does not follow by default; and
            # the controller would judge their rows on time.
            raise pytest.UsageError(
                "perfguard: instruction counts are taken in one process: "
                "drop -n/--dist under callgrind"
            )
        config.pluginmanager.register(collector, "perfguard-instruction-counter")
        return (collector,)
