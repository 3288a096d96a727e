"""The head side of an A/B session: starting the base worker, and taking pairs of rounds.

No pytest here. A *pair* is one measured round of the test on each side:
- **duet**: both sides' calls at once, one process per CPU, started together through a
  `StartLine` (shared memory both sides spin on); which side gets which CPU is drawn per
  pair, so a faster CPU favours neither side.
- **interleave**: one side's calls, then the other's, on the same CPU (drawn per pair), in
  random order.
Each side makes `block` calls back to back per pair (one for a long call), and the best of
them is its value: preemption and a cache the other side filled only ever add time.
Pairs are judged at the looks of a `LookSchedule`; a test stops at the first look where
every gated metric is settled, or when the next look would overrun its time budget.
Under callgrind one counted pair decides (`counted_pair`). At the session's end each
regression is paired again between two worker processes (`pair_on_workers`), which is how
lanes pair every test.
"""

from __future__ import annotations

import abc
import contextlib
import os
import random
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

from .. import paired, valgrind
from ..config import without_own_options
from . import worker as round_runner
from .series import Round, Series

Mode = Literal["duet", "interleave"]
MODES: tuple[Mode, ...] = ("duet", "interleave")
# Environment that would switch perfguard on (or A/B again) inside the base worker.
_OWN_ENV_PREFIXES = ("PERFGUARD", "ENABLE_PERFORMANCE_RECORDING", "BENCHMARK_MODE")
# Starts further apart than this share of the shorter round, or than _MAX_SKEW_NS when
# that is larger, do not count as "at once".
_SKEW_SHARE = 0.05
_MAX_SKEW_NS = 50_000


class WorkerError(RuntimeError):
    """The base worker failed to start or died; the message names what happened."""


def usable_cpus() -> list[int] | None:
    """The CPUs this process may run on, or None where the OS cannot pin processes."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def callgrind_launcher(options: Sequence[str], dump_dir: Path) -> list[str]:
    """How to start the base worker under callgrind, as the head runs: valgrind with the
    head's own options, its dumps in `dump_dir`. Nothing when the head's valgrind follows
    its children (``--trace-children=yes``): the worker is then counted with the head's
    options, so its dump files must carry its process id. Raises WorkerError."""
    if valgrind.option_value(options, "trace-children", "no") == "yes":
        template = valgrind.option_value(options, "callgrind-out-file", "callgrind.out.%p")
        if "%p" not in template:
            raise WorkerError(
                f"--callgrind-out-file={template} with --trace-children=yes: both sides would "
                "write the same dump files; put %p in the name"
            )
        return []
    found = shutil.which("valgrind")
    if found is None:
        raise WorkerError("valgrind is not on PATH: the base worker cannot be counted")
    own = [o for o in options if not o.startswith(("--callgrind-out-file=", "--log-file="))]
    return [found, *own, f"--callgrind-out-file={dump_dir / 'callgrind.base.%p'}"]


class Worker(abc.ABC):
    """A worker: a pytest process rooted in a checkout (see `worker`), the base's or, for
    lanes and confirmations, the head's (`name` says which in its errors). Either the
    process this one started (`WorkerProcess`) or a copy that process forked after its
    collection (`WorkerCopy`), each with pipes and a duet start line of its own."""

    name: str
    channel: round_runner.Channel
    start_line_path: str
    start_line: round_runner.StartLine
    log: IO[str]
    hello: dict[str, Any] | None
    pair_number: int
    _owns_start_line: bool

    @abc.abstractmethod
    def pid(self) -> int | None:
        """The process id, once known."""

    @abc.abstractmethod
    def exited(self) -> bool:
        """Whether the process is known to be gone."""

    def log_lines(self) -> list[str]:
        """What the worker printed so far, line by line; copies write to the log of the
        process they were forked from. Read without seeking: lanes' threads read one log
        at once."""
        try:
            fd = self.log.fileno()
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        except (OSError, ValueError):  # closed: the session is ending
            return []
        text = data.decode("utf-8", errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def log_tail(self, lines: int = 1) -> str:
        """The last meaningful lines the worker printed (its error, usually). For one line,
        the last that names an error, where there is one: pytest follows a usage error
        with its inifile and rootdir."""
        interesting = [
            line
            for line in self.log_lines()
            if not line.startswith(("=", "_", round_runner.COPY_EXITED))
        ]
        if not interesting:
            return "no output"
        errors = [line for line in interesting if "error:" in line.lower()]
        if lines == 1 and errors:
            return errors[-1]
        return " | ".join(interesting[-lines:])

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.channel.send(message)
        except (OSError, ValueError):
            raise self._gone() from None

    def recv(self) -> dict[str, Any]:
        try:
            return self.channel.recv()
        except (EOFError, OSError, ValueError):
            raise self._gone() from None

    @abc.abstractmethod
    def _gone(self) -> WorkerError:
        """The error that names how the process ended."""

    def wait_hello(self) -> dict[str, Any]:
        if self.hello is None:
            message = self.recv()
            if message.get("op") != "hello":
                raise WorkerError(f"the {self.name} said {message.get('op')!r} before hello")
            self.hello = message
        return self.hello

    def quit(self) -> None:
        """Ask the worker to tear down and exit (without waiting for it)."""
        if not self.exited():
            with contextlib.suppress(OSError, ValueError):
                self.channel.send({"op": "quit"})

    @abc.abstractmethod
    def close(self) -> None:
        """Ask the worker to finish its teardown and exit; kill it when it does not."""

    def _close_own(self) -> None:
        self.channel.close()
        self.start_line.close()
        if self._owns_start_line:
            with contextlib.suppress(OSError):
                os.unlink(self.start_line_path)

    def waiting(self) -> bool:
        """Whether the worker is still busy with its side (no answer yet, still alive: a
        process that exited closed its pipe, which reads as ready)."""
        if self.exited():
            return False
        readable, _, _ = select.select([self.channel.reader], [], [], 0)
        return not readable

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill the process (no teardown)."""

    def pin(self, cpus: Sequence[int] | None) -> None:
        """Keep the whole process (its collection, fixtures, rounds) on `cpus`."""
        pid = self.pid()
        if cpus and pid is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):  # it exited already: its recv will say so
                os.sched_setaffinity(pid, set(cpus))


