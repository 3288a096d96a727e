"""pytest-benchmark saved runs (`.benchmarks/<machine>/<NNNN>_<name>.json`).

One run per file. Each benchmark becomes the `duration` metric (unit s) of its test id,
valued at pytest-benchmark's median, with every sample kept when the file has them
(`--benchmark-save-data`); `machine_info` becomes the platform, `commit_info` the run's
commit, branch and dirty flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results import Measurement, PlatformInfo, RunInfo
from .model import NO_BRANCH, NO_COMMIT, ImportedRun, finite, mapping, text, timestamp

PYTEST_BENCHMARK = "pytest-benchmark"


def is_benchmark_file(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list)


def benchmark_run(
    path: Path, data: dict[str, Any], source_key: str, platform: str | None
) -> ImportedRun:
    machine = mapping(data.get("machine_info"))
    commit = mapping(data.get("commit_info"))
    measurements: list[Measurement] = []
    notes: list[str] = []
    for i, bench in enumerate(data["benchmarks"]):
        bench = mapping(bench)
        test = str(bench.get("fullname") or bench.get("name") or f"benchmark[{i}]")
        stats = mapping(bench.get("stats"))
        median = stats.get("median")
        if not isinstance(median, (int, float)) or not finite(median):
            notes.append(f"{test}: no median in its stats")
            continue
        samples = stats.get("data")
        if not isinstance(samples, list) or not all(finite(s) for s in samples):
            samples = []
        measurements.append(
            Measurement(
                test=test,
                metric="duration",
                value=float(median),
                unit="s",
                direction="lower",
                kind="primary",
                marked=True,  # a benchmark is a performance test: gated, like a marked test
                samples=tuple(float(s) for s in samples),
            )
        )
    version = data.get("version")
    run = RunInfo(
        started_at=timestamp(data.get("datetime"), naive_is_utc=True, fallback=path),
        platform=benchmark_platform(machine, platform),
        git_commit=text(commit.get("id"), empty=NO_COMMIT),
        git_branch=text(commit.get("branch"), empty=NO_BRANCH),
        git_dirty=commit["dirty"] if isinstance(commit.get("dirty"), bool) else None,
        python_version=str(machine.get("python_version") or ""),
        host=str(machine.get("node") or ""),
        notes=f"imported from {PYTEST_BENCHMARK} {version or ''}".rstrip(),
        system_info={
            "imported_from": PYTEST_BENCHMARK,
            "source_file": path.name,
            "machine_info": machine,
            "commit_info": commit,
        },
    )
    return ImportedRun(path, str(path), PYTEST_BENCHMARK, source_key, run, measurements, notes)


def benchmark_fingerprint(machine_info: Mapping[str, Any]) -> dict[str, Any]:
    """Our platform fingerprint from pytest-benchmark's `machine_info` (py-cpuinfo's `cpu`)."""
    cpu = mapping(machine_info.get("cpu"))
    fingerprint: dict[str, Any] = {
        "os": machine_info.get("system") or "",
        "os_release": machine_info.get("release") or "",
        "arch": machine_info.get("machine") or cpu.get("arch_string_raw") or "",
        "cpu_model": cpu.get("brand_raw") or machine_info.get("processor") or "",
        "python_implementation": machine_info.get("python_implementation") or "",
        "python_version": machine_info.get("python_version") or "",
        "hostname": machine_info.get("node") or "",
        "source": PYTEST_BENCHMARK,
    }
    if isinstance(cpu.get("count"), int):
        fingerprint["cpu_count"] = cpu["count"]
    return fingerprint


def benchmark_platform(machine_info: Mapping[str, Any], override: str | None) -> PlatformInfo:
    """The platform of a pytest-benchmark run.

    `override` names it outright. A run saved on this very machine (same host name, OS,
    architecture, CPU model and count) gets this machine's key, so its history continues
    the one the plugin records here. Otherwise the key is the detailed one built from
    `machine_info` (it names the CPU the run came from), without the memory size
    pytest-benchmark does not save.
    """
    from ..platform import detect_platform, platform_key

    fingerprint = benchmark_fingerprint(machine_info)
    if override:
        return PlatformInfo(override, fingerprint)
    here = detect_platform()
    same = ("hostname", "os", "arch", "cpu_model", "cpu_count")
    if all(fingerprint.get(k) == here.fingerprint.get(k) for k in same):
        return here
    # platform_key always ends in the memory size; unknown here, it would read "0GB".
    return PlatformInfo(platform_key(fingerprint, detailed=True).removesuffix("_0GB"), fingerprint)
