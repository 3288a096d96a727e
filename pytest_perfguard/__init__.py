"""pytest-perfguard: performance regressions fail CI the way broken assertions do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .results import Measurement, PlatformInfo, RunInfo, Verdict

if TYPE_CHECKING:
    from .api import History, HistoryError
    from .tracking import track

__all__ = [
    "History",
    "HistoryError",
    "Measurement",
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
    if name == "track":
        from .tracking import track

        return track
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
