"""`clara exec-operator [--wait S] -- CMD...`: one operator in a job's pod (see
clara_core.pipeline.pod_operator); CMD runs as `clara map NAME -- CMD` runs its command."""

from __future__ import annotations

import math

import click


@click.command("exec-operator", short_help="Run one operator in a pod that `clara export` made.")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for the operators it reads from to succeed (0: they must have).",
)
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS...]")
def exec_operator(wait: float, command: tuple[str, ...]) -> None:
    """Run CMD as one operator of a job's pod, with the duties `clara run` has for it.

    \b
    The environment `clara export` writes says which operator and job (CLARA_IO,
    CLARA_JOB). Before CMD: the job's context is opened (created by the first operator),
    the operators it reads from must have succeeded (--wait), its static outputs are
    allocated. After CMD exits 0: its outputs are checked, variables it was the last to
    read are freed, and the last operator of the job destroys the context. Exits with
    CMD's status; 1 if CMD left an output unwritten or an upstream operator failed.
    """
    from clara_core.errors import InvalidArgument
    from clara_core.pipeline.pod_operator import exec_operator as run_operator

    from ..child import resolve, run

    if not 0 <= wait < math.inf:
        raise InvalidArgument(f"invalid --wait {wait}: use seconds >= 0")

    def start(env: dict[str, str]) -> int:
        return run(command, resolve(command), env)

    code = run_operator(start, wait)
    if code:
        click.get_current_context().exit(code)
