"""What every rule of the schema shares: where problems go, and small checks of a mapping."""

from __future__ import annotations

from ...errors import InvalidArgument
from ...names import validate_name
from ..model import ERROR, NOTE, WARNING, Problem
from ..yamllines import Map, Seq

TYPED = (0, 5, 0)
IMPORT = "import"


class RuleBase:
    """Collects problems (with their lines) while the YAML tree is read."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.version = TYPED
        # What could not be read, so that no follow-on error is reported about it:
        self.broken_operators: set[str] = set()  # operators with a name but other errors
        self.broken: dict[str, set[str]] = {}  # operator -> its outputs that failed
        self.broken_ports: set[str] = set()  # the current operator's failed ports

    def report(self, line: int, message: str, severity: str = ERROR, topic: str = "") -> None:
        self.problems.append(Problem(self.file, line, message, severity, topic))

    def warn(self, line: int, message: str, topic: str = "") -> None:
        """Valid Clara that a local run cannot do as written."""
        self.report(line, message, WARNING, topic)

    def note(self, line: int, message: str, topic: str = "") -> None:
        """Valid Clara that a local run ignores."""
        self.report(line, message, NOTE, topic)

    def unknown_keys(self, data: Map, known: tuple[str, ...], where: str) -> None:
        """Report keys not in `known`; a near miss of an absent key is read as that key.

        `contianer:` says "did you mean 'container'?" and is then read as `container`,
        so one typo gives one message instead of a cascade ("has no container", ...).
        """
        for key in list(data):
            if key in known:
                continue
            line = data.key_lines.get(key, data.line)
            if key == IMPORT:
                self.report(
                    line,
                    "import (document linking of api-version 0.2.0) is not supported: "
                    "write the imported definition here instead",
                )
                continue
            import difflib  # only for an unknown key (with heapq: ~1 ms of `clara run`)

            absent = [k for k in known if k not in data]
            match = difflib.get_close_matches(str(key), absent, n=1, cutoff=0.75)
            if match:
                self.report(line, f"unknown key {key!r} in {where}: did you mean {match[0]!r}?")
                data.rename(key, match[0])
            else:
                self.report(line, f"unknown key {key!r} in {where} (known: {', '.join(known)})")

    def name(self, data: Map, key: str, what: str, required: bool) -> str | None:
        if key not in data or data[key] is None:
            if required:
                self.report(data.line, f"missing {what}")
            return None
        value = data[key]
        try:
            return validate_name(value if isinstance(value, str) else text_of(value), what)
        except InvalidArgument as exc:
            self.report(data.line_of(key), str(exc))
            return None

    def scalar_text(self, data: Map, key: str) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if isinstance(value, (Map, Seq)):
            self.report(data.line_of(key), f"{key} must be a plain value")
            return ""
        return text_of(value)


def text_of(value: object) -> str:
    """A YAML scalar as text (booleans as true/false, as YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
