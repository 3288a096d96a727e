"""Numbers, changes and plain-text tables as people read them (reports, CLI, calibration and
update summaries)."""

from __future__ import annotations

from collections.abc import Sequence

from .compare import relative_difference

# Time units are rescaled so 0.0042 s reads "4.20 ms"; other units are shown as given.
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TIME_SCALE = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
NONE = "—"


def _num(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def format_value(value: float | None, unit: str = "") -> str:
    """`0.0042, "s"` → `4.20 ms`; `1234.5, "tokens/s"` → `1234 tokens/s`; None → `—`."""
    if value is None:
        return NONE
    if unit in _TIME_UNITS:
        seconds = value * _TIME_UNITS[unit]
        if seconds == 0:
            return "0 s"
        for name, factor in _TIME_SCALE:
            if abs(seconds) >= factor:
                return f"{_num(seconds / factor)} {name}"
        return f"{_num(seconds / 1e-9)} ns"
    return f"{_num(value)} {unit}" if unit else _num(value)


def format_delta(current: float | None, baseline: float | None) -> str:
    """How the value moved relative to the baseline, e.g. `+102.3%` (not direction-aware:
    a throughput that dropped reads `-40.0%`)."""
    difference = (
        None if current is None or baseline is None else relative_difference(current, baseline)
    )
    return NONE if difference is None else f"{difference:+.1%}"


def format_percent(fraction: float | None) -> str:
    """`0.2` → `20%`, `0.125` → `12.5%`."""
    if fraction is None:
        return NONE
    percent = fraction * 100
    return f"{percent:.0f}%" if round(percent, 1).is_integer() else f"{percent:.1f}%"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)]
