"""Lanes: an A/B session's pairs measured in parallel, one lane per CPU.

No pytest here. A *lane* is a base worker and a head worker (a worker process rooted at
the head's checkout), both kept on CPUs of their own (one in interleave, two in duet),
pairing there exactly as a confirmation pairs two workers (`pairing.pair_on_workers`).
Each lane has a driver thread in the head process that takes the next test from a shared
queue, in collection order, and does blocking pipe IO with its two workers; rounds are
timed inside the workers, so the head process's threads only wait, judge looks and send
the next command. Collection order keeps each worker's tests in the order pytest would
run them, so a worker sets each module's and class's fixtures up at most once.

A worker that dies stops its lane (its other worker is killed): its test gets the
worker's error, the other lanes go on with the rest. An interrupt of the head kills every
lane's workers and joins the threads before it goes on, so nothing is left running.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .pairing import BaseProcess, Mode, PairedRun, WorkerError


@dataclass
class Lane:
    """A base worker and a head worker on `cpus`; `error` once one of them died."""

    base: BaseProcess
    head: BaseProcess
    cpus: list[int]
    error: str | None = None

    @property
    def workers(self) -> tuple[BaseProcess, BaseProcess]:
        return (self.base, self.head)

    def check_hellos(self) -> str | None:
        """Why this lane cannot measure (a worker died, or could not collect or import
        its checkout's code), or None. Raises nothing."""
        for worker in self.workers:
            try:
                hello = worker.wait_hello()
            except WorkerError as exc:
                return str(exc)
            problems = hello["errors"] or hello["imports"]
            if problems:
                return f"the {worker.name} could not collect: {problems[0]}"
        return None

    def tests(self) -> set[str]:
        """The tests both of this lane's workers collected (after `check_hellos`)."""
        found = [{t["id"] for t in worker.wait_hello()["tests"]} for worker in self.workers]
        return found[0] & found[1]


def lane_count(
    asked: int | None, mode: Mode, cpus: Sequence[int] | None, counting: bool
) -> tuple[int, str]:
    """How many lanes a session gets, and a note for the header when that is not what was
    asked: one per CPU this process may use (two CPUs each in duet) unless `asked` says
    fewer; one where processes cannot be pinned, and under callgrind (one counted pair a
    test decides, so there is no time to save, and every worker would run under valgrind).
    """
    if asked == 1:
        return 1, ""
    if counting:
        note = "instruction counts: one lane" if asked else ""
        return 1, note
    per_lane = 2 if mode == "duet" else 1
    most = len(cpus) // per_lane if cpus else 0
    if most < 1:
        note = f"--perf-ab-lanes {asked}: no CPUs this process may pin: one lane" if asked else ""
        return 1, note
    if asked is None:
        return most, ""
    if asked > most:
        lanes = f"{most} lane" + ("s" if most != 1 else "")
        each = "two CPUs" if mode == "duet" else "one CPU"
        total = len(cpus or [])
        return most, f"--perf-ab-lanes {asked}: {lanes}, {each} each of the {total} it may use"
    return asked, ""


def lane_cpus(mode: Mode, cpus: Sequence[int], count: int) -> list[list[int]]:
    """The CPUs of each of `count` lanes: one each in interleave, two in duet."""
    per_lane = 2 if mode == "duet" else 1
    return [list(cpus[i * per_lane : (i + 1) * per_lane]) for i in range(count)]


def start_lanes(
    cpus_per_lane: Sequence[list[int]],
    start_base: Callable[[], BaseProcess],
    start_head: Callable[[BaseProcess], BaseProcess],
    first_base: BaseProcess | None = None,
) -> list[Lane]:
    """A lane on each of `cpus_per_lane`, its workers started (`start_head` gets the base
    worker whose duet start line the head worker shares) and pinned to the lane's CPUs.
    `first_base`, already running, becomes the first lane's base worker. Raises
    WorkerError, after closing what it started."""
    lanes: list[Lane] = []
    started: list[BaseProcess] = []
    try:
        for index, cpus in enumerate(cpus_per_lane):
            if index == 0 and first_base is not None:
                base = first_base
            else:
                base = start_base()
                started.append(base)
            head = start_head(base)
            started.append(head)
            for worker in (base, head):
                worker.pin(cpus)
            lanes.append(Lane(base, head, list(cpus)))
    except BaseException:
        close_workers(started)
        raise
    return lanes


def close_workers(workers: Sequence[BaseProcess]) -> None:
    """Ask every worker to quit first, so they tear down side by side, then wait for each
    (killing the ones that do not exit). The first error is raised after all are closed."""
    unique = list({id(w): w for w in workers}.values())
    for worker in unique:
        worker.quit()
    failure: BaseException | None = None
    for worker in unique:
        try:
            worker.close()
        except BaseException as exc:  # an interrupt while waiting: the rest are killed
            worker.kill()
            failure = failure or exc
    if failure is not None:
        raise failure


@dataclass
class LaneResults:
    """Each measured test's pairs, and for tests a lane could not measure, why not."""

    runs: dict[str, PairedRun] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def run_lanes(
    lanes: Sequence[Lane], tests: Sequence[str], job: Callable[[Lane, str], PairedRun]
) -> LaneResults:
    """Measure `tests` over the lanes at once: each lane's thread takes the next test (in
    the given order) and runs `job` on it, until none is left or the lane's worker dies.
    Tests left over when every lane died get the last error. On an interrupt (Ctrl-C, or
    SIGTERM turned into one) every lane's workers are killed, which ends their threads'
    pipe reads, the threads are joined and the interrupt goes on."""
    queue = deque(tests)
    lock = threading.Lock()
    results = LaneResults()

    def drive(lane: Lane) -> None:
        while True:
            with lock:
                if not queue:
                    return
                test = queue.popleft()
            try:
                run = job(lane, test)
            except Exception as exc:  # WorkerError, or a bug: either way the lane is done
                lane.error = str(exc) if isinstance(exc, WorkerError) else repr(exc)
                # Its other worker may still wait in the test's call phase, where a
                # `quit` would not reach it: it goes too.
                for worker in lane.workers:
                    worker.kill()
                with lock:
                    results.errors[test] = lane.error
                return
            with lock:
                results.runs[test] = run

    threads = [
        threading.Thread(target=drive, args=(lane,), name=f"perfguard-lane-{index}", daemon=True)
        for index, lane in enumerate(lanes)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        for lane in lanes:
            for worker in lane.workers:
                worker.kill()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(timeout=30)
        raise
    last = next((lane.error for lane in reversed(lanes) if lane.error), "no lane")
    for test in queue:
        results.errors[test] = f"no lane left to measure it ({last})"
    return results
