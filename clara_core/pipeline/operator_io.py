"""Where an operator's declared inputs and outputs live in a local run, and what it is
told about them (its `CLARA_IO`, see `environment`).

A declared path is a *container* path: Clara mounts a volume there. Locally each one is
a folder of the job directory (`jobdir`), never the path itself:

    output (named)          JOB/operators/<op>/<name>/
    output (unnamed)        JOB/operators/<op>/<last part of its path, e.g. output>/
    input with `from`       the folder of the upstream output it reads
    input without `from`    JOB/payload/

as Clara would mount them. Shared-memory ports have no path: they live in the context.
"""

from __future__ import annotations

import posixpath
import re

from ..records import Record
from .environment import Declared, JobPlan, OperatorIO
from .jobdir import JobDirectory
from .model import SHARED_MEMORY, Operator, Pipeline, Port

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class DiskPath(Record):
    """One declared disk input or output of an operator and its folder in the job."""

    direction: str  # "input" or "output"
    port: Port
    local: str

    @property
    def container(self) -> str:
        """The declared (container) path."""
        return self.port.path or ""


def output_folder(op: Operator, port: Port) -> str:
    """The folder name of one output of `op`: its name, or for the unnamed one its path's
    last part (kept apart from every named output)."""
    if port.name:
        return port.name
    base = _UNSAFE.sub("_", posixpath.basename(posixpath.normpath(port.path or "")))
    if base in ("", ".", ".."):
        base = "output"
    taken = {p.name.lower() for p in op.outputs if p.name}
    while base.lower() in taken:
        base += "-unnamed"
    return base


def disk_paths(pipeline: Pipeline, op: Operator, job: JobDirectory) -> list[DiskPath]:
    """Every declared disk port of `op` with its local folder, inputs first."""
    found = []
    for port in op.inputs:
        if port.medium == SHARED_MEMORY or not port.path:
            continue
        if port.source is None:
            local = job.payload
        else:
            producer, output = pipeline.producer(port)
            local = job.output_dir(producer.name, output_folder(producer, output))
        found.append(DiskPath("input", port, local))
    for port in op.outputs:
        if port.medium != SHARED_MEMORY and port.path:
            found.append(DiskPath("output", port, job.output_dir(op.name, output_folder(op, port))))
    return found


def describe_operator(
    pipeline: Pipeline, op: Operator, context: str, job_id: str, job: JobDirectory
) -> OperatorIO:
    """What `op` learns about itself in CLARA_IO, for a run using `context` and `job`."""
    local = {id(d.port): d.local for d in disk_paths(pipeline, op, job)}

    def declared(direction: str, port: Port) -> Declared:
        allocation = None
        if port.medium == SHARED_MEMORY:
            producer, output = (op, port) if port.source is None else pipeline.producer(port)
            allocation = pipeline.allocation_name(producer, output)
        return Declared(
            direction,
            port.name,
            port.type,
            port.element_type,
            port.shape,
            port.source,
            allocation,
            local.get(id(port)),
            port.path if port.medium != SHARED_MEMORY else None,
        )

    return OperatorIO(
        job_id,
        pipeline.name,
        op.name,
        context,
        tuple(declared("input", p) for p in op.inputs),
        tuple(declared("output", p) for p in op.outputs),
        job.payload,
    )


def job_plan(pipeline: Pipeline) -> JobPlan:
    """The plan every operator of a job of `pipeline` shares (see `JobPlan`)."""
    readers = {}
    for op in pipeline.operators:
        for port in op.outputs:
            if port.medium == SHARED_MEMORY and port.name:
                consumers = {c.name.lower() for c, _ in pipeline.consumers(op, port)}
                readers[pipeline.allocation_name(op, port)] = len(consumers)
    return JobPlan(tuple(op.name for op in pipeline.order()), readers)
