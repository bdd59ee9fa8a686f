"""How a job of the local runner ends (steps 4 and 5 of clara_core.pipeline.runner):

- `_abort`: the job stops; nothing starts any more, and running operators get SIGTERM to
  their process groups (on a failure, those that completed their outputs are left to end);
- `_stop_all`: `grace` seconds for them, then SIGKILL; every operator is reaped, and the
  output pipes get 1 s more (a stray that left its group may hold one);
- `_finish`: never-started operators are reported skipped, and the job is cleaned up: the
  context destroyed (or kept with `keep`), a successful temporary job directory removed.

JobEnd is mixed into runner's _Job: one job's state, split by what each half does.
"""

from __future__ import annotations

import contextlib
import signal
import time

from ..errors import NotFound
from .job_variables import recycle_left
from .operator_duties import drop_tally
from .results import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    STOPPED,
    SUCCEEDED,
    TIMED_OUT,
    WAITING,
)

TYPE_CHECKING = False  # as typing's, without importing typing
if TYPE_CHECKING:
    import selectors

    from ..context import Context
    from .completion import CompletionChannel
    from .job_variables import JobVariables
    from .jobdir import JobDirectory
    from .operator_duties import OperatorDuties
    from .operator_output import OutputLines
    from .operator_process import OperatorProcess
    from .readiness import ReadyLocks
    from .results import Observer, OperatorResult, RunResult

KILL_WAIT = 10.0  # seconds to wait for SIGKILLed processes before giving up on them
PIPES_WAIT = 1.0  # seconds for output pipes still open once every operator is reaped


class JobEnd:
    """The ending half of the runner's _Job (see the module docstring)."""

    if TYPE_CHECKING:  # the job's state it reads and changes (runner._Job makes it)
        keep: bool
        grace: float
        observer: Observer
        job: JobDirectory | None
        result: RunResult
        ops: dict[str, OperatorResult]
        procs: dict[str, OperatorProcess]
        pipes: dict[str, OperatorProcess]
        lines: OutputLines
        variables: JobVariables
        duties: dict[str, OperatorDuties]
        ready: ReadyLocks | None
        channels: dict[str, CompletionChannel]
        completed: set[str]
        selector: selectors.BaseSelector
        signals: list[int]
        stop_reason: str
        ctx: Context | None
        warm_pool: str | None

        def _dispatch(self, events: list) -> None: ...

        def _now(self) -> float: ...

    def _abort(self, status: str, reason: str) -> None:
        """Stop the job: nothing starts any more; running operators get SIGTERM (on a
        failure, those that completed their outputs are left to end, within `grace`)."""
        if self.stop_reason:
            return
        self.stop_reason = reason
        self.result.status, self.result.reason = status, reason
        for name, process in self.procs.items():
            result = self.ops[name]
            if status == FAILED and name in self.completed:
                continue  # its work is done, it is only ending: its exit still judges it
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
                    self.completed -= self.procs.keys()  # its exit is ours now, not its own
                if killed_at is not None and now - killed_at > KILL_WAIT:
                    break
                wait = term_deadline - now if killed_at is None else KILL_WAIT
            else:  # leaders reaped; a stray that escaped its group may still hold a pipe
                pipes_deadline = pipes_deadline or now + PIPES_WAIT
                if now >= pipes_deadline:
                    break
                wait = pipes_deadline - now
            self._dispatch(self.selector.select(max(0.0, wait)))
        for name in list(self.procs):  # unkillable (stuck in the kernel): give up on it
            self.ops[name].reason += "; did not die after SIGKILL"
            self.procs.pop(name)
            self._close_channel(name)
        for name in list(self.pipes):
            self._close_output(name)

    def _finish(self) -> None:
        for result in self.ops.values():
            if result.status == WAITING:
                result.status = SKIPPED
                result.reason = "not started: " + (self.stop_reason or "upstream failed")
                self.observer.finished(result)
            result.output_tail = self.lines.tail(result.name)
        for duties in self.duties.values():
            duties.close()
        if self.ready is not None:
            self.ready.close()  # readers still waiting find their producer unfinished
        self.variables.finish(self.ctx)
        if self.ctx is not None:
            if self.warm_pool is not None and not self.keep:
                recycle_left(self.ctx)  # what a failed job left: into the warm pool
            if self.keep:
                drop_tally(self.ctx)
                self.ctx.close()
            else:
                with contextlib.suppress(NotFound):  # someone destroyed it meanwhile
                    self.ctx.destroy()
        if self.result.status == RUNNING:
            self.result.status = SUCCEEDED
        assert self.job is not None
        if self.job.temporary and self.result.ok and not self.keep:
            self.job.remove()
        else:
            self.result.job_dir_kept = True
        self.result.duration = self._now()
        self.selector.close()

    def _close_channel(self, name: str) -> None:
        channel = self.channels.pop(name, None)
        if channel is not None:
            self.selector.unregister(channel.fd)
            channel.close()

    def _close_output(self, name: str) -> None:
        process = self.pipes.pop(name, None)
        if process is None:
            return
        self.lines.end(name)
        self.selector.unregister(process.output_fd)
        process.close_output()
