"""Platform keys: what a person would choose, stable across CI runner rotation.

Each machine is faked whole: environment variables, OS, architecture, memory, GPUs and the
contents of /proc/cpuinfo; `fingerprint` reads them as on a real machine.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard import platform as plat
from pytest_perfguard.api import History
from pytest_perfguard.baselines import load_baselines, parse_baselines
from pytest_perfguard.cli import Console, main
from pytest_perfguard.platform import (
    detailed_platform_key,
    hardware,
    hardware_difference,
    legacy_key_target,
    platform_key,
    sold_size_gb,
)
from pytest_perfguard.platform_migration import (
    adopt_legacy_baselines,
    hardware_note,
    migrate_baselines,
)
from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

EPYC = "AMD EPYC 7763 64-Core Processor"
XEON = "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz"
GIB = 2**30


def cpuinfo(model: str, cores: int) -> str:
    """/proc/cpuinfo as Linux writes it: one block per logical CPU."""
    return "\n".join(
        f"processor\t: {n}\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: fpu\n"
        for n in range(cores)
    )


def fake_machine(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    system: str = "Linux",
    arch: str = "x86_64",
    cpu: str = EPYC,
    cores: int = 4,
    memory_gb: float = 15.6,
    gpus: list[dict[str, Any]] | None = None,
    brand: str = "",
) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo(cpu, cores))
    monkeypatch.setattr(plat, "CPUINFO", str(info))
    monkeypatch.setattr(plat.std_platform, "system", lambda: system)
    monkeypatch.setattr(plat.std_platform, "machine", lambda: arch)
    monkeypatch.setattr(plat.std_platform, "processor", lambda: brand)
    monkeypatch.setattr(plat.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(plat, "_memory_bytes", lambda: int(memory_gb * GIB))
    monkeypatch.setattr(plat, "gpus", lambda: list(gpus or []))
    if system == "Darwin":  # sysctl's brand string, as macOS answers it
        monkeypatch.setattr(
            plat.subprocess,
            "run",
            lambda *a, **k: plat.subprocess.CompletedProcess(a, 0, stdout=brand + "\n"),
        )


def key_of(env: Mapping[str, str]) -> str:
    return platform_key(plat.fingerprint(env))


PROVIDERS = [
    ({"GITHUB_ACTIONS": "true", "CI": "true"}, "GitHub_Actions"),
    ({"GITLAB_CI": "true", "CI": "true"}, "GitLab_CI"),
    ({"CIRCLECI": "true"}, "CircleCI"),
    ({"BUILDKITE": "true"}, "Buildkite"),
    ({"JENKINS_URL": "http://jenkins"}, "Jenkins"),
    ({"TF_BUILD": "True"}, "Azure_Pipelines"),
    ({"TEAMCITY_VERSION": "2024.1"}, "TeamCity"),
    ({"TRAVIS": "true"}, "Travis_CI"),
    ({"BITBUCKET_BUILD_NUMBER": "7"}, "Bitbucket"),
    ({"CODEBUILD_BUILD_ID": "b:1"}, "AWS_CodeBuild"),
    ({"CI": "1"}, "CI"),
]


@pytest.mark.parametrize(("env", "provider"), PROVIDERS)
@pytest.mark.parametrize(
    ("system", "arch", "os_name"),
    [("Linux", "x86_64", "Linux"), ("Darwin", "arm64", "macOS"), ("Windows", "AMD64", "Windows")],
)
def test_on_ci_the_key_is_provider_and_os(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    provider: str,
    system: str,
    arch: str,
    os_name: str,
) -> None:
    fake_machine(monkeypatch, tmp_path, system=system, arch=arch, brand="Apple M1")
    assert key_of(env) == f"{provider}_{os_name}"


def test_runner_rotation_keeps_the_key_and_the_fingerprint_keeps_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {"GITHUB_ACTIONS": "true"}
    fake_machine(monkeypatch, tmp_path, cpu=EPYC, cores=4)
    monday = plat.fingerprint(env)
    fake_machine(monkeypatch, tmp_path, cpu=XEON, cores=4, memory_gb=15.9)
    tuesday = plat.fingerprint(env)
    assert platform_key(monday) == platform_key(tuesday) == "GitHub_Actions_Linux"
    assert (monday["cpu_model"], tuesday["cpu_model"]) == (EPYC, XEON)
    assert monday["cpu_count"] == tuesday["cpu_count"] == 4
    # The detailed key tells them apart, as the 0.x default did.
    assert detailed_platform_key(monday) == "GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB"
    assert (
        detailed_platform_key(tuesday) == "GitHub_Actions_Linux_x86_64_Xeon_Platinum_8370C_4c_16GB"
    )
    assert platform_key(tuesday, detailed=True) == detailed_platform_key(tuesday)


@pytest.mark.parametrize(
    ("gpu", "memory_mb", "key"),
    [
        ("NVIDIA GeForce RTX 4090", 24564, "RTX_4090_24GB"),
        ("NVIDIA A100-SXM4-80GB", 81920, "A100_80GB"),
        ("NVIDIA A100 80GB PCIe", 81920, "A100_80GB"),
        ("NVIDIA H100 80GB HBM3", 81559, "H100_80GB"),
        ("Tesla T4", 15360, "T4_16GB"),
    ],
)
def test_a_gpu_names_the_box(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpu: str, memory_mb: int, key: str
) -> None:
    fake_machine(monkeypatch, tmp_path, gpus=[{"name": gpu, "memory_mb": memory_mb}] * 2)
    assert key_of({}) == key
    assert key_of({"GITHUB_ACTIONS": "true"}) == f"GitHub_Actions_Linux_{key}"


def test_a_runpod_pod_is_named_by_its_gpu_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {"RUNPOD_POD_ID": "abc123"}
    fake_machine(
        monkeypatch, tmp_path, gpus=[{"name": "NVIDIA A100 80GB PCIe", "memory_mb": 81920}]
    )
    assert key_of(env) == "RunPod_A100"
    fake_machine(monkeypatch, tmp_path)
    assert key_of(env) == "RunPod_Linux"


@pytest.mark.parametrize(
    ("brand", "arch", "memory_gb", "key"),
    [
        ("Apple M1", "arm64", 16.0, "M1_Mac_16GB"),
        ("Apple M2", "arm64", 32.0, "M2_Mac_32GB"),
        ("Apple M1 Pro", "arm64", 16.0, "M1_Pro_Mac_16GB"),
        ("Apple M3 Max", "arm64", 64.0, "M3_Max_Mac_64GB"),
        ("Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz", "x86_64", 16.0, "Intel_Mac_16GB"),
    ],
)
def test_a_mac_is_named_by_its_chip_and_memory(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    brand: str,
    arch: str,
    memory_gb: float,
    key: str,
) -> None:
    fake_machine(
        monkeypatch, tmp_path, system="Darwin", arch=arch, memory_gb=memory_gb, brand=brand
    )
    assert key_of({}) == key


@pytest.mark.parametrize(
    ("system", "arch", "memory_gb", "key"),
    [
        ("Linux", "x86_64", 15.6, "Linux_x86_64_16GB"),
        ("Linux", "x86_64", 23.4, "Linux_x86_64_24GB"),
        ("Linux", "aarch64", 7.7, "Linux_arm64_8GB"),
        ("Linux", "x86_64", 251.5, "Linux_x86_64_256GB"),
        ("Linux", "x86_64", 80.0, "Linux_x86_64_80GB"),
        ("Windows", "AMD64", 31.8, "Windows_x86_64_32GB"),
    ],
)
def test_a_local_machine_is_named_by_class_and_memory(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    system: str,
    arch: str,
    memory_gb: float,
    key: str,
) -> None:
    fake_machine(monkeypatch, tmp_path, system=system, arch=arch, memory_gb=memory_gb)
    assert key_of({}) == key


def test_under_callgrind_the_key_names_the_tool_and_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_machine(monkeypatch, tmp_path)
    info = {**plat.fingerprint({"GITHUB_ACTIONS": "true"}), "valgrind_tool": "callgrind"}
    info["python_version"] = "3.12.3"
    assert platform_key(info) == "GitHub_Actions_Linux_callgrind_py3.12.3"


def test_the_cpu_model_comes_from_proc_cpuinfo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_machine(monkeypatch, tmp_path, cpu=XEON, cores=2)
    found = plat.fingerprint({})
    assert (found["cpu_model"], found["cpu_count"], found["memory_gb"]) == (XEON, 2, 15.6)
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 48.00\n")  # ARM: no model
    monkeypatch.setattr(plat.std_platform, "processor", lambda: "")
    assert plat.fingerprint({})["cpu_model"] == "x86_64"


def test_an_override_replaces_only_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    info = plat.detect_platform("M1_Mac_16GB")
    assert info.key == "M1_Mac_16GB"
    assert info.fingerprint["detected_key"] == plat.detect_platform().key


@pytest.mark.parametrize(
    ("gb", "sold"), [(15.6, 16), (7.7, 8), (23.4, 24), (47.0, 48), (140.4, 140), (15.0, 16)]
)
def test_memory_is_named_as_sold(gb: float, sold: int) -> None:
    assert sold_size_gb(gb) == sold


MACHINES: list[dict[str, Any]] = [
    {"ci_provider": "GitHub_Actions", "os": "Linux", "arch": "x86_64", "cpu_model": EPYC,
     "cpu_count": 4, "memory_gb": 15.6, "gpus": []},
    {"ci_provider": "GitLab_CI", "os": "Darwin", "arch": "arm64", "cpu_model": "Apple M1",
     "cpu_count": 3, "memory_gb": 7.0, "gpus": []},
    {"ci_provider": None, "os": "Darwin", "arch": "arm64", "cpu_model": "Apple M2 Pro",
     "cpu_count": 12, "memory_gb": 32.0, "gpus": []},
    {"ci_provider": None, "os": "Linux", "arch": "x86_64", "cpu_model": XEON, "cpu_count": 2,
     "memory_gb": 23.4, "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564}]},
    {"ci_provider": "RunPod", "os": "Linux", "arch": "x86_64", "cpu_model": EPYC,
     "cpu_count": 32, "memory_gb": 251.0, "gpus": [{"name": "NVIDIA A100 80GB PCIe",
                                                     "memory_mb": 81920}]},
    {"ci_provider": None, "os": "Linux", "arch": "aarch64", "cpu_model": "", "cpu_count": 8,
     "memory_gb": 15.5, "gpus": []},
    {"ci_provider": "Azure_Pipelines", "os": "Windows", "arch": "AMD64", "cpu_model": EPYC,
     "cpu_count": 2, "memory_gb": 7.0, "gpus": [], "valgrind_tool": "callgrind",
     "python_version": "3.11.9"},
]  # fmt: skip


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: detailed_platform_key(m))
def test_every_old_detailed_key_maps_to_todays_key(machine: dict[str, Any]) -> None:
    assert legacy_key_target(detailed_platform_key(machine)) == platform_key(machine)


@pytest.mark.parametrize("key", ["M1_Mac_16GB", "RTX_4090_24GB", "GitHub_Actions_Linux", "box"])
def test_keys_a_person_chose_are_left_alone(key: str) -> None:
    assert legacy_key_target(key) is None


def test_hardware_difference_names_both_sides() -> None:
    epyc = hardware({"cpu_model": EPYC, "cpu_count": 4, "memory_gb": 15.6, "gpus": []})
    xeon = hardware({"cpu_model": XEON, "cpu_count": 4, "memory_gb": 15.9, "gpus": []})
    assert hardware_difference(epyc, xeon) == (
        "baseline from EPYC 7763 x4, this run Xeon Platinum 8370C x4"
    )
    assert hardware_difference(epyc, {**epyc, "memory_gb": 15.9}) is None
    assert hardware_difference(epyc, {**epyc, "cpu_count": 2}) == (
        "baseline from EPYC 7763 x4, this run EPYC 7763 x2"
    )
    assert hardware_difference(epyc, {**epyc, "memory_gb": 31.2}) == (
        "baseline from EPYC 7763 x4, 16 GB, this run EPYC 7763 x4, 32 GB"
    )
    assert hardware_difference({}, xeon) is None  # nothing recorded: nothing to say


def _two_rotations() -> dict[str, Any]:
    section = {"metadata": {"last_updated": "2026-01-01T00:00:00Z"},
               "tests": {"t.py::a": {"latency": {"value": 1.0}}}}  # fmt: skip
    newer = {"metadata": {"last_updated": "2026-02-01T00:00:00Z"},
             "tests": {"t.py::a": {"latency": {"value": 2.0}},
                       "t.py::b": {"latency": {"value": 3.0}}}}  # fmt: skip
    return {
        "schema": 1,
        "platforms": {
            "GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB": section,
            "GitHub_Actions_Linux_x86_64_Xeon_8370C_4c_16GB": newer,
            "M1_Mac_16GB": {"tests": {"t.py::a": {"latency": {"value": 9.0}}}},
        },
    }


def test_old_key_baselines_are_read_for_todays_key_and_said() -> None:
    file = parse_baselines(_two_rotations())
    adopted, note = adopt_legacy_baselines(file, "GitHub_Actions_Linux")
    assert note is not None and "perfguard platform migrate" in note
    assert adopted.lookup("GitHub_Actions_Linux", "t.py::a", "latency").value == 2.0  # newest
    assert adopted.lookup("GitHub_Actions_Linux", "t.py::b", "latency").value == 3.0
    assert hardware_note(adopted, "GitHub_Actions_Linux", {"cpu_model": EPYC, "cpu_count": 4,
                                                           "memory_gb": 15.6}) == (
        "baseline from Xeon 8370C x4, this run EPYC 7763 x4"
    )  # fmt: skip
    assert adopt_legacy_baselines(file, "M1_Mac_16GB") == (file, None)


def test_migrate_renames_and_merges_old_sections() -> None:
    migrated, moves = migrate_baselines(parse_baselines(_two_rotations()))
    assert set(moves.values()) == {"GitHub_Actions_Linux"}
    assert sorted(migrated.platforms) == ["GitHub_Actions_Linux", "M1_Mac_16GB"]
    section = migrated.platforms["GitHub_Actions_Linux"]
    assert section.tests["t.py::a"]["latency"].value == 2.0
    assert section.metadata.extra["hardware"]["cpu_model"] == "Xeon 8370C"
    assert migrate_baselines(migrated) == (migrated, {})


def test_platform_migrate_command_renames_file_and_history(tmp_path: Path) -> None:
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps(_two_rotations()))
    db = tmp_path / "h.db"
    old = "GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB"
    with History(db) as history:
        for key in (old, "GitHub_Actions_Linux", "M1_Mac_16GB"):
            history.save_session(
                RunInfo(
                    started_at=__import__("datetime").datetime.now(), platform=PlatformInfo(key)
                ),
                [Measurement(test="t.py::a", metric="latency", value=1.0)],
            )
    args = ["platform", "migrate", "--db", str(db), "--baselines", str(baselines)]
    assert main([*args, "--dry-run"]) == 0
    assert sorted(load_baselines(baselines).platforms) == sorted(_two_rotations()["platforms"])
    assert main(args) == 0
    assert sorted(load_baselines(baselines).platforms) == ["GitHub_Actions_Linux", "M1_Mac_16GB"]
    with History(db) as history:
        runs = {p.key: p.n_runs for p in history.platforms()}
    assert runs == {"GitHub_Actions_Linux": 2, "M1_Mac_16GB": 1}
    assert main(args) == 0  # nothing left to do: still fine


def test_platform_migrate_says_when_there_is_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["platform", "migrate", "--db", str(tmp_path / "none.db"),
                 "--baselines", str(tmp_path / "none.json")]) == 0  # fmt: skip
    assert "nothing to migrate" in capsys.readouterr().out


def test_platform_command_shows_the_detailed_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["platform", "--key", "--detailed"]) == 0
    assert capsys.readouterr().out.strip() == plat.detect_platform(detailed=True).key


FAKE_RUNNER = """
import pytest_perfguard.platform as platform

