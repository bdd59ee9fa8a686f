"""The runner's record of a job's shared-memory variables, from allocation to free.

Each output in shared memory is one variable, published in the job's context as
``<operator>--<output>``. What is done to them (allocating static ones before their
producer starts, checking them after it exits, freeing each after its last reader) is
`OperatorDuties`, the same code `clara exec-operator` runs in a pod; this module keeps
the runner's account of it for the final report. The job's context itself is made by
`create_job_context`, from a warm pool if asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..context import Context
from ..errors import AlreadyExists, ClaraError, NotFound
from .model import SHARED_MEMORY, Pipeline
from .operator_duties import Observed
from .results import VariableRecord

_WARM_POOL_TRIES = 5  # makes of a warm pool that others destroy as fast (see below)


def create_job_context(
    name: str, owner: int | None, warm_pool: str | None, pooled: bool = True
) -> Context:
    """The job's context, using the warm pool if any (made on first use: it outlives jobs).

    Without one, the context pools what the job frees for its later allocations only if
    `pooled`. Someone may destroy the warm pool between its creation here and its
    opening by `Context.create`: it is then made again, a few times before giving up.
    """
    if warm_pool is None:
        return Context.create(name, owner_pid=owner, pool_bytes=None if pooled else 0)
    for attempt in range(_WARM_POOL_TRIES):
        with contextlib.suppress(AlreadyExists):
            Context.create(warm_pool).close()
        try:
            return Context.create(name, owner_pid=owner, warm_pool=warm_pool)
        except NotFound:  # only the warm pool is looked up: destroyed meanwhile
            if attempt == _WARM_POOL_TRIES - 1:
                raise NotFound(
                    f"warm pool '{warm_pool}' was destroyed each time it was made "
                    f"({_WARM_POOL_TRIES} times)"
                ) from None
    raise AssertionError("unreachable")


class JobVariables:
    """A record of every shared-memory variable of one job."""

    def __init__(self, pipeline: Pipeline, keep: bool, epoch: float = 0.0) -> None:
        self.keep = keep
        self.epoch = epoch  # the job's time 0, in seconds since the Unix epoch
        self.records: dict[str, VariableRecord] = {}
        for op in pipeline.operators:
            for port in op.outputs:
                if port.medium != SHARED_MEMORY:
                    continue
                name = pipeline.allocation_name(op, port)
                consumers = [c.name for c, _ in pipeline.consumers(op, port)]
                self.records[name] = VariableRecord(
                    name,
                    op.name,
                    port.name or "",
                    port.element_type or "",
                    list(port.shape or ()),
                    consumers=consumers,
                )

    def allocated(self, nbytes: dict[str, int]) -> None:
        """Record the static outputs just allocated for an operator."""
        for name, size in nbytes.items():
            self.records[name].state = "allocated"
            self.records[name].nbytes = size

    def stamp(self, created: dict[str, float | None], earliest: float, now: float) -> None:
        """Note when variables were allocated (for traces), once each, in job time.

        `created`: variable -> its segment's creation time (seconds since the Unix epoch),
        or None for one allocated just now. Kept within [earliest, now]: its producer's run.
        """
        for name, when in created.items():
            record = self.records[name]
            if record.allocated_at is not None or record.nbytes is None:
                continue
            at = now if when is None else when - self.epoch
            record.allocated_at = min(max(at, earliest), now)

    def observed(self, seen: dict[str, Observed]) -> None:
        """Record how a producer left its outputs."""
        for name, observed in seen.items():
            record = self.records[name]
            if observed.state == "missing":
                record.state = "missing"
                continue
            record.shape, record.nbytes = list(observed.shape), observed.nbytes
            record.state = "written" if observed.state == "complete" else observed.state

    def freed(self, names: list[str], stamp: Callable[[VariableRecord], None]) -> None:
        """Record variables just freed; `stamp(record)` sets the time and tells observers."""
        for name in names:
            record = self.records[name]
            if record.freed_at is None:
                record.state = "freed"
                stamp(record)

    def finish(self, ctx: Context | None) -> None:
        """Record the final shape and state of each variable not freed."""
        if ctx is not None:
            for name, record in self.records.items():
                if record.freed_at is not None:
                    continue
                try:
                    allocation = ctx.get(name)
                except NotFound:
                    continue
                with allocation:
                    state = allocation.state
                    record.shape, record.nbytes = list(allocation.shape), allocation.nbytes
                    record.state = "written" if state == "complete" else state
        for record in self.records.values():
            if record.state in ("allocated", "written") and self.keep:
                record.state = "kept"


def recycle_left(ctx: Context) -> None:
    """Free every variable still in the job's context, so that a context with a warm
    pool gives their memory back to it (a destroy would remove it)."""
    for name in ctx.names():
        if "--" in name:  # a variable's name, never the tally's
            try:
                ctx.get(name).free()
            except ClaraError:  # freed meanwhile, or still in use: the destroy decides
                continue
