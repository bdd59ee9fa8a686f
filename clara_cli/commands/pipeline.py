"""`clara run FILE`: a Clara pipeline run on this machine (`clara validate`: validate.py).

Thin: `clara_core.pipeline.loading` reads the file, `bindings` and `services` give what
a local run needs, `clara_core.pipeline.runner` runs; this module only draws. While a
job runs on a terminal, a live table (rich, on stderr) shows each operator; operators'
output scrolls above it, prefixed with their names. At the end a table of operators
(status, exit code, start, duration) and one of variables goes to stdout, or the same
as one JSON document with --json.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import click

from ..options import bindings_option, json_option, param_option, wants_json
from ..render import emit
from .validate import validate  # noqa: F401 (main.py lists validate here)

if TYPE_CHECKING:
    from clara_core.pipeline.model import Pipeline
    from clara_core.pipeline.results import OperatorResult, RunResult, VariableRecord

RUN_NOTES = ("requests", "models", "path")  # remarks of the file worth repeating at a run


# -- clara run ----------------------------------------------------------------------------


@click.command("run")
@click.argument("file", metavar="FILE")
@click.option(
    "--context",
    "context_name",
    metavar="NAME",
    help="Name of the job's context (default: <pipeline>-<random>); it must not exist.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the context and every variable afterwards, for `clara dump` "
    "(then `clara destroy context NAME`).",
)
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="Stop the whole job after this long."
)
@click.option(
    "--grace",
    type=float,
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Time stopped operators get between SIGTERM and SIGKILL.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not show the operators' own output.")
@click.option(
    "--trace",
    "trace_file",
    metavar="FILE",
    help="Also write the run as Chrome Trace Event JSON (open it in Perfetto or "
    "chrome://tracing): operators, variables' lifetimes, memory in use.",
)
@click.option(
    "--job-dir",
    metavar="DIR",
    help="The job directory (new or empty; kept). Default: a fresh one under the temp "
    "dir, removed after a success unless --keep.",
)
@click.option(
    "--payload",
    metavar="PATH",
    type=click.Path(exists=True),
    help="The job's input, copied to JOB/payload: what inputs without `from` see.",
)
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="OPERATOR=COMMAND",
    help="The local command of OPERATOR (split as a shell would; runs in FILE's "
    "directory). Repeatable; replaces container.command.",
)
@bindings_option
@click.option(
    "--service",
    "service_uris",
    multiple=True,
    metavar="NAME=URI",
    help="Address of a declared service (or one http connection) you run yourself; "
    "exported as the variable Clara would export. Repeatable.",
)
@param_option
@click.option(
    "--isolate",
    is_flag=True,
    help="Mount each operator's declared container paths (/input, /output ...) for real, "
    "in a mount namespace of its own, so unmodified operators work.",
)
@click.option(
    "--warm-pool",
    metavar="NAME",
    help="Claim the job's variables from the pool of context NAME and free them back "
    "into it, so the next job finds warm pages (NAME is made on first use, without "
    "owner; `clara destroy context NAME` empties it).",
)
@json_option
def run(
    file: str,
    context_name: str | None,
    keep: bool,
    timeout: float | None,
    grace: float,
    quiet: bool,
    trace_file: str | None,
    job_dir: str | None,
    payload: str | None,
    binds: tuple[str, ...],
    binding_files: tuple[str, ...],
    service_uris: tuple[str, ...],
    params: tuple[str, ...],
    isolate: bool,
    warm_pool: str | None,
) -> None:
    """Run the pipeline FILE on this machine; exit 1 if an operator failed.

    \b
    Each operator runs as a local process (its --bind or container.command, in the
    directory of FILE) as soon as every operator it reads from on disk has succeeded,
    in parallel when independent: one reading others only in shared memory starts with
    the job, and each read of such an input waits until its producer has completed it
    (a failed producer fails it). An operator without a command refuses the run before
    anything starts. Declared container paths are never used on this machine: each is
    a folder of the job directory (JOB/payload, JOB/operators/OP/OUTPUT, JOB/logs/OP.log),
    given to the operator in CLARA_INPUT[_NAME], CLARA_OUTPUT[_NAME], CLARA_PATHS and in
    place of the path in its arguments. Static shared-memory outputs are pre-allocated;
    each variable is freed after its last reader. On a failure, timeout, Ctrl-C or
    SIGTERM the other operators are stopped and everything is freed.
    """
    from clara_core.errors import InvalidArgument
    from clara_core.pipeline import bindings, services
    from clara_core.pipeline.isolate import unavailable
    from clara_core.pipeline.loading import load
    from clara_core.pipeline.runner import run as run_pipeline
    from clara_core.pipeline.templates import parse_arguments

    if timeout is not None and not timeout > 0:
        raise InvalidArgument(f"invalid --timeout {timeout}: use seconds > 0")
    if not 0 <= grace < math.inf:
        raise InvalidArgument(f"invalid --grace {grace}: use seconds >= 0")
    pipeline = load(file, parse_arguments(params))
    given = [b for path in binding_files for b in bindings.read_file(path)]
    given += [bindings.parse_bind(text) for text in binds]
    pipeline = bindings.apply(pipeline, given)
    try:
        bindings.require_commands(pipeline)
    except bindings.Unbound as exc:
        for line in exc.lines:
            _write(f"{line}\n")
        raise
    pipeline, warnings = services.bind(pipeline, services.parse_assignments(service_uris))
    if isolate and (reason := unavailable()):
        raise InvalidArgument(f"--isolate is not available on this machine: {reason}")
    for remark in pipeline.remarks:
        if remark.topic in RUN_NOTES:
            _write(f"{remark}\n")
    for warning in warnings:
        _write(f"clara: warning: {warning}\n")
    trace = _open_trace(trace_file) if trace_file else None  # a bad path fails before the job
    observer = _observer(pipeline, quiet, wants_json())
    with observer:
        limit = None if timeout == math.inf else timeout
        result = run_pipeline(
            pipeline,
            context_name,
            keep,
            limit,
            grace,
            observer,
            job_dir=job_dir,
            payload=payload,
            isolate=isolate,
            warnings=warnings,
            warm_pool=warm_pool,
        )
    if trace is not None:
        _write_trace(trace, result)
    emit(result.to_dict(), lambda: _print_result(result))
    if not result.ok:
        _print_account(result, quiet)
        click.get_current_context().exit(1)


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

            from ..render import console

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
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except BrokenPipeError:
        pass


def _print_result(result: RunResult) -> None:
    from ..render import size, table

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
        click.echo()
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
    click.echo()
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
    click.echo(f"{result.pipeline} {verdict} in {result.duration:.2f}s; {where}; {files}")


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
    from ..render import shape

    return shape(variable.shape)


def _variable_state(variable: VariableRecord) -> str:
    if variable.freed_at is not None:
        return f"freed at {variable.freed_at:.2f}s"
    return variable.state
