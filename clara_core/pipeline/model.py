"""Clara pipeline definitions: read-only records and the DAG of operators.

    for op in pipeline.order(): ...   # a Pipeline comes from `loading.load(file)`

A `Port` is one declared input or output. Shared-memory ports (`array`, `string`, and the
primitives) are normalised the way Clara defines them: a primitive T is ``array<T>[1]``
and a `string` is ``array<uint8>[-1]``. A disk port's `path` is a *container* path (where
Clara would mount the volume), never a path on this machine: `operator_io` says where it
lives in a local job. Edges come from every input's `from`, disk and shared memory alike,
so ordering never needs dummy disk I/O. The validation rules live in `schema`; loading a
file is `loading`'s job.

The definitions are `clara_core.records` records (named tuples: change one with
`_replace`), not dataclasses: `clara run` imports this module before its first operator
starts, and the dataclasses module (with inspect, ast and tokenize) plus the code each
dataclass generates at import cost ~15 ms of that start-up.
"""

from __future__ import annotations

import os

from ..errors import InvalidArgument, NotFound
from ..records import Record
from .environment import DISK, SHARED_MEMORY, STREAM

STRING = "string"
ARRAY = "array"
SEPARATOR = "--"  # allocation name of a variable: <operator>--<output>


ERROR, WARNING, NOTE = "error", "warning", "note"


class Problem(Record):
    """One remark about a pipeline file, at a line.

    An error makes the file invalid; a warning is valid Clara that a local run cannot do
    as written (`clara validate --strict` makes it an error); a note says what a local
    run ignores. `topic` groups remarks for callers (e.g. "command", "services").
    """

    file: str
    line: int
    message: str
    severity: str = ERROR
    topic: str = ""

    @property
    def is_error(self) -> bool:
        """Whether this problem makes the file invalid."""
        return self.severity == ERROR

    def __str__(self) -> str:
        prefix = "" if self.is_error else f"{self.severity}: "
        return f"{self.file}:{self.line}: {prefix}{self.message}"