class WorkerProcess(Worker):
    """The worker process this one starts; with `copies` above one it forks that many
    less one copies of itself after collecting (`copies` lists them all, this one first),
    so a checkout is imported and collected once for all lanes.

    `start_lines`: the duet start lines to share, one per copy (a head worker plays the
    head's part on its base worker's); new ones otherwise, removed by `close`. With
    `count` (the head counts instructions under callgrind) it runs under callgrind too and
    counts its rounds (`callgrind_launcher`); raises WorkerError when it cannot."""

    def __init__(
        self,
        root: Path,
        python: str,
        pytest_args: Sequence[str],
        *,
        count: bool = False,
        start_lines: Sequence[str] | None = None,
        name: str = "base worker",
        copies: int = 1,
    ) -> None:
        self.name = name
        launcher: list[str] = []
        self.dump_dir: Path | None = None
        if count:
            options = valgrind.valgrind_options() or []
            self.dump_dir = Path(tempfile.mkdtemp(prefix="perfguard-ab-callgrind-"))
            try:
                launcher = callgrind_launcher(options, self.dump_dir)
            except WorkerError:
                shutil.rmtree(self.dump_dir, ignore_errors=True)
                raise
        # Closed in `close`: it outlives this method (the worker writes to it all session).
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        pipes = [(*os.pipe(), *os.pipe()) for _ in range(copies)]  # to_r, to_w, from_r, from_w
        worker_ends = [fd for to_r, _, _, from_w in pipes for fd in (to_r, from_w)]
        lines = (
            list(start_lines)
            if start_lines is not None
            else [_new_start_line() for _ in range(copies)]
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_ENV_PREFIXES)}
        env[round_runner.FDS_ENV] = ";".join(f"{to_r},{from_w}" for to_r, _, _, from_w in pipes)
        env[round_runner.START_LINE_ENV] = ";".join(lines)
        # The head's PYTHONPATH may point at the head's code; the base resolves its own.
        env.pop("PYTHONPATH", None)
        addopts = env.get("PYTEST_ADDOPTS")
        if addopts:
            # The user's other options apply on both sides; perfguard's own would be
            # unrecognised where perfguard is blocked.
            with contextlib.suppress(ValueError):  # unbalanced quotes: pytest says so
                env["PYTEST_ADDOPTS"] = shlex.join(without_own_options(shlex.split(addopts)))
        if count:
            env[round_runner.COUNT_ENV] = valgrind.__file__
        command = [
            *launcher,
            python,
            "-c",
            round_runner.BOOTSTRAP,
            round_runner.__file__,
            *pytest_args,
        ]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                pass_fds=worker_ends,
            )
        except OSError as exc:
            for fds in pipes:
                for fd in fds:
                    os.close(fd)
            if start_lines is None:
                for path in lines:
                    os.unlink(path)
            self.log.close()
            self._remove_dumps()
            raise WorkerError(f"cannot start {command[0]}: {exc}") from None
        for fd in worker_ends:
            os.close(fd)
        self._owns_start_line = start_lines is None
        self.start_line_path = lines[0]
        self.start_line = round_runner.StartLine(lines[0])
        self.pair_number = 0
        self.channel = round_runner.Channel.from_fds(pipes[0][2], pipes[0][1])
        self.hello = None
        self.copies: list[Worker] = [self]
        for index in range(1, copies):
            _, to_w, from_r, _ = pipes[index]
            self.copies.append(
                WorkerCopy(self, round_runner.Channel.from_fds(from_r, to_w), lines[index],
                           owns_start_line=start_lines is None, number=index)
            )  # fmt: skip

    def pid(self) -> int | None:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def _gone(self) -> WorkerError:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        return WorkerError(f"the {self.name} exited (status {code}): {self.log_tail()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.quit()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_own()
        self.log.close()
        self._remove_dumps()

    def _remove_dumps(self) -> None:
        if self.dump_dir is not None:
            shutil.rmtree(self.dump_dir, ignore_errors=True)
            self.dump_dir = None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class WorkerCopy(Worker):
    """A copy of a `WorkerProcess`, forked by it after its collection (see
    `worker.BaseWorker.take_slot`): its process id arrives with its hello. It is the
    started process's child, not this one's, so its exit shows as the end of its pipe."""

    def __init__(
        self,
        started: WorkerProcess,
        channel: round_runner.Channel,
        start_line_path: str,
        *,
        owns_start_line: bool,
        number: int,
    ) -> None:
        self.started = started
        self.number = number
        self.name = f"{started.name} (copy {number})"
        self.channel = channel
        self.log = started.log
        self.start_line_path = start_line_path
        self.start_line = round_runner.StartLine(start_line_path)
        self._owns_start_line = owns_start_line
        self.pair_number = 0
        self.hello = None
        self._closed_pipe = False

    def pid(self) -> int | None:
        return None if self.hello is None else int(self.hello["pid"])

    def exited(self) -> bool:
        return self._closed_pipe or (self.hello is None and self.started.exited())

    def _gone(self) -> WorkerError:
        self._closed_pipe = True
        if self.hello is None:  # never forked: the started process failed
            error = self.started._gone()
            return WorkerError(str(error).replace(self.started.name, self.name, 1))
        return WorkerError(f"the {self.name} exited (status {self._status()}): {self.log_tail()}")

    def _status(self) -> str | None:
        """The copy's exit status, as the process that forked it logs it (waiting up to
        10 s for the line, as `WorkerProcess` waits for its own process)."""
        prefix = f"{round_runner.COPY_EXITED} {self.number} "
        deadline = time.monotonic() + 10
        while True:
            last_look = time.monotonic() > deadline or self.started.exited()
            for line in self.log_lines():
                if line.startswith(prefix):
                    return line[len(prefix) :]
            if last_look:
                return None
            time.sleep(0.01)

    def close(self) -> None:
        """Ask the copy to quit and wait up to 30 s for its pipe to close (it exited);
        kill it when it does not."""
        if not self.exited():
            self.quit()
            deadline = time.monotonic() + 30
            with contextlib.suppress(OSError, ValueError):
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.channel.reader], [], [], left)
                    if readable and not self.channel.reader.readline():
                        self._closed_pipe = True
                        break
            if not self._closed_pipe:
                self.kill()
        self._close_own()

    def kill(self) -> None:
        """Kill the copy and wait until the process that forked it has reaped it (it logs
        the exit), so that no zombie is left for the system to reap; before its hello, the
        started process goes instead."""
        pid = self.pid()
        if pid is None:
            self.started.kill()
        elif not self._closed_pipe:
            # Only while its pipe is open: the process still holds its end, so the id
            # is still its own and not a later process's.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._closed_pipe = True
            self._status()


