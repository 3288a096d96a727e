"""The parts of `--perf-against` that need no second process: resolving BASE, the worker's
arguments, which values are compared, the default mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard.ab import base, finish, lanes, pairing, series, worker
from pytest_perfguard.measure import PerfSpec


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_directory_is_used_as_it_is(tmp_path: Path) -> None:
    checkout = base.resolve_base(str(tmp_path), tmp_path)
    assert checkout.path == tmp_path.resolve()
    assert checkout.commit is None  # not the top of a git checkout
    checkout.remove()
    assert tmp_path.is_dir()  # a user's directory is never removed


def test_a_revision_becomes_a_worktree_that_is_removed(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("base\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "base")
    checkout = base.resolve_base("HEAD", tmp_path)
    assert (checkout.path / "a.txt").read_text() == "base\n"
    assert checkout.commit == _git(tmp_path, "rev-parse", "HEAD")
    assert checkout.describe.startswith("HEAD (")
    checkout.remove()
    assert not checkout.path.exists()
    assert _git(tmp_path, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_neither_directory_nor_revision_is_one_line(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    with pytest.raises(base.BaseError, match="neither a directory nor a git revision") as info:
        base.resolve_base("no-such-rev", tmp_path)
    assert "\n" not in str(info.value)


def test_outside_git_says_so(tmp_path: Path) -> None:
    with pytest.raises(base.BaseError, match="not in a git repository"):
        base.resolve_base("main", tmp_path)


def test_worker_args_map_the_heads_paths_into_the_base(tmp_path: Path) -> None:
    head, checkout = tmp_path / "head", tmp_path / "base"
    for root in (head, checkout):
        (root / "tests").mkdir(parents=True)
        (root / "tests" / "test_a.py").write_text("")
    (head / "tests" / "test_new.py").write_text("")
    args = pairing.worker_args(
        ["tests/test_a.py::test_x", "tests/test_new.py", str(head / "tests")],
        head, head, checkout, "fast", "perf",
    )  # fmt: skip
    assert args == [
        "--rootdir", str(checkout), "tests/test_a.py::test_x", "tests", "-k", "fast", "-m", "perf",
    ]  # fmt: skip
    nothing = pairing.worker_args(["tests/test_new.py"], head, head, checkout, "", "")
    assert nothing[-2:] == ["-k", "perfguard_ab_selects_nothing"]


def test_worker_args_carry_the_heads_ignores_into_the_base(tmp_path: Path) -> None:
    """--ignore and --ignore-glob, relative to where the head was invoked (here its tests/
    directory), become relative to the worker's directory, the base's root; one outside
    the head's root is dropped."""
    head, checkout = tmp_path / "head", tmp_path / "base"
    for root in (head, checkout):
        (root / "tests" / "slow").mkdir(parents=True)
    args = pairing.worker_args(
        ["."], head / "tests", head, checkout, "", "",
        ignore=["slow", str(tmp_path / "elsewhere")], ignore_glob=["slow/*", "*_big.py"],
    )  # fmt: skip
    assert args == [
        "--rootdir", str(checkout), "tests",
        "--ignore=tests/slow", "--ignore-glob=tests/slow/*", "--ignore-glob=tests/*_big.py",
    ]  # fmt: skip


def test_forwarded_options_are_the_heads_collection_and_run_options() -> None:
    args = [
        "--import-mode", "importlib", "-o", "python_files=check_*.py", "-Werror", "-q",
        "--override-ini=xfail_strict=true", "-p", "no:randomly", "-pno:cacheprovider",
        "-p", "myplugin", "--strict-markers", "-k", "fast", "--pythonwarnings", "ignore",
        "--perf-against", "main", "-v",
    ]  # fmt: skip
    assert pairing.forwarded_options(args) == [
        "--import-mode=importlib", "--override-ini=python_files=check_*.py",
        "--pythonwarnings=error", "--override-ini=xfail_strict=true", "-p", "no:randomly",
        "-p", "no:cacheprovider", "--strict-markers", "--pythonwarnings=ignore",
    ]  # fmt: skip
    assert pairing.forwarded_options(["--import-mode=append", "-o"]) == ["--import-mode=append"]


def test_confirmation_args_name_the_paired_tests_files_once_each(tmp_path: Path) -> None:
    tests = [
        "tests/test_a.py::test_x",
        "tests/test_a.py::Test::test_y[1-2]",
        "tests/sub/test_b.py::test_z",
    ]
    args = pairing.confirmation_args(tests, tmp_path, "fast", "perf")
    assert args == [
        "--rootdir", str(tmp_path), "tests/test_a.py", "tests/sub/test_b.py",
        "-k", "fast", "-m", "perf",
    ]  # fmt: skip
    assert pairing.confirmation_args(tests[:1], tmp_path, "", "") == [
        "--rootdir", str(tmp_path), "tests/test_a.py",
    ]  # fmt: skip


@pytest.mark.parametrize("outside", ["../elsewhere/test_c.py::test_w", "/abs/test_d.py::test_v"])
def test_confirmation_args_give_way_to_a_test_outside_the_rootdir(
    tmp_path: Path, outside: str
) -> None:
    assert pairing.confirmation_args(["tests/test_a.py::test_x", outside], tmp_path, "", "") is None


