"""The installed distribution's version, on its own so that reading it imports nothing else
of the package (the package's ``__init__`` reaches `History` lazily)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-perfguard")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"
