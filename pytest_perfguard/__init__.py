"""pytest-perfguard: performance regressions fail CI the way broken assertions do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .results import Measurement, PlatformInfo, RunInfo, Verdict

if TYPE_CHECKING:
    from .api import History, HistoryError
    from .seed_api import PerformanceHistory
    from .tracking import track

__all__ = [
    "History",
    "HistoryError",
    "Measurement",
    "PerformanceHistory",
    "PlatformInfo",
    "RunInfo",
    "Verdict",
    "__version__",
    "track",
]


def __getattr__(name: str) -> Any:
    # History pulls in SQLAlchemy; the plugin imports this package on every pytest start.
    if name in ("History", "HistoryError"):
        from . import api

        return getattr(api, name)
    if name == "PerformanceHistory":  # the seed guide's API (docs/seed-guide.md)
        from .seed_api import PerformanceHistory

        return PerformanceHistory
    if name == "track":
        from .tracking import track

        return track
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
