"""Multiple testing: Benjamini-Hochberg's false-discovery-rate adjustment."""

from __future__ import annotations

from collections.abc import Sequence


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values), as `scipy.stats.false_discovery_control(p, method="bh")`."""
    ps = [float(p) for p in p_values]
    if not all(0 <= p <= 1 for p in ps):
        raise ValueError("p-values must be in [0, 1]")
    m = len(ps)
    adjusted = [0.0] * m
    running = 1.0
    for rank, i in reversed(list(enumerate(sorted(range(m), key=ps.__getitem__), start=1))):
        running = min(running, ps[i] * (m / rank))
        adjusted[i] = running
    return adjusted