def _new_start_line() -> str:
    """A two-byte file in shared memory (where there is one) for a duet's start line."""
    shm = Path("/dev/shm")
    handle, path = tempfile.mkstemp(prefix="perfguard-ab-", dir=shm if shm.is_dir() else None)
    os.write(handle, b"\0\0")
    os.close(handle)
    return path


@dataclass
class PairingPlan:
    """How one session takes its pairs."""

    mode: Mode
    budget: float  # seconds per test, beyond its first look
    q: float
    metrics: int  # gated metrics expected in the session (sizes the first look)
    looks: int = 4  # planned looks (`paired.LookSchedule.plan`)
    # A futility look before the exact one at 6 pairs (`paired.mean_ratio_interval`).
    early_futility: int | None = 4
    # Calls a side before the first pair (the marker's `warmup=`); 0: the first pair, one
    # call a side, stands in for the warm-up (`_first_pair`).
    warmup: int = 0
    block: int = 3  # calls a side per pair; the best of them is the side's value
    # A test whose warm-up call takes this long makes one call a side per pair: the cache a
    # block's first call warms is a negligible share of such a call, and three would triple
    # the pairing time of exactly the tests that dominate it.
    long_call: float = 0.010
    cpus: list[int] | None = None
    # The head's `valgrind.CallgrindCounter` when both sides count instructions: then one
    # counted pair decides (a count is deterministic) and no time is compared.
    counter: valgrind.CallgrindCounter | None = None
    # A confirmation's pairs: a test is settled once they bear its regression out
    # (`paired.decide_confirmation`), with no bound on the interval.
    confirming: bool = False
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.perf_counter  # the budget, warm-up and pairing time
    late_starts: int = 0  # duet pairs whose starts lay apart (a side was descheduled)

    def schedule(self) -> paired.LookSchedule:
        return paired.LookSchedule.plan(
            metrics=self.metrics, q=self.q, looks=self.looks,
            early_futility_pairs=self.early_futility,
        )  # fmt: skip


