"""The body of `clara run FILE`: load, bind and run a pipeline, draw it, report it.

Both command lines run this: the click command (clara_cli.commands.pipeline, which owns
the options, their help and the usage errors) and the click-free one that `clara run`
takes in the plain spelling (clara_cli.fastrun): so neither imports click here. While a
job runs on a terminal, a live table (rich, on stderr) shows each operator; operators'
output scrolls above it, prefixed with their names. At the end a table of operators
(status, exit code, start, duration) and one of variables goes to stdout, or the same
as one JSON document with --json.
"""

from __future__ import annotations

import gc
import math
import sys
import time

from clara_core.records import Record

from .exits import write_stderr
from .render import emit, wants_json

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing is not imported at run time
if TYPE_CHECKING:
    from clara_core.pipeline.model import Pipeline
    from clara_core.pipeline.results import OperatorResult, RunResult, VariableRecord

RUN_NOTES = ("requests", "models", "path")  # remarks of the file worth repeating at a run


class RunRequest(Record):
    """What `clara run` was asked (its options, as the click command documents them)."""

    file: str
    context_name: str | None = None
    keep: bool = False
    timeout: float | None = None
    grace: float = 5.0
    quiet: bool = False
    trace_file: str | None = None
    job_dir: str | None = None
    payload: str | None = None
    binds: tuple[str, ...] = ()
    binding_files: tuple[str, ...] = ()
    service_uris: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    isolate: bool = False
    warm_pool: str | None = None


def run_job(request: RunRequest) -> int:
    """Run the pipeline; the exit code (1: an operator failed). ClaraErrors propagate."""
    from clara_core.errors import InvalidArgument
    from clara_core.pipeline import bindings, services
    from clara_core.pipeline.isolate import unavailable
    from clara_core.pipeline.loading import load
    from clara_core.pipeline.runner import run as run_pipeline
    from clara_core.pipeline.templates import parse_arguments

    timeout, grace, quiet = request.timeout, request.grace, request.quiet
    if timeout is not None and not timeout > 0:
        raise InvalidArgument(f"invalid --timeout {timeout}: use seconds > 0")
    if not 0 <= grace < math.inf:
        raise InvalidArgument(f"invalid --grace {grace}: use seconds >= 0")
    pipeline = load(request.file, parse_arguments(request.params))
    given = [b for path in request.binding_files for b in bindings.read_file(path)]
    given += [bindings.parse_bind(text) for text in request.binds]
    pipeline = bindings.apply(pipeline, given)
    try:
        bindings.require_commands(pipeline)
    except bindings.Unbound as exc:
        for line in exc.lines:
            _write(f"{line}\n")
        raise
    pipeline, warnings = services.bind(pipeline, services.parse_assignments(request.service_uris))
    if request.isolate and (reason := unavailable()):
        raise InvalidArgument(f"--isolate is not available on this machine: {reason}")
    for remark in pipeline.remarks:
        if remark.topic in RUN_NOTES:
            _write(f"{remark}\n")
    for warning in warnings:
        _write(f"clara: warning: {warning}\n")
    trace = _open_trace(request.trace_file) if request.trace_file else None  # fails early
    observer = _observer(pipeline, quiet, wants_json())
    # What exists now (modules, the pipeline) lives as long as the job: the cyclic
    # collector need not walk it again and again. The launchers import with it off
    # (clara_cli.fastpath): turned on here, it would first walk all of it at once (a
    # 5-9 ms collection before the first operator starts).
    gc.freeze()
    gc.enable()
    with observer:
        limit = None if timeout == math.inf else timeout
        result = run_pipeline(
            pipeline,
            request.context_name,
            request.keep,
            limit,
            grace,
            observer,
            job_dir=request.job_dir,
            payload=request.payload,
            isolate=request.isolate,
            warnings=warnings,
            warm_pool=request.warm_pool,
        )
    if trace is not None:
        _write_trace(trace, result)
    try:
        emit(result.to_dict(), lambda: _print_result(result))
    finally:  # a failed job's account reaches stderr even if stdout cannot take the result
        if not result.ok:
            _print_account(result, quiet)
    return 0 if result.ok else 1


def _open_trace(path: str):  # -> an open text file
    from clara_core.errors import InvalidArgument, PermissionDenied

    try:
        return open(path, "w", encoding="utf-8")  # written, and closed, after the run
    except PermissionError as exc:
        raise PermissionDenied(f"cannot write trace {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot write trace {path}: {exc.strerror or exc}") from exc


def _write_trace(file, result: RunResult) -> None:
    import json

    from clara_core.pipeline.trace import chrome_trace

    with file:
        json.dump(chrome_trace(result), file)
        file.write("\n")


