"""`instructions` under valgrind's callgrind: the parts without valgrind (file names, dump
headers, which rows are gated, the platform key, the client-request stub on a real CPU, the
errors) and, where valgrind is installed, a few real runs of pytest under callgrind."""

from __future__ import annotations

import json
import os
import platform as std_platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_perfguard import instructions, valgrind
from pytest_perfguard.api import History
from pytest_perfguard.instructions import open_instruction_collector, why_not_counted
from pytest_perfguard.platform import platform_key
from pytest_perfguard.results import Measurement, judged_on
from pytest_perfguard.valgrind import (
    CallgrindError,
    CallgrindSetup,
    ClientRequests,
    expand_out_file,
    option_value,
    read_dump_header,
)

pytest_plugins = ["pytester"]

CAN_COUNT = valgrind.unsupported_platform() is None
needs_callgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None or not CAN_COUNT,
    reason="needs valgrind on Linux x86_64/aarch64",
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("callgrind.out.%p", "/run/callgrind.out.4242"),
        ("/abs/cg.%p.out", "/abs/cg.4242.out"),
        ("cg.%q{JOB}.%p", "/run/cg.nightly.4242"),
        ("cg.%q{UNSET}", "/run/cg."),
        ("100%%.out", "/run/100%.out"),
    ],
)
def test_out_file_is_expanded_as_valgrind_does(template: str, expected: str) -> None:
    path = expand_out_file(template, pid=4242, environ={"JOB": "nightly"}, cwd=Path("/run"))
    assert path == Path(expected)


@pytest.mark.parametrize(
    ("template", "message"),
    [("cg.%n", "cannot predict %n"), ("cg.%q{JOB", "no closing brace")],
)
def test_out_file_names_perfguard_cannot_follow_are_one_line_errors(
    template: str, message: str
) -> None:
    with pytest.raises(CallgrindError, match=message):
        expand_out_file(template, pid=1, environ={}, cwd=Path("/"))


def test_the_last_option_wins_as_in_valgrind() -> None:
    options = ["--tool=memcheck", "-q", "--tool=callgrind"]
    assert option_value(options, "tool", "memcheck") == "callgrind"
    assert option_value(options, "collect-atstart", "yes") == "yes"


@pytest.mark.parametrize("option", ["--combine-dumps=yes", "--separate-threads=yes"])
def test_dump_layouts_perfguard_cannot_read_are_refused(option: str) -> None:
    with pytest.raises(CallgrindError, match=f"{option} is not supported.*drop it"):
        CallgrindSetup.from_options([option], environ={}, cwd=Path("/"))


def test_setup_reads_out_file_and_collect_atstart() -> None:
    setup = CallgrindSetup.from_options(
        ["--collect-atstart=no", "--callgrind-out-file=cg.out"], environ={}, cwd=Path("/w")
    )
    assert setup == CallgrindSetup(out_file=Path("/w/cg.out"), collect_atstart=False)


