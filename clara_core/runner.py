"""The local runner: one pipeline job on this machine, from context to clean-up.

    result = run(load("examples/ct-smooth.yaml"))
    result.ok, result.operators, result.variables

What it does, in Clara's roles (pod manager + orchestrator):

1. creates the job's context, bound to this process (if the runner dies, leak-check
   reports the context and everything in it as owner-dead);
2. starts each operator as soon as every operator it reads from has succeeded (several
   at once when independent), after pre-allocating its static outputs and creating its
   disk output directories; its environment is described in `operator_env`;
3. after an operator exits 0, checks that each output it was to produce exists and is
   completely written, and frees every variable whose last consumer it was;
4. on a failure, timeout, SIGINT, SIGTERM or SIGHUP: starts nothing more, stops running
   operators (SIGTERM to their process groups, SIGKILL after `grace` seconds), and
   reports each operator's fate;
5. always ends by destroying the context (unless `keep`): nothing of the job remains.

It never polls: operator exits (pidfds), output pipes and signals (a wakeup pipe) are
all events of one selector.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from .allocation import Allocation
from .context import Context
from .errors import ClaraError, NotFound
from .operator_env import Declared, OperatorIO
from .operator_process import OperatorProcess, describe_exit
from .pipeline import DISK, SHARED_MEMORY, Operator, Pipeline, Port
from .pipeline_schema import shapes_match

WAITING, RUNNING, SUCCEEDED, FAILED = "waiting", "running", "succeeded", "failed"
TIMED_OUT, STOPPED, SKIPPED = "timed-out", "stopped", "skipped"
INTERRUPTED = "interrupted"
TAIL_LINES = 40
MAX_LINE = 65536  # bytes of an operator's output line kept before it is shown anyway
KILL_WAIT = 10.0  # seconds to wait for SIGKILLed processes before giving up on them
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
    kept: bool = False
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

    def started(self, op: OperatorResult) -> None:
        """An operator's process started."""

    def finished(self, op: OperatorResult) -> None:
        """An operator ended (status says how), or was skipped."""

    def output(self, op: OperatorResult, line: str) -> None:
        """A line an operator printed (stdout and stderr together)."""

    def freed(self, variable: VariableRecord) -> None:
        """A variable was freed after its last consumer."""


def run(
    pipeline: Pipeline,
    context: str | None = None,
    keep: bool = False,
    timeout: float | None = None,
    grace: float = 5.0,
    observer: Observer | None = None,
) -> RunResult:
    """Run `pipeline` to its end; see the module docstring. Never leaves anything behind."""
    return _Job(pipeline, context, keep, timeout, grace, observer or Observer()).run()