def _observer(pipeline: Pipeline, quiet: bool, as_json: bool):
    from clara_core.pipeline.results import Observer

    class Lines(Observer):
        """Progress as plain lines on stderr (not a terminal, or --json)."""

        def __init__(self) -> None:
            self.width = max(len(op.name) for op in pipeline.operators)

        def __enter__(self) -> Lines:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def began(self, job: RunResult) -> None:
            _write(f"clara: job directory {job.job_dir}\n")

        def output(self, op: OperatorResult, line: str) -> None:
            if not quiet:
                _write(f"{op.name:>{self.width}} | {line}\n")

    class Live(Lines):
        """A live table on the terminal (stderr), operators' output scrolling above it."""

        def __init__(self) -> None:
            super().__init__()
            from rich.live import Live as RichLive

            from .render import console

            self.began_at: dict[str, float] = {}
            self.results: dict[str, OperatorResult] = {}
            self.order = [op.name for op in pipeline.operators]
            self.live = RichLive(
                self, console=console(stderr=True), refresh_per_second=10, transient=True
            )

        def __enter__(self) -> Live:
            self.live.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.live.__exit__(None, None, None)

        def began(self, job: RunResult) -> None:
            self.live.console.print(f"clara: job directory {job.job_dir}", soft_wrap=True)

        def started(self, op: OperatorResult) -> None:
            self.began_at[op.name] = time.monotonic()
            self.results[op.name] = op

        def finished(self, op: OperatorResult) -> None:
            self.results[op.name] = op

        def output(self, op: OperatorResult, line: str) -> None:
            if not quiet:
                from rich.text import Text

                prefix = (f"{op.name:>{self.width}} | ", "dim")
                self.live.console.print(Text.assemble(prefix, line), soft_wrap=True)

        def __rich__(self):
            from rich.spinner import Spinner
            from rich.table import Table

            grid = Table.grid(padding=(0, 2))
            for name in self.order:
                op = self.results.get(name)
                status = op.status if op else "waiting"
                if status == "running" and op is not None:
                    elapsed = time.monotonic() - self.began_at.get(name, time.monotonic())
                    grid.add_row(Spinner("dots", style="yellow"), name, f"running {elapsed:.1f}s")
                else:
                    mark, style = _MARKS.get(status, ("·", "dim"))
                    took = f" {op.duration:.2f}s" if op and op.duration is not None else ""
                    grid.add_row(f"[{style}]{mark}[/]", name, f"[{style}]{status}{took}[/]")
            return grid

    if not as_json and sys.stderr.isatty():
        return Live()
    return Lines()


_MARKS = {
    "succeeded": ("✓", "green"),
    "failed": ("✗", "red"),
    "timed-out": ("✗", "red"),
    "stopped": ("■", "magenta"),
    "skipped": ("-", "dim"),
    "waiting": ("·", "dim"),
}


def _write(text: str) -> None:
    write_stderr(text)  # (a stderr that cannot take it never stops the job)


def _print_result(result: RunResult) -> None:
    from .render import size, table

    table(
        ["operator", "status", "exit", "start", "duration", "note"],
        [
            [
                op.name,
                op.status,
                op.exit_code,
                _seconds(op.started),
                _seconds(op.duration),
                op.reason,
            ]
            for op in result.operators
        ],
        title=f"pipeline {result.pipeline} ({result.file})",
        right=["exit", "start", "duration"],
    )
    if result.variables:
        sys.stdout.write("\n")
        table(
            ["variable", "type", "shape", "size", "readers", "state"],
            [
                [
                    v.name,
                    v.element_type,
                    _shape(v),
                    size(v.nbytes) if v.nbytes is not None else None,
                    ", ".join(v.consumers) or None,
                    _variable_state(v),
                ]
                for v in result.variables
            ],
            title=f"variables in context {result.context}",
            right=["size"],
        )
    sys.stdout.write("\n")
    verdict = "succeeded" if result.ok else result.status
    where = (
        f"context {result.context} kept: `clara dump {result.context}`, then "
        f"`clara destroy context {result.context}`"
        if result.kept
        else f"context {result.context} destroyed"
    )
    files = (
        f"job directory {result.job_dir} kept"
        if result.job_dir_kept
        else "job directory removed (--keep or --job-dir keeps it)"
    )
    sys.stdout.write(f"{result.pipeline} {verdict} in {result.duration:.2f}s; {where}; {files}\n")


def _print_account(result: RunResult, quiet: bool) -> None:
    """Why the job failed, where to look, and the last output of each failed operator."""
    _write(f"clara: pipeline {result.pipeline} {result.status}: {result.reason}\n")
    if result.job_dir_kept:
        _write(f"clara: job directory {result.job_dir} kept (operators' logs in logs/)\n")
    if not result.kept:
        _write(
            f"clara: context {result.context} was destroyed; rerun with --keep to inspect "
            "it afterwards (`clara dump CONTEXT`)\n"
        )
    if not quiet:
        return  # their output was shown as it came
    for op in result.operators:
        if op.status in ("failed", "timed-out") and op.output_tail:
            _write(f"clara: last output of {op.name}:\n")
            for line in op.output_tail[-10:]:
                _write(f"    {line}\n")


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}s"


def _shape(variable: VariableRecord) -> str:
    from .render import shape

    return shape(variable.shape)


def _variable_state(variable: VariableRecord) -> str:
    if variable.freed_at is not None:
        return f"freed at {variable.freed_at:.2f}s"
    return variable.state
