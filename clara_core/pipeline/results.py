"""What a local run reports: each operator's fate, each variable's life, the whole job.

Plain dataclasses (no rendering): `clara run` draws its progress from an `Observer` and
prints the final `RunResult` as a table or JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

WAITING, RUNNING, SUCCEEDED, FAILED = "waiting", "running", "succeeded", "failed"
TIMED_OUT, STOPPED, SKIPPED = "timed-out", "stopped", "skipped"
INTERRUPTED = "interrupted"


@dataclass
class OperatorResult:
    """What happened to one operator (times in seconds since the job started)."""

    name: str
    status: str = WAITING
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    reason: str = ""
    pid: int | None = None
    output_tail: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Seconds it ran (so far, if still running)."""
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else self.started) - self.started


@dataclass
class VariableRecord:
    """One shared-memory variable of the job."""

    name: str  # its allocation name in the context
    operator: str
    output: str
    element_type: str
    shape: list[int]
    nbytes: int | None = None
    consumers: list[str] = field(default_factory=list)
    state: str = "declared"  # declared, allocated, written, freed, kept, missing
    allocated_at: float | None = None
    freed_at: float | None = None


@dataclass
class RunResult:
    """The outcome of one job."""

    pipeline: str
    file: str
    context: str
    job_id: str
    status: str = RUNNING  # succeeded, failed, timed-out, interrupted
    reason: str = ""
    duration: float = 0.0
    kept: bool = False  # the context was kept (--keep)
    job_dir: str = ""  # the job directory (payload, output folders, logs)
    job_dir_kept: bool = False  # False: it was temporary and removed after a success
    warnings: list[str] = field(default_factory=list)  # said at the start (e.g. services)
    warm_pool: str | None = None  # the context whose pool the job's variables used
    operators: list[OperatorResult] = field(default_factory=list)
    variables: list[VariableRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every operator succeeded."""
        return self.status == SUCCEEDED

    def to_dict(self) -> dict:
        """Plain data (for --json)."""
        data = asdict(self)
        for op, raw in zip(self.operators, data["operators"], strict=False):
            raw["duration"] = op.duration
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
