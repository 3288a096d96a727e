"""The end of an A/B session: paired verdicts, reports, history. No pytest here.

The verdicts never read or write the baselines file: the base's rounds are the baseline.
With recording on, each side's run is stored with its own commit, and the two are linked
through their system info (``system_info["ab"]``: the shared `session` id, each side's
`role`, and on the head's run the base run's id), so no schema change is needed.
"""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import paired
from ..compare import Comparison
from ..measure import PerfSpec
from ..results import Measurement, PlatformInfo, RunInfo, TestOutcome, Verdict
from ..runinfo import GitState, build_run_info, git_state
from .pairing import PairedRun, PairingPlan
from .series import Series, pair_series

Markup = dict[str, bool]


@dataclass
class PairedTest:
    """A test compared side by side: its marker, whether it can fail the session, its
    pairs, and its head outcome."""

    spec: PerfSpec | None
    gated: bool
    run: PairedRun
    outcome: TestOutcome = "passed"
    error: str = ""


@dataclass
class ABSummary:
    """Everything the end of the session needs besides the pairs."""

    base_label: str
    base_commit: str | None
    mode: str
    platform: PlatformInfo
    threshold: float
    q: float
    schedule: paired.LookSchedule
    started_at: datetime
    rootdir: Path
    args: list[str]
    run_type: Any
    notes: str
    late_starts: int = 0
    lanes: int = 1  # lanes that paired the tests (`lanes`); 1: the head process did


@dataclass
class ABResult:
    comparison: Comparison
    header: str
    head_run: RunInfo
    base_run: RunInfo
    head_rows: list[Measurement]
    base_rows: list[Measurement]
    messages: list[tuple[str, Markup]] = field(default_factory=list)
    fail_session: bool = False

    def terminal_lines(self, verbose: bool) -> list[tuple[str, Markup]]:
        from ..report.terminal import terminal_lines

        return [(self.header, {"bold": True}), *terminal_lines(self.comparison, verbose),
                *self.messages]  # fmt: skip


def describe_head(git: GitState) -> str:
    if not git.commit:
        return "working tree"
    text = git.commit[:12]
    return f"{text} (uncommitted changes)" if git.dirty else text


def describe_base(label: str, commit: str | None) -> str:
    if commit and label != commit and not commit.startswith(label):
        return f"{label} ({commit[:12]})"
    return commit[:12] if commit else label


def _rows(
    test: str, series: Sequence[Series], spec: PerfSpec | None, outcome: TestOutcome, side: str
) -> list[Measurement]:
    rows = []
    for s in series:
        values = s.base if side == "base" else s.head
        rows.append(
            Measurement(
                test, s.metric, statistics.median(values), s.unit, s.direction, s.kind,
                spec is not None, outcome, s.threshold, tuple(values),
            )
        )  # fmt: skip
    return rows


def _verdict(test: str, s: Series, kind: Any, threshold: float, detail: str) -> Verdict:
    return Verdict(
        test=test,
        metric=s.metric,
        kind=kind,
        direction=s.direction,
        unit=s.unit,
        threshold=threshold,
        current=statistics.median(s.head) if s.head else None,
        baseline=statistics.median(s.base) if s.base else None,
        detail=detail,
        gated=s.gated,
    )