def _round(wall: float, cpu: float, **records: list[float]) -> series.Round:
    return series.Round(wall, cpu, 0, {k: [v, "tok/s", "higher", None] for k, v in records.items()})


def test_series_compare_the_recorded_metric_and_report_time() -> None:
    spec = PerfSpec(metric="throughput", direction="higher", unit="tok/s")
    base_rounds = [_round(1.0, 0.9, throughput=[100.0, 102.0], extra=[1.0])]
    head_rounds = [_round(1.1, 1.0, throughput=[90.0], extra=[2.0])]
    found = {s.metric: s for s in series.pair_series(base_rounds, head_rounds, spec, True)}
    assert found["throughput"].base == [101.0]
    assert found["throughput"].direction == "higher"
    assert found["throughput"].gated
    assert not found["duration"].gated and not found["cpu_time"].gated
    assert found["extra"].kind == "custom" and found["extra"].gated


def test_series_of_an_unrecorded_metric_is_busy_time() -> None:
    rounds = [series.Round(0.5, 0.4, 0, {}, busy=0.45)]
    (own, wall, cpu) = series.pair_series(rounds, rounds, PerfSpec(), True)
    assert (own.metric, own.base, own.gated) == ("duration", [0.45], True)
    assert (wall.metric, wall.base, wall.gated) == ("wall_time", [0.5], False)
    assert (cpu.metric, cpu.base, cpu.gated) == ("cpu_time", [0.4], False)


def test_a_round_that_never_blocks_is_timed_by_its_threads_cpu_time() -> None:
    """Busy time leaves out what the scheduler gave to other processes (a call that is
    runnable throughout is timed by its thread's CPU time) and keeps what the call waited
    for itself (a call that sleeps is timed by the clock on the wall)."""
    if worker._blocked_count is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs RUSAGE_THREAD and CPU affinity (Linux)")
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    # A busy loop on the same CPU takes turns with the call: its wall time doubles, its
    # CPU time does not.
    rival = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        time.sleep(0.2)
        spinning = worker.run_round(_busy_for(0.05, time.thread_time), None, cpu=cpu)
    finally:
        rival.kill()
        rival.wait()
        worker.unpin(cpus)
    assert spinning["busy"] == pytest.approx(0.05, abs=0.01)
    assert spinning["wall"] > spinning["busy"] + 0.01
    sleeping = worker.run_round(lambda: time.sleep(0.02), None)
    assert sleeping["busy"] == sleeping["wall"] >= 0.02
    assert sleeping["cpu"] < 0.01


class _RecordingWorker:
    """A base worker that answers every round at once and keeps what it was asked."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def recv(self) -> dict[str, Any]:
        return {"op": "round", "wall": 0.001, "cpu": 0.001, "start": 0, "records": {}}


def _busy_for(
    seconds: float, clock: Callable[[], float] = time.perf_counter
) -> Callable[[], None]:
    """A call that spins until `clock` (the wall by default) has advanced `seconds`."""

    def call() -> None:
        deadline = clock() + seconds
        while clock() < deadline:
            pass

    return call


@pytest.mark.parametrize(
    ("call_seconds", "warmup", "calls_a_side", "rounds"),
    [
        (0.0, 0, 3, [1] + [3] * 4),  # the first pair warms up, and is dropped
        (0.012, 0, 1, [1] * 4),  # the first pair is the first of the four
        (0.0, 2, 3, [3] * 4),  # the marker's warm-up calls, then blocks
        (0.012, 2, 1, [1] * 4),
    ],
)
def test_a_long_call_is_paired_one_call_a_side(
    call_seconds: float, warmup: int, calls_a_side: int, rounds: list[int]
) -> None:
    """Blocks of three calls a side for short tests; one for a test whose call takes
    `long_call` or more (it dominates the pairing time, and its own cache dominates it).
    Without the marker's `warmup=`, the first pair, one call a side, tells which: a long
    call's is kept, a short call's is a warm-up."""
    worker = _RecordingWorker()
    plan = pairing.PairingPlan(
        mode="interleave", budget=0.0, q=0.05, metrics=1, cpus=None, warmup=warmup
    )
    flat = [series.Series("duration", "s", "lower", "primary", True, None, [1.0] * 12, [1.0] * 12)]
    run = pairing.pair_test(
        plan, worker, _busy_for(call_seconds), None,  # type: ignore[arg-type]
        lambda base, head: flat, lambda _: 0.1,
    )  # fmt: skip
    assert [m["repeat"] for m in worker.sent if "repeat" in m] == rounds
    assert sum("warm" in m for m in worker.sent) == warmup
    assert len(run.head) == len(run.base) == 4  # the early futility look
    assert set(rounds[-4:]) == {calls_a_side}


def _call_clock() -> tuple[Callable[[], float], Callable[[], None]]:
    """A clock and a test call that advances it by 0.1 s. The call also spins past
    `long_call` on the real clock, which times the head's rounds, so that its first pair
    reads as a long call's: one call a side per pair."""
    now = [0.0]
    spin = _busy_for(pairing.PairingPlan.long_call + 0.001)

    def clock() -> float:
        return now[0]

    def call() -> None:
        spin()
        now[0] += 0.1

    return clock, call


