"""Built-in collectors: CPU time, peak resident memory, peak GPU memory.

They are registered through the public ``pytest_perfguard_collectors`` hook like any third-party
collector. Each one is a couple of syscalls per test; anything heavier (initialising NVML,
opening /proc files) happens once, when the collector is made.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from .measure import Collector, Reading

try:
    import resource
except ImportError:  # Windows: no getrusage; the psutil fallback is used
    resource = None  # type: ignore[assignment]

getrusage = resource.getrusage if resource is not None else None
RUSAGE_SELF = resource.RUSAGE_SELF if resource is not None else 0

_MB = 1024 * 1024


class CpuTimeCollector:
    """``cpu_time`` where `RusageCollector` cannot run: CPU seconds (user + system) of this
    process per counted round, from ``time.process_time()``."""

    __slots__ = ("_start",)

    def __init__(self) -> None:
        self._start = 0.0

    def start(self) -> None:
        self._start = time.process_time()

    def stop(self, rounds: int) -> Sequence[Reading]:
        return (("cpu_time", (time.process_time() - self._start) / rounds, "s"),)

    def describe(self) -> dict[str, Any]:
        return {"cpu_method": "process_time"}


class RusageCollector:
    """``cpu_time`` and the exact ``rss_peak_mb`` on Linux, from one ``getrusage`` per end.

    Writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's RSS high-water mark to the
    current RSS, so ``ru_maxrss`` read right after is the RSS at the start and ``ru_maxrss``
    at the end is the peak since then. The memory metric is the difference: how far above
    its starting point the call pushed resident memory, even if it freed everything before
    returning. CPU time is ``ru_utime + ru_stime`` of the same reads (microsecond
    resolution), so a test costs two ``getrusage`` calls and one write, about 3.5 us here.
    """

    __slots__ = ("_start", "fd")
    method = "clear_refs"
    READINGS = (("cpu_time", "s"), ("rss_peak_mb", "MB"))

    def __init__(self, fd: int) -> None:
        self.fd = fd  # /proc/self/clear_refs, open for writing
        # `getrusage` right after the reset: the start of the call being measured.
        self._start: Sequence[float] = (0.0, 0.0, 0)

    @classmethod
    def open(cls) -> RusageCollector | None:
        if getrusage is None:
            return None
        try:
            fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            return None
        try:
            before = getrusage(RUSAGE_SELF).ru_maxrss
            os.write(fd, b"5")
            after = getrusage(RUSAGE_SELF).ru_maxrss
        except OSError:
            os.close(fd)
            return None
        if after > before:  # a reset can only lower the mark; anything else means no support
            os.close(fd)
            return None
        return cls(fd)

    # struct_rusage is read by index (ru_utime, ru_stime, ru_maxrss: 0, 1, 2): its named
    # fields are member descriptors that CPython 3.11 does not specialize, 0.25 k
    # instructions more a read of the three. The plain-test path (`RunLog.plain_runtest`)
    # does `start` and the arithmetic of `stop` inline, with `started` when its call ends
    # anywhere else: the two method calls and the state kept between them were 1.3 k
    # instructions of a plain test's 10.9 k (`bench_per_test_floor.py`, `call_added`).

    def start(self) -> None:
        os.write(self.fd, b"5")
        self._start = getrusage(RUSAGE_SELF)

    def started(self, usage: Sequence[float]) -> None:
        """What `start` leaves, from a `getrusage` its caller took right after the reset."""
        self._start = usage

    def stop(self, rounds: int) -> Sequence[Reading]:
        usage, start = getrusage(RUSAGE_SELF), self._start
        # Not max(0, ...): in CPython 3.11 the builtin parses its arguments as keywords
        # (1.5 k instructions).
        grown = usage[2] - start[2]
        return (
            ("cpu_time", (usage[0] + usage[1] - start[0] - start[1]) / rounds, "s"),
            ("rss_peak_mb", grown / 1024 if grown > 0 else 0.0, "MB"),
        )

    def close(self) -> None:
        os.close(self.fd)

    def describe(self) -> dict[str, Any]:
        return {"rss_method": self.method, "cpu_method": "getrusage"}


class LifetimePeakRssCollector:
    """``rss_peak_mb`` where the high-water mark cannot be reset (macOS, Windows, sandboxes).

    Reports how far the call raised the process's lifetime peak RSS. A call that stays below
    an earlier peak reads 0 even if it allocated; a call that sets a new peak reads exactly.
    """

    __slots__ = ("_base", "_read")
    method = "lifetime_peak_delta"

    def __init__(self) -> None:
        self._read = _lifetime_peak_reader()
        self._base = 0.0

    def start(self) -> None:
        self._base = self._read()

    def stop(self, rounds: int) -> Sequence[Reading]:
        return (("rss_peak_mb", max(0.0, self._read() - self._base) / _MB, "MB"),)

    def describe(self) -> dict[str, Any]:
        return {"rss_method": self.method}


def _lifetime_peak_reader() -> Any:
    """A function returning the process's peak RSS so far, in bytes."""
    if sys.platform == "win32":
        import psutil

        process = psutil.Process()
        return lambda: float(process.memory_info().peak_wset)
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, others KiB
    return lambda: float(getrusage(RUSAGE_SELF).ru_maxrss * scale)


class GpuMemoryCollector:
    """``gpu_mem_peak_mb``: peak GPU memory used during the call above its start, in MB.

    NVML has no resettable peak, so a daemon thread samples used memory on every visible
    NVIDIA device (summed) every ``interval`` seconds for the whole session; a test only
    reads and resets the running maximum. Allocations shorter than the interval can be missed.

    A failed NVML read (a driver hiccup, a device briefly busy resetting) is counted and
    skipped, never the end of sampling: `describe` reports the count and the last error, so
    the session can say that peaks may be under-reported.
    """

    method = "nvml_sampled"

    def __init__(self, nvml: Any, handles: list[Any], interval: float = 0.005) -> None:
        self._nvml = nvml
        self._handles = handles
        self._interval = interval
        self._peak = 0
        self._base = 0
        self.errors = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="perfguard-gpu", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls) -> GpuMemoryCollector | None:
        try:
            import pynvml  # lazy: optional extra "gpu"
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
        except Exception:  # no driver, no device, broken install: GPU metrics are absent
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def _used(self) -> int:
        return sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)

    def _read(self) -> int | None:
        """Used memory now; None (and the error counted) when NVML fails."""
        try:
            return self._used()
        except Exception as exc:  # NVMLError and whatever a broken driver raises
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            used = self._read()
            if used is not None and used > self._peak:
                self._peak = used

    def start(self) -> None:
        used = self._read()
        # Without a reading, the last peak is the best estimate of the starting point.
        self._base = self._peak = self._peak if used is None else used

    def stop(self, rounds: int) -> Sequence[Reading]:
        used = self._read()
        peak = self._peak if used is None else max(self._peak, used)
        return (("gpu_mem_peak_mb", max(0, peak - self._base) / _MB, "MB"),)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"gpu_method": self.method, "gpu_devices": len(self._handles)}
        if self.errors:
            info["gpu_sample_errors"] = self.errors
            info["gpu_last_error"] = self.last_error
        return info


@pytest.hookimpl
def pytest_perfguard_collectors(config: pytest.Config) -> Sequence[Collector]:
    rusage = RusageCollector.open()
    collectors: list[Collector] = (
        [rusage] if rusage is not None else [CpuTimeCollector(), LifetimePeakRssCollector()]
    )
    gpu = GpuMemoryCollector.open()
    if gpu is not None:
        collectors.append(gpu)
    return collectors
