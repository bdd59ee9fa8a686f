"""The runner's duties for one operator, done by whoever runs it: one code path for
`clara run` (in the runner's process) and `clara exec-operator` (inside a pod).

    duties = OperatorDuties(ctx, io, plan)
    duties.prepare()                 # before it starts: static outputs, disk folders
    duties.complete()                # if it says its outputs are complete: checked, marked
    problem, seen = duties.check()   # after it exits 0: outputs someone reads, as declared
    freed, left = duties.finish()    # marks it succeeded; frees what it was last to read

Nothing central is needed: what the operators of a job must share lives in the job's
context, in its tally (`Tally`): each operator's status, how many readers each variable
still waits for, and how many operators have not finished. Every update of the tally is
one write map of it (one writer at a time, a bounded wait), so whoever decrements a
variable's count to zero is the one that frees it, whatever order operators end in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .. import waiting
from ..allocation import Allocation
from ..context import Context
from ..dtypes import shapes_match
from ..errors import AlreadyExists, ClaraError, InvalidArgument, NotFound, Timeout
from ..records import Record
from .environment import DISK, SHARED_MEMORY, JobPlan, OperatorIO

TALLY = "clara-tally"  # never a variable's name: those always hold "--"
WAITING, SUCCEEDED, FAILED = 0, 1, 2
LOCK_TIMEOUT = 60.0  # seconds an update of the tally waits for another one
# Seconds a check on an operator's claim that its outputs are complete waits for a lock:
# the claimer is alive and may hold one; a busy lock leaves the decision to its exit.
CLAIM_LOCK_WAIT = 0.1


class UpstreamFailed(ClaraError):
    """An operator this one reads from failed: it will never run."""


class Observed(Record):
    """An output as its producer left it."""

    shape: tuple[int, ...]
    nbytes: int
    state: str  # empty, writing, complete (see Allocation.state), or missing
    created: float | None = None  # when its segment was made (seconds since the epoch)


class Tally:
    """The job's shared bookkeeping: int64 [status of each operator..., readers left of
    each variable..., operators left], published in the job's context as TALLY."""

    def __init__(self, ctx: Context, plan: JobPlan, found: Allocation | None = None) -> None:
        self.plan = plan
        self.operators = {name: i for i, name in enumerate(plan.operators)}
        first = len(plan.operators)
        self.variables = {name: first + i for i, name in enumerate(plan.readers)}
        self.size = first + len(plan.readers) + 1
        self.allocation = self._checked(found) if found else self._open_or_create(ctx)

    @classmethod
    def find(cls, ctx: Context, plan: JobPlan) -> Tally | None:
        """The job's tally, read-only, if one was made (None outside a job's context)."""
        try:
            found = ctx.get(TALLY, read_only=True)
        except NotFound:
            return None
        return cls(ctx, plan, found)

    def index(self, operator: str) -> int:
        """Where `operator` (any case) is in the plan; InvalidArgument if it is not."""
        for known, index in self.operators.items():
            if known.lower() == operator.lower():
                return index
        raise InvalidArgument(
            f"operator '{operator}' is not one of this job's (CLARA_JOB): "
            f"{', '.join(self.plan.operators)}"
        )

    def _open_or_create(self, ctx: Context) -> Allocation:
        try:
            return self._checked(ctx.get(TALLY))
        except NotFound:
            pass
        allocation = ctx.create(dtype="int64", shape=(self.size,))
        try:  # filled before it is published: whoever finds it finds it complete
            initial = [WAITING] * len(self.operators)
            initial += [*self.plan.readers.values(), len(self.operators)]
            with _values(allocation, "w") as values:
                for index, value in enumerate(initial):
                    values[index] = value
            allocation.publish(TALLY)
            return allocation
        except AlreadyExists:  # another operator of the job was first: the same content
            allocation.release()
            return self._checked(ctx.get(TALLY))
        except BaseException:
            allocation.release()
            raise

    def _checked(self, allocation: Allocation) -> Allocation:
        if allocation.element_type.name != "int64" or allocation.shape != (self.size,):
            allocation.release()
            raise InvalidArgument(
                f"the job's {TALLY} is int64{list(allocation.shape)}, not the "
                f"int64[{self.size}] this job's plan (CLARA_JOB) needs"
            )
        return allocation

    def statuses(self, names: list[str]) -> list[int]:
        """The status of each named operator now."""
        with _values(self.allocation, "r") as values:
            return [values[self.operators[name]] for name in names]

    def status(self, index: int) -> int:
        """The status of the operator at `index` of the plan now."""
        with _values(self.allocation, "r") as values:
            return values[index]

    def completed(self, operator: str, timeout: float = LOCK_TIMEOUT) -> None:
        """Record that `operator` completed its outputs (checked) before it exited: its
        readers may read. What it read is still counted until it has exited (`succeeded`)."""
        with _values(self.allocation, "w", timeout) as values:
            values[self.operators[operator]] = SUCCEEDED

    def failed(self, operator: str) -> None:
        """Record that `operator` failed (its readers will never start)."""
        with _values(self.allocation, "w") as values:
            values[self.operators[operator]] = FAILED

    def succeeded(self, operator: str, read: list[str], written: list[str]) -> tuple[list, int]:
        """Record that `operator` succeeded after reading `read` and writing `written`.

        Returns the variables nobody will read any more (to be freed by the caller, the
        only one to learn it) and how many operators of the job have not finished.
        """
        unread = []
        with _values(self.allocation, "w") as values:
            values[self.operators[operator]] = SUCCEEDED
            for name in read:
                index = self.variables[name]
                if values[index] > 0:
                    values[index] -= 1
                    if values[index] == 0:
                        unread.append(name)
            unread += [name for name in written if values[self.variables[name]] == 0]
            values[-1] -= 1
            return unread, values[-1]

    def release(self) -> None:
        """Drop this reference to the tally."""
        self.allocation.release()


