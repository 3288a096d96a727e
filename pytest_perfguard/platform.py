"""Platform detection: a readable, stable key and the full fingerprint behind it.

The key names what makes timings comparable (CI provider, OS, architecture, CPU model,
core count, memory, GPU model), e.g. ``GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB`` or
``Linux_x86_64_Xeon_8375C_2c_24GB_RTX_4090_24GB``. Hostnames and kernel versions stay
out of it so the key survives reboots and runner rotation; they are in the fingerprint.
"""

from __future__ import annotations

import contextlib
import os
import platform as std_platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .config import CI_PROVIDERS, ci_provider
from .results import PlatformInfo
from .valgrind import valgrind_tool

_OS_NAMES = {"Darwin": "macOS", "Linux": "Linux", "Windows": "Windows"}
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
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
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


def _physical_cores() -> int | None:
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


def platform_key(info: Mapping[str, Any]) -> str:
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
        break  # one GPU model names the box; the count is in the fingerprint
    if info.get("valgrind_tool"):
        # A simulated CPU: its timings and counts never compare with the real one's, and
        # instruction counts change with the interpreter's build, hence its version.
        parts.append(f"{info['valgrind_tool']}_py{info.get('python_version', '')}")
    return _KEY_UNSAFE.sub("_", "_".join(parts)).strip("_")


@lru_cache(maxsize=1)
def _detected() -> PlatformInfo:
    info = fingerprint()
    return PlatformInfo(key=platform_key(info), fingerprint=info)


def detect_platform(override: str | None = None) -> PlatformInfo:
    """This machine's platform; ``override`` (``--perf-platform``) replaces only the key."""
    detected = _detected()
    if override:
        return PlatformInfo(
            key=override, fingerprint={**detected.fingerprint, "detected_key": detected.key}
        )
    return detected


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])