def never_settled(base: list[Any], head: list[Any]) -> list[series.Series]:
    """A gated metric whose pairs do not decide by 15 pairs: half the head's rounds far
    above, half far below the base's, its estimate (+8 %) past half the 10 % threshold
    and short of it."""
    wide = [0.8 if i % 2 else 1.45 for i in range(len(head))]
    flat = [1.0] * len(head)
    return [series.Series("duration", "s", "lower", "primary", True, None, flat, wide)]


def test_the_budget_counts_the_pairs_after_the_first_look() -> None:
    """`--perf-ab-budget` is the time a test may spend on pairs after its first look (as
    documented): a test whose first look alone outlasts the budget still takes the next
    look when that look fits. Time here is a clock the test's calls advance, 0.1 s each."""
    clock, call = _call_clock()

    worker = _RecordingWorker()
    plan = pairing.PairingPlan(
        mode="interleave", budget=0.35, q=0.05, metrics=1, cpus=None, clock=clock
    )
    schedule = plan.schedule()
    # An early futility look at 4 pairs, then the deciding look at 6 and the later ones.
    assert schedule.counts[: schedule.deciding] == (4,)
    first, second, third = schedule.counts[schedule.deciding :][:3]
    assert (first, second, third) == (6, 9, 14)
    run = pairing.pair_test(
        plan, worker, call, None, never_settled, lambda _: 0.1  # type: ignore[arg-type]
    )
    # One call a side (a long call, its first pair kept), the base's answered at once:
    # 0.1 s a pair. The first look (0.6 s) is past the budget; the second (0.3 s more)
    # fits in it; the third (0.5 s more) would not.
    assert len(run.head) == second


def likely_unsettled(base: list[Any], head: list[Any]) -> list[series.Series]:
    """A gated metric whose estimate (+13 %) is past the 10 % threshold while its test
    stays far from significant: the head's rounds alternate far above and below."""
    wide = [0.8 if i % 2 else 1.6 for i in range(len(head))]
    flat = [1.0] * len(head)
    return [series.Series("duration", "s", "lower", "primary", True, None, flat, wide)]


@pytest.mark.parametrize(
    ("confirming", "describe", "pairs"),
    [(True, likely_unsettled, 14), (True, never_settled, 9), (False, likely_unsettled, 9)],
)
def test_a_confirmation_past_the_threshold_may_take_twice_the_budget(
    confirming: bool, describe: Callable[[list[Any], list[Any]], list[series.Series]], pairs: int
) -> None:
    """At a budget of 0.45 s, 0.1 s a pair, looks at 6, 9, 14 and 21 pairs: a confirmation
    whose estimate is past the threshold, not yet significant, takes twice the budget and
    goes on to 14 (21 would take 1.5 s after the deciding look); one whose estimate is
    short of it stops at 9 (14 would take 0.8 s), as does a first pairing past it."""
    assert pairing.CONFIRMING_PAST_THRESHOLD_BUDGET == 2.0
    clock, call = _call_clock()
    plan = pairing.PairingPlan(
        mode="interleave", budget=0.45, q=0.05, metrics=1, cpus=None, clock=clock, looks=5,
        early_futility=None, confirming=confirming,
    )  # fmt: skip
    assert plan.schedule().counts[:4] == (6, 9, 14, 21)
    run = pairing.pair_test(
        plan, _RecordingWorker(), call, None, describe, lambda _: 0.1  # type: ignore[arg-type]
    )
    assert len(run.head) == pairs


def test_the_futility_look_never_stops_a_test_before_its_deciding_look() -> None:
    """With 24 gated metrics futility looks at 4 and 6 pairs come before the deciding look
    at 10: a test that is not settled at 6 pairs goes on to 10 however long the 6 took (the
    budget counts after the deciding look)."""
    clock, call = _call_clock()

    plan = pairing.PairingPlan(
        mode="interleave", budget=0.05, q=0.05, metrics=24, cpus=None, clock=clock
    )
    schedule = plan.schedule()
    assert schedule.counts[:3] == (4, 6, 10) and schedule.deciding == 2
    run = pairing.pair_test(
        plan, _RecordingWorker(), call, None, never_settled, lambda _: 0.1  # type: ignore[arg-type]
    )
    assert len(run.head) == 10  # the deciding look; the budget stops it there


def test_the_base_worker_is_started_under_callgrind_with_the_heads_options(
    tmp_path: Path,
) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("needs valgrind")
    options = ["--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=cg.out.%p"]
    launcher = pairing.callgrind_launcher(options, tmp_path)
    dumps = f"--callgrind-out-file={tmp_path}/callgrind.base.%p"
    assert launcher[1:] == ["--tool=callgrind", "--instr-atstart=no", dumps]


def test_a_traced_child_needs_its_own_dump_files() -> None:
    """With --trace-children=yes valgrind follows the worker itself, with the head's dump
    file name: without %p both sides would overwrite each other's dumps."""
    followed = ["--tool=callgrind", "--trace-children=yes"]
    assert pairing.callgrind_launcher(followed, Path("/unused")) == []
    with pytest.raises(pairing.WorkerError, match="put %p in the name"):
        pairing.callgrind_launcher([*followed, "--callgrind-out-file=cg.out"], Path("/unused"))


