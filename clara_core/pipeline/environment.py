"""The environment contract between `clara run` and the operators it starts.

Every operator process gets, on top of the runner's own environment and its YAML
`variables`:

    CLARA_CONTEXT      the job's context (Clara's pod-manager context)
    CLARA_OPERATOR     this operator's name
    CLARA_PIPELINE     the pipeline's name
    CLARA_JOB_ID       a UUID for this run
    CLARA_IO           JSON: every declared input and output (see `OperatorIO.to_json`)
    CLARA_FASTIO       the shared-memory ones again, one line each, for programs without a
                       JSON parser (the C library): DIRECTION NAME ELEMENT_TYPE DIMS ALLOCATION,
                       e.g. ``input volume float32 -1,128,128 acquire--volume``
    CLARA_INPUT_<NAME> / CLARA_OUTPUT_<NAME>   local path of each named disk (stream) port
    CLARA_INPUT_FROM_<OPERATOR>                an unnamed disk input read from OPERATOR
    CLARA_INPUT / CLARA_OUTPUT                 the unnamed payload input / unnamed output,
                                               or the only disk input / output
    CLARA_PATHS        JSON: {declared container path: local path} of every disk port
    CLARA_PAYLOAD      the job's payload folder
    CLARA_JOB          JSON: the job's plan that `clara exec-operator` needs (see `JobPlan`),
                       and a read of an input to wait for its producer (see `readiness`)
    CLARA_READY        the same for C: ``ALLOCATION INDEX PRODUCER`` per input (`readiness`)
    CLARA_WARM_POOL    the context whose pool the job's allocations use (`--warm-pool`)

Local paths are folders of the job directory (see `operator_io`), never the declared
container paths themselves. So an operator needs no YAML: `clara map NAME`, `Driver`
and `Variable` read CLARA_IO.
It needs neither YAML nor the validation rules, so `clara map` stays quick to start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ..errors import InvalidArgument
from ..records import Record

CONTEXT = "CLARA_CONTEXT"
OPERATOR = "CLARA_OPERATOR"
PIPELINE = "CLARA_PIPELINE"
JOB_ID = "CLARA_JOB_ID"
IO = "CLARA_IO"
FASTIO = "CLARA_FASTIO"
JOB = "CLARA_JOB"
PATHS = "CLARA_PATHS"
PAYLOAD = "CLARA_PAYLOAD"
WARM_POOL = "CLARA_WARM_POOL"
FORMAT = 1
# The two media and the disk type; pipeline.py shares these (this module stays light,
# since `clara map` imports it in every operator).
SHARED_MEMORY, DISK, STREAM = "shared-memory", "disk", "stream"


def new_job_id() -> str:
    """A fresh CLARA_JOB_ID: a random UUID (version 4), spelt as str(uuid.uuid4()) spells
    it, without importing uuid (with platform, ~2 ms of the runner's start-up)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def env_suffix(name: str) -> str:
    """A port name as an environment-variable suffix: upper case, '-' becomes '_'."""
    return name.upper().replace("-", "_")


class Declared(Record):
    """One input or output as its operator sees it at run time."""

    direction: str  # "input" or "output"
    name: str | None
    type: str
    element_type: str | None
    shape: tuple[int, ...] | None
    source: str | None = None  # inputs: the upstream operator
    allocation: str | None = None  # shared memory: its published name in the context
    path: str | None = None  # disk: the local path (a folder of the job directory)
    container_path: str | None = None  # disk: the path declared in the pipeline

    @property
    def medium(self) -> str:
        """DISK for streams, SHARED_MEMORY otherwise."""
        return DISK if self.type == STREAM else SHARED_MEMORY

    def describe(self, operator: str) -> str:
        """How messages name this port."""
        return f"{self.direction} '{self.name or ''}' of operator '{operator}'"


class OperatorIO(Record):
    """Everything an operator process needs to know about its job and declared I/O."""

    job_id: str
    pipeline: str
    operator: str
    context: str
    inputs: tuple[Declared, ...]
    outputs: tuple[Declared, ...]
    payload: str = ""  # the job's payload folder

    def find(self, name: str) -> Declared | None:
        """The input or output declared under `name` (case-insensitive), or None."""
        key = name.lower()
        for port in self.inputs + self.outputs:
            if port.name is not None and port.name.lower() == key:
                return port
        return None

    def names(self) -> list[str]:
        """Declared names, inputs first."""
        return [p.name for p in self.inputs + self.outputs if p.name]

    def to_json(self) -> str:
        """The CLARA_IO document."""
        data = self._asdict()
        for key in ("inputs", "outputs"):
            data[key] = [port._asdict() for port in data[key]]
        data["format"] = FORMAT
        return json.dumps(data, separators=(",", ":"))

    def to_lines(self) -> str:
        """The CLARA_FASTIO text: one line per named shared-memory input and output."""
        return "".join(
            f"{p.direction} {p.name} {p.element_type} {','.join(map(str, p.shape))} "
            f"{p.allocation}\n"
            for p in self.inputs + self.outputs
            if p.allocation and p.name and p.element_type and p.shape
        )

    @classmethod
    def from_json(cls, text: str) -> OperatorIO:
        """Parse a CLARA_IO document."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object is expected, not {type(data).__name__}")
            if data.pop("format") != FORMAT:
                raise ValueError("unknown format")
            ports = {
                key: tuple(
                    Declared(**{**p, "shape": None if p["shape"] is None else tuple(p["shape"])})
                    for p in data.pop(key)
                )
                for key in ("inputs", "outputs")
            }
            return cls(**data, **ports)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"{IO} is not a description clara run wrote: {exc}") from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OperatorIO:
        """The description `clara run` exported; InvalidArgument outside an operator."""
        env = os.environ if environ is None else environ
        text = env.get(IO)
        if not text or not env.get(OPERATOR) or not env.get(CONTEXT):
            missing = [k for k in (OPERATOR, CONTEXT, IO) if not env.get(k)]
            raise InvalidArgument(
                f"not running inside `clara run` ({', '.join(missing)} not set): start this "
                "operator through its pipeline, e.g. `clara run pipeline.yaml`"
            )
        io = cls.from_json(text)
        if io.operator != env[OPERATOR] or io.context != env[CONTEXT]:
            raise InvalidArgument(
                f"{IO} describes operator '{io.operator}' in context '{io.context}', but "
                f"{OPERATOR}={env[OPERATOR]} and {CONTEXT}={env[CONTEXT]}"
            )
        return io

    def environment(self) -> dict[str, str]:
        """The variables `clara run` exports to this operator."""
        env = {
            CONTEXT: self.context,
            OPERATOR: self.operator,
            PIPELINE: self.pipeline,
            JOB_ID: self.job_id,
            IO: self.to_json(),
            FASTIO: self.to_lines(),
        }
        paths: dict[str, str] = {}
        for prefix, ports in (("CLARA_INPUT", self.inputs), ("CLARA_OUTPUT", self.outputs)):
            disk = [p for p in ports if p.medium == DISK and p.path]
            for port in disk:
                if port.name:
                    env[f"{prefix}_{env_suffix(port.name)}"] = port.path or ""
                elif port.source:
                    env.setdefault(f"{prefix}_FROM_{env_suffix(port.source)}", port.path or "")
                if port.container_path:
                    paths.setdefault(port.container_path, port.path or "")
            unnamed = [p for p in disk if not p.name and not p.source]
            main = unnamed[0] if unnamed else disk[0] if len(disk) == 1 else None
            if main is not None:
                env[prefix] = main.path or ""
        env[PATHS] = json.dumps(paths, separators=(",", ":"))
        if self.payload:
            env[PAYLOAD] = self.payload
        return env


class JobPlan(Record):
    """What every operator of a job must agree on to do the runner's duties without it.

    The same for every operator of a job: its operators (in a dependency order) and, for
    each shared-memory variable, how many operators read it (the last one frees it).
    """

    operators: tuple[str, ...]
    readers: dict[str, int]

    def to_json(self) -> str:
        """The CLARA_JOB document."""
        data = {"format": FORMAT, "operators": list(self.operators), "readers": self.readers}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobPlan:
        """Parse a CLARA_JOB document."""
        try:
            data = json.loads(text)
            if data["format"] != FORMAT:
                raise ValueError("unknown format")
            operators = tuple(str(name) for name in data["operators"])
            readers = {str(k): int(v) for k, v in data["readers"].items()}
            if not operators or any(v < 0 for v in readers.values()):
                raise ValueError("no operators, or a negative count of readers")
            return cls(operators, readers)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"{JOB} is not a job plan clara wrote: {exc}") from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> JobPlan:
        """The plan `clara export` put in the operator's environment."""
        env = os.environ if environ is None else environ
        text = env.get(JOB)
        if not text:
            raise InvalidArgument(
                f"{JOB} is not set: `clara exec-operator` runs inside a pod that "
                "`clara export` described"
            )
        return cls.from_json(text)