@dataclass
class PairedRun:
    """What one test's pairing gave: the rounds of each side, or why there are none."""

    base: list[Round] = field(default_factory=list)
    head: list[Round] = field(default_factory=list)
    base_error: str | None = None
    # The test failed in a head *worker* (lanes, confirmations), not in the head process.
    head_error: str | None = None
    # In the head process: its first call passed and a later one, with the same fixtures,
    # raised (the test does not repeat); its outcome stays the first call's.
    repeat_error: str | None = None
    seconds: float = 0.0


class BaseRoundFailed(Exception):
    """The base's test raised in a round: no comparison for this test."""


class HeadRoundFailed(BaseRoundFailed):
    """The test raised in a round of a head worker (a lane's or a confirmation's);
    `repeated`: after its first call passed, and a worker that reports to the head kept
    the first call's outcome (`worker.BaseWorker._serve`)."""

    def __init__(self, error: str, repeated: bool = False) -> None:
        super().__init__(error)
        self.repeated = repeated


def _expect_round(worker: Worker, failed: type[BaseRoundFailed] = BaseRoundFailed) -> Round:
    message = worker.recv()
    if message.get("op") == "failed":
        error = message.get("error", "failed")
        if failed is HeadRoundFailed:
            raise HeadRoundFailed(error, bool(message.get("repeated")))
        raise failed(error)
    if message.get("op") != "round":
        raise WorkerError(f"the {worker.name} answered {message.get('op')!r} to a round")
    return Round.of(message)


def _two_cpus(plan: PairingPlan) -> tuple[int, int] | None:
    cpus = plan.cpus
    if not cpus or len(cpus) < 2:
        return None
    first, second = cpus[-2], cpus[-1]
    return (first, second) if plan.rng.random() < 0.5 else (second, first)


def take_pair(
    plan: PairingPlan,
    worker: Worker,
    call: Callable[[], object],
    recorder: Any,
    repeat: int | None = None,
) -> tuple[Round, Round]:
    """One pair (base, head) in the plan's mode: a block of `repeat` calls a side
    (`plan.block` by default), the best of which is the side's value (see
    `worker.run_round`)."""
    repeat = plan.block if repeat is None else repeat
    if plan.mode == "duet":
        cores = _two_cpus(plan)
        base_cpu, head_cpu = cores if cores else (None, None)
        worker.pair_number = number = worker.pair_number % 255 + 1
        worker.send({"op": "round", "cpu": base_cpu, "sync": number, "repeat": repeat})
        go = partial(worker.start_line.head_go, number, worker.waiting)
        try:
            head = Round.of(
                round_runner.run_round(call, recorder, cpu=head_cpu, start=go, repeat=repeat)
            )
        except BaseException:
            worker.recv()  # the base's round of this pair, before the test fails
            raise
        base = _expect_round(worker)
        skew = abs(base.start - head.start)
        if skew > max(_MAX_SKEW_NS, _SKEW_SHARE * min(base.wall, head.wall) * 1e9):
            plan.late_starts += 1
        return base, head
    cpu = plan.rng.choice(plan.cpus) if plan.cpus else None
    if plan.rng.random() < 0.5:
        worker.send({"op": "round", "cpu": cpu, "repeat": repeat})
        base = _expect_round(worker)
        head = Round.of(round_runner.run_round(call, recorder, cpu=cpu, repeat=repeat))
    else:
        head = Round.of(round_runner.run_round(call, recorder, cpu=cpu, repeat=repeat))
        worker.send({"op": "round", "cpu": cpu, "repeat": repeat})
        base = _expect_round(worker)
    return base, head


