"""Where an operator's declared inputs and outputs live in a local run, and what it is
told about them (its `CLARA_IO`, see `environment`)."""

from __future__ import annotations

import os

from .environment import Declared, JobPlan, OperatorIO
from .model import SHARED_MEMORY, Operator, Pipeline, Port


def local_path(pipeline: Pipeline, path: str) -> str:
    """Where a declared disk path lives here: relative paths start at the pipeline file.

    There are no containers to mount volumes into, so an input with `from` is simply
    given its producer's output path (see describe_operator).
    """
    return os.path.normpath(os.path.join(pipeline.directory, os.path.expanduser(path)))


def describe_operator(pipeline: Pipeline, op: Operator, context: str, job_id: str) -> OperatorIO:
    """What `op` learns about itself in CLARA_IO, for a run using `context`."""

    def declared(direction: str, port: Port) -> Declared:
        allocation = path = None
        producer, output = op, port
        if port.source is not None:
            producer, output = pipeline.producer(port)
        if port.medium == SHARED_MEMORY:
            allocation = pipeline.allocation_name(producer, output)
        elif output.path:
            path = local_path(pipeline, output.path)
        return Declared(
            direction,
            port.name,
            port.type,
            port.element_type,
            port.shape,
            port.source,
            allocation,
            path,
        )

    return OperatorIO(
        job_id,
        pipeline.name,
        op.name,
        context,
        tuple(declared("input", p) for p in op.inputs),
        tuple(declared("output", p) for p in op.outputs),
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
