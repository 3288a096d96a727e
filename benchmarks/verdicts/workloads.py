"""Fixed-work workloads of three kinds, sized in milliseconds of this machine's fast state.

- ``sha``: chained sha256 of 64 bytes (C code, CPU-bound, hashing units);
- ``interp``: a pure-Python dict loop (the interpreter's dispatch loop);
- ``mem``: pointer chasing through a shuffled 512K-entry list (cache and TLB misses).

The work is a number of iterations, so an injected slowdown (``factor=1.25``) is 25 % more
work: the same ratio in a slow spell as in a fast one. ``UNITS_PER_MS`` was measured here
(fastest of many calls); on another machine sizes shift, which does not matter for scoring.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

UNITS_PER_MS = {"sha": 2500, "interp": 10700, "mem": 2600}
_CHAIN_SIZE = 1 << 19
_chain: list[int] | None = None
_position = 0


def _one_cycle(n: int) -> list[int]:
    """A random single cycle through all n slots, so a chase never loops early."""
    order = list(range(n))
    random.Random(5).shuffle(order)
    chain = [0] * n
    for here, there in zip(order, order[1:] + order[:1], strict=True):
        chain[here] = there
    return chain


def prepare() -> None:
    """Build the memory workload's chain now (about a second), not inside a timed call."""
    global _chain
    if _chain is None:
        _chain = _one_cycle(_CHAIN_SIZE)


def sha(units: int) -> bytes:
    h = b"x" * 64
    for _ in range(units):
        h = hashlib.sha256(h).digest()
    return h


def interp(units: int) -> int:
    d: dict[int, int] = {}
    for i in range(units):
        k = i % 97
        d[k] = d.get(k, 0) + i
    return len(d)


def mem(units: int) -> int:
    # Each call goes on where the last stopped, so it touches memory not in cache.
    global _position
    prepare()
    assert _chain is not None
    chain, j = _chain, _position
    for _ in range(units):
        j = chain[j]
    _position = j
    return j


KINDS: dict[str, Callable[[int], object]] = {"sha": sha, "interp": interp, "mem": mem}


def units(kind: str, ms: float, factor: float = 1.0) -> int:
    return max(1, round(UNITS_PER_MS[kind] * ms * factor))


def run(kind: str, ms: float, factor: float = 1.0) -> object:
    return KINDS[kind](units(kind, ms, factor))
