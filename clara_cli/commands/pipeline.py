"""`clara run FILE`: a Clara pipeline run on this machine (`clara validate`: validate.py).

Thin: this module is the command line (options, help, usage errors); clara_cli.running
loads, binds, runs and draws (`clara_core.pipeline.loading` reads the file, `bindings`
and `services` give what a local run needs, `clara_core.pipeline.runner` runs). A
command line in the plain spelling does not come here: clara_cli.fastrun runs it
without click, through the same clara_cli.running.
"""

from __future__ import annotations

import click

from ..options import bindings_option, json_option, param_option
from .validate import validate  # noqa: F401 (main.py lists validate here)

# -- clara run ----------------------------------------------------------------------------


@click.command("run", short_help="Run a pipeline on this machine.")
@click.argument("file", metavar="FILE")
@click.option(
    "--context",
    "-c",
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
    from ..running import RunRequest, run_job

    request = RunRequest(
        file,
        context_name,
        keep,
        timeout,
        grace,
        quiet,
        trace_file,
        job_dir,
        payload,
        binds,
        binding_files,
        service_uris,
        params,
        isolate,
        warm_pool,
    )
    code = run_job(request)
    if code:
        click.get_current_context().exit(code)
