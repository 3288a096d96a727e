"""pytest-perfguard: performance regressions fail CI the way broken assertions do."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .results import Measurement, PlatformInfo, RunInfo, Verdict

if TYPE_CHECKING:
    from .api import History, HistoryError

try:
    __version__ = version("pytest-perfguard")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "History",
    "HistoryError",
    "Measurement",
    "PlatformInfo",
    "RunInfo",
    "Verdict",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # History pulls in SQLAlchemy; the plugin imports this package on every pytest start.
    if name in ("History", "HistoryError"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
