"""Rules across operators: every `from` names a compatible upstream output; no cycles."""

from __future__ import annotations

from ...dtypes import shapes_match
from ..model import SHARED_MEMORY, STREAM, Operator, Port, selected_output
from .base import RuleBase


class GraphRules(RuleBase):
    """Checks the edges between operators once every operator has been read."""

    def links(self, operators: list[Operator]) -> None:
        by_name = {op.name.lower(): op for op in operators}
        for op in operators:
            for port in op.inputs:
                if port.source is None:
                    continue
                producer = by_name.get(port.source.lower())
                if producer is None and port.source.lower() in self.broken_operators:
                    continue  # already reported where it is declared
                if producer is None:
                    known = ", ".join(o.name for o in operators)
                    self.report(
                        port.line,
                        f"input {port.describe()} of '{op.name}' comes from operator "
                        f"'{port.source}', which does not exist (operators: {known})",
                    )
                    continue
                self.link(op, port, producer)

    def link(self, op: Operator, port: Port, producer: Operator) -> None:
        output = selected_output(producer, port.name)
        if output is None and (port.name or "").lower() in self.broken.get(
            producer.name.lower(), ()
        ):
            return  # that output has its own problem, reported at its line
        if output is None:
            outputs = ", ".join(o.describe() for o in producer.outputs) or "none"
            self.report(
                port.line,
                f"input {port.describe()} of '{op.name}': operator '{producer.name}' has no "
                f"output {port.describe()} (its outputs: {outputs})",
            )
            return
        what = f"input {port.describe()} of '{op.name}'"
        theirs = f"output {output.describe()} of '{producer.name}'"
        if port.medium != output.medium:
            self.report(
                port.line, f"{what} is {port.medium} ({port.type}) but {theirs} is {output.medium}"
            )
            return
        if port.type == STREAM:
            if (port.element_type or "").lower() != (output.element_type or "").lower():
                self.report(
                    port.line,
                    f"{what} expects element-type {port.element_type} but {theirs} "
                    f"is {output.element_type}",
                )
            return
        if port.element_type != output.element_type:
            self.report(
                port.line,
                f"{what} has element type {port.element_type} but {theirs} "
                f"is {output.element_type}",
            )
        if not shapes_match(port.shape or (), output.shape or ()):
            self.report(
                port.line,
                f"{what} has shape {list(port.shape or ())} but {theirs} has shape "
                f"{list(output.shape or ())} (-1 or 0 matches any size)",
            )

    def cycles(self, operators: list[Operator]) -> None:
        by_name = {op.name.lower(): op for op in operators}
        upstream = {
            key: [u.lower() for u in op.upstream if u.lower() in by_name]
            for key, op in by_name.items()
        }
        done: set[str] = set()
        reported: set[str] = set()
        for key in by_name:
            if key in reported:
                continue
            path = _cycle_through(key, upstream, done)
            done.add(key)
            if path:
                reported.update(path)
                names = " -> ".join(by_name[k].name for k in [*path, key])
                self.report(by_name[key].line, f"operators form a cycle: {names}")

    def has_typed_io(self, operators: list[Operator]) -> bool:
        return any(p.medium == SHARED_MEMORY for op in operators for p in op.inputs + op.outputs)


def _cycle_through(start: str, upstream: dict[str, list[str]], done: set[str]) -> list[str]:
    """Operators along a cycle through `start`, in data-flow order from `start`, or [].

    Walks upstream edges (who reads from whom); `done` holds operators known to be on no
    cycle, which need no second look.
    """
    stack: list[list[str]] = [[start]]
    seen = {start}
    while stack:
        path = stack.pop()
        for parent in upstream[path[-1]]:
            if parent == start:  # start <- path[1] <- ... <- path[-1] <- start
                return [start, *reversed(path[1:])]
            if parent not in seen and parent not in done:
                seen.add(parent)
                stack.append([*path, parent])
    return []