def counted_pair(
    plan: PairingPlan, worker: Worker, call: Callable[[], object], recorder: Any
) -> tuple[Round, Round]:
    """One call a side, one after the other, each counted under callgrind."""
    worker.send({"op": "round", "cpu": None, "repeat": 1, "count": True})
    base = _expect_round(worker)
    try:
        head = Round.of(round_runner.run_round(call, recorder, counter=plan.counter))
    except valgrind.CallgrindError as exc:
        raise WorkerError(f"cannot count the head's instructions: {exc}") from None
    return base, head


def _warm_up(
    plan: PairingPlan, worker: Worker, call: Callable[[], object], calls: int | None = None
) -> float:
    """`calls` (`plan.warmup` by default) calls a side before pairing (both sides at once);
    the head's shortest warm-up call in seconds (0 without warm-up)."""
    walls = []
    for _ in range(plan.warmup if calls is None else calls):
        worker.send({"op": "round", "cpu": None, "warm": 0})
        start = plan.clock()
        call()
        walls.append(plan.clock() - start)
        _expect_round(worker)
    return min(walls, default=0.0)


def _calls_a_side(plan: PairingPlan, warm_up_call: float) -> int:
    """A block of `plan.block` calls a side, or one for a call of `plan.long_call` or more."""
    return 1 if warm_up_call >= plan.long_call else plan.block


def _first_pair(
    plan: PairingPlan, run: PairedRun, take: Callable[[int], tuple[Round, Round]]
) -> int:
    """Without warm-up calls, a first pair of one call a side, in random order, tells the
    call's length; the calls a side per pair that follow.

    A long call's first pair is kept as the first of its pairs, whose block is that one
    call: a separate warm-up call a side would be a fifth of the fewest calls such a test
    makes (4 pairs, the early futility look), and these tests take most of the pairing
    time. What a first call pays more (a cold cache, a lazy import) lands on both sides of
    that one pair, and the pairs' statistics weigh one pair as one of four or more. A short
    call's first pair is dropped: it has warmed both sides as a warm-up would, and blocks
    follow."""
    base, head = take(1)
    repeat = _calls_a_side(plan, head.wall)
    if repeat == 1:
        run.base.append(base)
        run.head.append(head)
    return repeat


def _start(
    plan: PairingPlan,
    run: PairedRun,
    warm_up: Callable[[], float],
    take: Callable[[int], tuple[Round, Round]],
) -> tuple[int, float | None]:
    """The marker's warm-up calls (`warm_up`, returning the head's shortest call), or else
    the first pair (`_first_pair`): the calls a side per pair, and when the pairs in `run`
    began (None: none yet)."""
    if plan.warmup:
        return _calls_a_side(plan, warm_up()), None
    started = plan.clock()
    return _first_pair(plan, run, take), started


# A confirmation whose estimate is past its threshold, not yet significant, may take this
# many times the budget. In the harness's result files of 2026-12-01/02, 36 of the 76
# slowed tests whose confirmation did not bear them out read past the threshold there
# (noisy fresh processes; 24 stopped by the budget), and none of 398 clean tests' flags
# did: more pairs there decide real changes (benchmarks/ab/RESULTS.md). A first pairing
# gets no more: there the clean tests' offsets past the threshold would go on to be flagged.
CONFIRMING_PAST_THRESHOLD_BUDGET = 2.0


