"""Local commands for operators: `clara run --bind OPERATOR=COMMAND` and bindings files.

Most real Clara operators have no `container.command` (the image's entry-point runs), or
one that only makes sense inside their image (`python /app/main.py`). A binding gives
the local command instead; it runs like container.command would (in the pipeline file's
directory, declared container paths in its arguments replaced by local folders)::

    # bindings.yaml: operator: command (one string, split as a shell would, or a list)
    dicom-reader: python stand-ins/reader.py /input /output
    segmentation: [python, stand-ins/segment.py, --organ, liver]

A run refuses to start anything while an operator has no command (`require_commands`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from ..errors import InvalidArgument, NotFound
from ..records import Record
from .model import Operator, Pipeline


class Binding(Record):
    """A local command for one operator, and where it was given (for messages)."""

    operator: str
    argv: tuple[str, ...]
    origin: str  # "--bind NAME" or "FILE:LINE"


class Unbound(InvalidArgument):
    """Operators without a command: the run cannot start. `lines` name each one."""

    def __init__(self, operators: list[Operator]) -> None:
        self.operators = operators
        self.lines = [
            f"{op.command_origin}: operator '{op.name}' has no command "
            f"({'image ' + op.image_ref if op.image_ref else 'no image'})"
            for op in operators
        ]
        count = f"{len(operators)} operator{'s' if len(operators) != 1 else ''}"
        names = ", ".join(op.name for op in operators)
        super().__init__(
            f"{count} without a command ({names}): give each a local command with "
            "--bind OPERATOR=COMMAND or --bindings FILE; nothing was started"
        )


def parse_bind(text: str) -> Binding:
    """'OPERATOR=COMMAND' (COMMAND split as a shell would) as a Binding."""
    name, sep, command = text.partition("=")
    if not sep or not name.strip():
        raise InvalidArgument(f"invalid --bind {text!r}: use OPERATOR=COMMAND")
    return Binding(name.strip(), _split(command, f"--bind {name.strip()}"), f"--bind {name}")


def read_file(path: str) -> list[Binding]:
    """The bindings of a YAML file (operator: command); InvalidArgument with FILE:LINE."""
    from .textfile import read_text
    from .yamllines import Map, Seq
    from .yamllines import load as load_yaml

    data, problems = load_yaml(read_text(path, "bindings"))
    if problems:
        line, message = problems[0]
        raise InvalidArgument(f"{path}:{line}: {message}")
    if data is None:
        return []  # an empty file binds nothing
    if not isinstance(data, Map):
        raise InvalidArgument(f"{path}: bindings are a mapping of operator: command")
    found = []
    for name, value in data.items():
        origin = f"{path}:{data.key_lines.get(name, data.line)}"
        if isinstance(value, Seq):
            if not value or any(isinstance(a, (Map, Seq)) or a is None for a in value):
                raise InvalidArgument(f"{origin}: a command list holds plain values")
            argv = tuple(str(a) for a in value)
        elif isinstance(value, str):
            argv = _split(value, origin)
        else:
            raise InvalidArgument(f"{origin}: the command of {name} is a string or a list")
        found.append(Binding(str(name), argv, origin))
    return found


def apply(pipeline: Pipeline, bindings: Iterable[Binding]) -> Pipeline:
    """`pipeline` with each bound operator's command replaced (a later binding wins)."""
    commands: dict[str, Binding] = {}
    for binding in bindings:
        try:
            op = pipeline.operator(binding.operator)
        except NotFound:
            known = ", ".join(o.name for o in pipeline.operators)
            raise InvalidArgument(
                f"{binding.origin}: pipeline '{pipeline.name}' has no operator "
                f"'{binding.operator}' (operators: {known})"
            ) from None
        commands[op.name] = binding
    operators = tuple(
        op._replace(command=commands[op.name].argv, command_origin=commands[op.name].origin)
        if op.name in commands
        else op
        for op in pipeline.operators
    )
    return pipeline._replace(operators=operators)


def require_commands(pipeline: Pipeline) -> None:
    """Unbound (exit code 2) listing every operator without a command, if any."""
    unbound = [op for op in pipeline.operators if not op.command]
    if unbound:
        raise Unbound(unbound)


def _split(command: str, origin: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise InvalidArgument(f"{origin}: cannot split the command: {exc}") from None
    if not argv:
        raise InvalidArgument(f"{origin}: the command is empty")
    return argv
