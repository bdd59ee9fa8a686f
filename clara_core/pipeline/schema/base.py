"""What every rule of the schema shares: where problems go, and small checks of a mapping."""

from __future__ import annotations

from ...errors import InvalidArgument
from ...names import validate_name
from ..model import Problem
from ..yamllines import Map, Seq

TYPED = (0, 5, 0)


class RuleBase:
    """Collects problems (with their lines) while the YAML tree is read."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.version = TYPED

    def report(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def unknown_keys(self, data: Map, known: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in known:
                self.report(
                    data.key_lines.get(key, data.line),
                    f"unknown key {key!r} in {where} (known: {', '.join(known)})",
                )

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