def judge(
    tests: dict[str, PairedTest],
    new: Sequence[tuple[str, PerfSpec | None, bool]],
    removed: Sequence[str],
    summary: ABSummary,
    gate_none: bool,
    confirmations: Mapping[str, PairedRun] | None = None,
    second_draws: Mapping[str, PairedRun] | None = None,
) -> tuple[Comparison, list[Measurement], list[Measurement]]:
    """The paired verdicts of the session, and each side's measurement rows. A regression
    whose test was paired again in fresh processes (`confirmations`) stands only when that
    pairing shows it too; otherwise it is unstable. An unstable metric that leans to a
    regression and was paired again there (a redraw) is a regression when the redraw
    bears it out. A fresh pairing that leans itself is followed by the test's
    `second_draws` pairing, in other fresh processes (`_judge_fresh`)."""
    comparison = Comparison(platform=summary.platform.key)
    head_rows: list[Measurement] = []
    base_rows: list[Measurement] = []
    batches: dict[bool, list[tuple[str, Series, paired.PairedAssessment, float]]] = {
        True: [],
        False: [],
    }
    ordered: list[tuple[str, Series] | Verdict] = []
    extra_notes: dict[tuple[str, str], str] = {}
    decided: dict[tuple[str, str], Verdict] = {}
    for test, entry in tests.items():
        series = pair_series(entry.run.base, entry.run.head, entry.spec, entry.gated)
        head_rows += _rows(test, series, entry.spec, entry.outcome, "head")
        base_rows += _rows(test, series, entry.spec, "passed", "base")
        run = entry.run
        if (
            entry.outcome != "passed"
            or run.base_error
            or run.head_error
            or run.repeat_error
            or not series
        ):
            reason = (
                f"test {entry.outcome} on head: not compared"
                if entry.outcome != "passed"
                else f"failed on base: {run.base_error}"
                if run.base_error
                else f"failed in the head's worker process: {run.head_error}"
                if run.head_error
                else f"failed on head: {run.repeat_error}"
                if run.repeat_error
                else entry.error or "no pairs were taken"
            )
            own = series[0] if series else None
            spec = entry.spec
            ordered.append(
                Verdict(
                    test=test,
                    metric=own.metric if own else (spec.metric if spec else "duration"),
                    kind="skipped_failed",
                    direction=own.direction if own else (spec.direction if spec else "lower"),
                    unit=own.unit if own else (spec.unit if spec else "s"),
                    threshold=_threshold(own, spec, summary.threshold),
                    detail=reason,
                    gated=entry.gated and not gate_none,
                )
            )
            continue
        notes = []
        for s in series:
            threshold = _threshold(s, entry.spec, summary.threshold)
            if s.kind == "system":
                notes.append(_note(s, summary))
                continue
            gated = s.gated and not gate_none
            try:
                if s.exact:  # a count: one pair decides, outside Benjamini-Hochberg
                    decision = paired.decide_exact(s.base[0], s.head[0], s.direction, threshold)
                    decided[(test, s.metric)] = paired.verdict_of(
                        decision, test=test, metric=s.metric, unit=s.unit, base=s.base[0],
                        head=s.head[0], gated=gated,
                    )  # fmt: skip
                else:
                    assessment = paired.assess_pairs(
                        s.base, s.head, s.direction, q=summary.q,
                        share=summary.schedule.share_at(len(s.base)),
                    )  # fmt: skip
                    batches[gated].append((test, s, assessment, threshold))
            except ValueError as exc:
                ordered.append(_verdict(test, s, "unstable", threshold, f"no ratio: {exc}"))
                continue
            ordered.append((test, s))
        if notes and ordered and not isinstance(ordered[-1], Verdict):
            own_test, own = next(
                item for item in ordered if not isinstance(item, Verdict) and item[0] == test
            )
            extra_notes[(own_test, own.metric)] = "; ".join(notes)
    for gated, batch in batches.items():
        if not batch:
            continue
        decisions = paired.decide_pairs_session(
            [a for _, _, a, _ in batch], [t for _, _, _, t in batch], q=summary.q
        )
        for (test, s, a, t), decision in zip(batch, decisions, strict=True):
            leans = gated and decision.kind == "unstable" and paired.leans_to_regression(a, t)
            decided[(test, s.metric)] = replace(
                paired.verdict_of(
                    decision,
                    test=test,
                    metric=s.metric,
                    unit=s.unit,
                    base=statistics.median(s.base),
                    head=statistics.median(s.head),
                    gated=gated,
                ),
                draw_due=leans,
            )
    if confirmations:
        draws = {test: [run] for test, run in confirmations.items()}
        for test, run in (second_draws or {}).items():
            draws.setdefault(test, []).append(run)
        _judge_fresh(decided, tests, draws, summary)
    for item in ordered:
        if isinstance(item, Verdict):
            comparison.verdicts.append(item)
        else:
            verdict = decided[(item[0], item[1].metric)]
            note = extra_notes.get((item[0], item[1].metric))
            if note:
                verdict = replace(verdict, detail=f"{verdict.detail}; {note}")
            comparison.verdicts.append(verdict)
    for test, spec, gated in new:
        comparison.verdicts.append(
            Verdict(
                test=test,
                metric=spec.metric if spec else "duration",
                kind="new",
                direction=spec.direction if spec else "lower",
                unit=spec.unit if spec else "s",
                threshold=_threshold(None, spec, summary.threshold),
                detail=f"not in base {summary.base_label}",
                gated=gated and not gate_none,
            )
        )
    for test in removed:
        comparison.verdicts.append(
            Verdict(
                test=test,
                metric="duration",
                kind="missing",
                direction="lower",
                unit="s",
                threshold=summary.threshold,
                detail="removed: only in the base",
                gated=False,
            )
        )
    return comparison, head_rows, base_rows


