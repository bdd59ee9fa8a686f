"""The operator DAG as plain edges, for drawing (`clara graph` renders them).

Every edge carries one variable: its name, element type and shape (dynamic dimensions as
None), and whether it travels in shared memory or on disk. Disk outputs nobody reads and
job inputs without `from` are edges to or from a file node (`path`), so nothing declared
is left out of the picture.
"""

from __future__ import annotations

from ..records import Record
from .environment import DISK
from .model import Pipeline, Port


class Edge(Record):
    """One variable flowing from `source` to `target` (an operator, or None for a file)."""

    source: str | None
    target: str | None
    name: str
    element_type: str
    shape: tuple[int | None, ...] | None  # None on disk; a dynamic dimension is None
    medium: str  # "shared-memory" or "disk"
    path: str | None = None  # disk only

    @property
    def on_disk(self) -> bool:
        """Whether this variable travels through a file or directory."""
        return self.medium == DISK


def edges(pipeline: Pipeline) -> list[Edge]:
    """Every edge of `pipeline`, in declaration order of the consuming operators."""
    found: list[Edge] = []
    read: set[tuple[str, str]] = set()
    for op in pipeline.operators:
        for port in op.inputs:
            if port.source is None:
                found.append(_edge(None, op.name, port))
                continue
            producer, output = pipeline.producer(port)
            read.add((producer.name.lower(), (output.name or "").lower()))
            found.append(_edge(producer.name, op.name, output))
    for op in pipeline.operators:  # results written to disk for whoever comes after the job
        for port in op.outputs:
            unread = (op.name.lower(), (port.name or "").lower()) not in read
            if port.medium == DISK and unread:
                found.append(_edge(op.name, None, port))
    return found


def _edge(source: str | None, target: str | None, port: Port) -> Edge:
    shape = None
    if port.shape is not None:
        shape = tuple(d if d > 0 else None for d in port.shape)
    return Edge(
        source,
        target,
        port.name or "",
        port.element_type or port.type,
        shape,
        port.medium,
        port.path,
    )
