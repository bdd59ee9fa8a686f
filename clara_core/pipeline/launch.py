"""How one operator of a local job starts: its environment and command line.

    launch = prepare(pipeline, op, job, context, job_id)
    OperatorDuties(ctx, launch.io, plan).prepare()     # static outputs, output folders
    OperatorProcess(launch.argv, launch.cwd, launch.env)

Everything here depends on one operator only (the job loop is `runner`; what is done
around the process, in a pod too, is `operator_duties`). The command is
the operator's (container.command or a `--bind`), run in the pipeline file's directory;
each declared container path in its arguments is replaced by its local folder:

    /output, /output/masks      ->  JOB/operators/<op>/<output>, .../masks
    --out=/output/masks         ->  --out=JOB/operators/<op>/<output>/masks

(whole arguments and the value of NAME=VALUE arguments; rooted paths only, never text in
the middle of an argument such as a `sh -c` script). With `isolate`, nothing is replaced:
the operator runs in its own mount namespace where the container paths are real.
"""

from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Mapping, Sequence

from ..errors import InvalidArgument
from ..records import Record
from . import isolate as isolation
from .environment import OperatorIO
from .jobdir import JobDirectory
from .model import Operator, Pipeline
from .operator_io import describe_operator, disk_paths


class Launch(Record):
    """What starting one operator takes: argv, working directory, environment, its I/O."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    io: OperatorIO


def prepare(
    pipeline: Pipeline,
    op: Operator,
    job: JobDirectory,
    context: str,
    job_id: str,
    isolate: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """How to start `op` in `job` (its folders are made by `OperatorDuties.prepare`)."""
    if not op.command:
        raise InvalidArgument(f"operator '{op.name}' has no command ({op.command_origin})")
    paths = disk_paths(pipeline, op, job)
    io = describe_operator(pipeline, op, context, job_id, job)
    env = operator_environment(op, io, os.environ if environ is None else environ)
    cwd = pipeline.directory
    if isolate:
        mounts = [
            (p.container, p.local, p.direction == "input")
            for p in paths
            if p.container.startswith("/")
        ]
        argv = isolation.wrap(op.command, mounts, job.isolate_root(op.name), cwd)
    else:
        argv = substitute_paths(op.command, {p.container: p.local for p in paths})
    return Launch(argv, cwd, env, io)


# The operators of a job start together and share this machine's cores. OpenBLAS (numpy's
# BLAS) starts a worker thread per other core at `import numpy`, which spins ~2**28 cycles
# (~0.1 s) before it sleeps, and again after every call: CPU taken from the operators
# that work (P9 on 2 cores: the floor of `clara run` 0.314 -> 0.263 s). With 4, the
# least (16 cycles), idle workers sleep at once; BLAS still uses every core. The runner's
# own environment or an operator's `variables` may set it otherwise.
IDLE_THREADS_SLEEP = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def operator_environment(
    op: Operator, io: OperatorIO, environ: Mapping[str, str]
) -> dict[str, str]:
    """The runner's environment, the operator's variables, its services, then CLARA_*."""
    env = dict(environ)
    env["PYTHONUNBUFFERED"] = "1"  # operators' output reaches the runner as it happens
    for name, value in IDLE_THREADS_SLEEP.items():
        env.setdefault(name, value)  # unless the runner's own environment says otherwise
    env.update(op.variables)
    for service in op.services:
        for connection in service.connections:
            if connection.kind == "http" and connection.uri is not None:
                env[connection.name] = connection.uri
    bindir = os.path.dirname(sys.executable)  # `clara` and `python` of this interpreter
    path = env.get("PATH", os.defpath)
    if path.split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + path
    env.update(io.environment())
    return env


def substitute_paths(argv: Sequence[str], paths: Mapping[str, str]) -> list[str]:
    """`argv` with each declared rooted container path (and what is under it) made local."""
    rooted = sorted(
        ((posixpath.normpath(c), local) for c, local in paths.items() if c.startswith("/")),
        key=lambda item: -len(item[0]),
    )

    def local(arg: str) -> str | None:
        for container, folder in rooted:
            if arg == container or arg.rstrip("/") == container:
                return folder
            if arg.startswith(container + "/"):
                return folder + arg[len(container) :]
        return None

    result = []
    for arg in argv:
        whole = local(arg)
        if whole is not None:
            result.append(whole)
            continue
        name, sep, value = arg.partition("=")
        replaced = local(value) if sep and name else None
        result.append(f"{name}={replaced}" if replaced is not None else arg)
    return result


def could_not_start(op: Operator, exc: Exception) -> str:
    """Why `op` did not start, naming its command and where that command was given."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"could not start {exc.filename} ({op.command_origin}): {exc.strerror}"
    return f"could not start ({op.command_origin}): {exc}"