@pytest.mark.parametrize(
    ("asked", "mode", "cpus", "counting", "expected"),
    [
        (None, "interleave", [0, 1, 2, 3], False, 4),  # one lane per CPU
        (None, "duet", [0, 1, 2, 3], False, 2),  # two CPUs a lane
        (None, "duet", [0, 1], False, 1),
        (None, "interleave", [5], False, 1),
        (None, "interleave", None, False, 1),  # cannot pin: the head process pairs
        (2, "interleave", [0, 1, 2, 3], False, 2),
        (8, "interleave", [0, 1], False, 2),  # no more lanes than CPUs
        (1, "interleave", [0, 1, 2, 3], False, 1),
        (None, "interleave", [0, 1, 2, 3], True, 1),  # counted under callgrind
    ],
)
def test_lane_count(
    asked: int | None, mode: pairing.Mode, cpus: list[int] | None, counting: bool, expected: int
) -> None:
    count, note = lanes.lane_count(asked, mode, cpus, counting)
    assert count == expected
    assert bool(note) == (asked is not None and asked > expected)


def test_lane_cpus_are_the_lanes_own() -> None:
    assert lanes.lane_cpus("interleave", [2, 3, 5], 3) == [[2], [3], [5]]
    assert lanes.lane_cpus("duet", [0, 1, 2, 3], 2) == [[0, 1], [2, 3]]


class _FakeWorker:
    """A lane's worker that has collected and said hello."""

    def __init__(self, name: str = "base worker") -> None:
        self.name = name
        self.killed = False

    def wait_hello(self) -> dict[str, Any]:
        return {"errors": [], "imports": [], "tests": []}

    def kill(self) -> None:
        self.killed = True

    def pin(self, cpus: list[int]) -> None:
        self.pinned = cpus


def _fake_lane() -> lanes.Lane:
    return lanes.Lane(_FakeWorker(), _FakeWorker("head worker"), [0])  # type: ignore[arg-type]


def test_lanes_run_at_once_and_a_dead_lane_leaves_its_tests_to_the_others() -> None:
    """Both lanes' first tests meet at a barrier (only lanes running at the same time get
    past it); the lane whose worker dies stops, its test gets the error, its workers are
    killed, and the other lane measures the rest."""
    barrier = threading.Barrier(2, timeout=60)
    first: set[int] = set()
    dead = _fake_lane()

    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        if id(lane) not in first:
            first.add(id(lane))
            barrier.wait()
        if test == "t2":
            raise pairing.WorkerError("the base worker exited (status 3): gone")
        return pairing.PairedRun(seconds=float(test[1:]))

    healthy = _fake_lane()
    results = lanes.run_lanes([dead, healthy], ["t1", "t2", "t3", "t4"], job)
    assert results.errors == {"t2": "the base worker exited (status 3): gone"}
    assert sorted(results.runs) == ["t1", "t3", "t4"]
    failed = next(lane for lane in (dead, healthy) if lane.error)
    assert all(worker.killed for worker in failed.workers)  # type: ignore[attr-defined]


def test_tests_no_lane_could_take_are_left() -> None:
    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        raise pairing.WorkerError("the head worker exited (status 1): boom")

    results = lanes.run_lanes([_fake_lane()], ["t1", "t2"], job)
    assert results.errors == {"t1": "the head worker exited (status 1): boom"}
    assert results.left == ["t2"]


def test_a_lane_that_cannot_start_takes_nothing() -> None:
    broken = _fake_lane()
    failing = {"errors": ["x.py: SyntaxError"], "imports": []}
    broken.head.wait_hello = lambda: failing  # type: ignore[method-assign]
    healthy = _fake_lane()
    results = lanes.run_lanes(
        [broken, healthy], ["t1", "t2"], lambda lane, test: pairing.PairedRun()
    )
    assert sorted(results.runs) == ["t1", "t2"]
    assert results.started == 1
    assert results.unusable == ["the head worker could not collect: x.py: SyntaxError"]