class PipelineInvalid(InvalidArgument):
    """A pipeline file with errors; `problems` lists every one of them."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        problems = [p for p in problems if p.is_error]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        first = f"; first, {problems[0]}" if problems else ""
        super().__init__(
            f"{file} is not a valid pipeline ({count}{first}); `clara validate {file}` "
            "lists them all"
        )
        self.file = file
        self.problems = problems


class Port(Record):
    """One declared input or output of an operator."""

    name: str | None
    type: str  # array, string, stream, or a primitive's long name (float32, ...)
    element_type: str | None  # long primitive name in shared memory; a free label on disk
    shape: tuple[int, ...] | None  # normalised; None on disk
    path: str | None  # disk only: the declared container path (e.g. /output)
    source: str | None = None  # inputs: the operator named in `from` (None: job payload)
    line: int = 0

    @property
    def medium(self) -> str:
        """DISK for streams, SHARED_MEMORY for everything else."""
        return DISK if self.type == STREAM else SHARED_MEMORY

    @property
    def is_dynamic(self) -> bool:
        """Whether some dimension is only known at run time (Clara: -1 or 0, or a string)."""
        return self.medium == SHARED_MEMORY and any(d <= 0 for d in self.shape or ())

    @property
    def dynamic_indices(self) -> tuple[int, ...]:
        """Indices of the dynamic dimensions."""
        return tuple(i for i, d in enumerate(self.shape or ()) if d <= 0)

    def describe(self) -> str:
        """How messages name this port."""
        return f"'{self.name}'" if self.name else "(unnamed)"


class Connection(Record):
    """How operators reach a service: `http` (an environment variable NAME holding the
    service's URI) or `volume` (a mounted path)."""

    kind: str  # "http" or "volume"
    name: str
    port: int | None = None  # http
    path: str | None = None  # volume
    line: int = 0
    uri: str | None = None  # http: given by `clara run --service NAME=URI`


class Service(Record):
    """A long-running helper an operator declares (Clara's `services`, deprecated in 0.7.1)."""

    name: str
    image: str = ""
    tag: str = ""
    connections: tuple[Connection, ...] = ()
    line: int = 0


class Operator(Record):
    """One operator: a command (may be empty: Clara runs the image's entry-point), its
    environment, and its declared I/O.

    `command_origin` says where the command comes from, for messages: ``FILE:LINE`` of
    container.command, or the `--bind` that replaced it.
    """

    name: str
    command: tuple[str, ...]
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    # (one empty dict shared by every Operator made without: nothing changes a record's)
    variables: dict[str, str] = {}  # noqa: RUF012
    description: str = ""
    image: str = ""
    tag: str = ""
    line: int = 0
    command_origin: str = ""
    services: tuple[Service, ...] = ()
    # Clara's `requests` (hardware minimums): cpu, gpu, memory (MB) as written; a local run
    # ignores them, a cluster export turns them into resource requests.
    requests: dict[str, str] = {}  # noqa: RUF012

    @property
    def image_ref(self) -> str:
        """image:tag as Clara pulls it (tag defaults to latest), or '' without an image."""
        if not self.image:
            return ""
        return f"{self.image}:{self.tag or 'latest'}"

    @property
    def upstream(self) -> tuple[str, ...]:
        """Names of the operators this one reads from (each once, in declaration order)."""
        seen: dict[str, str] = {}
        for port in self.inputs:
            if port.source is not None:
                seen.setdefault(port.source.lower(), port.source)
        return tuple(seen.values())

    def port(self, name: str) -> tuple[str, Port] | None:
        """('input' | 'output', port) declared under `name` (case-insensitive), or None."""
        key = name.lower()
        for direction, ports in (("input", self.inputs), ("output", self.outputs)):
            for port in ports:
                if port.name is not None and port.name.lower() == key:
                    return direction, port
        return None


class Pipeline:
    """A validated pipeline definition (read-only: `_replace` makes a changed copy)."""

    _fields = ("name", "api_version", "operators", "file", "orchestrator", "remarks")
    __slots__ = (*_fields, "_names")

    name: str
    api_version: str
    operators: tuple[Operator, ...]
    file: str
    orchestrator: str | None
    remarks: tuple[Problem, ...]  # warnings and notes of a valid file

    def __init__(
        self,
        name: str,
        api_version: str,
        operators: tuple[Operator, ...],
        file: str = "",
        orchestrator: str | None = None,
        remarks: tuple[Problem, ...] = (),
    ) -> None:
        # (a plain class, not a record, for the allocation names it computes once)
        values = (name, api_version, operators, file, orchestrator, remarks, None)
        for slot, value in zip(self.__slots__, values, strict=True):  # (_names last)
            object.__setattr__(self, slot, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Pipeline is read-only: use _replace({name}=...)")

    def _replace(self, **changes: object) -> Pipeline:
        """A copy with some fields changed."""
        values = {field: changes.pop(field, getattr(self, field)) for field in self._fields}
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return Pipeline(**values)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]  # (its operators hold dicts, as before)

    def __repr__(self) -> str:
        fields = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._fields)
        return f"Pipeline({fields})"

    @property
    def directory(self) -> str:
        """Absolute directory of the pipeline file: commands and relative paths start there."""
        return os.path.dirname(os.path.abspath(self.file)) if self.file else os.getcwd()

    @property
    def typed(self) -> bool:
        """Whether this is a typed pipeline (api-version 0.5.0 or later)."""
        return version_tuple(self.api_version) >= (0, 5, 0)

    def operator(self, name: str) -> Operator:
        """The operator of that name (case-insensitive); NotFound otherwise."""
        for op in self.operators:
            if op.name.lower() == name.lower():
                return op
        raise NotFound(f"pipeline '{self.name}' has no operator '{name}'")

    def order(self) -> list[Operator]:
        """Operators in a dependency order (declaration order among those ready)."""
        done: set[str] = set()
        result: list[Operator] = []
        while len(result) < len(self.operators):
            for op in self.operators:
                if op.name.lower() not in done and all(u.lower() in done for u in op.upstream):
                    done.add(op.name.lower())
                    result.append(op)
                    break
            else:  # validated pipelines have no cycle
                raise InvalidArgument(f"pipeline '{self.name}' has a cycle")
        return result

    def producer(self, port: Port) -> tuple[Operator, Port]:
        """The operator and output that an input with `from` reads."""
        assert port.source is not None
        op = self.operator(port.source)
        output = selected_output(op, port.name)
        if output is None:
            raise NotFound(f"operator '{op.name}' has no output {port.describe()}")
        return op, output

    def consumers(self, producer: Operator, output: Port) -> list[tuple[Operator, Port]]:
        """Every (operator, input) that reads `output` of `producer`."""
        found = []
        for op in self.operators:
            for port in op.inputs:
                if port.source is None or port.source.lower() != producer.name.lower():
                    continue
                if selected_output(producer, port.name) is output:
                    found.append((op, port))
        return found

    def allocation_name(self, producer: Operator, output: Port) -> str:
        """The name under which `output` of `producer` is published in the job's context."""
        names = self._names
        if names is None:
            names = self._allocation_names()
            object.__setattr__(self, "_names", names)
        return names[(producer.name.lower(), (output.name or "").lower())]

    def _allocation_names(self) -> dict[tuple[str, str], str]:
        # <operator>--<output> is readable in `clara dump`; names are free to contain "--",
        # so a (rare) clash or an over-long name falls back to a hashed, unique one.
        names: dict[tuple[str, str], str] = {}
        taken: set[str] = set()
        for op in self.operators:
            for port in op.outputs:
                if port.medium != SHARED_MEMORY or not port.name:
                    continue
                name = f"{op.name}{SEPARATOR}{port.name}"
                if len(name) > 255 or name.lower() in taken:
                    import hashlib  # rare: only for clashing or over-long names

                    digest = hashlib.sha256(f"{op.name}\0{port.name}".lower().encode())
                    name = f"{op.name[:100]}{SEPARATOR}{port.name[:100]}-{digest.hexdigest()[:12]}"
                taken.add(name.lower())
                names[(op.name.lower(), port.name.lower())] = name
        return names


def selected_output(producer: Operator, name: str | None) -> Port | None:
    """The output of `producer` that an input with `name` reads.

    `name` selects an output by name; an input without one reads the unnamed output, or
    the only output when there is just one (Clara: an output's name is optional then).
    """
    key = (name or "").lower()
    for output in producer.outputs:
        if (output.name or "").lower() == key:
            return output
    if name is None and len(producer.outputs) == 1:
        return producer.outputs[0]
    return None


def version_tuple(text: str) -> tuple[int, int, int]:
    """'0.5.0' -> (0, 5, 0); InvalidArgument if it is not a dotted version."""
    parts = str(text).strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise InvalidArgument(f"invalid api-version {text!r}: use a version such as 0.5.0")
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    return numbers[0], numbers[1], numbers[2]
