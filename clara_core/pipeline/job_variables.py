"""The runner's bookkeeping of a job's shared-memory variables, from allocation to free.

Each output in shared memory is one variable, published in the job's context as
``<operator>--<output>``. The runner allocates static ones just before their producer
starts, checks after the producer exits that each was written as declared, and frees
each one as soon as its last consumer is done (unless the job keeps them).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..allocation import Allocation
from ..context import Context
from ..errors import NotFound
from .model import DISK, SHARED_MEMORY, Operator, Pipeline
from .operator_io import local_path
from .results import VariableRecord
from .schema import shapes_match


class JobVariables:
    """Every shared-memory variable of one job, and the runner's reference to each."""

    def __init__(self, pipeline: Pipeline, keep: bool) -> None:
        self.pipeline = pipeline
        self.keep = keep
        self.refs: dict[str, Allocation] = {}  # the runner's own reference to each variable
        self.records: dict[str, VariableRecord] = {}
        self.waiting_for: dict[str, set[str]] = {}  # variable -> consumers not yet done
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
                self.waiting_for[name] = set(consumers)

    def prepare_outputs(self, ctx: Context, op: Operator) -> None:
        """Pre-allocate static shared-memory outputs; create disk output directories."""
        for port in op.outputs:
            if port.medium == DISK:
                if port.path:
                    os.makedirs(local_path(self.pipeline, port.path), exist_ok=True)
                continue
            if port.is_dynamic or port.shape is None:
                continue
            name = self.pipeline.allocation_name(op, port)
            allocation = ctx.create(dtype=port.element_type, shape=port.shape)
            try:
                allocation.publish(name)
            except BaseException:
                allocation.release()
                raise
            self.refs[name] = allocation
            self.records[name].state = "allocated"
            self.records[name].nbytes = allocation.nbytes

    def check_outputs(self, ctx: Context, op: Operator) -> str:
        """Every shared-memory output someone reads exists, as declared, completely written.

        Returns the problems found ('' if none).
        """
        problems = []
        for port in op.outputs:
            if port.medium != SHARED_MEMORY:
                continue
            name = self.pipeline.allocation_name(op, port)
            record = self.records[name]
            try:  # a fresh reference: it sees the layout as the producer left it
                allocation = ctx.get(name)
            except NotFound:
                record.state = "missing"
                if record.consumers:
                    problems.append(f"exited 0 but never allocated output '{port.name}'")
                continue
            old = self.refs.pop(name, None)
            if old is not None:
                old.release()
            self.refs[name] = allocation
            state = self._record(record, allocation)
            if not record.consumers:
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
        return "; ".join(problems)

    def release_after(self, op: Operator, freed: Callable[[VariableRecord], None]) -> None:
        """Free each variable whose last consumer `op` was, and its outputs nobody reads.

        `freed(record)` is called with the time still to be stamped by the caller.
        """
        names = [
            self.pipeline.allocation_name(*self.pipeline.producer(port))
            for port in op.inputs
            if port.medium == SHARED_MEMORY and port.source is not None
        ]
        names += [
            self.pipeline.allocation_name(op, port)
            for port in op.outputs
            if port.medium == SHARED_MEMORY
        ]
        for name in names:
            waiting = self.waiting_for[name]
            waiting.discard(op.name)
            if not waiting and not self.keep:
                self._free(name, freed)

    def _free(self, name: str, freed: Callable[[VariableRecord], None]) -> None:
        allocation = self.refs.pop(name, None)
        record = self.records[name]
        if allocation is None or record.freed_at is not None:
            return
        allocation.free()
        record.state = "freed"
        freed(record)

    def finish(self, ctx: Context | None) -> None:
        """Record each variable's final shape and state, then drop every reference."""
        if ctx is not None:
            for name, record in self.records.items():
                if record.freed_at is not None:
                    continue
                try:
                    allocation = self.refs.get(name) or ctx.get(name)
                except NotFound:
                    continue
                self.refs[name] = allocation
                self._record(record, allocation)
        for name, allocation in list(self.refs.items()):
            allocation.release()
            self.refs.pop(name)
        for record in self.records.values():
            if record.state in ("allocated", "written") and self.keep:
                record.state = "kept"

    @staticmethod
    def _record(record: VariableRecord, allocation: Allocation) -> str:
        """Copy the allocation's shape and state into its record; returns the state."""
        record.shape, record.nbytes = list(allocation.shape), allocation.nbytes
        state = allocation.state
        record.state = "written" if state == "complete" else state
        return state