def test_the_lanes_end_wakes_the_progress_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calling thread shows progress as each job ends and returns once the lanes have
    ended, without waiting out its poll: a lane that ends after its last job's signal wakes
    it too. The last job's lane is held in `should_stop` until progress has seen that job,
    so that the lane is still alive when the loop looks; with a poll of 10 minutes a missed
    wake-up would hold `run_lanes` far past the 60 s this test waits."""
    monkeypatch.setattr(lanes, "PROGRESS_POLL", 600.0)
    seen_all = threading.Event()
    finished = threading.Event()
    results: list[lanes.LaneResults] = []
    runs: dict[str, pairing.PairedRun] = {}

    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        runs[test] = pairing.PairedRun()
        return runs[test]

    def should_stop() -> bool:
        if len(runs) == 2:
            seen_all.wait(timeout=60)
        return False

    def progress() -> None:
        if len(runs) == 2:
            seen_all.set()

    def run() -> None:
        results.append(
            lanes.run_lanes(
                [_fake_lane()], ["t1", "t2"], job, progress=progress, should_stop=should_stop
            )
        )
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(timeout=60)
    assert sorted(results[0].runs) == ["t1", "t2"]


def test_a_likely_regression_is_confirmed_in_fresh_lanes_after_the_rest() -> None:
    """`confirm_if` starts the confirmation lanes at the first flag (once), and the test
    is paired again there, in fresh processes, behind the first pairings."""
    one, other = _fake_lane(), _fake_lane()
    fresh = [_fake_lane(), _fake_lane()]
    starts: list[int] = []
    done: list[tuple[str, int]] = []
    lock = threading.Lock()

    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        with lock:
            done.append((test, id(lane)))
        return pairing.PairedRun()

    def start() -> list[lanes.Lane]:
        starts.append(1)
        return fresh

    results = lanes.run_lanes(
        [one, other], ["t1", "t2", "t3", "t4"], job,
        confirm_if=lambda test, run: test in ("t1", "t2"), start_confirming=start,
    )  # fmt: skip
    assert sorted(results.runs) == ["t1", "t2", "t3", "t4"]
    assert sorted(results.confirmations) == ["t1", "t2"]
    assert starts == [1] and results.confirming == fresh
    for test in ("t1", "t2"):
        first, again = (lane for name, lane in done if name == test)
        assert first in (id(one), id(other)) and again in {id(lane) for lane in fresh}
    order = [test for test, _ in done]
    assert order.index("t1", 1) >= 4 and order.index("t2", 2) >= 4  # after the first pairings


def test_one_lanes_flags_are_confirmed_in_every_confirmation_lane_at_once() -> None:
    """Two flags of the same lane: each confirmation lane takes one, and they pair at the
    same time (they meet at a barrier), rather than one confirmation lane taking both,
    one after the other, while the other idles."""
    one, other = _fake_lane(), _fake_lane()
    fresh = [_fake_lane(), _fake_lane()]
    other_started = threading.Event()
    paired_in_one: list[str] = []
    barrier = threading.Barrier(2, timeout=30)
    confirmed_in: dict[str, int] = {}

    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        if lane in fresh:
            confirmed_in[test] = id(lane)
            barrier.wait()
            return pairing.PairedRun()
        if lane is other:
            other_started.set()
            return pairing.PairedRun()
        paired_in_one.append(test)
        if len(paired_in_one) == 2:  # both flags are lane one's
            assert other_started.wait(timeout=30)
        return pairing.PairedRun(seconds=1.0 if len(paired_in_one) <= 2 else 0.0)

    results = lanes.run_lanes(
        [one, other], ["t1", "t2", "t3", "t4"], job,
        confirm_if=lambda test, run: run.seconds == 1.0, start_confirming=lambda: fresh,
    )  # fmt: skip
    assert sorted(results.confirmations) == sorted(paired_in_one[:2])
    assert sorted(confirmed_in.values()) == sorted(id(lane) for lane in fresh)


def test_confirmation_lanes_that_cannot_start_leave_the_confirmations_out() -> None:
    def job(lane: lanes.Lane, test: str) -> pairing.PairedRun:
        return pairing.PairedRun()

    def start() -> list[lanes.Lane]:
        raise pairing.WorkerError("cannot start python: no such file")

    results = lanes.run_lanes(
        [_fake_lane(), _fake_lane()], ["t1", "t2"], job,
        confirm_if=lambda test, run: True, start_confirming=start,
    )  # fmt: skip
    assert sorted(results.runs) == ["t1", "t2"]
    assert results.confirmations == {} and results.started == 2
    assert results.unusable == ["confirmation lanes: cannot start python: no such file"]


COPIED_TESTS = """
import os

with open("imports", "a") as imports:  # once per process that collects this module
    imports.write(f"{os.getpid()}\\n")


def test_passes():
    pass


def test_exits():
    os._exit(5)
