"""Platform detection: a readable key a person would choose, and the fingerprint behind it.

The default key names what a person means by a platform and stays the same across CI
runner rotation: the CI provider and OS on CI (``GitHub_Actions_Linux``), the GPU model
and memory where one is present (``RTX_4090_24GB``), else the machine class and memory
(``M1_Mac_16GB``, ``Linux_x86_64_32GB``). CPU model and core count stay in the fingerprint,
where a verdict reads them to say when a baseline came from other hardware. The detailed
key (``--perf-platform-detailed``) also names CPU model and core count, e.g.
``GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB``: it was the default before, and
`legacy_key_target` maps such keys to today's (``perfguard platform migrate``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform as std_platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import CI_PROVIDERS, ci_provider
from .results import PlatformInfo
from .valgrind import valgrind_tool

_OS_NAMES = {"Darwin": "macOS", "Linux": "Linux", "Windows": "Windows"}
CPUINFO = "/proc/cpuinfo"  # a module attribute so tests can hand it other contents
_CPU_NOISE = re.compile(
    r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@.*$|\b\d+-Core\b|\bwith\b.*$|"
    r"\bIntel\b|\bAMD\b|\bCore\b|\bGenuine\b|\bApple\b|\bGraphics\b",
)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9.]+")


def short_cpu_name(model: str) -> str:
    """'AMD EPYC 7763 64-Core Processor' -> 'EPYC_7763'; 'Apple M1 Pro' -> 'M1_Pro'."""
    cleaned = _CPU_NOISE.sub(" ", model)
    tokens = [t for t in cleaned.split() if t]
    return _KEY_UNSAFE.sub("_", "_".join(tokens[:3])).strip("_")


def short_gpu_name(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'RTX_4090'; 'NVIDIA H100 80GB HBM3' -> 'H100'."""
    cleaned = re.sub(r"\b(NVIDIA|GeForce|Tesla|\d+\s*GB|HBM\d*e?|PCIe|SXM\d*)\b", " ", name)
    tokens = [t for t in cleaned.split() if t]
    return _KEY_UNSAFE.sub("_", "_".join(tokens[:3])).strip("_") or "GPU"


