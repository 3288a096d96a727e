"""Lines for pytest's terminal summary: `(text, markup)` pairs for
`terminalreporter.write_line(text, **markup)`; no pytest import here."""

from __future__ import annotations

from ..compare import Comparison
from ..formatting import format_delta, format_percent, format_value, text_table
from ..results import Verdict

Line = tuple[str, dict[str, bool]]
_HEADERS = ["test", "metric", "baseline", "current", "change", "threshold"]
_COLOURS = {"regression": "red", "improvement": "green", "unstable": "yellow"}


def _cells(v: Verdict) -> list[str]:
    return [
        v.test,
        v.metric,
        format_value(v.baseline, v.unit),
        format_value(v.current, v.unit),
        format_delta(v.current, v.baseline),
        format_percent(v.threshold),
    ]


def terminal_lines(comparison: Comparison, verbose: bool) -> list[Line]:
    """Regressions first as a compact table, then counts of the other verdicts; with
    `verbose`, every compared metric (steps included) with its verdict."""
    lines: list[Line] = []
    regressions = comparison.regressions
    if regressions:
        n = len(regressions)
        lines.append(
            (f"{n} performance regression{'s' if n != 1 else ''}:", {"red": True, "bold": True})
        )
        # Confirm re-runs and history's change points leave a note; no empty column otherwise.
        noted = any(v.detail for v in regressions)
        header, rule, *rows = text_table(
            [*_HEADERS, "note"] if noted else _HEADERS,
            [[*_cells(v), v.detail] if noted else _cells(v) for v in regressions],
        )
        lines += [(header, {"bold": True}), (rule, {})]
        lines += [(row, {"red": True}) for row in rows]
    counts = comparison.counts()
    others = [
        f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n and kind != "regression"
    ]
    if others:
        lines.append(("; ".join(others), {}))
    if not comparison.verdicts:
        lines.append(("no gated metrics were compared", {}))
    elif not regressions:
        lines.append(("no performance regressions", {"green": True}))
    if verbose and comparison.verdicts:
        table = text_table(
            [*_HEADERS, "verdict"],
            [
                [*_cells(v), v.kind.replace("_", " ") + ("" if v.gated else " (info)")]
                for v in comparison.verdicts
            ],
        )
        lines += [
            ("", {}),
            ("all compared metrics:", {"bold": True}),
            (table[0], {"bold": True}),
            (table[1], {}),
        ]
        for v, row in zip(comparison.verdicts, table[2:], strict=True):
            colour = _COLOURS.get(v.kind)
            lines.append((row, {colour: True} if colour else {}))
    return lines
