"""The rules of Clara's pipeline language, checked all at once with line numbers.

`parse(text, file)` never stops at the first problem: every rule runs over everything
it can still make sense of, so one `clara validate` lists every mistake. Rules:

- known keys only, at every level; names follow Clara's rule and are unique
  (case-insensitively) among operators, and among one operator's inputs and outputs;
- api-version 0.4.0 (untyped: disk I/O with `path` only) or later; typed I/O needs 0.5.0
  and the Clara orchestrator; `models` needs 0.6.0;
- types per Clara's table: `array` needs `element-type` (one of the 11 primitives) and a
  `shape`; `string` and primitives take neither; `stream` takes a free `element-type`
  label and needs a `path`; only streams have paths;
- an input's `from` names an existing operator with an output of the input's `name`, of
  the same medium, element type and a compatible shape (-1 and 0 match any size);
- no cycles.
"""

from __future__ import annotations

import re
from typing import Any

from .dtypes import CLARA_PRIMITIVES, declared_shape, element_type
from .errors import InvalidArgument
from .names import validate_name
from .operator_env import env_suffix
from .pipeline import (
    ARRAY,
    SHARED_MEMORY,
    STREAM,
    STRING,
    Operator,
    Pipeline,
    Port,
    Problem,
    version_tuple,
)
from .yamllines import Map, Seq
from .yamllines import load as load_yaml

TOP_KEYS = ("api-version", "name", "orchestrator", "operators", "parameters", "pull-secrets")
OPERATOR_KEYS = (
    "name",
    "description",
    "container",
    "variables",
    "input",
    "output",
    "parameters",
    "requests",
    "models",
    "services",
)
CONTAINER_KEYS = ("image", "tag", "command")
INPUT_KEYS = ("from", "name", "type", "element-type", "shape", "path")
OUTPUT_KEYS = ("name", "type", "element-type", "shape", "path")
ORCHESTRATORS = ("Clara", "Argo")
OLDEST, TYPED, MODELS = (0, 4, 0), (0, 5, 0), (0, 6, 0)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(text: str, file: str) -> tuple[Pipeline | None, list[Problem]]:
    """Validate pipeline YAML; returns (pipeline, []) or (None or partial, problems)."""
    data, raw_problems = load_yaml(text)
    rules = _Rules(file)
    for line, message in raw_problems:
        rules.report(line, message)
    pipeline = rules.pipeline(data) if data is not None or not raw_problems else None
    problems = sorted(rules.problems, key=lambda p: p.line)
    return (pipeline if not problems else None), problems


