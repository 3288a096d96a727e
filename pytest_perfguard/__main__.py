"""`python -m pytest_perfguard`: the `perfguard` command."""

from __future__ import annotations

from pytest_perfguard.cli import main

raise SystemExit(main())
