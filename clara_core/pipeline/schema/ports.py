"""Rules for one operator's inputs and outputs: types, element types, shapes, paths, names."""

from __future__ import annotations

import posixpath

from ...dtypes import CLARA_PRIMITIVES, declared_shape, element_type
from ...errors import InvalidArgument
from ..environment import env_suffix
from ..model import ARRAY, SHARED_MEMORY, STREAM, STRING, Port
from ..yamllines import Map, Seq
from .base import TYPED, RuleBase, text_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

INPUT_KEYS = ("from", "name", "type", "element-type", "shape", "path")
OUTPUT_KEYS = ("name", "type", "element-type", "shape", "path")


class PortRules(RuleBase):
    """Turns each `input`/`output` entry into a Port, reporting what is wrong with it."""

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
            elif direction == "output" and isinstance(entry, Map):
                name = entry.get("name")
                self.broken_ports.add(name.lower() if isinstance(name, str) else "")
        # Several unnamed inputs are fine (`name` only selects an upstream output); an
        # unnamed output is what an input without `name` reads, so there is one at most.
        unnamed = [p for p in ports if p.name is None]
        if direction == "output" and len(unnamed) > 1:
            self.report(unnamed[1].line, f"{where} has more than one unnamed output")
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
            path = text_of(entry["path"])
        label_text = None
        if "element-type" in entry and entry["element-type"] is not None:
            label_text = text_of(entry["element-type"])
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
                if port.source is not None and port.medium != SHARED_MEMORY:
                    env = f"FROM_{env_suffix(port.source)}"
                    if env in env_first:
                        self.warn(
                            port.line,
                            f"{where} reads the unnamed output of '{port.source}' twice: "
                            f"CLARA_INPUT_{env} names the first one (CLARA_PATHS has both)",
                        )
                    env_first.setdefault(env, f"from {port.source}")
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

    def port_paths(self, ports: tuple[Port, ...], where: str) -> None:
        """Each container path once per operator; paths should be rooted, as Clara expects."""
        first: dict[str, int] = {}
        for port in ports:
            if port.path is None:
                continue
            if not port.path.startswith("/"):
                self.warn(
                    port.line,
                    f"path {port.path!r} of {where} is not rooted: Clara expects a container "
                    "path such as /output (a local run maps it into the job directory, but "
                    "never substitutes it in arguments nor mounts it with --isolate)",
                    topic="path",
                )
            key = posixpath.normpath(port.path)
            if key in first:
                self.report(
                    port.line,
                    f"{where} declares path {port.path} twice (first on line {first[key]}): "
                    "each input and output needs a path of its own",
                )
            first.setdefault(key, port.line)