"""


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a zombie answers too
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_with_copies_collects_once_and_reports_a_copys_exit(tmp_path: Path) -> None:
    """A worker started with two copies imports and collects the tests once and forks the
    second after collection; each says hello on its own pipes. A copy that dies in a round
    fails with its exit status, which the started process logs, and after closing no
    process is left, not even a zombie."""
    (tmp_path / "test_copied.py").write_text(COPIED_TESTS)
    started = pairing.WorkerProcess(
        tmp_path, sys.executable, ["--rootdir", str(tmp_path)], copies=2
    )
    try:
        first, copy = started.copies
        pids = [worker.wait_hello()["pid"] for worker in (first, copy)]
        assert pids[0] == started.process.pid != pids[1]
        assert _parent_of(pids[1]) == pids[0]
        assert (tmp_path / "imports").read_text().split() == [str(pids[0])]
        assert [t["id"] for t in copy.wait_hello()["tests"]] == [
            "test_copied.py::test_passes", "test_copied.py::test_exits"
        ]  # fmt: skip
        copy.send({"op": "test", "id": "test_copied.py::test_exits", "next": None})
        assert copy.recv()["op"] == "ready"
        copy.send({"op": "round", "cpu": None})
        with pytest.raises(pairing.WorkerError, match=r"\(copy 1\) exited \(status 5\)"):
            copy.recv()
        assert first.wait_hello()["tests"]  # the started one goes on
    finally:
        lanes.close_workers(started.copies)
    assert not any(_exists(pid) for pid in pids)


def _rounds(seconds: list[float]) -> list[series.Round]:
    return [series.Round(s, s, 0, {}) for s in seconds]


def _paired_run(pairs: int, ratio: float) -> pairing.PairedRun:
    base_times = [0.010 * (1 + 0.001 * i) for i in range(pairs)]
    return pairing.PairedRun(_rounds(base_times), _rounds([t * ratio for t in base_times]))


def _ab_summary() -> Any:
    from datetime import datetime, timezone

    from pytest_perfguard import paired
    from pytest_perfguard.ab.finish import ABSummary
    from pytest_perfguard.results import PlatformInfo

    return ABSummary(
        base_label="main", base_commit=None, mode="interleave", platform=PlatformInfo("box"),
        threshold=0.1, q=0.05, schedule=paired.LookSchedule.plan(metrics=24, q=0.05),
        started_at=datetime.now(timezone.utc), rootdir=Path("."), args=[], run_type="manual",
        notes="",
    )  # fmt: skip


def test_six_clear_pairs_in_fresh_processes_confirm_a_regression() -> None:
    """A confirmation is judged on its own, its looks planned for one metric: six pairs
    all 30 % slower confirm a regression that the session's first pairing found among 24
    metrics (whose first look that tests needs 10 pairs)."""
    summary = _ab_summary()
    assert summary.schedule.counts[:2] == (6, 10)  # a futility look, then the first test
    from pytest_perfguard.ab.finish import PairedTest, judge

    tests = {"t.py::test_a": PairedTest(None, True, _paired_run(10, 1.3))}
    unconfirmed, _, _ = judge(tests, [], [], summary, False)
    assert [v.kind for v in unconfirmed.verdicts] == ["regression"]

    confirmations = {"t.py::test_a": _paired_run(6, 1.3)}
    confirmed, _, _ = judge(tests, [], [], summary, False, confirmations)
    (verdict,) = confirmed.verdicts
    assert verdict.kind == "regression", verdict.detail
    assert "confirmed in fresh processes: ratio 1.300" in verdict.detail

    confirmations = {"t.py::test_a": _paired_run(6, 1.0)}
    cleared, _, _ = judge(tests, [], [], summary, False, confirmations)
    (verdict,) = cleared.verdicts
    assert verdict.kind == "unstable" and "not confirmed in fresh processes" in verdict.detail


def test_a_noisy_confirmation_past_the_threshold_bears_a_regression_out() -> None:
    """Fresh processes read the flagged test 1.01-1.30 times slower, six pairs: estimate
    +15 %, the head slower by its own test, the interval's lower bound 1.01. The
    regression stands (as a first pairing these pairs would be "unstable"); fresh pairs
    reading 1.01-1.09 slower do not bear it out."""
    from pytest_perfguard.ab.finish import PairedTest, judge

    summary = _ab_summary()
    tests = {"t.py::test_a": PairedTest(None, True, _paired_run(10, 1.3))}
    base_times = [0.010] * 6
    noisy = pairing.PairedRun(
        _rounds(base_times), _rounds([0.010 * r for r in (1.01, 1.02, 1.15, 1.2, 1.25, 1.3)])
    )
    decided, _, _ = judge(tests, [], [], summary, False, {"t.py::test_a": noisy})
    (verdict,) = decided.verdicts
    assert verdict.kind == "regression", verdict.detail
    assert "confirmed in fresh processes: ratio 1.150 [1.010, 1.300], 6 pairs" in verdict.detail
    small = pairing.PairedRun(
        _rounds(base_times), _rounds([0.010 * r for r in (1.01, 1.02, 1.05, 1.06, 1.08, 1.09)])
    )
    decided, _, _ = judge(tests, [], [], summary, False, {"t.py::test_a": small})
    (verdict,) = decided.verdicts
    assert verdict.kind == "unstable" and "not confirmed in fresh processes" in verdict.detail


def test_a_clear_confirmation_stands_whatever_the_other_confirmations_show() -> None:
    """Five tests flagged; three are confirmed by six pairs all 25 % slower, two read
    unchanged in fresh processes. Each confirmation is judged on its own: the three stay
    regressions. (Judged as a family with Benjamini-Hochberg, three look-adjusted p-values
    of 2^-6 / 0.5 = 0.031 among five needed 3/5 * 0.05 = 0.030, and all three were lost:
    seen under three busy loops, benchmarks/ab/RESULTS.md.)"""
    from pytest_perfguard.ab.finish import PairedTest, judge

    summary = _ab_summary()
    names = [f"t.py::test_{i}" for i in range(5)]
    tests = {name: PairedTest(None, True, _paired_run(10, 1.3)) for name in names}
    confirmations = {
        name: _paired_run(6, 1.25) if i < 3 else _paired_run(9, 1.0)
        for i, name in enumerate(names)
    }
    decided, _, _ = judge(tests, [], [], summary, False, confirmations)
    kinds = {v.test: v.kind for v in decided.verdicts}
    assert kinds == {name: "regression" if i < 3 else "unstable" for i, name in enumerate(names)}


def _leaning_run() -> pairing.PairedRun:
    """Ten pairs reading 1.00 to 1.14: ratio 1.069 [1.031, 1.108], unstable (its plain
    interval reaches past 10 %), its estimate past half the threshold."""
    base_times = [0.010] * 10
    return pairing.PairedRun(
        _rounds(base_times), _rounds([0.010 * (1 + 0.14 * i / 9) for i in range(10)])
    )


def test_a_first_pairing_that_leans_is_a_regression_if_two_redraws_bear_it_out() -> None:
    """A first pairing that leans to a regression (+6.9 %, its interval reaching past the
    threshold) is drawn again in fresh processes: six pairs all 30 % slower there make it
    due a second draw, and a second such draw makes it a regression, sized by that draw; a
    redraw, or a second draw, that reads the same on both sides leaves it unstable. A
    pairing within half the threshold is not drawn again, and fresh pairs of it are not
    read."""
    from pytest_perfguard.ab.finish import PairedTest, draws_again, due_a_draw, judge

    summary = _ab_summary()
    name = "t.py::test_a"
    tests = {name: PairedTest(None, True, _leaning_run())}
    (verdict,) = judge(tests, [], [], summary, False)[0].verdicts
    assert verdict.kind == "unstable" and draws_again(verdict), verdict.detail

    once = {name: _paired_run(6, 1.3)}
    (verdict,) = judge(tests, [], [], summary, False, once)[0].verdicts
    assert verdict.kind == "unstable" and due_a_draw(verdict), verdict.detail
    assert "; drawn again in fresh processes: ratio 1.300" in verdict.detail

    twice = {name: _paired_run(9, 1.25)}
    (verdict,) = judge(tests, [], [], summary, False, once, twice)[0].verdicts
    assert verdict.kind == "regression" and verdict.fails, verdict.detail
    assert verdict.detail.startswith("ratio 1.250 [")
    assert "(drawn twice: the first read ratio 1.300 [" in verdict.detail
    assert "drawn again in fresh processes; the first pairing leaned: ratio 1.069" in (
        verdict.detail
    )
    assert verdict.to_dict()["pairs"] == 9 and verdict.to_dict()["ratio"] == pytest.approx(1.25)

    same = {name: _paired_run(9, 1.0)}
    for first, second in ((same, twice), (once, same)):
        (verdict,) = judge(tests, [], [], summary, False, first, second)[0].verdicts
        assert verdict.kind == "unstable" and not due_a_draw(verdict), verdict.detail
        assert "; drawn again in fresh processes: ratio 1.000" in verdict.detail

    within_half = pairing.PairedRun(
        _rounds([0.010] * 10), _rounds([0.010 * (0.88 + 0.32 * i / 9) for i in range(10)])
    )
    tests = {name: PairedTest(None, True, within_half)}
    (verdict,) = judge(tests, [], [], summary, False)[0].verdicts
    assert verdict.kind == "unstable" and not draws_again(verdict), verdict.detail
    assert judge(tests, [], [], summary, False, once, twice)[0].verdicts[0].kind == "unstable"


def test_a_confirmation_that_leans_is_followed_by_one_more_draw() -> None:
    """A flag whose confirmation leans (+6.9 %, its interval past the threshold) is due
    one more draw in other fresh processes, and stands when that draw bears it out; a
    second draw that reads nothing, or leans too, leaves it unstable and due no more. A
    confirmation that does not lean is not followed (its second draw is not read), and a
    redraw that leans cannot reach two draws that bear a regression out: it ends there."""
    from pytest_perfguard.ab.finish import PairedTest, due_a_draw, judge

    summary = _ab_summary()
    name = "t.py::test_a"
    tests = {name: PairedTest(None, True, _paired_run(10, 1.3))}
    first = {name: _leaning_run()}
    (due,) = judge(tests, [], [], summary, False, first)[0].verdicts
    assert due.kind == "unstable" and due_a_draw(due), due.detail

    second = {name: _paired_run(6, 1.3)}
    (verdict,) = judge(tests, [], [], summary, False, first, second)[0].verdicts
    assert verdict.kind == "regression" and not due_a_draw(verdict), verdict.detail
    assert "; confirmed in fresh processes: ratio 1.300" in verdict.detail
    assert "(drawn twice: the first read ratio 1.069 [" in verdict.detail

    for second_reads in (_paired_run(9, 1.0), _leaning_run()):  # no third draw
        again = {name: second_reads}
        (verdict,) = judge(tests, [], [], summary, False, first, again)[0].verdicts
        assert verdict.kind == "unstable" and not due_a_draw(verdict), verdict.detail

    cleared = {name: _paired_run(9, 1.0)}
    (verdict,) = judge(tests, [], [], summary, False, cleared, second)[0].verdicts
    assert verdict.kind == "unstable" and not due_a_draw(verdict), verdict.detail
    assert "drawn twice" not in verdict.detail

    tests = {name: PairedTest(None, True, _leaning_run())}
    (verdict,) = judge(tests, [], [], summary, False, first)[0].verdicts
    assert verdict.kind == "unstable" and not due_a_draw(verdict), verdict.detail


def test_an_ungated_metric_that_leans_is_not_drawn_again() -> None:
    """Only what can fail the session is paired again: a leaning test under
    `--perf-gate none` (or an unmarked one) is not, and the lanes do not queue it."""
    from pytest_perfguard.ab.finish import PairedTest, draws_again, judge

    summary = _ab_summary()
    tests = {"t.py::test_a": PairedTest(None, True, _leaning_run())}
    (verdict,) = judge(tests, [], [], summary, True)[0].verdicts
    assert verdict.kind == "unstable" and not draws_again(verdict)
    for gated, queued in ((True, True), (False, False)):
        assert finish.likely_lean(
            _leaning_run(), None, gated, q=0.05, schedule=summary.schedule, threshold=0.1
        ) is queued  # fmt: skip
        assert not finish.likely_regression(
            _leaning_run(), None, gated, q=0.05, schedule=summary.schedule, threshold=0.1
        )  # a lean is not a flag: it does not start the confirmation lanes


def _spread_run(pairs: int, low: float, high: float) -> pairing.PairedRun:
    """`pairs` pairs whose ratios rise evenly from `low` to `high`."""
    step = (high - low) / max(pairs - 1, 1)
    return pairing.PairedRun(
        _rounds([0.010] * pairs), _rounds([0.010 * (low + step * i) for i in range(pairs)])
    )


_DRAW = st.tuples(st.floats(0.8, 1.4), st.floats(0.0, 0.4), st.integers(6, 24))


@given(st.lists(st.tuples(_DRAW, _DRAW, _DRAW), min_size=1, max_size=6))
@settings(max_examples=80, deadline=None)
def test_fresh_draws_remove_regressions_and_add_only_those_a_draw_bears_out(
    tests_drawn: list[tuple[tuple[float, float, int], ...]],
) -> None:
    """Whatever the first pairings and their fresh draws read, a regression with the fresh
    draws rests on two draws that each show one: a first pairing that was a regression
    and a fresh draw, or two fresh draws of a first pairing that leaned; a second fresh
    draw counts only after a first that leaned or bore the regression out."""
    from pytest_perfguard import paired
    from pytest_perfguard.ab.finish import PairedTest, judge

    summary = _ab_summary()
    names = [f"t.py::test_{i}" for i in range(len(tests_drawn))]
    runs = [
        [_spread_run(pairs, low, low + width) for low, width, pairs in draws]
        for draws in tests_drawn
    ]
    tests = {name: PairedTest(None, True, r[0]) for name, r in zip(names, runs, strict=True)}
    first = {name: r[1] for name, r in zip(names, runs, strict=True)}
    second = {name: r[2] for name, r in zip(names, runs, strict=True)}
    without, _, _ = judge(tests, [], [], summary, False)
    with_them, _, _ = judge(tests, [], [], summary, False, first, second)
    before = {v.test: v for v in without.verdicts}
    schedule = finish.confirmation_schedule(summary.q)

    def alone(run: pairing.PairedRun) -> paired.PairedDecision:
        base, head = [r.wall for r in run.base], [r.wall for r in run.head]
        a = paired.assess_pairs(base, head, q=0.05, share=schedule.share_at(len(base)))
        return paired.decide_confirmation(a, 0.1, q=0.05)

    for verdict in with_them.verdicts:
        if verdict.kind != "regression":
            continue
        was = before[verdict.test]
        one, two = alone(first[verdict.test]), alone(second[verdict.test])
        one_leans = paired.leans_to_regression(one.assessment, 0.1)
        if was.kind == "regression":
            assert one.kind == "regression" or (one_leans and two.kind == "regression")
        else:
            assert finish.due_a_draw(was)
            assert one.kind == "regression" and two.kind == "regression"


def test_a_steady_test_stops_at_the_early_futility_look() -> None:
    """Pairs that read the same on both sides settle at 4 pairs, the early futility look,
    whatever the session's number of metrics; without the early look, at 6."""

    def steady(base: list[Any], head: list[Any]) -> list[series.Series]:
        same = [1.0] * len(head)
        return [series.Series("duration", "s", "lower", "primary", True, None, same, same)]

    for early, pairs in ((4, 4), (None, 6)):
        plan = pairing.PairingPlan(
            mode="interleave", budget=1.0, q=0.05, metrics=24, cpus=None, early_futility=early
        )
        run = pairing.pair_test(
            plan, _RecordingWorker(), lambda: None, None, steady, lambda _: 0.1  # type: ignore[arg-type]
        )
        assert len(run.head) == pairs


def test_a_confirmation_takes_its_pairs_at_the_looks_it_is_judged_at() -> None:
    """The schedule a confirmation's pairs follow is the one `judge` reads them with: no
    early futility look (a confirmation's first look tests), whatever the first pairing's."""
    plan = pairing.PairingPlan(mode="interleave", budget=1.0, q=0.05, metrics=24, cpus=None)
    assert plan.schedule().counts[0] == 4
    confirming = finish.confirmation_plan(plan)
    assert confirming.schedule() == finish.confirmation_schedule(plan.q)
    assert confirming.schedule().counts[0] == 6