def _cpu_model() -> str:
    system = std_platform.system()
    if system == "Linux":
        try:
            with open(CPUINFO, encoding="utf-8", errors="replace") as cpuinfo:
                for line in cpuinfo:
                    if line.startswith(("model name", "Model", "cpu model")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif system == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return std_platform.processor() or std_platform.machine()


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        import psutil  # lazy: only where sysconf is missing (Windows)

        return int(psutil.virtual_memory().total)


# Linux lists each CPU's core siblings: one distinct list per physical core (what psutil
# reads too, without loading psutil into every session).
_CORE_SIBLINGS = (
    "/sys/devices/system/cpu/cpu[0-9]*/topology/core_cpus_list",
    "/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list",
)


def _physical_cores() -> int | None:
    for pattern in _CORE_SIBLINGS:
        found = set()
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                found.add(Path(path).read_text(encoding="ascii", errors="replace").strip())
        if found:
            return len(found)
    try:
        import psutil  # lazy: optional detail, kept off the import path

        cores = psutil.cpu_count(logical=False)
        return int(cores) if cores else None
    except Exception:  # psutil can fail in odd sandboxes; the count is informational
        return None


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs seen through pynvml; empty with no pynvml, driver or device."""
    try:
        import pynvml  # lazy: optional extra
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no device: GPU metrics are simply absent
        return []
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append({"name": str(name), "memory_mb": round(memory.total / 2**20)})
        return found
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def fingerprint(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything about this machine that can make timings differ."""
    env = os.environ if env is None else env
    memory = _memory_bytes()
    info: dict[str, Any] = {
        "os": std_platform.system(),
        "os_release": std_platform.release(),
        "arch": std_platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "cpu_physical_cores": _physical_cores(),
        "memory_gb": round(memory / 2**30, 1),
        "gpus": gpus(),
        "python_implementation": std_platform.python_implementation(),
        "python_version": std_platform.python_version(),
        "ci_provider": ci_provider(env),
        "hostname": socket.gethostname(),
    }
    tool = valgrind_tool(env)
    if tool is not None:
        info["valgrind_tool"] = tool
    return info


# Providers whose machines are GPU pods: the GPU model names the box (``RunPod_A100``).
GPU_CLOUD_PROVIDERS = frozenset({"RunPod"})
_ARCH_NAMES = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# Memory sizes as sold; a machine reports a little less (15.6 GB for 16 GB).
_SOLD_SIZES_GB = tuple(
    size for power in range(0, 12) for size in (2**power, 3 * 2**power // 2) if size >= 1
)
_VALGRIND_SUFFIX = re.compile(r"_(callgrind|cachegrind|memcheck|lackey)_py[0-9.]+$")


def sold_size_gb(gb: float) -> int:
    """15.6 -> 16, 7.7 -> 8, 23.4 -> 24, 140.4 -> 140: the nearest size as sold, within 7 %."""
    nearest = min(_SOLD_SIZES_GB, key=lambda size: abs(size - gb))
    return nearest if abs(nearest - gb) <= 0.07 * nearest else round(gb)


def _gpu_label(gpu: Mapping[str, Any], *, with_memory: bool = True) -> str:
    name = short_gpu_name(str(gpu.get("name") or ""))
    memory_mb = gpu.get("memory_mb")
    if not with_memory or not memory_mb:
        return name
    return f"{name}_{sold_size_gb(float(memory_mb) / 1024)}GB"


def machine_class(info: Mapping[str, Any]) -> str:
    """'M1_Mac', 'M2_Pro_Mac', 'Intel_Mac', 'Linux_x86_64', 'Windows_arm64'."""
    os_name = _OS_NAMES.get(str(info.get("os")), str(info.get("os") or "unknown"))
    arch = str(info.get("arch") or "unknown")
    arch = _ARCH_NAMES.get(arch.lower(), arch)
    if os_name == "macOS":
        chip = short_cpu_name(str(info.get("cpu_model") or ""))
        if arch == "arm64" and chip.startswith("M"):
            return f"{chip}_Mac"
        return "Intel_Mac" if arch == "x86_64" else "Mac"
    return f"{os_name}_{arch}"


def platform_key(info: Mapping[str, Any], *, detailed: bool = False) -> str:
    """The platform key of a fingerprint: the default one, or with `detailed` the one that
    also names CPU model and core count."""
    if detailed:
        return detailed_platform_key(info)
    provider = str(info.get("ci_provider") or "")
    os_name = _OS_NAMES.get(str(info.get("os")), str(info.get("os") or "unknown"))
    gpus_found = list(info.get("gpus") or [])
    # One GPU model names the box; the count is in the fingerprint.
    gpu = gpus_found[0] if gpus_found else None
    if provider in GPU_CLOUD_PROVIDERS:
        parts = [provider, _gpu_label(gpu, with_memory=False) if gpu else os_name]
    elif provider:
        parts = [provider, os_name, *([_gpu_label(gpu)] if gpu else [])]
    elif gpu:
        parts = [_gpu_label(gpu)]
    else:
        memory = float(info.get("memory_gb") or 0)
        parts = [machine_class(info), *([f"{sold_size_gb(memory)}GB"] if memory else [])]
    return _KEY_UNSAFE.sub("_", "_".join(parts)).strip("_") + _valgrind_part(info)


def _valgrind_part(info: Mapping[str, Any]) -> str:
    if not info.get("valgrind_tool"):
        return ""
    # A simulated CPU: its timings and counts never compare with the real one's, and
    # instruction counts change with the interpreter's build, hence its version.
    return _KEY_UNSAFE.sub("_", f"_{info['valgrind_tool']}_py{info.get('python_version', '')}")


def detailed_platform_key(info: Mapping[str, Any]) -> str:
    """``[Provider_]OS_arch_CPU_<cores>c_<memory>GB[_GPU_<memory>GB]``: the key before
    the default named what a person means (pytest-perfguard 0.x)."""
    parts: list[str] = []
    if info.get("ci_provider"):
        parts.append(str(info["ci_provider"]))
    parts.append(_OS_NAMES.get(str(info.get("os")), str(info.get("os") or "unknown")))
    parts.append(str(info.get("arch") or "unknown"))
    cpu = short_cpu_name(str(info.get("cpu_model") or ""))
    if cpu and cpu != parts[-1]:
        parts.append(cpu)
    parts.append(f"{info.get('cpu_count', 1)}c")
    parts.append(f"{round(float(info.get('memory_gb') or 0))}GB")
    for gpu in info.get("gpus") or []:
        parts.append(f"{short_gpu_name(gpu['name'])}_{round(gpu['memory_mb'] / 1024)}GB")
        break
    return _KEY_UNSAFE.sub("_", "_".join(parts)).strip("_") + _valgrind_part(info)


_DETAILED_TAIL = re.compile(
    r"^(?P<head>.+?)_(?P<cores>\d+)c_(?P<memory>\d+)GB(?:_(?P<gpu>.+)_(?P<gpu_memory>\d+)GB)?$"
)
_OS_BY_NAME = {name: system for system, name in _OS_NAMES.items()}


def legacy_key_target(key: str) -> str | None:
    """The default key that a detailed key (the 0.x default) maps to; None for any other key.

    ``GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB`` -> ``GitHub_Actions_Linux``;
    ``Linux_x86_64_Xeon_2c_24GB_RTX_4090_24GB`` -> ``RTX_4090_24GB``. Keys a person chose
    (``M1_Mac_16GB``) do not parse and stay as they are.
    """
    info = parse_detailed_key(key)
    return None if info is None else platform_key(info)


def parse_detailed_key(key: str) -> dict[str, Any] | None:
    """The fingerprint fields a detailed key spells out, or None when `key` is not one."""
    valgrind = _VALGRIND_SUFFIX.search(key)
    body = key[: valgrind.start()] if valgrind else key
    tail = _DETAILED_TAIL.match(body)
    if tail is None:
        return None
    words = tail["head"].split("_")
    provider = None
    for _, name in (*CI_PROVIDERS, ("CI", "CI")):
        size = len(name.split("_"))
        if words[:size] == name.split("_") and len(words) > size:
            provider, words = name, words[size:]
            break
    if words[1:3] == ["x86", "64"]:  # the one architecture with "_" in its name
        words[1:3] = ["x86_64"]
    if len(words) < 2 or words[0] not in _OS_BY_NAME:
        return None
    info: dict[str, Any] = {
        "ci_provider": provider,
        "os": _OS_BY_NAME[words[0]],
        "arch": words[1],
        "cpu_model": " ".join(words[2:]),
        "cpu_count": int(tail["cores"]),
        "memory_gb": float(tail["memory"]),
        "gpus": [],
    }
    if tail["gpu"]:
        info["gpus"] = [{"name": tail["gpu"].replace("_", " "),
                         "memory_mb": int(tail["gpu_memory"]) * 1024}]  # fmt: skip
    if valgrind:
        tool, python = valgrind.group(0)[1:].split("_py")
        info["valgrind_tool"], info["python_version"] = tool, python
    return info


def hardware(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """What of a fingerprint makes timings differ between machines of one platform key:
    recorded with a baseline, compared with the running machine at gate time."""
    found: dict[str, Any] = {}
    for name in ("cpu_model", "cpu_count", "memory_gb"):
        if fingerprint.get(name):
            found[name] = fingerprint[name]
    # A fingerprint lists GPUs as {"name", "memory_mb"}; a hardware dict by name.
    gpu_names = [
        gpu if isinstance(gpu, str) else str(gpu.get("name"))
        for gpu in fingerprint.get("gpus") or []
    ]
    if gpu_names:
        found["gpus"] = gpu_names
    return found


def hardware_label(hw: Mapping[str, Any], *, memory: bool = False, gpus: bool = False) -> str:
    """'EPYC 7763 x4' (model and cores), with memory and GPUs when asked."""
    cpu = short_cpu_name(str(hw.get("cpu_model") or "")).replace("_", " ") or "unknown CPU"
    label = f"{cpu} x{hw['cpu_count']}" if hw.get("cpu_count") else cpu
    if memory and hw.get("memory_gb"):
        label += f", {sold_size_gb(float(hw['memory_gb']))} GB"
    if gpus and hw.get("gpus"):
        label += ", " + ", ".join(short_gpu_name(name) for name in hw["gpus"])
    return label


def hardware_difference(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """One line when the baseline's recorded hardware differs from this run's, else None:
    'baseline from EPYC 7763 x4, this run Xeon 8370C x4'. Nothing recorded: None."""
    if not baseline or not current:
        return None
    cpu_differs = short_cpu_name(str(baseline.get("cpu_model") or "")) != short_cpu_name(
        str(current.get("cpu_model") or "")
    ) or baseline.get("cpu_count") != current.get("cpu_count")
    memory_differs = sold_size_gb(float(baseline.get("memory_gb") or 0)) != sold_size_gb(
        float(current.get("memory_gb") or 0)
    )
    gpus_differ = [short_gpu_name(g) for g in baseline.get("gpus") or []] != [
        short_gpu_name(g) for g in current.get("gpus") or []
    ]
    if not (cpu_differs or memory_differs or gpus_differ):
        return None
    shown = {"memory": memory_differs, "gpus": gpus_differ}
    return (
        f"baseline from {hardware_label(baseline, **shown)}, "
        f"this run {hardware_label(current, **shown)}"
    )


@lru_cache(maxsize=2)
def _detected(detailed: bool) -> PlatformInfo:
    info = fingerprint()
    return PlatformInfo(key=platform_key(info, detailed=detailed), fingerprint=info)


def detect_platform(override: str | None = None, *, detailed: bool = False) -> PlatformInfo:
    """This machine's platform; ``override`` (``--perf-platform``) replaces only the key,
    `detailed` (``--perf-platform-detailed``) names CPU model and core count in it."""
    detected = _detected(detailed)
    if override:
        return PlatformInfo(
            key=override, fingerprint={**detected.fingerprint, "detected_key": detected.key}
        )
    return detected


def labelled_platform(platform: PlatformInfo, labels: Mapping[str, str]) -> PlatformInfo:
    """The platform a labelled run is judged and stored under: the key with the label set
    appended, sorted (`GitHub_Actions_Linux[dataset=v2,model=openai]`), so baselines, verdicts
    and the history's series of one label set never meet another's. No labels: unchanged."""
    if not labels:
        return platform
    label_set = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    fingerprint = {**platform.fingerprint, "labels": dict(labels), "unlabelled_key": platform.key}
    return PlatformInfo(key=f"{platform.key}[{label_set}]", fingerprint=fingerprint)


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])
