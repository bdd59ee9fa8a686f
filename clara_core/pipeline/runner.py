"""The local runner: one pipeline job on this machine, from context to clean-up.

    result = run(load("examples/ct-smooth.yaml"))
    result.ok, result.operators, result.variables

What it does, in Clara's roles (pod manager + orchestrator):

0. refuses at once, starting nothing, if an operator has no command (`bindings`);
1. makes the job directory (`jobdir`: payload, output folders, logs) and the job's
   context, bound to this process (if the runner dies, leak-check reports the context
   and everything in it as owner-dead);
2. starts each operator as soon as every operator it reads from *on disk* has succeeded
   (`scheduling`: one reading only shared memory starts at job start, and its reads wait
   for their producers, see `readiness`), after pre-allocating its static outputs; its
   folders, environment and command line come from `launch` (the per-operator half);
3. after an operator exits 0, checks that each output it was to produce exists and is
   completely written, marks it succeeded (its readers go on) and frees every variable
   whose last consumer it was; on a failure, marks it failed (its readers fail). An
   operator may say earlier that its outputs are complete (`completion`): the same
   check then lets its readers go before it exits; its exit still decides its fate;
4. on a failure, timeout, SIGINT, SIGTERM or SIGHUP: starts nothing more, stops running
   operators (SIGTERM to their process groups, SIGKILL after `grace` seconds), and
   reports each operator's fate (`job_end`, as 5);
5. always ends by destroying the context (unless `keep`), and removes a temporary job
   directory after a success (unless `keep`): nothing of the job remains but what was
   asked for, and a failed job's directory, for its logs and outputs.

It never polls: operator exits (pidfds), output pipes, completion messages and signals
(a wakeup pipe) are all events of one selector.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import time

from ..context import Context
from ..errors import ClaraError
from . import scheduling
from .bindings import require_commands
from .completion import COMPLETE_FD, CompletionChannel
from .environment import JOB, WARM_POOL, new_job_id
from .job_end import JobEnd
from .job_variables import JobVariables, create_job_context
from .jobdir import JobDirectory
from .launch import could_not_start, prepare
from .model import Operator, Pipeline
from .operator_duties import OperatorDuties
from .operator_io import job_plan
from .operator_output import OutputLines
from .operator_process import OperatorProcess, describe_exit
from .readiness import READY, ReadyLocks, ready_lines
from .results import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    WAITING,
    Observer,
    OperatorResult,
    RunResult,
    VariableRecord,
)
from .stop_signals import signal_wakeups


def run(
    pipeline: Pipeline,
    context: str | None = None,
    keep: bool = False,
    timeout: float | None = None,
    grace: float = 5.0,
    observer: Observer | None = None,
    job_dir: str | None = None,
    payload: str | None = None,
    isolate: bool = False,
    warnings: list[str] | None = None,
    warm_pool: str | None = None,
) -> RunResult:
    """Run `pipeline` to its end; see the module docstring. Never leaves anything behind.

    `job_dir` (new or empty; default a temporary one) holds the job's files, `payload`
    (a directory or file) is copied into it; `isolate` mounts container paths for real
    (`isolate.unavailable()` says whether this machine can); `warnings` are recorded;
    `warm_pool` names a context (created if missing) whose pool the job's variables are
    claimed from and freed into (`clara_core.warm_pool`).
    """
    require_commands(pipeline)
    job = _Job(pipeline, context, keep, timeout, grace, observer or Observer(), isolate)
    job.result.warnings = list(warnings or [])
    job.warm_pool = job.result.warm_pool = warm_pool
    return job.run(job_dir, payload)


class _Job(JobEnd):
    """One job's state and its event loop: starting operators, judging their exits and
    completion claims, reading their output; how it ends is JobEnd's (job_end.py)."""

    def __init__(
        self,
        pipeline: Pipeline,
        context: str | None,
        keep: bool,
        timeout: float | None,
        grace: float,
        observer: Observer,
        isolate: bool,
    ) -> None:
        self.pipeline = pipeline
        self.keep = keep
        self.timeout = timeout
        self.grace = grace
        self.observer = observer
        self.isolate = isolate
        self.job: JobDirectory | None = None
        job_id = new_job_id()
        name = context or f"{pipeline.name[:200]}-{job_id[:8]}"
        self.result = RunResult(pipeline.name, pipeline.file, name, job_id, kept=keep)
        self.ops = {op.name: OperatorResult(op.name) for op in pipeline.operators}
        self.result.operators = list(self.ops.values())
        self.procs: dict[str, OperatorProcess] = {}  # running (not yet reaped)
        self.pipes: dict[str, OperatorProcess] = {}  # output pipe still open
        self.lines = OutputLines(lambda name, line: observer.output(self.ops[name], line))
        self.t0 = time.monotonic()
        self.variables = JobVariables(pipeline, keep, time.time())  # stamped in job time
        self.plan = job_plan(pipeline)
        self.duties: dict[str, OperatorDuties] = {}  # what the runner does for each operator
        self.ready: ReadyLocks | None = None
        self.unsettled: list[str] = []  # succeeded before what they read (see scheduling)
        self.channels: dict[str, CompletionChannel] = {}  # of operators not yet reaped
        self.completed: set[str] = set()  # marked succeeded in the tally, readers let go
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stop_reason = ""  # set once the job is being stopped
        self.ctx: Context | None = None
        self.warm_pool: str | None = None
        self.result.variables = list(self.variables.records.values())

    # -- the whole job ------------------------------------------------------------------

    def run(self, job_dir: str | None, payload: str | None) -> RunResult:
        self.job = JobDirectory.create(self.pipeline.name, job_dir, payload)
        self.result.job_dir = self.job.root
        try:
            owner = None if self.keep else os.getpid()
            pooled = scheduling.allocates_late(self.pipeline)
            self.ctx = create_job_context(self.result.context, owner, self.warm_pool, pooled)
        except BaseException:
            if self.job.temporary:
                self.job.remove()  # nothing ran: nothing to keep
            raise
        self.observer.began(self.result)
        with signal_wakeups(self.selector, self.signals):
            try:
                self.ready = ReadyLocks(self.ctx, self.plan)
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
            if not self.procs:  # (nothing more can start: none left to end)
                break  # a stray that left its group may hold a pipe: _stop_all's 1 s
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
            elif kind == "complete":
                self._claimed(name)
            else:
                self._read_output(name)

    # -- starting -----------------------------------------------------------------------

    def _start_ready(self) -> None:
        for op in self.pipeline.order():
            result = self.ops[op.name]
            if result.status != WAITING or self.stop_reason:
                continue
            if scheduling.may_start(self.pipeline, op, self._settled):
                self._start(op, result)

    def _settled(self, name: str) -> bool:
        """Whether operator `name` succeeded and the runner settled it (tally, frees)."""
        return self.ops[name].status == SUCCEEDED and name not in self.unsettled

    def _start(self, op: Operator, result: OperatorResult) -> None:
        assert self.ctx is not None and self.job is not None
        result.started = self._now()
        try:
            launch = prepare(
                self.pipeline, op, self.job, self.ctx.name, self.result.job_id, self.isolate
            )
            launch.env[JOB] = self.plan.to_json()  # the job's tally: readiness of inputs
            launch.env[READY] = ready_lines(launch.io, self.plan)  # the same, for C
            if self.warm_pool is not None:  # its dynamic outputs are claimed from it too
                launch.env[WARM_POOL] = self.warm_pool
            duties = self.duties[op.name] = OperatorDuties(self.ctx, launch.io, self.plan)
            prepared = duties.prepare()  # static outputs, output folders
            self.variables.allocated(prepared)
            self.variables.stamp({name: None for name in prepared}, result.started, self._now())
            channel = CompletionChannel()  # its end of it is passed on as COMPLETE_FD
            try:
                launch.env[COMPLETE_FD], fds = str(channel.child_fd), (channel.child_fd,)
                log = self.job.log_path(op.name)
                process = OperatorProcess(launch.argv, launch.cwd, launch.env, log, fds)
            except BaseException:
                channel.close()
                raise
            channel.started()
        except (ClaraError, OSError, ValueError) as exc:
            result.ended = self._now()
            self._fail(result, FAILED, could_not_start(op, exc))
            return
        result.status, result.pid = RUNNING, process.pid
        self.procs[op.name] = self.pipes[op.name] = process
        self.selector.register(process.pidfd, selectors.EVENT_READ, ("exit", op.name))
        self.selector.register(process.output_fd, selectors.EVENT_READ, ("output", op.name))
        self.channels[op.name] = channel
        self.selector.register(channel.fd, selectors.EVENT_READ, ("complete", op.name))
        self.observer.started(result)

    # -- completion ---------------------------------------------------------------------

    def _claimed(self, name: str) -> None:
        """A message on `name`'s completion channel: if it is the operator's own claim
        that its outputs are complete, they are (checked as at its exit), and everything
        it reads from has completed, its readers go on now; otherwise its exit decides."""
        channel = self.channels.get(name)  # (gone if its exit came first in this batch)
        if channel is None or not channel.claimed_by(self.procs[name].pid):
            return
        op = self.pipeline.operator(name)
        if name in self.completed or self.ops[name].status != RUNNING or self.stop_reason:
            return
        if not scheduling.upstream(self.pipeline, op) <= self.completed:
            return  # its readers never go before those of what it reads from
        if not self.duties[name].complete():
            return  # (the same check at its exit will say what is wrong)
        self.completed.add(name)
        assert self.ready is not None
        self.ready.release(name)  # its readers go on

    # -- an operator's exit (the job's end: JobEnd) -------------------------------------

    def _exited(self, name: str) -> None:
        process = self.procs.pop(name)
        self.selector.unregister(process.pidfd)
        self._close_channel(name)  # before the reap: its pid must not be anyone else's
        code = process.reap()
        result = self.ops[name]
        result.ended, result.exit_code = self._now(), code
        if result.status != RUNNING:  # already judged (timed out, stopped)
            self.observer.finished(result)
            return
        op = self.pipeline.operator(name)
        if self.stop_reason and name not in self.completed:
            result.status = STOPPED
            result.reason = f"{describe_exit(code)} while the job was stopping"
            self.observer.finished(result)
            return
        if code != 0:
            self._fail(result, FAILED, describe_exit(code))
            return
        problem, seen = self.duties[op.name].check()
        self.variables.observed(seen)
        created = {n: o.created for n, o in seen.items()}
        self.variables.stamp(created, result.started or 0.0, self._now())
        if problem:
            self._fail(result, FAILED, problem)
            return
        result.status = SUCCEEDED
        self.observer.finished(result)
        self.unsettled.append(name)
        for ready in scheduling.settle_order(self.pipeline, self.unsettled, self._settled):
            self.unsettled.remove(ready)
            freed, _ = self.duties[ready].finish(self.keep)
            assert self.ready is not None
            self.completed.add(ready)
            self.ready.release(ready)  # its readers go on (unless they already have)
            self.variables.freed(freed, self._freed)

    def _freed(self, record: VariableRecord) -> None:
        record.freed_at = self._now()
        self.observer.freed(record)

    def _fail(self, result: OperatorResult, status: str, reason: str) -> None:
        if result.name in self.duties and self.ready is not None:
            self.duties[result.name].failed()  # in the tally, then its readers wake (and fail)
            self.ready.release(result.name)
        result.status, result.reason = status, reason
        self.observer.finished(result)
        self._abort(FAILED, f"operator '{result.name}' {reason}")

    # -- output -------------------------------------------------------------------------

    def _read_output(self, name: str) -> None:
        data = self.pipes[name].read_output()
        if data is None:
            self._close_output(name)
        else:
            self.lines.feed(name, data)

    # -- helpers ------------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self.t0