def _take_looks(
    plan: PairingPlan,
    run: PairedRun,
    take: Callable[[], tuple[Round, Round]],
    describe: Callable[[list[Round], list[Round]], list[Series]],
    thresholds: Callable[[Series], float],
    pairs_started: float | None = None,
) -> None:
    """Pairs from `take`, look after look, until every gated metric is settled, the last
    look, or the budget: `plan.budget` seconds of pairs after the deciding look (the
    first that can find a regression, so it is always taken); for a confirmation,
    `CONFIRMING_PAST_THRESHOLD_BUDGET` times that while an unsettled metric's estimate is
    past its threshold.
    `pairs_started`: when the pairs already in `run` began (now when None)."""
    schedule = plan.schedule()
    pairs_started = plan.clock() if pairs_started is None else pairs_started
    first_look_done = pairs_started
    for index, count in enumerate(schedule.counts):
        while len(run.head) < count:
            base, head = take()
            run.base.append(base)
            run.head.append(head)
        if index == schedule.deciding:
            first_look_done = plan.clock()
        settled, past_threshold = True, False
        for series in describe(run.base, run.head):
            if not series.gated:
                continue
            try:
                assessment = paired.assess_pairs(
                    series.base,
                    series.head,
                    series.direction,
                    q=plan.q,
                    share=schedule.shares[index],
                )
            except ValueError:
                continue
            threshold = thresholds(series)
            if not paired.is_settled(
                assessment, threshold, q=plan.q, metrics=plan.metrics,
                confirming=plan.confirming,
            ):  # fmt: skip
                settled = False
                past_threshold = plan.confirming and assessment.change > threshold
                if past_threshold or not plan.confirming:
                    break  # nothing the other metrics show changes the budget now
        if settled or index + 1 == schedule.looks:
            return
        if index < schedule.deciding:
            continue  # the deciding look is always taken (the budget counts from there)
        now = plan.clock()
        per_pair = (now - pairs_started) / len(run.head)
        spent = now - first_look_done
        budget = plan.budget * (CONFIRMING_PAST_THRESHOLD_BUDGET if past_threshold else 1)
        if spent + per_pair * (schedule.counts[index + 1] - count) > budget:
            return


def pair_test(
    plan: PairingPlan,
    worker: Worker,
    call: Callable[[], object],
    recorder: Any,
    describe: Callable[[list[Round], list[Round]], list[Series]],
    thresholds: Callable[[Series], float],
) -> PairedRun:
    """Take pairs of one test whose base is ready in its call phase, look after look.

    A head round that raises propagates (the test fails); a base round that raises ends
    the pairing with `base_error` set. Either way the worker leaves its call phase."""
    run = PairedRun()
    started = plan.clock()
    own_cpus = set(plan.cpus) if plan.cpus else None
    repeat = 0  # calls a side per pair, once the warm-up has passed
    try:
        if plan.counter is not None:
            # A count has no noise to spread over pairs, but a first call's lazy work would
            # be counted: one warm-up call a side at least.
            _warm_up(plan, worker, call, max(plan.warmup, 1))
            base, head = counted_pair(plan, worker, call, recorder)
            run.base.append(base)
            run.head.append(head)
        else:
            repeat, pairs_started = _start(
                plan, run, lambda: _warm_up(plan, worker, call),
                lambda calls: take_pair(plan, worker, call, recorder, calls),
            )  # fmt: skip
            _take_looks(
                plan, run, lambda: take_pair(plan, worker, call, recorder, repeat),
                describe, thresholds, pairs_started,
            )  # fmt: skip
    except BaseRoundFailed as exc:
        run.base_error = str(exc)
    except Exception as exc:
        if not repeat:
            raise  # the test's first call: its failure is the test's
        # Pairs are perfguard's calls, not the test's: one that passed once keeps that
        # outcome, and goes uncompared (a lane's head worker reports it the same way).
        # Its calls: the warm-up's or the first pair's (kept as a pair when long), pairs.
        dropped_first = 0 if plan.warmup or repeat == 1 else 1
        calls = plan.warmup + dropped_first + len(run.head) * repeat
        run.repeat_error = round_runner.repeated_call_error(calls, exc)
    finally:
        round_runner.unpin(own_cpus)
        run.seconds = plan.clock() - started
        if run.base_error is None:
            # A dead worker (Ctrl-C reaches it too) must not mask what ended the pairs.
            with contextlib.suppress(WorkerError):
                worker.send({"op": "end"})
    return run


def _side_round(side: Worker, base: Worker) -> Round:
    return _expect_round(side, BaseRoundFailed if side is base else HeadRoundFailed)


def take_worker_pair(
    plan: PairingPlan, base: Worker, head: Worker, repeat: int
) -> tuple[Round, Round]:
    """One pair between two worker processes (a lane's, a confirmation's): in duet both
    start together on the base's start line, the head worker playing the head's part
    there."""
    if plan.mode == "duet":
        cores = _two_cpus(plan)
        base_cpu, head_cpu = cores if cores else (None, None)
        base.pair_number = number = base.pair_number % 255 + 1
        base.send({"op": "round", "cpu": base_cpu, "sync": number, "repeat": repeat})
        head.send(
            {"op": "round", "cpu": head_cpu, "sync": number, "repeat": repeat, "role": "head"}
        )
        return _expect_round(base), _expect_round(head, HeadRoundFailed)
    cpu = plan.rng.choice(plan.cpus) if plan.cpus else None
    first, second = (base, head) if plan.rng.random() < 0.5 else (head, base)
    rounds = {}
    for side in (first, second):
        side.send({"op": "round", "cpu": cpu, "repeat": repeat})
        rounds[id(side)] = _side_round(side, base)
    return rounds[id(base)], rounds[id(head)]