# Each confirmation is judged on its own at q, its looks planned for one metric. The
# first pairing already holds the session's false discoveries to q when pairs are
# exchangeable (Benjamini-Hochberg over the session's gated metrics); what a confirmation
# adds is a new draw of the two processes, whose difference no number of pairs would
# average out, and a regression stands only where both pairings show it. So it needs only
# the pairs that one test at level q needs: 6 for a clear +25 % (2^-6 / 0.5 <= 0.05), not
# the 10 that 24 metrics' first look needs. Not Benjamini-Hochberg among the
# confirmations: a confirmation that stops at its first look (p = 2^-6 / 0.5 = 0.031)
# would then stand only if at least 5 in 8 of the others did as well, so a flag that did
# not confirm took clear confirmations down with it. A fifth look lets a noisy
# confirmation go on to 32 pairs, as far as a first pairing's last look (35 for 24
# metrics).
CONFIRMATION_METRICS = 1
CONFIRMATION_LOOKS = 5


def confirmation_plan(plan: PairingPlan) -> PairingPlan:
    """How a confirmation takes its pairs: `plan`'s, its looks a confirmation's
    (`confirmation_schedule`: no futility look, its first look tests)."""
    return replace(
        plan,
        metrics=CONFIRMATION_METRICS,
        looks=CONFIRMATION_LOOKS,
        early_futility=None,
        confirming=True,
    )


def confirmation_schedule(q: float) -> paired.LookSchedule:
    """The looks of a confirmation's pairs: 6, 9, 14, 21 and 32 at q = 0.05."""
    return paired.LookSchedule.plan(metrics=CONFIRMATION_METRICS, q=q, looks=CONFIRMATION_LOOKS)


def due_a_draw(verdict: Verdict) -> bool:
    """Whether this gated verdict is unstable and a draw in fresh processes, or one more,
    may still make it a regression: its first pairing leaned to one
    (`paired.leans_to_regression`), or its fresh draws so far may yet add up to the two a
    regression needs (`_judge_fresh`)."""
    return verdict.gated and isinstance(verdict, paired.PairedVerdict) and verdict.draw_due


def draws_again(verdict: Verdict) -> bool:
    """Whether the session pairs this first pairing's test again in fresh processes: a
    gated regression, to confirm it, or a gated metric that leans to one, to redraw it."""
    return (verdict.gated and verdict.kind == "regression") or due_a_draw(verdict)


def _assessed_alone(
    run: PairedRun,
    spec: PerfSpec | None,
    gated: bool,
    *,
    q: float,
    schedule: paired.LookSchedule,
    threshold: float,
) -> Iterator[tuple[paired.PairedAssessment, float]]:
    """Each gated metric of one test's pairs, judged alone (no Benjamini-Hochberg), with
    its threshold; nothing for a test that failed or cannot fail the session."""
    if not gated or run.base_error or run.head_error or run.repeat_error:
        return
    for s in pair_series(run.base, run.head, spec, gated):
        if not s.gated or s.exact:
            continue
        try:
            a = paired.assess_pairs(
                s.base, s.head, s.direction, q=q, share=schedule.share_at(len(s.base))
            )
        except ValueError:
            continue
        yield a, _threshold(s, spec, threshold)


def likely_regression(
    run: PairedRun,
    spec: PerfSpec | None,
    gated: bool,
    *,
    q: float,
    schedule: paired.LookSchedule,
    threshold: float,
) -> bool:
    """Whether one test's pairs, judged alone, show a regression of a gated metric that
    Benjamini-Hochberg could confirm (its look-adjusted p-value at most q). Lanes confirm
    such a test in their confirmation lanes while they still run; this only saves time,
    since which tests `draws_again` is decided at the end by `judge`, as without lanes."""
    found = _assessed_alone(run, spec, gated, q=q, schedule=schedule, threshold=threshold)
    return any(paired.shows_regression(a, t, a.p_value, q) for a, t in found)


def likely_lean(
    run: PairedRun,
    spec: PerfSpec | None,
    gated: bool,
    *,
    q: float,
    schedule: paired.LookSchedule,
    threshold: float,
) -> bool:
    """Whether one test's pairs, judged alone, lean to a regression of a gated metric
    (`paired.leans_to_regression`) without showing one: lanes queue its redraw once the
    confirmation lanes have started, as `likely_regression` saves time for a flag."""
    found = _assessed_alone(run, spec, gated, q=q, schedule=schedule, threshold=threshold)
    return any(
        not paired.shows_regression(a, t, a.p_value, q) and paired.leans_to_regression(a, t)
        for a, t in found
    )


# A flagged or leaning verdict is paired in fresh processes at most this many times
# (`_judge_fresh`).
FRESH_DRAWS = 2


