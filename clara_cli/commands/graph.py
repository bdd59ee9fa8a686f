"""`clara graph FILE [--format mermaid|dot]`: the operator DAG, each edge a variable.

The edges come from `clara_core.pipeline.graph` as plain data; this module only writes
them as Mermaid (renders on GitHub and in most Markdown viewers) or Graphviz DOT.
Shared-memory variables are solid arrows labelled `name: element-type[shape]` (dynamic
dimensions as `?`); variables on disk are dashed, and files nobody in the job reads or
writes are drawn as cylinders named by their path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from clara_core.pipeline.graph import Edge
    from clara_core.pipeline.model import Pipeline

FORMATS = ("mermaid", "dot")


@click.command("graph", short_help="Draw a pipeline's operators and variables (Mermaid, DOT).")
@click.argument("file", metavar="FILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="mermaid",
    show_default=True,
    help="Mermaid (for Markdown) or DOT (for Graphviz: `| dot -Tsvg > g.svg`).",
)
def graph(file: str, fmt: str) -> None:
    """Draw the operators of pipeline FILE and the variables between them."""
    from clara_core.pipeline.graph import edges
    from clara_core.pipeline.loading import load

    pipeline = load(file)
    draw = mermaid if fmt == "mermaid" else dot
    click.echo(draw(pipeline, edges(pipeline)), nl=False)


def label(edge: Edge) -> str:
    """`volume: float32[?, 128, 128]`; on disk `scans: dicom on disk` (and its path
    between two operators: a file node names it otherwise)."""
    if edge.on_disk or edge.shape is None:
        between = edge.source is not None and edge.target is not None
        where = f" ({edge.path})" if edge.path and between else ""
        return f"{edge.name}: {edge.element_type} on disk{where}"
    dims = ", ".join("?" if d is None else str(d) for d in edge.shape)
    return f"{edge.name}: {edge.element_type}[{dims}]"


class _Nodes:
    """Stable ids for operators (n0, n1, ...) and for files (f0, f1, ...)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.operators = {op.name: f"n{i}" for i, op in enumerate(pipeline.order())}
        self.files: dict[str, str] = {}

    def of(self, operator: str | None, edge: Edge) -> tuple[str, bool]:
        """(id, is_new_file) of an edge's end: an operator, else the edge's file."""
        if operator is not None:
            return self.operators[operator], False
        key = edge.path or edge.name
        if key in self.files:
            return self.files[key], False
        self.files[key] = f"f{len(self.files)}"
        return self.files[key], True

    def walk(self, edges: list[Edge]) -> Iterator[tuple[Edge, str, str, list[str]]]:
        """Each edge with its source and target ids, and the file nodes it draws first."""
        for edge in edges:
            (source, new_source), (target, new_target) = (
                self.of(edge.source, edge),
                self.of(edge.target, edge),
            )
            files = [node for node, new in ((source, new_source), (target, new_target)) if new]
            yield edge, source, target, files


def mermaid(pipeline: Pipeline, edges: list[Edge]) -> str:
    """A Mermaid flowchart, left to right."""

    def text(value: str) -> str:
        return '"' + value.replace('"', "#quot;") + '"'

    nodes = _Nodes(pipeline)
    lines = ["flowchart LR"]
    lines += [f"    {node}[{text(name)}]" for name, node in nodes.operators.items()]
    for edge, source, target, files in nodes.walk(edges):
        lines += [f"    {node}[({text(edge.path or edge.name)})]" for node in files]
        arrow = "-.->" if edge.on_disk else "-->"
        lines.append(f"    {source} {arrow}|{text(label(edge))}| {target}")
    return "\n".join(lines) + "\n"


def dot(pipeline: Pipeline, edges: list[Edge]) -> str:
    """A Graphviz digraph, left to right."""

    def text(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    nodes = _Nodes(pipeline)
    lines = [
        f"digraph {text(pipeline.name)} {{",
        "    rankdir=LR;",
        "    node [shape=box, style=rounded];",
    ]
    lines += [f"    {node} [label={text(name)}];" for name, node in nodes.operators.items()]
    for edge, source, target, files in nodes.walk(edges):
        file_label = text(edge.path or edge.name)
        lines += [f"    {node} [shape=cylinder, label={file_label}];" for node in files]
        style = ", style=dashed" if edge.on_disk else ""
        lines.append(f"    {source} -> {target} [label={text(label(edge))}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