@contextlib.contextmanager
def _values(
    allocation: Allocation, mode: str, timeout: float = LOCK_TIMEOUT
) -> Iterator[memoryview]:
    """The tally's int64 values as a memoryview, mapped `mode` for the block.

    No numpy: the runner, and `clara map` on a declared input, never need it, and its
    import (~0.1 s of CPU) would delay every operator's start. The view is released
    before the unmap, so the unmap is a plain munmap (nothing to cut off).
    """
    mapping = allocation.map(mode, timeout=timeout)
    complete = False
    try:
        with mapping.buffer.cast("q") as values:
            yield values
        complete = True
    finally:
        mapping.unmap(complete)


def drop_tally(ctx: Context) -> None:
    """Free the job's tally (a job kept for inspection keeps only its variables)."""
    with contextlib.suppress(NotFound):
        ctx.get(TALLY).free()


class OperatorDuties:
    """What the runner does for one operator, around its process."""

    def __init__(self, ctx: Context, io: OperatorIO, plan: JobPlan) -> None:
        self.ctx = ctx
        self.io = io
        self.plan = plan
        self.tally = Tally(ctx, plan)

    def wait_for_upstream(self, timeout: float) -> None:
        """Return once every operator this one reads from has succeeded.

        UpstreamFailed at once if one failed; Timeout after `timeout` seconds (0: they
        must have succeeded already).
        """
        upstream = sorted({p.source for p in self.io.inputs if p.source is not None})
        upstream = [self._operator(name) for name in upstream]

        def settled() -> list[int] | None:
            statuses = self.tally.statuses(upstream)
            return statuses if FAILED in statuses or WAITING not in statuses else None

        statuses = waiting.until(settled, waiting.Deadline(timeout))
        if statuses is None:
            statuses = self.tally.statuses(upstream)
            late = [n for n, s in zip(upstream, statuses, strict=True) if s == WAITING]
            raise Timeout(
                f"operator '{self.io.operator}' waited {timeout:g} s for "
                f"{', '.join(repr(n) for n in late)} to succeed"
            )
        failed = [n for n, s in zip(upstream, statuses, strict=True) if s == FAILED]
        if failed:
            raise UpstreamFailed(
                f"operator '{self.io.operator}' will not run: '{failed[0]}' failed"
            )

    def prepare(self) -> dict[str, int]:
        """Allocate the static shared-memory outputs, create disk output folders.

        Returns the bytes of each variable allocated.
        """
        allocated = {}
        for port in self.io.outputs:
            if port.medium == DISK:
                if port.path:
                    os.makedirs(port.path, exist_ok=True)
                continue
            shape = port.shape or ()
            if port.allocation is None or not shape or any(d <= 0 for d in shape):
                continue  # dynamic: the operator sizes it
            allocation = self.ctx.create(dtype=port.element_type, shape=shape)
            try:
                allocation.publish(port.allocation)
                allocated[port.allocation] = allocation.nbytes
            finally:
                allocation.release()  # published: it stays until freed
        return allocated

    def check(self, lock_wait: float | None = None) -> tuple[str, dict[str, Observed]]:
        """Each shared-memory output someone reads: there, completely written, as declared.

        Returns the problems found ('' if none) and how each output was left. Opening an
        output waits for its reference lock `lock_wait` seconds (None: the default).
        """
        problems = []
        seen: dict[str, Observed] = {}
        for port in self.io.outputs:
            if port.medium != SHARED_MEMORY or port.allocation is None:
                continue
            read = self.plan.readers.get(port.allocation, 0) > 0
            try:  # a fresh reference: it sees the layout as the producer left it
                allocation = self.ctx.get(port.allocation, timeout=lock_wait)
            except NotFound:
                seen[port.allocation] = Observed(tuple(port.shape or ()), 0, "missing")
                if read:
                    problems.append(f"exited 0 but never allocated output '{port.name}'")
                continue
            with allocation:
                state = allocation.state
                seen[port.allocation] = Observed(
                    allocation.shape, allocation.nbytes, state, allocation.created
                )
                if not read:
                    continue
                if state != "complete":
                    what = "never wrote" if state == "empty" else f"left {state}"
                    problems.append(f"exited 0 but {what} output '{port.name}'")
                elif allocation.element_type.name != port.element_type or not shapes_match(
                    allocation.shape, port.shape or ()
                ):
                    problems.append(
                        f"wrote output '{port.name}' as {allocation.element_type.name}"
                        f"{list(allocation.shape)}, but it is declared {port.element_type}"
                        f"{list(port.shape or ())}"
                    )
        return "; ".join(problems), seen

    def complete(self) -> bool:
        """The operator says its outputs are complete, before its exit: if `check` finds
        them so, record it in the tally (its readers may read). Whether it did."""
        try:  # (a lock the claimer holds never holds up the runner)
            problem, _ = self.check(CLAIM_LOCK_WAIT)
            if not problem:
                self.tally.completed(self.io.operator, CLAIM_LOCK_WAIT)
                return True
        except ClaraError:
            pass
        return False

    def failed(self) -> None:
        """Record in the tally that this operator failed."""
        self.tally.failed(self.io.operator)

    def finish(self, keep: bool = False) -> tuple[list[str], int]:
        """Mark it succeeded; free each variable it was the last to read, and its outputs
        nobody reads (unless `keep`). Returns (names freed, operators still to finish)."""
        read = list(
            dict.fromkeys(
                p.allocation
                for p in self.io.inputs
                if p.medium == SHARED_MEMORY and p.allocation in self.plan.readers
            )
        )
        written = [
            p.allocation
            for p in self.io.outputs
            if p.medium == SHARED_MEMORY and p.allocation in self.plan.readers
        ]
        unread, left = self.tally.succeeded(self.io.operator, read, written)
        freed = []
        for name in [] if keep else unread:
            try:
                self.ctx.get(name).free()
            except NotFound:  # an output nobody reads that was never allocated
                continue
            freed.append(name)
        return freed, left

    def close(self) -> None:
        """Drop the references these duties hold."""
        self.tally.release()

    def _operator(self, name: str) -> str:
        for known in self.plan.operators:
            if known.lower() == name.lower():
                return known
        raise InvalidArgument(f"CLARA_IO names operator '{name}', which CLARA_JOB does not list")
