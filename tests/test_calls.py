"""How often the plugin calls a test: never more than the user asked for."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import os
import pytest

def _called(name):
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write(name + "\\n")

def test_plain():
    _called("plain")

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    _called(f"param{n}")

@pytest.mark.perf(rounds=1)
def test_marked():
    _called("marked")
"""


def calls(pytester: pytest.Pytester, *args: str) -> dict[str, int]:
    calls_file = pytester.path / "calls.txt"
    calls_file.unlink(missing_ok=True)
    pytester.makepyfile(test_suite=SUITE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLS_FILE", str(calls_file))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    counted: dict[str, int] = {}
    for name in calls_file.read_text().split():
        counted[name] = counted.get(name, 0) + 1
    return counted


@pytest.mark.parametrize("gate", ["marked", "all"])
def test_first_recording_calls_unmarked_tests_once(pytester: pytest.Pytester, gate: str) -> None:
    """No baseline yet: a marked test is sampled again (a first baseline from two moments),
    an unmarked one is not, whatever the gate: recording a suite does not run it twice."""
    counted = calls(pytester, "--perf-record", f"--perf-gate={gate}", "--perf-db", "h.db")
    assert counted == {"plain": 1, "param1": 1, "param2": 1, "marked": 2}


@pytest.mark.parametrize("flags", [["--perf"], ["--perf", "--perf-gate=all"]])
def test_measuring_calls_each_test_once(pytester: pytest.Pytester, flags: list[str]) -> None:
    assert calls(pytester, *flags) == {"plain": 1, "param1": 1, "param2": 1, "marked": 1}