def test_dump_header_gives_trigger_and_instruction_count(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1.3"
    dump.write_text(
        "# callgrind format\nversion: 1\npart: 3\n\n"
        "desc: Trigger: Client Request: perfguard ab12:3 t.py::test_x\n\n"
        "positions: line\nevents: Dr Ir\nsummary: 17 12345\n\nfl=(1) x.c\n"
    )
    header = read_dump_header(dump)
    assert header is not None
    assert (header.trigger, header.instructions) == ("perfguard ab12:3 t.py::test_x", 12345)
    assert read_dump_header(tmp_path / "missing") is None
    (tmp_path / "other").write_text("not a dump\n")
    with pytest.raises(CallgrindError, match="not a callgrind dump"):
        read_dump_header(tmp_path / "other")


def test_a_gated_reading_replaces_the_tests_own_metrics_at_the_gate() -> None:
    rows = [
        Measurement("t::a", "duration", 0.5, "s", kind="primary", marked=True),
        Measurement("t::a", "tokens_per_s", 9.0, kind="custom", marked=True),
        Measurement("t::a", "step:load", 0.1, "s", kind="step", marked=True),
        Measurement("t::a", "cpu_time", 0.4, "s", kind="system", marked=True),
        Measurement("t::a", "instructions", 1e6, "instr", kind="system", marked=True),
    ]
    kinds = {row.metric: row.kind for row in judged_on(rows, {"instructions"})}
    assert kinds == {
        "duration": "system",
        "tokens_per_s": "system",
        "step:load": "system",  # a step's time is not judged either
        "cpu_time": "system",
        "instructions": "custom",
    }
    assert [row.metric for row in judged_on(rows, {"instructions"}) if row.is_gated("marked")] == [
        "instructions"
    ]


def test_platform_key_names_the_valgrind_tool_and_python() -> None:
    info = {"os": "Linux", "arch": "x86_64", "cpu_model": "AMD EPYC 7763", "cpu_count": 2}
    native = platform_key({**info, "memory_gb": 24.0})
    under = platform_key(
        {**info, "memory_gb": 24.0, "valgrind_tool": "callgrind", "python_version": "3.11.7"}
    )
    assert under == native + "_callgrind_py3.11.7"


def test_not_under_valgrind_there_is_no_collector() -> None:
    assert open_instruction_collector(count_all=False, environ={"LD_PRELOAD": ""}) is None


@pytest.mark.skipif(not CAN_COUNT, reason="the stub exists for Linux x86_64/aarch64")
def test_the_request_stub_is_a_no_op_on_a_real_cpu() -> None:
    requests = ClientRequests(std_platform.machine())
    assert requests.running_on_valgrind() == 0
    assert requests.request(valgrind._ZERO_STATS, default=7) == 7


def test_unsupported_platform_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(valgrind.std_platform, "machine", lambda: "ppc64le")
    assert why_not_counted({}) == (
        f"instruction counts need Linux on x86_64 or aarch64, not {sys.platform} on ppc64le"
    )


def test_missing_valgrind_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CAN_COUNT:
        pytest.skip("the platform check comes first here")
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    assert why_not_counted({}).startswith("valgrind is not installed")


def test_perf_instructions_outside_callgrind_is_one_usage_error_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--perf-instructions")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR: perfguard: --perf-instructions: ")
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_without_valgrind_no_instructions_are_stored(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.perf
        def test_marked():
            sum(range(1000))
        """
    )
    pytester.runpytest("--perf-record").assert_outcomes(passed=1)
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        detail = history.get_run(history.recent_runs(limit=1)[0].id)
    metrics = {row.metric: row.kind for row in detail.measurements}
    assert "instructions" not in metrics
    assert metrics["duration"] == "primary"


# Real runs under callgrind: five pytest sessions for the whole module (about a minute).

SUITE = """
import hashlib
import os

import pytest

FACTOR = float(os.environ.get("WORK_FACTOR", "1"))


def interp(units):
    d = {}
    for i in range(units):
        d[i % 97] = d.get(i % 97, 0) + i


@pytest.mark.perf
def test_interp():
    interp(round(20000 * FACTOR))


@pytest.mark.perf(rounds=3, warmup=1)
def test_sha_rounds():
    h = b"x"
    for _ in range(round(2000 * FACTOR)):
        h = hashlib.sha256(h).digest()


@pytest.mark.perf
def test_benchmarked(perf):
    perf.benchmark(interp, round(5000 * FACTOR))


def test_unmarked():
    interp(20000)
"""
COUNTED = ("test_interp", "test_sha_rounds", "test_benchmarked")


@dataclass
class Session:
    returncode: int
    output: str
    report: dict[str, dict[str, dict[str, object]]]  # test -> metric -> comparison


class CallgrindProject:
    """A suite run under callgrind from a directory of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "test_suite.py").write_text(SUITE)
        (root / "cg").mkdir()
        self.out_file = root / "cg" / "callgrind.out"

    def run(self, *args: str, factor: float = 1.0, valgrind: tuple[str, ...] = ()) -> Session:
        return self.start(*args, factor=factor, valgrind=valgrind).result()

    def start(
        self, *args: str, factor: float = 1.0, valgrind: tuple[str, ...] = (), name: str = "report"
    ) -> RunningSession:
        """A session started in the background (sessions that only read the history and
        the baselines may run at once: each is one process under callgrind, one CPU)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PERFGUARD", "PYTEST_")) and k not in ("CI", "GITHUB_ACTIONS")
        }
        # One hash seed, and no bytecode written: sessions that run at once would otherwise
        # find the suite compiled or not, and start their tests from heaps 0.1 % apart.
        env.update(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", WORK_FACTOR=str(factor))
        launcher = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "-q",
            f"--callgrind-out-file={self.out_file}.%p",
            *valgrind,
        ]
        report = self.root / f"{name}.json"
        report.unlink(missing_ok=True)
        cmd = [*launcher, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        process = subprocess.Popen(
            [*cmd, "--perf-json", str(report), *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return RunningSession(process, report)


@dataclass
class RunningSession:
    process: subprocess.Popen[str]
    report: Path

    def result(self) -> Session:
        try:
            output, _ = self.process.communicate(timeout=600)
        finally:
            self.process.kill()
        by_test: dict[str, dict[str, dict[str, object]]] = {}
        if self.report.exists():
            for c in json.loads(self.report.read_text())["comparisons"]:
                by_test.setdefault(c["test"].rpartition("::")[2], {})[c["metric"]] = c
        return Session(self.process.returncode, output, by_test)


@dataclass
class Scenario:
    project: CallgrindProject
    recorded: Session
    clean: Session
    slowed: Session
    clean_again: Session


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    if shutil.which("valgrind") is None or not CAN_COUNT:
        pytest.skip("needs valgrind on Linux x86_64/aarch64")
    project = CallgrindProject(tmp_path_factory.mktemp("callgrind"))
    recorded = project.run(
        "--perf-record", "--perf-update-baselines", "--perf-min-runs", "1", "--perf-instructions"
    )
    assert recorded.returncode == 0, recorded.output
    # The three checks only read what the recording stored: they run at once.
    checks = [
        project.start("--perf", "--perf-instructions", name="clean"),
        project.start("--perf", "--perf-instructions", factor=1.25, name="slowed"),
        project.start("--perf", "--perf-instructions", name="clean_again"),
    ]
    clean, slowed, clean_again = (check.result() for check in checks)
    return Scenario(project, recorded, clean, slowed, clean_again)


def count(session: Session, test: str) -> float:
    value = session.report[test]["instructions"]["current"]
    assert isinstance(value, float)
    return value


@needs_callgrind
def test_only_counted_tests_get_instructions_and_only_they_are_gated(scenario: Scenario) -> None:
    report = scenario.clean.report
    assert set(report) == set(COUNTED)  # the unmarked test is neither counted nor gated
    for test in COUNTED:
        assert set(report[test]) == {"instructions"}  # time is stored, not judged
        assert report[test]["instructions"]["unit"] == "instr"
    # One dump per counted test, and one at session start that checks the file is found.
    dumps = sorted(scenario.project.root.glob("cg/callgrind.out.*.*"))
    assert len(dumps) == 4 * (1 + len(COUNTED))  # four sessions under instruction counting


@needs_callgrind
def test_history_and_baselines_live_under_a_platform_of_their_own(scenario: Scenario) -> None:
    with History(scenario.project.root / ".perfguard" / "history.db", create=False) as history:
        [run] = history.recent_runs(limit=5)
        detail = history.get_run(run.id)
    assert run.platform.endswith(f"_callgrind_py{std_platform.python_version()}")
    kinds = {(row.test.rpartition("::")[2], row.metric): row.kind for row in detail.measurements}
    assert kinds[("test_interp", "instructions")] == "custom"
    assert kinds[("test_interp", "duration")] == "system"
    assert ("test_unmarked", "instructions") not in kinds
    baselines = json.loads((scenario.project.root / "baselines/perf_baselines.json").read_text())
    [section] = baselines["platforms"].values()
    assert {metric for metrics in section["tests"].values() for metric in metrics} == {
        "instructions"
    }


@needs_callgrind
def test_the_same_run_twice_counts_the_same_within_a_tenth_of_a_percent(
    scenario: Scenario,
) -> None:
    assert scenario.clean.returncode == 0, scenario.clean.output
    for test in COUNTED:
        first, again = count(scenario.clean, test), count(scenario.clean_again, test)
        assert again == pytest.approx(first, rel=1e-3)
        # Recording and --perf leave the heap in different states before a test (--perf does
        # not measure unmarked tests), so the interpreter's allocator takes other paths: a
        # steady 0.2-0.6 % between the two modes, far inside any threshold.
        recorded = count(scenario.recorded, test)
        assert first == pytest.approx(recorded, rel=1e-2)
        assert scenario.clean.report[test]["instructions"]["verdict"] == "unchanged"


@needs_callgrind
def test_a_quarter_more_work_reads_a_quarter_more_and_fails_the_gate(scenario: Scenario) -> None:
    assert scenario.slowed.returncode == 1, scenario.slowed.output
    assert "3 performance regressions" in scenario.slowed.output
    for test in COUNTED:
        ratio = count(scenario.slowed, test) / count(scenario.clean, test)
        # pytest's own call machinery (~0.12 M instructions) does not grow with the work
        assert 1.20 < ratio < 1.26, (test, ratio)
        assert scenario.slowed.report[test]["instructions"]["verdict"] == "regression"


@needs_callgrind
def test_callgrind_options_perfguard_cannot_read_are_one_usage_error_line(
    scenario: Scenario,
) -> None:
    refused = scenario.project.run("--perf", valgrind=("--combine-dumps=yes",))
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert (
        "ERROR: perfguard: valgrind option --combine-dumps=yes is not supported by perfguard"
        in refused.output
    )
    assert "Traceback" not in refused.output