def _fresh_decision(
    verdict: Verdict, run: PairedRun, tests: Mapping[str, PairedTest], summary: ABSummary
) -> tuple[paired.PairedDecision, Series] | str | None:
    """The verdict's metric's pairs in fresh processes (`run`: a confirmation's or a
    redraw's), judged alone by `paired.decide_confirmation`, with their series; why there
    are none, when a side failed; None when they give no ratio of that metric."""
    if run.base_error or run.head_error or not run.head:
        return run.base_error or run.head_error or "no pairs"
    entry = tests[verdict.test]
    series = pair_series(run.base, run.head, entry.spec, entry.gated)
    s = next((s for s in series if s.metric == verdict.metric), None)
    if s is None:
        return None
    schedule = confirmation_schedule(summary.q)
    try:
        assessment = paired.assess_pairs(
            s.base, s.head, s.direction, q=summary.q, share=schedule.share_at(len(s.base))
        )
    except ValueError:
        return None
    return paired.decide_confirmation(assessment, verdict.threshold, q=summary.q), s


def _fresh_text(decisions: Sequence[tuple[paired.PairedDecision, Series]]) -> str:
    """What fresh draws read: the last; the first after it, when there were two."""
    last = decisions[-1][0].detail
    if len(decisions) == 1:
        return last
    return f"{last} (drawn twice: the first read {paired.basis(decisions[0][0].assessment)})"


def _judge_fresh(
    decided: dict[tuple[str, str], Verdict],
    tests: Mapping[str, PairedTest],
    draws: Mapping[str, Sequence[PairedRun]],
    summary: ABSummary,
) -> None:
    """Judge each flagged or leaning metric's draws in fresh processes (`draws`: a
    test's, in order), each alone by a confirmation's rule (`paired.decide_confirmation`).

    A regression stands only where two draws of processes bear it out, each on its own:
    a flag (the first pairing) and one fresh draw; for a first pairing that leaned to a
    regression (a redraw), two fresh draws, the verdict then sized by the last. A fresh
    draw that leans itself neither counts nor ends the test's draws; one that does
    neither ends them. At most `FRESH_DRAWS` fresh draws: a verdict that could still
    reach its two with the next is `draw_due` (its test is drawn again at the end), and
    once that is impossible it is unstable. Requiring independent draws to agree can only
    remove alarms from those the draws would raise on their own."""
    for key, verdict in decided.items():
        if not isinstance(verdict, paired.PairedVerdict):
            continue
        flagged = verdict.kind == "regression"
        runs = draws.get(key[0], ())
        if not (flagged or verdict.draw_due) or not runs:
            continue
        needed = 1 if flagged else 2
        read: list[tuple[paired.PairedDecision, Series]] = []
        why, ended = "", False
        for run in runs[:FRESH_DRAWS]:
            fresh = _fresh_decision(verdict, run, tests, summary)
            if fresh is None or isinstance(fresh, str):
                why, ended = fresh or "", True
                break
            read.append(fresh)
            decision = fresh[0]
            if decision.kind == "regression":
                needed -= 1
            elif not paired.leans_to_regression(decision.assessment, verdict.threshold):
                ended = True
            if needed == 0 or ended:
                break
        if why:
            what = "confirmed" if flagged else "drawn again"
            decided[key] = replace(verdict, detail=f"{verdict.detail}; not {what}: {why}")
            continue
        if not read:
            continue
        due = (
            not ended
            and 0 < needed <= FRESH_DRAWS - len(read)
            and len(read) == len(runs)
        )
        text = _fresh_text(read)
        if flagged and needed == 0:
            detail = f"{verdict.detail}; confirmed in fresh processes: {text}"
            decided[key] = replace(verdict, detail=detail)
        elif flagged:
            detail = f"{verdict.detail}; not confirmed in fresh processes: {text}"
            decided[key] = replace(verdict, kind="unstable", detail=detail, draw_due=due)
        elif needed == 0:
            last, s = read[-1]
            redrawn = paired.verdict_of(
                last, test=key[0], metric=key[1], unit=verdict.unit,
                base=statistics.median(s.base), head=statistics.median(s.head), gated=True,
            )  # fmt: skip
            detail = f"{text}, drawn again in fresh processes; the first pairing leaned: "
            decided[key] = replace(redrawn, detail=detail + verdict.detail)
        else:
            detail = f"{verdict.detail}; drawn again in fresh processes: {text}"
            decided[key] = replace(verdict, detail=detail, draw_due=due)