platform._detected.cache_clear()
_real = platform.fingerprint


def fingerprint(env=None):
    info = _real({"GITHUB_ACTIONS": "true"})
    info.update(cpu_model=CPU, cpu_count=4, memory_gb=15.6, gpus=[])
    info.pop("valgrind_tool", None)
    return info


platform.fingerprint = fingerprint
"""

SLOW_TEST = """
import time
import pytest

@pytest.mark.perf(metric="latency")
def test_query():
    time.sleep(0.02)
"""


def test_a_verdict_against_old_key_baselines_from_other_hardware_says_so(
    pytester: pytest.Pytester,
) -> None:
    """Baselines committed under a 0.x key on an EPYC runner gate this Xeon runner's run,
    and the terminal and the Markdown report say both things."""
    pytester.makeconftest(FAKE_RUNNER.replace("CPU", repr(XEON)))
    pytester.makepyfile(test_q=SLOW_TEST)
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "perf_baselines.json").write_text(json.dumps({
        "schema": 1,
        "platforms": {"GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB": {
            "tests": {"test_q.py::test_query": {"latency": {"value": 0.001, "unit": "s"}}}}},
    }))  # fmt: skip
    # No --perf flag: the committed baselines file switches perfguard on.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--perf-report=r.md")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*platform GitHub_Actions_Linux*",
            "*read from old key GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB*",
            "*baseline from EPYC 7763 x4, this run Xeon Platinum 8370C x4*",
        ]
    )
    report = (pytester.path / "r.md").read_text()
    assert "baseline from EPYC 7763 x4, this run Xeon Platinum 8370C x4" in report


def test_an_update_records_the_hardware_and_a_later_run_compares_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_RUNNER.replace("CPU", repr(EPYC)))
    pytester.makepyfile(test_q=SLOW_TEST)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--perf-record", "--perf-update-baselines", "--perf-min-runs=1"
    )
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "baselines" / "perf_baselines.json").read_text())
    metadata = data["platforms"]["GitHub_Actions_Linux"]["metadata"]
    assert metadata["hardware"] == {"cpu_model": EPYC, "cpu_count": 4, "memory_gb": 15.6}

    pytester.makeconftest(FAKE_RUNNER.replace("CPU", repr(XEON)))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--perf-record")
    result.stdout.fnmatch_lines(["*baseline from EPYC 7763 x4, this run Xeon Platinum 8370C x4*"])
    # The stored run keeps the machine it ran on: reports made later say it too.
    with History(pytester.path / ".perfguard" / "history.db", create=False) as history:
        run = history.get_run(history.recent_runs(limit=1)[0].id)
    assert run.system_info["hardware"]["cpu_model"] == XEON
    out = io.StringIO()
    console = Console(stdout=out, stderr=io.StringIO(), stdin=io.StringIO())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path)
        assert main(["baselines", "check"], console=console) == 0
        assert main(["report", "--format", "markdown", "--output", "r.md"], console=console) == 0
    note = "baseline from EPYC 7763 x4, this run Xeon Platinum 8370C x4"
    assert f"note: {note}" in out.getvalue()
    assert note in (pytester.path / "r.md").read_text()
    pytester.makeconftest(FAKE_RUNNER.replace("CPU", repr(EPYC)))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--perf")
    assert "baseline from" not in result.stdout.str()


def test_rename_platform_moves_runs_and_snapshots_on_both_backends(history_url: str) -> None:
    from datetime import datetime, timezone

    old, new = "Linux_x86_64_EPYC_7763_4c_16GB", "Linux_x86_64_16GB"
    with History(history_url) as history:
        for key in (old, old, new):
            history.save_session(
                RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo(key)),
                [Measurement(test="t.py::a", metric="latency", value=1.0)],
            )
        history.save_baseline_snapshot(old, {}, reason="r", git_commit=None, who="me")
        assert history.rename_platform(old, new) == 2
        assert {p.key: p.n_runs for p in history.platforms()} == {new: 3}
        assert [s.platform for s in history.baseline_snapshots()] == [new]
        assert history.rename_platform(old, new) == 0  # nothing left under the old key
        assert history.rename_platform(new, "Renamed") == 3  # no target yet: a plain rename
        assert [p.key for p in history.platforms()] == ["Renamed"]
