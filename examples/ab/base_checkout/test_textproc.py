"""The example test, the same in the head and in the base (base_checkout/)."""

from __future__ import annotations

import pytest
from textproc import slugify_all

TITLES = [f"Measuring Base And Head Side By Side {n}" for n in range(300)]


@pytest.mark.perf(metric="slugify")
def test_slugify_all() -> None:
    assert slugify_all(TITLES).count("\n") == len(TITLES) - 1
