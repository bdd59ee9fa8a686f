"""`clara exec-operator`: one operator inside a job's pod, with the runner's duties.

    code = exec_operator(start, wait=0.0)   # start(env) runs the operator, returns its code

The pod has no `clara run`: its environment (written by `clara export`) describes the
operator (CLARA_IO) and the job (CLARA_JOB). The wrapper opens the job's context (the
first operator creates it), waits for the operators it reads from (`wait` seconds; Argo
has already ordered the containers, a plain Kubernetes pod has not), does the same
`OperatorDuties` as the local runner around the operator's process, and destroys the
context once it is the job's last operator to finish. The operator's exit code is the
wrapper's; a failure is recorded in the job's tally so that waiting readers give up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping

from ..context import Context
from ..errors import AlreadyExists, ClaraError, InvalidArgument, NotFound
from .environment import CONTEXT, IO, JOB, JOB_ID, OPERATOR, JobPlan, OperatorIO
from .operator_duties import OperatorDuties


class OperatorFailed(ClaraError):
    """The operator exited 0 but did not leave its outputs as declared."""


def exec_operator(
    start: Callable[[dict[str, str]], int],
    wait: float = 0.0,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run this pod's operator with `start(env)`; returns its exit code (see the module
    docstring). Whatever `start` raises is recorded as the operator's failure, then raised."""
    env = dict(os.environ if environ is None else environ)
    missing = [name for name in (OPERATOR, CONTEXT, IO, JOB) if not env.get(name)]
    if missing:  # (not OperatorIO's "not inside `clara run`": a pod has no clara run)
        raise InvalidArgument(
            f"not running in a job's pod ({', '.join(missing)} not set): exec-operator runs "
            "one operator of a pipeline exported by `clara export`; on this machine, "
            "run the pipeline with `clara run FILE`"
        )
    io = OperatorIO.from_environment(env)
    plan = JobPlan.from_environment(env)
    if not io.job_id and env.get(JOB_ID):
        io = io._replace(job_id=env[JOB_ID])
        env[IO] = io.to_json()
    ctx = _open_or_create(io.context)
    try:
        duties = OperatorDuties(ctx, io, plan)
        try:
            return _run(duties, start, wait, env, ctx)
        finally:
            duties.close()
    finally:
        ctx.close()


def _run(
    duties: OperatorDuties,
    start: Callable[[dict[str, str]], int],
    wait: float,
    env: dict[str, str],
    ctx: Context,
) -> int:
    try:
        duties.wait_for_upstream(wait)
        duties.prepare()
        code = start(env)
    except BaseException:
        duties.failed()
        raise
    if code != 0:
        duties.failed()
        return code
    problem, _ = duties.check()
    if problem:
        duties.failed()
        raise OperatorFailed(f"operator '{duties.io.operator}' {problem}")
    _, left = duties.finish()
    if left == 0:  # the job's last operator: nothing of the job is needed any more
        with contextlib.suppress(NotFound):
            Context.destroy(ctx.name)
    return 0


def _open_or_create(name: str) -> Context:
    """The job's context; the first operator of the pod creates it (no owner: the pod is)."""
    try:
        return Context.create(name)
    except AlreadyExists:
        return Context.open(name)
