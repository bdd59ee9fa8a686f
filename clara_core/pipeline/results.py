"""What a local run reports: each operator's fate, each variable's life, the whole job.

Plain mutable records (no rendering): `clara run` draws its progress from an `Observer`
and prints the final `RunResult` as a table or JSON. They are small classes with
`__slots__`, not dataclasses: the runner imports this module before its first operator
starts, and dataclasses cost that start-up milliseconds (see `model`).
"""

from __future__ import annotations

WAITING, RUNNING, SUCCEEDED, FAILED = "waiting", "running", "succeeded", "failed"
TIMED_OUT, STOPPED, SKIPPED = "timed-out", "stopped", "skipped"
INTERRUPTED = "interrupted"


class _Plain:
    """Shared by the records below: `_fields` (their slots), in the order JSON shows."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _asdict(self) -> dict:
        """The fields as plain data (lists copied, as dataclasses.asdict did)."""
        data = {field: getattr(self, field) for field in self._fields}
        return {key: list(v) if isinstance(v, list) else v for key, v in data.items()}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._asdict() == other._asdict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        fields = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._fields)
        return f"{type(self).__name__}({fields})"


class OperatorResult(_Plain):
    """What happened to one operator (times in seconds since the job started)."""

    _fields = (
        "name",
        "status",
        "exit_code",
        "started",
        "ended",
        "reason",
        "pid",
        "output_tail",
    )
    __slots__ = _fields

    def __init__(
        self,
        name: str,
        status: str = WAITING,
        exit_code: int | None = None,
        started: float | None = None,
        ended: float | None = None,
        reason: str = "",
        pid: int | None = None,
        output_tail: list[str] | None = None,
    ) -> None:
        self.name = name
        self.status = status
        self.exit_code = exit_code
        self.started = started
        self.ended = ended
        self.reason = reason
        self.pid = pid
        self.output_tail: list[str] = [] if output_tail is None else output_tail

    @property
    def duration(self) -> float | None:
        """Seconds it ran (so far, if still running)."""
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else self.started) - self.started


class VariableRecord(_Plain):
    """One shared-memory variable of the job."""

    _fields = (
        "name",  # its allocation name in the context
        "operator",
        "output",
        "element_type",
        "shape",
        "nbytes",
        "consumers",
        "state",  # declared, allocated, written, freed, kept, missing
        "allocated_at",
        "freed_at",
    )
    __slots__ = _fields

    def __init__(
        self,
        name: str,
        operator: str,
        output: str,
        element_type: str,
        shape: list[int],
        nbytes: int | None = None,
        consumers: list[str] | None = None,
        state: str = "declared",
        allocated_at: float | None = None,
        freed_at: float | None = None,
    ) -> None:
        self.name = name
        self.operator = operator
        self.output = output
        self.element_type = element_type
        self.shape = shape
        self.nbytes = nbytes
        self.consumers: list[str] = [] if consumers is None else consumers
        self.state = state
        self.allocated_at = allocated_at
        self.freed_at = freed_at


class RunResult(_Plain):
    """The outcome of one job."""

    _fields = (
        "pipeline",
        "file",
        "context",
        "job_id",
        "status",  # running; then succeeded, failed, timed-out, interrupted
        "reason",
        "duration",
        "kept",  # the context was kept (--keep)
        "job_dir",  # the job directory (payload, output folders, logs)
        "job_dir_kept",  # False: it was temporary and removed after a success
        "warnings",  # said at the start (e.g. services)
        "warm_pool",  # the context whose pool the job's variables used
        "operators",
        "variables",
    )
    __slots__ = _fields

    def __init__(
        self,
        pipeline: str,
        file: str,
        context: str,
        job_id: str,
        status: str = RUNNING,
        reason: str = "",
        duration: float = 0.0,
        kept: bool = False,
        job_dir: str = "",
        job_dir_kept: bool = False,
        warnings: list[str] | None = None,
        warm_pool: str | None = None,
        operators: list[OperatorResult] | None = None,
        variables: list[VariableRecord] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.file = file
        self.context = context
        self.job_id = job_id
        self.status = status
        self.reason = reason
        self.duration = duration
        self.kept = kept
        self.job_dir = job_dir
        self.job_dir_kept = job_dir_kept
        self.warnings: list[str] = [] if warnings is None else warnings
        self.warm_pool = warm_pool
        self.operators: list[OperatorResult] = [] if operators is None else operators
        self.variables: list[VariableRecord] = [] if variables is None else variables

    @property
    def ok(self) -> bool:
        """Whether every operator succeeded."""
        return self.status == SUCCEEDED

    def to_dict(self) -> dict:
        """Plain data (for --json): `null`, never `""`, where a key does not apply."""
        data = {**self._asdict(), "reason": self.reason or None}
        data["operators"] = [
            {**op._asdict(), "reason": op.reason or None, "duration": op.duration}
            for op in self.operators
        ]
        data["variables"] = [variable._asdict() for variable in self.variables]
        return data


class Observer:
    """Receives the runner's events (all no-ops here; the CLI draws progress from them)."""

    def began(self, job: RunResult) -> None:
        """The job directory and the context exist; nothing has started yet."""

    def started(self, op: OperatorResult) -> None:
        """An operator's process started."""

    def finished(self, op: OperatorResult) -> None:
        """An operator ended (status says how), or was skipped."""

    def output(self, op: OperatorResult, line: str) -> None:
        """A line an operator printed (stdout and stderr together)."""

    def freed(self, variable: VariableRecord) -> None:
        """A variable was freed after its last consumer."""