def _note(s: Series, summary: ABSummary) -> str:
    """An informational metric's ratio, for the test's verdict line."""
    name = {"cpu_time": "CPU time", "wall_time": "wall time"}.get(s.metric, s.metric)
    try:
        a = paired.assess_pairs(
            s.base, s.head, s.direction, q=summary.q, share=summary.schedule.share_at(len(s.base))
        )
    except ValueError:
        return f"{name}: no ratio"
    return f"{name} ratio {a.ratio.estimate:.3f}"


def _threshold(s: Series | None, spec: PerfSpec | None, default: float) -> float:
    if s is not None and s.threshold is not None:
        return s.threshold
    if spec is not None and spec.threshold is not None:
        return spec.threshold
    return default


def finish_ab(
    tests: dict[str, PairedTest],
    new: Sequence[tuple[str, PerfSpec | None, bool]],
    removed: Sequence[str],
    summary: ABSummary,
    *,
    settings: Any,
    db_url: str | None,
    exitstatus: int,
    confirmations: Mapping[str, PairedRun] | None = None,
    second_draws: Mapping[str, PairedRun] | None = None,
) -> ABResult:
    """Judge, report and (with `--perf-record`) store an A/B session."""
    comparison, head_rows, base_rows = judge(
        tests, new, removed, summary, gate_none=settings.gate == "none",
        confirmations=confirmations, second_draws=second_draws,
    )  # fmt: skip
    git = git_state(summary.rootdir)
    base_text = describe_base(summary.base_label, summary.base_commit)
    head_text = describe_head(git)
    lanes = f", {summary.lanes} lanes" if summary.lanes > 1 else ""
    header = (
        f"base {base_text} vs head {head_text}, measured side by side on "
        f"{summary.platform.key} ({summary.mode}{lanes})"
    )
    session_id = uuid.uuid4().hex
    ab_info = {
        "session": session_id,
        "header": header,
        "mode": summary.mode,
        "base": base_text,
        "head": head_text,
        "base_commit": summary.base_commit,
        "head_commit": git.commit,
        "looks": list(summary.schedule.counts),
        "duet_late_starts": summary.late_starts,
        "lanes": summary.lanes,
    }
    head_run = build_run_info(
        platform=summary.platform,
        started_at=summary.started_at,
        run_type=summary.run_type,
        notes=summary.notes,
        args=summary.args,
        exitstatus=exitstatus,
        git=git,
        system_info={"ab": {**ab_info, "role": "head"}},
    )
    base_run = replace(
        head_run,
        git_commit=summary.base_commit,
        git_branch=None,
        git_dirty=None,
        system_info={"ab": {**ab_info, "role": "base"}},
    )
    result = ABResult(comparison, header, head_run, base_run, head_rows, base_rows)
    if settings.record and db_url is not None:
        _store(result, db_url)
    _write_reports(result, settings)
    result.fail_session = comparison.failed and not settings.warn_only
    if comparison.failed and settings.warn_only:
        result.messages.append(
            ("--perf-warn-only: regressions reported, session not failed", {"yellow": True})
        )
    return result


def _store(result: ABResult, db_url: str) -> None:
    from ..api import History
    from ..history.errors import HistoryError

    try:
        with History(db_url) as history:
            base_id = history.save_session(result.base_run, result.base_rows)
            result.head_run.system_info["ab"]["base_run_id"] = base_id
            head_id = history.save_session(result.head_run, result.head_rows)
    except HistoryError as exc:
        result.messages.append((f"perfguard: A/B runs not stored: {exc}", {"red": True}))
        return
    result.messages.append((f"perfguard: stored base run {base_id} and head run {head_id}", {}))


def _write_reports(result: ABResult, settings: Any) -> None:
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not (settings.report or settings.json_report or summary_path):
        return
    from ..report import build_report, render_json, render_markdown

    data = build_report(
        result.head_run, result.comparison, result.head_rows, warn_only=settings.warn_only
    )
    outputs: list[tuple[Path | str, str, str]] = []
    if settings.report or summary_path:
        markdown = render_markdown(data)
        if settings.report:
            outputs.append((settings.report, markdown, "Markdown report"))
        if summary_path:
            outputs.append((summary_path, markdown, ""))
    if settings.json_report:
        outputs.append((settings.json_report, render_json(data), "JSON report"))
    for path, text, what in outputs:
        try:
            if what:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text, encoding="utf-8")
                result.messages.append((f"perfguard: {what} written to {path}", {}))
            else:
                with open(path, "a", encoding="utf-8") as summary:
                    summary.write(text + "\n")
        except OSError as exc:
            result.messages.append((f"perfguard: {what or 'step summary'} not written: {exc}",
                                    {"red": True}))  # fmt: skip