class _Rules:
    """Collects problems while turning the YAML tree into dataclasses."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.version = TYPED

    def report(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    # -- the document -------------------------------------------------------------------

    def pipeline(self, data: Any) -> Pipeline | None:
        if not isinstance(data, Map):
            self.report(
                getattr(data, "line", 1),
                "a pipeline is a mapping with api-version, name and operators",
            )
            return None
        self.unknown_keys(data, TOP_KEYS, "pipeline")
        version = self.api_version(data)
        orchestrator = self.orchestrator(data)
        name = self.name(data, "name", "pipeline name", required=True)
        operators = self.operators(data)
        if self.version >= TYPED and orchestrator == "Argo" and self.has_typed_io(operators):
            self.report(
                data.line_of("orchestrator"),
                "typed (shared-memory) I/O needs the Clara orchestrator, not Argo",
            )
        self.links(operators)
        self.cycles(operators)
        return Pipeline(name or "", version, tuple(operators), self.file, orchestrator)

    def api_version(self, data: Map) -> str:
        if "api-version" not in data:
            self.report(data.line, "missing api-version (e.g. api-version: 0.5.0)")
            return ".".join(map(str, TYPED))
        text = str(data["api-version"])
        try:
            self.version = version_tuple(text)
        except InvalidArgument as exc:
            self.report(data.line_of("api-version"), str(exc))
            return ".".join(map(str, TYPED))
        if self.version < OLDEST:
            self.report(
                data.line_of("api-version"),
                f"api-version {text} is not supported: clara reads 0.4.0 and later",
            )
        return text

    def orchestrator(self, data: Map) -> str | None:
        if "orchestrator" not in data:
            return None
        value = str(data["orchestrator"])
        for known in ORCHESTRATORS:
            if value.lower() == known.lower():
                return known
        self.report(
            data.line_of("orchestrator"),
            f"unknown orchestrator {value!r}: use {' or '.join(ORCHESTRATORS)}",
        )
        return None

    def operators(self, data: Map) -> list[Operator]:
        items = data.get("operators")
        if not isinstance(items, Seq) or not items:
            self.report(data.line_of("operators"), "operators must be a non-empty list")
            return []
        operators: list[Operator] = []
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            op = self.operator(item, items.line_of(index))
            if op is None:
                continue
            key = op.name.lower()
            if key in first:
                self.report(
                    op.line, f"duplicate operator name '{op.name}' (first on line {first[key]})"
                )
                continue
            first[key] = op.line
            operators.append(op)
        return operators

    # -- one operator -------------------------------------------------------------------

    def operator(self, item: Any, line: int) -> Operator | None:
        if not isinstance(item, Map):
            self.report(line, "an operator is a mapping with name, container, input, output")
            return None
        self.unknown_keys(item, OPERATOR_KEYS, "operator")
        name = self.name(item, "name", "operator name", required=True)
        where = f"operator '{name}'" if name else "operator"
        if "models" in item and self.version < MODELS:
            self.report(item.line_of("models"), "models need api-version 0.6.0 or later")
        container = item.get("container")
        command: tuple[str, ...] = ()
        image = tag = ""
        if not isinstance(container, Map):
            self.report(
                item.line_of("container"),
                f"{where} needs a container with a command (the local runner runs it)",
            )
        else:
            self.unknown_keys(container, CONTAINER_KEYS, "container")
            image = self.scalar_text(container, "image")
            tag = self.scalar_text(container, "tag")
            command = self.command(container, where)
        variables = self.variables(item)
        inputs = self.ports(item, "input", where)
        outputs = self.ports(item, "output", where)
        self.port_names(inputs + outputs, where)
        if name is None:
            return None
        description = self.scalar_text(item, "description")
        return Operator(
            name, command, inputs, outputs, variables, description, image, tag, item.line
        )

    def command(self, container: Map, where: str) -> tuple[str, ...]:
        value = container.get("command")
        line = container.line_of("command")
        if value is None:
            self.report(line, f"{where} has no container.command: the local runner needs one")
            return ()
        if not isinstance(value, Seq) or not value:
            self.report(line, "command must be a non-empty list (argv), e.g. [python, main.py]")
            return ()
        argv = []
        for index, arg in enumerate(value):
            if isinstance(arg, (Map, Seq)) or arg is None:
                self.report(value.line_of(index), "command arguments must be plain values")
            else:
                argv.append(_text(arg))
        return tuple(argv)

    def variables(self, item: Map) -> dict[str, str]:
        value = item.get("variables")
        if value is None:
            return {}
        if not isinstance(value, Map):
            self.report(item.line_of("variables"), "variables must be a mapping NAME: value")
            return {}
        result = {}
        for key, val in value.items():
            line = value.line_of(key)
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                self.report(line, f"invalid variable name {key!r}: use an environment name")
            elif isinstance(val, (Map, Seq)):
                self.report(line, f"variable {key} must be a plain value, not a list or mapping")
            else:
                result[key] = _text(val)
        return result

    # -- inputs and outputs -------------------------------------------------------------

    def ports(self, item: Map, direction: str, where: str) -> tuple[Port, ...]:
        value = item.get(direction)
        if value is None:
            return ()
        if not isinstance(value, Seq):
            self.report(item.line_of(direction), f"{direction} must be a list")
            return ()
        ports = []
        for index, entry in enumerate(value):
            port = self.port(entry, value.line_of(index), direction, where)
            if port is not None:
                ports.append(port)
        unnamed = [p for p in ports if p.name is None]
        if len(unnamed) > 1:
            self.report(unnamed[1].line, f"{where} has more than one unnamed {direction}")
        return tuple(ports)

    def port(self, entry: Any, line: int, direction: str, where: str) -> Port | None:
        if not isinstance(entry, Map):
            self.report(line, f"each {direction} is a mapping (name, type, ...)")
            return None
        keys = INPUT_KEYS if direction == "input" else OUTPUT_KEYS
        self.unknown_keys(entry, keys, direction)
        name = self.name(entry, "name", f"{direction} name", required=False)
        source = None
        if "from" in entry:
            source = self.name(entry, "from", "operator name in from", required=False)
        label = f"{direction} '{name}'" if name else f"{direction} of {where}"
        kind = self.port_type(entry, label)
        if kind is None:
            return None
        if kind == STREAM:
            port = self.disk_port(entry, name, source, label)
        else:
            port = self.memory_port(entry, kind, name, source, label)
        if port is None:
            return None
        if direction == "output" and "name" not in entry and self.version >= TYPED:
            self.report(entry.line, f"an output of {where} has no name (needed since 0.5.0)")
        if direction == "input" and port.medium == SHARED_MEMORY:
            if source is None and "from" not in entry:
                self.report(
                    entry.line,
                    f"{label} is in shared memory and needs `from` (an upstream operator); "
                    "only disk inputs come from the job's payload",
                )
            if "name" not in entry:
                self.report(entry.line, f"{label} needs the name of the upstream output")
        return Port(name, port.type, port.element_type, port.shape, port.path, source, entry.line)

    def port_type(self, entry: Map, label: str) -> str | None:
        """The normalised type: stream, array, string or a primitive's long name."""
        if "type" not in entry:
            if self.version < TYPED or "path" in entry:
                return STREAM
            self.report(entry.line, f"{label} has no type (array, string, stream or a primitive)")
            return None
        raw = str(entry["type"]).strip()
        line = entry.line_of("type")
        kind = raw.lower()
        if kind not in (ARRAY, STRING, STREAM):
            try:
                etype = element_type(kind)
            except InvalidArgument:
                etype = None
            if etype is None or etype.name not in CLARA_PRIMITIVES:
                self.report(
                    line,
                    f"unknown type {raw!r}: use array, string, stream, or one of "
                    f"{', '.join(CLARA_PRIMITIVES)}",
                )
                return None
            kind = etype.name
        if kind != STREAM and self.version < TYPED:
            self.report(line, f"type {raw} needs api-version 0.5.0 or later (typed pipelines)")
            return None
        return kind

    def disk_port(self, entry: Map, name: str | None, source: str | None, label: str) -> Port:
        if "shape" in entry:
            self.report(entry.line_of("shape"), f"{label} is a stream: it has no shape")
        path = None
        if "path" not in entry or entry["path"] in (None, ""):
            self.report(entry.line_of("path"), f"{label} is on disk (stream) and needs a path")
        elif isinstance(entry["path"], (Map, Seq)):
            self.report(entry.line_of("path"), "path must be a plain string")
        else:
            path = _text(entry["path"])
        label_text = None
        if "element-type" in entry and entry["element-type"] is not None:
            label_text = _text(entry["element-type"])
        elif "type" in entry:
            self.report(entry.line, f"{label} is a stream and needs an element-type label")
        return Port(name, STREAM, label_text, None, path, source)

    def memory_port(
        self, entry: Map, kind: str, name: str | None, source: str | None, label: str
    ) -> Port | None:
        if "path" in entry:
            self.report(
                entry.line_of("path"), f"{label} is in shared memory: only streams have a path"
            )
        if kind != ARRAY:
            for key in ("element-type", "shape"):
                if key in entry:
                    self.report(entry.line_of(key), f"{label} of type {kind} takes no {key}")
            if kind == STRING:
                return Port(name, STRING, "uint8", (-1,), None, source)
            return Port(name, kind, kind, (1,), None, source)
        etype = None
        if "element-type" not in entry:
            self.report(entry.line, f"{label} is an array and needs an element-type")
        else:
            raw = str(entry["element-type"])
            try:
                etype = element_type(raw).name
            except InvalidArgument:
                etype = None
            if etype not in CLARA_PRIMITIVES:
                self.report(
                    entry.line_of("element-type"),
                    f"unknown element-type {raw!r}: use one of {', '.join(CLARA_PRIMITIVES)} "
                    "(or u8..u64, i8..i64, f16, f32, f64)",
                )
                etype = None
        shape = None
        if "shape" not in entry:
            self.report(entry.line, f"{label} is an array and needs a shape, e.g. [3, -1]")
        else:
            value = entry["shape"]
            try:
                if not isinstance(value, Seq):
                    raise InvalidArgument(f"invalid shape {value!r}: use a list such as [3, -1]")
                shape = declared_shape(list(value))
            except InvalidArgument as exc:
                self.report(entry.line_of("shape"), str(exc))
        if etype is None or shape is None:
            return None
        return Port(name, ARRAY, etype, shape, None, source)

    def port_names(self, ports: tuple[Port, ...], where: str) -> None:
        first: dict[str, int] = {}
        env_first: dict[str, str] = {}
        for port in ports:
            if port.name is None:
                continue
            key = port.name.lower()
            if key in first:
                self.report(
                    port.line,
                    f"{where} declares '{port.name}' twice (first on line {first[key]}); "
                    "inputs and outputs of one operator need distinct names",
                )
                continue
            first[key] = port.line
            if port.medium != SHARED_MEMORY:
                env = env_suffix(port.name)
                if env in env_first:
                    self.report(
                        port.line,
                        f"disk I/O '{port.name}' and '{env_first[env]}' of {where} would share "
                        f"the environment variable suffix {env}",
                    )
                env_first.setdefault(env, port.name)

    # -- across operators ---------------------------------------------------------------

    def links(self, operators: list[Operator]) -> None:
        by_name = {op.name.lower(): op for op in operators}
        for op in operators:
            for port in op.inputs:
                if port.source is None:
                    continue
                producer = by_name.get(port.source.lower())
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
        wanted = (port.name or "").lower()
        output = next((o for o in producer.outputs if (o.name or "").lower() == wanted), None)
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

    # -- small pieces -------------------------------------------------------------------

    def has_typed_io(self, operators: list[Operator]) -> bool:
        return any(p.medium == SHARED_MEMORY for op in operators for p in op.inputs + op.outputs)

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
            return validate_name(value if isinstance(value, str) else _text(value), what)
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
        return _text(value)


def shapes_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same number of dimensions, each equal or dynamic (-1/0) on either side."""
    return len(a) == len(b) and all(x == y or x <= 0 or y <= 0 for x, y in zip(a, b, strict=False))


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


def _text(value: object) -> str:
    """A YAML scalar as text (booleans as true/false, as YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
