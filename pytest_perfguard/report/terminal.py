"""Lines for pytest's terminal summary: `(text, markup)` pairs for
`terminalreporter.write_line(text, **markup)`; no pytest import here."""

from __future__ import annotations

from collections.abc import Sequence

from ..compare import Comparison
from ..formatting import format_delta, format_percent, format_value, text_table
from ..results import Measurement, Verdict
from .data import StepBreakdown, regressions_counted, step_breakdowns

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


def terminal_lines(
    comparison: Comparison, verbose: bool, measurements: Sequence[Measurement] = ()
) -> list[Line]:
    """Regressions (regressed steps included) first as a compact table, then counts of the
    other verdicts, then the step breakdown of marked tests in `measurements`; with
    `verbose`, every compared metric (steps included) with its verdict."""
    lines: list[Line] = []
    regressions = comparison.regressions + comparison.step_regressions
    if regressions:
        lines.append((f"{regressions_counted(comparison)}:", {"red": True, "bold": True}))
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
    for breakdown in step_breakdowns(measurements, comparison, marked_only=True):
        lines += breakdown_lines(breakdown)
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


def breakdown_lines(breakdown: StepBreakdown) -> list[Line]:
    """One test's steps: time, share of the test's total, change over the baseline, with
    the slowest and the regressed steps named under the table."""
    b = breakdown
    total = f" (total {format_value(b.total, b.unit)})" if b.total is not None else ""
    lines: list[Line] = [("", {}), (f"steps of {b.test}{total}:", {"bold": True})]
    rows = []
    for s in b.steps:
        baseline = s.verdict.baseline if s.verdict is not None else None
        status = "REGRESSED" if s.regressed else ("FAILED" if s.error else "")
        rows.append(
            [
                s.name,
                format_value(s.value, s.unit),
                format_percent(s.share),
                format_delta(s.value, baseline) if baseline is not None else "",
                status,
            ]
        )
    header, rule, *table = text_table(["step", "time", "share", "change", ""], rows)
    lines += [(header, {"bold": True}), (rule, {})]
    for s, row in zip(b.steps, table, strict=True):
        lines.append((row, {"red": True} if s.regressed or s.error else {}))
    slowest = b.slowest
    if slowest is not None:
        share = f" ({format_percent(slowest.share)} of total)" if slowest.share is not None else ""
        lines.append((f"slowest step: {slowest.name}{share}", {}))
    for s in b.regressed_steps:
        assert s.verdict is not None
        change = format_delta(s.value, s.verdict.baseline)
        threshold = format_percent(s.verdict.threshold)
        lines.append((f"regressed step: {s.name} ({change}, threshold {threshold})", {"red": True}))
    for s in b.failed:
        lines.append((f"failed step: {s.name}: {s.error}", {"red": True}))
    return lines