class _Job:
    def __init__(
        self,
        pipeline: Pipeline,
        context: str | None,
        keep: bool,
        timeout: float | None,
        grace: float,
        observer: Observer,
    ) -> None:
        self.pipeline = pipeline
        self.keep = keep
        self.timeout = timeout
        self.grace = grace
        self.observer = observer
        job_id = uuid.uuid4()
        name = context or f"{pipeline.name[:200]}-{job_id.hex[:8]}"
        self.result = RunResult(pipeline.name, pipeline.file, name, str(job_id), kept=keep)
        self.ops = {op.name: OperatorResult(op.name) for op in pipeline.operators}
        self.result.operators = list(self.ops.values())
        self.procs: dict[str, OperatorProcess] = {}  # running (not yet reaped)
        self.pipes: dict[str, OperatorProcess] = {}  # output pipe still open
        self.partial: dict[str, bytes] = {}
        self.tails: dict[str, collections.deque[str]] = {}
        self.refs: dict[str, Allocation] = {}  # the runner's own reference to each variable
        self.records: dict[str, VariableRecord] = {}
        self.waiting_for: dict[str, set[str]] = {}  # variable -> consumers not yet done
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stop_reason = ""  # set once the job is being stopped
        self.ctx: Context | None = None
        self.t0 = time.monotonic()
        self._collect_variables()
        self.result.variables = list(self.records.values())

    # -- the whole job ------------------------------------------------------------------

    def run(self) -> RunResult:
        with self._signal_handling():
            try:
                self.ctx = Context.create(
                    self.result.context, owner_pid=None if self.keep else os.getpid()
                )
                self._loop()
            finally:
                self._stop_all()
                self._finish()
        return self.result

    def _loop(self) -> None:
        deadline = None if self.timeout is None else self.t0 + self.timeout
        while True:
            if self.signals and not self.stop_reason:
                self._abort(INTERRUPTED, f"interrupted by {signal.Signals(self.signals[0]).name}")
            if self.stop_reason:
                if self.procs:
                    return  # _stop_all takes over
            else:
                self._start_ready()
            if not self.procs and not self.pipes:
                break
            wait = None
            if deadline is not None and not self.stop_reason:
                wait = max(0.0, deadline - time.monotonic())
            self._dispatch(self.selector.select(wait))
            if deadline is not None and not self.stop_reason and time.monotonic() >= deadline:
                self._abort(TIMED_OUT, f"timed out after {self.timeout:g} s")
        skipped = [r for r in self.ops.values() if r.status == WAITING]
        if skipped and not self.stop_reason:  # only if the DAG could not progress
            self._abort(FAILED, "some operators could never start")

    def _dispatch(self, events: list) -> None:
        for key, _ in events:
            kind, name = key.data
            if kind == "signal":
                with contextlib.suppress(BlockingIOError):
                    os.read(key.fd, 512)
            elif kind == "exit":
                self._exited(name)
            else:
                self._read_output(name)

    # -- starting -----------------------------------------------------------------------

    def _start_ready(self) -> None:
        for op in self.pipeline.operators:
            result = self.ops[op.name]
            if result.status != WAITING or self.stop_reason:
                continue
            upstream = [self.ops[self.pipeline.operator(u).name] for u in op.upstream]
            if all(u.status == SUCCEEDED for u in upstream):
                self._start(op, result)

    def _start(self, op: Operator, result: OperatorResult) -> None:
        assert self.ctx is not None
        result.started = self._now()
        try:
            self._prepare_outputs(op)
            io = describe_operator(self.pipeline, op, self.ctx.name, self.result.job_id)
            process = OperatorProcess(list(op.command), self.pipeline.directory, self._env(op, io))
        except (ClaraError, OSError, ValueError) as exc:
            result.ended = self._now()
            self._fail(result, FAILED, f"could not start: {exc}")
            return
        result.status, result.pid = RUNNING, process.pid
        self.procs[op.name] = self.pipes[op.name] = process
        self.tails[op.name] = collections.deque(maxlen=TAIL_LINES)
        self.selector.register(process.pidfd, selectors.EVENT_READ, ("exit", op.name))
        self.selector.register(process.output_fd, selectors.EVENT_READ, ("output", op.name))
        self.observer.started(result)

    def _prepare_outputs(self, op: Operator) -> None:
        """Pre-allocate static shared-memory outputs; create disk output directories."""
        assert self.ctx is not None
        for port in op.outputs:
            if port.medium == DISK:
                if port.path:
                    os.makedirs(local_path(self.pipeline, port.path), exist_ok=True)
                continue
            if port.is_dynamic or port.shape is None:
                continue
            name = self.pipeline.allocation_name(op, port)
            allocation = self.ctx.create(dtype=port.element_type, shape=port.shape)
            try:
                allocation.publish(name)
            except BaseException:
                allocation.release()
                raise
            self.refs[name] = allocation
            self.records[name].state = "allocated"
            self.records[name].nbytes = allocation.nbytes

    def _env(self, op: Operator, io: OperatorIO) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # operators' output reaches the runner as it happens
        env.update(op.variables)
        bindir = os.path.dirname(sys.executable)  # `clara` and `python` of this interpreter
        path = env.get("PATH", os.defpath)
        if path.split(os.pathsep)[0] != bindir:
            env["PATH"] = bindir + os.pathsep + path
        env.update(io.environment())
        return env

    # -- ending -------------------------------------------------------------------------

    def _exited(self, name: str) -> None:
        process = self.procs.pop(name)
        self.selector.unregister(process.pidfd)
        code = process.reap()
        result = self.ops[name]
        result.ended, result.exit_code = self._now(), code
        if result.status != RUNNING:  # already judged (timed out, stopped)
            self.observer.finished(result)
            return
        op = self.pipeline.operator(name)
        if self.stop_reason:
            result.status = STOPPED
            result.reason = f"{describe_exit(code)} while the job was stopping"
            self.observer.finished(result)
            return
        if code != 0:
            self._fail(result, FAILED, describe_exit(code))
            return
        problem = self._check_outputs(op)
        if problem:
            self._fail(result, FAILED, problem)
            return
        result.status = SUCCEEDED
        self.observer.finished(result)
        self._release_after(op)

    def _check_outputs(self, op: Operator) -> str:
        """Every shared-memory output someone reads exists, as declared, completely written."""
        assert self.ctx is not None
        problems = []
        for port in op.outputs:
            if port.medium != SHARED_MEMORY:
                continue
            name = self.pipeline.allocation_name(op, port)
            record = self.records[name]
            try:  # a fresh reference: it sees the layout as the producer left it
                allocation = self.ctx.get(name)
            except NotFound:
                record.state = "missing"
                if record.consumers:
                    problems.append(f"exited 0 but never allocated output '{port.name}'")
                continue
            old = self.refs.pop(name, None)
            if old is not None:
                old.release()
            self.refs[name] = allocation
            record.shape, record.nbytes = list(allocation.shape), allocation.nbytes
            state = allocation.state
            record.state = "written" if state == "complete" else state
            if not record.consumers:
                continue
            if state != "complete":
                what = "never wrote" if state == "empty" else f"left {state}"
                problems.append(f"exited 0 but {what} output '{port.name}'")
            elif allocation.element_type.name != port.element_type or not shapes_match(
                allocation.shape, port.shape or ()
            ):
                problems.append(
                    f"wrote output '{port.name}' as {allocation.element_type.name}"
                    f"{list(allocation.shape)}, but it is declared {port.element_type}"
                    f"{list(port.shape or ())}"
                )
        return "; ".join(problems)

    def _release_after(self, op: Operator) -> None:
        """Free each variable whose last consumer `op` was, and its outputs nobody reads."""
        names = [
            self.pipeline.allocation_name(*self.pipeline.producer(port))
            for port in op.inputs
            if port.medium == SHARED_MEMORY and port.source is not None
        ]
        names += [
            self.pipeline.allocation_name(op, port)
            for port in op.outputs
            if port.medium == SHARED_MEMORY
        ]
        for name in names:
            waiting = self.waiting_for[name]
            waiting.discard(op.name)
            if not waiting and not self.keep:
                self._free(name)

    def _free(self, name: str) -> None:
        allocation = self.refs.pop(name, None)
        record = self.records[name]
        if allocation is None or record.freed_at is not None:
            return
        allocation.free()
        record.state, record.freed_at = "freed", self._now()
        self.observer.freed(record)

    def _fail(self, result: OperatorResult, status: str, reason: str) -> None:
        result.status, result.reason = status, reason
        self.observer.finished(result)
        self._abort(FAILED, f"operator '{result.name}' {reason}")

    def _abort(self, status: str, reason: str) -> None:
        """Stop the job: nothing starts any more; running operators get SIGTERM."""
        if self.stop_reason:
            return
        self.stop_reason = reason
        self.result.status, self.result.reason = status, reason
        for name, process in self.procs.items():
            result = self.ops[name]
            if status == TIMED_OUT:
                result.status, result.reason = TIMED_OUT, reason
            elif status == INTERRUPTED:
                result.status, result.reason = STOPPED, reason
            else:
                result.status, result.reason = STOPPED, "stopped: another operator failed"
            process.signal_group(signal.SIGTERM)

    def _stop_all(self) -> None:
        """Wait `grace` seconds for stopped operators, then SIGKILL; reap everything."""
        if self.procs and not self.stop_reason:
            self._abort(FAILED, "the runner itself failed")
        term_deadline = time.monotonic() + self.grace
        killed_at: float | None = None
        pipes_deadline: float | None = None
        while self.procs or self.pipes:
            now = time.monotonic()
            if self.procs:
                if killed_at is None and (now >= term_deadline or len(self.signals) > 1):
                    for process in self.procs.values():
                        process.signal_group(signal.SIGKILL)
                    killed_at = now
                if killed_at is not None and now - killed_at > KILL_WAIT:
                    break
                wait = term_deadline - now if killed_at is None else KILL_WAIT
            else:  # leaders reaped; a stray that escaped its group may still hold a pipe
                pipes_deadline = pipes_deadline or now + 1.0
                if now >= pipes_deadline:
                    break
                wait = pipes_deadline - now
            self._dispatch(self.selector.select(max(0.0, wait)))
        for name in list(self.procs):  # unkillable (stuck in the kernel): give up on it
            self.ops[name].reason += "; did not die after SIGKILL"
            self.procs.pop(name)
        for name in list(self.pipes):
            self._close_output(name)

    def _finish(self) -> None:
        for result in self.ops.values():
            if result.status == WAITING:
                result.status = SKIPPED
                result.reason = "not started: " + (self.stop_reason or "upstream failed")
                self.observer.finished(result)
            result.output_tail = list(self.tails.get(result.name, ()))
        self._survey_variables()
        for name, allocation in list(self.refs.items()):
            allocation.release()
            self.refs.pop(name)
        for record in self.records.values():
            if record.state in ("allocated", "written") and self.keep:
                record.state = "kept"
        if self.ctx is not None:
            if self.keep:
                self.ctx.close()
            else:
                with contextlib.suppress(NotFound):  # someone destroyed it meanwhile
                    self.ctx.destroy()
        if self.result.status == RUNNING:
            self.result.status = SUCCEEDED
        self.result.duration = self._now()
        self.selector.close()

    def _survey_variables(self) -> None:
        """Record the final shape and state of every variable still in the context."""
        if self.ctx is None:
            return
        for name, record in self.records.items():
            if record.freed_at is not None:
                continue
            try:
                allocation = self.refs.get(name) or self.ctx.get(name)
            except NotFound:
                continue
            self.refs[name] = allocation
            record.shape, record.nbytes = list(allocation.shape), allocation.nbytes
            state = allocation.state
            record.state = "written" if state == "complete" else state

    # -- output -------------------------------------------------------------------------

    def _read_output(self, name: str) -> None:
        data = self.pipes[name].read_output()
        if data is None:
            self._close_output(name)
            return
        lines = (self.partial.pop(name, b"") + data).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:  # no newline in sight: show what came so far
            lines.append(rest)
            rest = b""
        self.partial[name] = rest
        for raw in lines:
            self._line(name, raw)

    def _close_output(self, name: str) -> None:
        process = self.pipes.pop(name, None)
        if process is None:
            return
        rest = self.partial.pop(name, b"")
        if rest:
            self._line(name, rest)
        self.selector.unregister(process.output_fd)
        process.close_output()

    def _line(self, name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.tails[name].append(line)
        self.observer.output(self.ops[name], line)

    # -- helpers ------------------------------------------------------------------------

    def _collect_variables(self) -> None:
        for op in self.pipeline.operators:
            for port in op.outputs:
                if port.medium != SHARED_MEMORY:
                    continue
                name = self.pipeline.allocation_name(op, port)
                consumers = [c.name for c, _ in self.pipeline.consumers(op, port)]
                self.records[name] = VariableRecord(
                    name,
                    op.name,
                    port.name or "",
                    port.element_type or "",
                    list(port.shape or ()),
                    consumers=consumers,
                )
                self.waiting_for[name] = set(consumers)

    def _now(self) -> float:
        return time.monotonic() - self.t0

    @contextlib.contextmanager
    def _signal_handling(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM/SIGHUP into orderly stops (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda number, _frame: self.signals.append(number))
        self.selector.register(read_fd, selectors.EVENT_READ, ("signal", ""))
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(read_fd)
            os.close(read_fd)
            os.close(write_fd)


def local_path(pipeline: Pipeline, path: str) -> str:
    """Where a declared disk path lives here: relative paths start at the pipeline file.

    There are no containers to mount volumes into, so an input with `from` is simply
    given its producer's output path (see describe_operator).
    """
    return os.path.normpath(os.path.join(pipeline.directory, os.path.expanduser(path)))


def describe_operator(pipeline: Pipeline, op: Operator, context: str, job_id: str) -> OperatorIO:
    """What `op` learns about itself in CLARA_IO, for a run using `context`."""

    def declared(direction: str, port: Port) -> Declared:
        allocation = path = None
        producer, output = op, port
        if port.source is not None:
            producer, output = pipeline.producer(port)
        if port.medium == SHARED_MEMORY:
            allocation = pipeline.allocation_name(producer, output)
        elif output.path:
            path = local_path(pipeline, output.path)
        return Declared(
            direction,
            port.name,
            port.type,
            port.element_type,
            port.shape,
            port.source,
            allocation,
            path,
        )

    return OperatorIO(
        job_id,
        pipeline.name,
        op.name,
        context,
        tuple(declared("input", p) for p in op.inputs),
        tuple(declared("output", p) for p in op.outputs),
    )
