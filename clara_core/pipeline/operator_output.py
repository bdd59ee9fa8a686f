"""Operators' output as the runner shows it: line by line, the last lines of each kept.

lines = OutputLines(on_line)     # on_line(operator, line) for each complete line
lines.feed("seg", data)          # bytes read from its pipe, as they come
lines.end("seg")                 # end of its output: the rest is a line too
lines.tail("seg")                # its last TAIL_LINES lines
"""

from __future__ import annotations

import collections
from collections.abc import Callable

TAIL_LINES = 40
MAX_LINE = 65536  # bytes of an operator's output line kept before it is shown anyway


class OutputLines:
    """Split each operator's output into lines (UTF-8, undecodable bytes replaced)."""

    def __init__(self, on_line: Callable[[str, str], None]) -> None:
        self.on_line = on_line
        self.partial: dict[str, bytes] = {}
        self.tails: dict[str, collections.deque[str]] = {}

    def feed(self, name: str, data: bytes) -> None:
        """Show every line `data` completes; keep the rest for the next call."""
        lines = (self.partial.pop(name, b"") + data).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:  # no newline in sight: show what came so far
            lines.append(rest)
            rest = b""
        self.partial[name] = rest
        for raw in lines:
            self._line(name, raw)

    def end(self, name: str) -> None:
        """The output of `name` has ended: what is left is its last line."""
        rest = self.partial.pop(name, b"")
        if rest:
            self._line(name, rest)

    def tail(self, name: str) -> list[str]:
        """The last lines of `name` (none if it never wrote)."""
        return list(self.tails.get(name, ()))

    def _line(self, name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.tails.setdefault(name, collections.deque(maxlen=TAIL_LINES)).append(line)
        self.on_line(name, line)