def _warm_up_workers(plan: PairingPlan, base: Worker, head: Worker, together: bool) -> float:
    """`plan.warmup` calls a side before pairing; the head worker's shortest warm-up call
    in seconds. `together`: both sides at once, unpinned (a confirmation, with the whole
    machine); else one after the other on the CPU the pairs use (a lane: its other CPUs
    belong to other lanes, and two sides sharing one CPU would double the head's call and
    make a short test read as a long one)."""
    walls = []
    cpu = None if together or not plan.cpus else plan.rng.choice(plan.cpus)
    for _ in range(plan.warmup):
        if together:
            for side in (base, head):
                side.send({"op": "round", "cpu": None, "warm": 0})
            _expect_round(base)
            walls.append(_expect_round(head, HeadRoundFailed).wall)
            continue
        for side in (base, head):
            side.send({"op": "round", "cpu": cpu, "warm": 0})
            walls.append(_side_round(side, base).wall)
        del walls[-2]  # the base's
    return min(walls, default=0.0)


def pair_in_call_phases(
    plan: PairingPlan,
    base: Worker,
    head: Worker,
    describe: Callable[[list[Round], list[Round]], list[Series]],
    thresholds: Callable[[Series], float],
    *,
    warm_together: bool = True,
    reporting: bool = False,
) -> PairedRun:
    """A test's pairs between two worker processes, both ready in the test's call phase:
    the head's code in a head worker, the base's in a base worker. A confirmation pairs a
    flagged test again between two fresh processes: whatever made one process of the first
    pairing faster or slower than the other (where its data landed in memory) is drawn
    afresh, while a change in the code is not; a lane pairs its tests this way from the
    start. A round that raises ends it with `base_error` or `head_error` set; every side
    still in its call phase leaves it. `reporting`: the head worker reports the test's
    outcome (the head process does not run it), so a later call's failure is
    `repeat_error`, as in the head process."""
    run = PairedRun()
    started = plan.clock()
    in_call = [base, head]
    try:
        repeat, pairs_started = _start(
            plan, run, lambda: _warm_up_workers(plan, base, head, warm_together),
            lambda calls: take_worker_pair(plan, base, head, calls),
        )  # fmt: skip
        _take_looks(
            plan, run, lambda: take_worker_pair(plan, base, head, repeat),
            describe, thresholds, pairs_started,
        )  # fmt: skip
    except HeadRoundFailed as exc:
        if exc.repeated and reporting:
            run.repeat_error = str(exc)
        else:
            run.head_error = str(exc)
        in_call.remove(head)
    except BaseRoundFailed as exc:
        run.base_error = str(exc)
        in_call.remove(base)
    finally:
        run.seconds = plan.clock() - started
        for side in in_call:
            with contextlib.suppress(WorkerError):
                side.send({"op": "end"})
    return run


def pair_on_workers(
    plan: PairingPlan,
    base: Worker,
    head: Worker,
    test: str,
    describe: Callable[[list[Round], list[Round]], list[Series]],
    thresholds: Callable[[Series], float],
    *,
    following: str | None = None,
    keep: bool = False,
    warm_together: bool = True,
    reported: Callable[[dict[str, Any]], None] | None = None,
) -> PairedRun:
    """Run `test` in both workers and pair it in their call phases (`pair_in_call_phases`); the
    workers tear down for `following` afterwards, or with `keep` (a lane, whose next test
    is not known yet) keep every fixture above the test function for the next one;
    `warm_together` as in `_warm_up_workers`. A
    side that cannot run the test (its setup failed, or it has no such test) gives
    `base_error` or `head_error`. `reported`: the head worker reports the test's outcome,
    and its ``done`` message (the test's reports) goes to `reported`. Raises WorkerError
    when a worker dies."""
    sides = (base, head)
    command = {"op": "test", "id": test, "next": following, "keep": keep}
    base.send(command)
    head.send({**command, "report": True} if reported is not None else command)
    answers = [side.recv() for side in sides]
    try:
        if all(answer["op"] == "ready" for answer in answers):
            return pair_in_call_phases(
                plan, base, head, describe, thresholds, warm_together=warm_together,
                reporting=reported is not None,
            )  # fmt: skip
        for side, answer in zip(sides, answers, strict=True):
            if answer["op"] == "ready":
                side.send({"op": "end"})
        base_answer, head_answer = answers
        if base_answer["op"] != "ready":
            return PairedRun(base_error=base_answer.get("error", "did not run"))
        return PairedRun(head_error=head_answer.get("error", "did not run"))
    finally:
        for side in sides:
            while (message := side.recv())["op"] != "done":
                pass
            if side is head and reported is not None:
                reported(message)


