"""When a declared input may be read: once its producer has completed it.

`clara run` starts an operator whose upstream inputs are all in shared memory at job
start (see `scheduling`), so the operator may come to read an input before its producer
has written it. Every read of a declared input inside a job therefore waits until the
producer's status in the job's tally (`operator_duties.Tally`) is final: *succeeded*
(it exited 0 and its outputs were checked) or *failed*. A reader does not poll the tally:
it waits on the producer's **ready lock**, an OFD lock on one byte of the tally's file

    byte READY_BASE + i     the ready lock of operator i (its place in CLARA_JOB)

which the runner takes exclusively for every operator before it starts any
(`ReadyLocks`), and lets go once that operator's status is final. A reader takes it
shared (`wait_for_producer`), which the kernel grants the moment the runner lets go, then
reads the status: succeeded, it reads; failed, it raises UpstreamFailed naming the
producer. The kernel drops the runner's locks if it dies: a reader then finds the status
still *waiting* and fails too, instead of waiting forever.

Every wait is bounded: a reader waits while the status is *waiting* and the job's runner
holds the lock (the runner's own --timeout, signals and death end that), and at most
$CLARA_LOCK_TIMEOUT seconds for a lock held by any other process (with write access to
the tally: the context's mode decides who has it); a status that is final ends the wait
whoever holds the lock. Outside a job (no tally, or no CLARA_JOB) nothing is waited for.
"""

from __future__ import annotations

import os

from ..context import Context
from ..errors import Timeout
from ..shm import locks, processes
from .environment import SHARED_MEMORY, JobPlan, OperatorIO
from .operator_duties import FAILED, WAITING, Tally, UpstreamFailed

READY_BASE = 64  # the ready lock of operator i is byte READY_BASE + i of the tally
READY = "CLARA_READY"  # for programs without a JSON parser (the C library), see ready_lines
SLICE = 0.5  # seconds between two looks at the tally while the lock stays busy


def ready_lines(io: OperatorIO, plan: JobPlan) -> str:
    """CLARA_READY: one line per shared-memory input read from another operator,
    ``ALLOCATION INDEX PRODUCER``, INDEX being the producer's place in the plan."""
    places = {name.lower(): i for i, name in enumerate(plan.operators)}
    return "".join(
        f"{port.allocation} {places[port.source.lower()]} {port.source}\n"
        for port in io.inputs
        if port.medium == SHARED_MEMORY and port.allocation and port.source
        if port.source.lower() in places
    )


class ReadyLocks:
    """The runner's side: every operator's ready lock, held until its status is final."""

    def __init__(self, ctx: Context, plan: JobPlan) -> None:
        self.tally = Tally(ctx, plan)  # made here, before any operator starts
        self.held: set[int] = set()
        try:
            self.fd = os.open(self.tally.allocation.path, os.O_RDWR | os.O_CLOEXEC)
        except BaseException:
            self.tally.release()
            raise
        try:
            for index in range(len(plan.operators)):
                what = f"the ready lock of operator '{plan.operators[index]}'"
                locks.acquire(self.fd, READY_BASE + index, True, what)
                self.held.add(index)
        except BaseException:
            self.close()
            raise

    def release(self, operator: str) -> None:
        """Let `operator`'s readers go: its status in the tally is final."""
        index = self.tally.index(operator)
        if index in self.held:
            self.held.discard(index)
            locks.unlock(self.fd, READY_BASE + index)

    def close(self) -> None:
        """Let every reader go (each then reads its producer's status) and drop the tally."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.held.clear()
        self.tally.release()


def wait_for_producer(ctx: Context, producer: str, what: str) -> None:
    """Return once `producer` has completed `what` (a declared input, for messages).

    UpstreamFailed if the producer failed or will never finish (its runner is gone);
    Timeout if a process other than the job's runner holds the ready lock longer than
    $CLARA_LOCK_TIMEOUT. Returns at once outside a job (no CLARA_JOB, or no tally).
    """
    text = os.environ.get("CLARA_JOB")
    if not text:
        return
    tally = Tally.find(ctx, JobPlan.from_json(text))
    if tally is None:
        return
    try:
        index = tally.index(producer)
        status = tally.status(index)
        if status == WAITING:
            status = _wait(ctx, tally, index, what)
    finally:
        tally.release()
    if status == FAILED:
        raise UpstreamFailed(f"{what} will never be complete: operator '{producer}' failed")


def _wait(ctx: Context, tally: Tally, index: int, what: str) -> int:
    """Wait on the ready lock of operator `index`; its status once final (or the runner's
    lock is gone)."""
    producer = tally.plan.operators[index]
    byte = READY_BASE + index
    fd = os.open(tally.allocation.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        bound = locks.default_wait()
        waited = 0.0
        # Asleep in the kernel until the runner lets go: the reader goes on at once,
        # not after the next look of a poll.
        lock = locks.KernelWait(fd, byte, False, f"the ready lock of operator '{producer}'")
        while True:
            if lock.granted(SLICE):
                locks.unlock(fd, byte)
                status = tally.status(index)
                if status == WAITING:
                    raise UpstreamFailed(
                        f"{what} will never be complete: operator '{producer}' did not "
                        "finish (the job's runner stopped or died)"
                    )
                return status
            status = tally.status(index)
            if status != WAITING:
                return status  # final, whoever holds the lock now
            waited += SLICE
            if waited >= bound:
                waited = 0.0
                _check_holders(ctx, tally, byte, what, bound)
    finally:
        os.close(fd)


def _check_holders(ctx: Context, tally: Tally, byte: int, what: str, bound: float) -> None:
    """Timeout unless the job's runner (the context's creator) is among those holding
    `byte`: only the runner may keep a reader waiting longer than `bound` seconds."""
    holders = processes.lock_holders(tally.allocation.file_id, byte)
    if any(holder.pid == ctx.creator_pid for holder in holders):
        return
    who = ", ".join(str(h) for h in holders) or "a process this user cannot see"
    raise Timeout(
        f"waited {bound:g} s to read {what}: its ready lock is held by {who}, not by the "
        "job's runner"
    )
