"""Lanes: an A/B session's pairs measured in parallel, one lane per CPU.

No pytest here. A *lane* is a base worker and a head worker (a worker process rooted at
the head's checkout), both kept on CPUs of their own (one in interleave, two in duet),
pairing there exactly as a confirmation pairs two workers (`pairing.pair_on_workers`).
One base and one head worker process are started for all lanes; each forks a copy of
itself per further lane after collecting (`pairing.WorkerProcess`). Each lane has a driver
thread in the head process that starts once its two workers have collected, takes the
next test from a shared queue, in collection order, and does blocking pipe IO with its two
workers; rounds are timed inside the workers, so the head process's threads only wait,
judge looks and send the next command. Collection order keeps each worker's tests in the
order pytest would run them, so a worker sets each module's and class's fixtures up once
for its tests. A likely regression is queued for its confirmation, in a confirmation lane
of fresh workers started at the first one; a test that leans to a regression joins that
queue for its redraw once the confirmation lanes have started.

A worker that dies stops its lane (its other worker is killed): its test gets the
worker's error, the other lanes go on with the rest. An interrupt of the head kills every
lane's workers and joins the threads before it goes on, so nothing is left running.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .pairing import Mode, PairedRun, Worker, WorkerError, WorkerProcess

# How long the calling thread waits for a job's end before it looks at the lanes again; a
# lane's end wakes it too, so this only bounds a missed wake-up.
PROGRESS_POLL = 0.5


@dataclass
class Lane:
    """A base worker and a head worker on `cpus`; `error` once one of them died or the
    lane could not start."""

    base: Worker
    head: Worker
    cpus: list[int]
    error: str | None = None

    @property
    def workers(self) -> tuple[Worker, Worker]:
        return (self.base, self.head)

    def check_hellos(self) -> str | None:
        """Why this lane cannot measure (a worker died, or could not collect or import
        its checkout's code), or None; a worker that said hello is pinned to the lane's
        CPUs (a copy is forked on its started process's). Raises nothing."""
        for worker in self.workers:
            try:
                hello = worker.wait_hello()
            except WorkerError as exc:
                return str(exc)
            problems = hello["errors"] or hello["imports"]
            if problems:
                return f"the {worker.name} could not collect: {problems[0]}"
            worker.pin(self.cpus)
        return None


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
    base: WorkerProcess,
    start_head: Callable[[WorkerProcess], WorkerProcess],
) -> list[Lane]:
    """A lane on each of `cpus_per_lane`: `base`, started with a copy for each lane, and
    a head worker from `start_head` (given the base worker, whose duet start lines its
    copies share) make one lane per copy. The two started processes collect on CPUs of
    different lanes (the first's, the last's); every worker moves to its own lane's CPUs
    when it says hello. Raises WorkerError (`base` is the caller's to close)."""
    head = start_head(base)
    base.pin(cpus_per_lane[0])
    head.pin(cpus_per_lane[-1])
    return [
        Lane(base_copy, head_copy, list(cpus))
        for base_copy, head_copy, cpus in zip(base.copies, head.copies, cpus_per_lane, strict=True)
    ]


def kill_workers(workers: Sequence[Worker]) -> None:
    """Kill every worker, the copies before the processes that forked them: those reap
    their copies, so none is left for the system to reap."""
    for worker in sorted(workers, key=lambda worker: isinstance(worker, WorkerProcess)):
        worker.kill()


def close_workers(workers: Sequence[Worker]) -> None:
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
    """Each measured test's pairs; the confirmations that `run_lanes` made, in fresh
    processes; the confirmation lanes it started for them; and for tests no lane could
    measure, why not."""

    runs: dict[str, PairedRun] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # a lane's worker died on it
    left: list[str] = field(default_factory=list)  # no lane took them (none could)
    confirmations: dict[str, PairedRun] = field(default_factory=dict)
    confirming: list[Lane] = field(default_factory=list)
    # Lanes that could not start: `Lane.check_hellos`' reason each, or why the
    # confirmation lanes could not be started.
    unusable: list[str] = field(default_factory=list)
    started: int = 0  # lanes (not confirmation lanes) whose workers said hello


@dataclass(frozen=True)
class _Job:
    test: str
    confirm: bool = False
    lane: int = -1  # a confirmation's: the lane whose pairs flagged it


def run_lanes(
    lanes: Sequence[Lane],
    tests: Sequence[str],
    job: Callable[[Lane, str], PairedRun],
    *,
    confirm_if: Callable[[str, PairedRun], bool] | None = None,
    redraw_if: Callable[[str, PairedRun], bool] | None = None,
    start_confirming: Callable[[], Sequence[Lane]] | None = None,
    progress: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LaneResults:
    """Measure `tests` over the lanes at once: each lane's thread waits for its workers
    to say hello (`Lane.check_hellos`; a lane that cannot start takes nothing), then takes
    the next test (in the given order) and runs `job` on it, until none is left or the
    lane's worker dies. A lane starts as soon as its own workers are ready.

    A test whose pairs `confirm_if` flags is paired again in fresh processes
    (`LaneResults.confirmations`): the first flag calls `start_confirming` for the
    confirmation lanes (new workers, one lane for each of `lanes`, on its CPUs), which
    collect while the lanes go on; each lane's thread, once no first pairing is left,
    takes the confirmations in its confirmation lane, the other lanes' tests first. A test
    whose pairs `redraw_if` flags (a redraw) is queued there too, but only once a flag has
    started the confirmation lanes: their workers collect while the lanes pair, which
    disturbs the pairs taken meanwhile, and a redraw alone is not worth that (the caller
    makes it at the end). Tests no lane took are `left`; confirmations no lane could make
    are dropped (the caller makes them at the end).

    `progress` is called in this (the calling) thread each time a job ends, and once
    after the last; once `should_stop` says so, no lane takes another test.

    On an interrupt (Ctrl-C, or SIGTERM turned into one) every lane's workers are killed,
    which ends their threads' pipe reads, the threads are joined and the interrupt goes
    on."""
    queue = deque(_Job(test) for test in tests)
    ready = threading.Condition()
    working = [0]  # lanes running a job: each may still queue a confirmation
    changed = threading.Event()  # a job ended: `progress` has something to see
    results = LaneResults()
    started: list[bool] = []  # whether start_confirming was called

    def take(index: int, confirming: bool) -> _Job | None:
        with ready:
            while True:
                if should_stop is not None and should_stop():
                    return None
                found = next((j for j in queue if not j.confirm), None)
                if found is None and confirming and queue:
                    # Another lane's flags first; then its own, so that no confirmation
                    # lane idles while another has several to make.
                    found = next((j for j in queue if j.lane != index), queue[0])
                if found is not None:
                    queue.remove(found)
                    working[0] += 1
                    return found
                if working[0] == 0 or confirm_if is None:
                    return None
                ready.wait()

    def usable(lane: Lane) -> bool:
        if lane.error is None:
            lane.error = lane.check_hellos()
            if lane.error is not None:
                with ready:
                    results.unusable.append(lane.error)
        return lane.error is None

    def flag(test: str, index: int) -> None:
        """Queue `test`'s confirmation, starting the confirmation lanes first (with the
        lock held: no second start)."""
        if not started:
            started.append(True)
            try:
                results.confirming = list(start_confirming()) if start_confirming else []
            except WorkerError as exc:
                results.unusable.append(f"confirmation lanes: {exc}")
        if results.confirming:
            queue.append(_Job(test, confirm=True, lane=index))

    def drive(index: int) -> None:
        try:
            drive_lane(index)
        finally:
            # The calling thread waits for `changed` while a lane is alive: a lane that
            # ends after its last job said so would leave it waiting out the timeout
            # (0.5 s at the end of most runs, measured with benchmarks/ab/timeline.py).
            changed.set()

    def drive_lane(index: int) -> None:
        first = lanes[index]
        if not usable(first):
            return
        with ready:
            results.started += 1
        confirming = True
        while (item := take(index, confirming)) is not None:
            lane = first
            if item.confirm:
                lane = results.confirming[index] if index < len(results.confirming) else first
                if lane is first or not usable(lane):
                    # Another lane's thread may still confirm it: this one takes no more.
                    with ready:
                        queue.appendleft(item)
                        working[0] -= 1
                        ready.notify_all()
                    confirming = False
                    continue
            try:
                run = job(lane, item.test)
                pairing = not item.confirm  # a first pairing, not a confirmation's
                again = pairing and confirm_if is not None and confirm_if(item.test, run)
                redraw = (
                    pairing and not again and redraw_if is not None and redraw_if(item.test, run)
                )
            except Exception as exc:  # WorkerError, or a bug: either way the lane is done
                lane.error = str(exc) if isinstance(exc, WorkerError) else repr(exc)
                # Its other worker may still wait in the test's call phase, where a
                # `quit` would not reach it: it goes too.
                kill_workers(lane.workers)
                with ready:
                    if not item.confirm:
                        results.errors[item.test] = lane.error
                    working[0] -= 1
                    ready.notify_all()
                changed.set()
                if item.confirm:
                    confirming = False
                    continue
                return
            with ready:
                if item.confirm:
                    results.confirmations[item.test] = run
                else:
                    results.runs[item.test] = run
                if again:
                    flag(item.test, index)
                elif redraw and results.confirming:
                    queue.append(_Job(item.test, confirm=True, lane=index))
                working[0] -= 1
                ready.notify_all()
            changed.set()

    threads = [
        threading.Thread(target=drive, args=(index,), name=f"perfguard-lane-{index}", daemon=True)
        for index in range(len(lanes))
    ]
    try:
        for thread in threads:
            thread.start()
        if progress is not None:
            while any(thread.is_alive() for thread in threads):
                changed.wait(PROGRESS_POLL)
                changed.clear()
                progress()
        for thread in threads:
            thread.join()
        if progress is not None:
            progress()
    except BaseException:
        kill_workers([worker for lane in [*lanes, *results.confirming] for worker in lane.workers])
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(timeout=30)
        raise
    results.left = [item.test for item in queue if not item.confirm]
    return results