def worker_args(
    args: Sequence[str],
    invocation_dir: Path,
    head_root: Path,
    base_root: Path,
    keyword: str,
    markexpr: str,
    *,
    ignore: Sequence[str] = (),
    ignore_glob: Sequence[str] = (),
) -> list[str]:
    """The base worker's pytest arguments: the head's test paths that exist in the base
    (the same place relative to each root), the head's -k / -m selection, and its
    --ignore / --ignore-glob (so that what the head leaves out is not "removed")."""
    chosen = []
    for arg in args:
        path_part, sep, rest = arg.partition("::")
        try:
            inside = (invocation_dir / path_part).resolve().relative_to(head_root.resolve())
        except ValueError:
            continue
        if (base_root / inside).exists():
            chosen.append(str(inside) + sep + rest)
    out = ["--rootdir", str(base_root), *chosen]
    if args and not chosen:
        # Nothing the head asked for exists in the base: select nothing, every test is new.
        return [*out, "-k", "perfguard_ab_selects_nothing"]
    if keyword:
        out += ["-k", keyword]
    if markexpr:
        out += ["-m", markexpr]
    for option, paths in (("--ignore", ignore), ("--ignore-glob", ignore_glob)):
        for path in paths:
            # Lexically, not resolved: a glob names no file. Relative to the worker's
            # directory, the base's root, as the head's were to its invocation directory.
            where = Path(os.path.normpath(invocation_dir / path))
            with contextlib.suppress(ValueError):
                out.append(f"{option}={where.relative_to(head_root)}")
    return out


# pytest's own options that change what is collected or how it runs, as the command line
# gave them: a worker applies its checkout's ini file and inherits PYTEST_ADDOPTS, but not
# the head's command line. Each maps its spellings to the one the worker gets.
_FORWARDED_VALUES = {
    "--import-mode": "--import-mode",
    "-o": "--override-ini",
    "--override-ini": "--override-ini",
    "-W": "--pythonwarnings",
    "--pythonwarnings": "--pythonwarnings",
}
_FORWARDED_FLAGS = frozenset({"--strict-markers", "--strict-config", "--noconftest"})


def forwarded_options(args: Sequence[str]) -> list[str]:
    """The head's command-line options a worker needs to collect and run its tests as the
    head does: `--import-mode`, `-o`, `-W`, the strict flags, and `-p no:NAME` (only a
    plugin switched off: one switched on may live where the worker cannot import it);
    each value option as one `--option=value` argument."""
    out: list[str] = []
    tokens = iter(args)
    for arg in tokens:
        long = arg.startswith("--")
        flag, equals, value = arg.partition("=") if long else (arg[:2], "", arg[2:])
        if arg in _FORWARDED_FLAGS:
            out.append(arg)
        elif flag == "-p":
            name = value or next(tokens, "")
            if name.startswith("no:"):
                out += ["-p", name]
        elif flag in _FORWARDED_VALUES and (long or flag in ("-o", "-W")):
            if not (equals or value):
                value = next(tokens, "")
            if value:
                out.append(f"{_FORWARDED_VALUES[flag]}={value}")
    return out


def confirmation_args(
    tests: Sequence[str], root: Path, keyword: str, markexpr: str
) -> list[str] | None:
    """A confirmation worker's pytest arguments for a checkout at `root`: the files that
    hold `tests` (node ids, relative to the rootdir), in their order, with the head's
    -k / -m selection, so that a fresh process imports and collects the paired tests'
    modules rather than the whole suite; None when a test's file lies outside the rootdir
    (then the lanes' arguments, `worker_args`, serve)."""
    files: dict[str, None] = {}
    for test in tests:
        path = test.partition("::")[0]
        if not path or Path(path).is_absolute() or ".." in Path(path).parts:
            return None
        files[path] = None
    out = ["--rootdir", str(root), *files]
    if keyword:
        out += ["-k", keyword]
    if markexpr:
        out += ["-m", markexpr]
    return out


def python_for_base(python: str | None) -> str:
    return python or sys.executable


def stream_text(stream: IO[str]) -> str:
    stream.seek(0)
    return stream.read()
