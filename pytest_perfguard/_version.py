"""The package's version: the one place it is written (pyproject.toml reads it from here).

A constant, not ``importlib.metadata``: reading installed metadata loads the email parser
into every pytest session that prints perfguard's header.
"""

from __future__ import annotations

__version__ = "0.2.0"
