"""The conftest that makes a benchmark's suite measure as on Linux under valgrind."""

# Under valgrind, writing /proc/self/clear_refs does not lower ru_maxrss (valgrind keeps its
# own memory accounting), so the plugin's check finds no resettable peak and it measures
# with its portable collectors (process_time and a lifetime peak: two collectors, more
# calls). `--linux-collectors` counts the path a Linux machine runs instead: the same
# syscalls, the check skipped.
LINUX_COLLECTORS_CONFTEST = """\
import os

try:
    from pytest_perfguard import collectors
except ImportError:
    pass
else:
    def _open(cls):
        return cls(os.open("/proc/self/clear_refs", os.O_WRONLY))

    collectors.RusageCollector.open = classmethod(_open)
"""
