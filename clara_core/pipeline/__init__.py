"""Clara pipelines: the language, the local runner, and the operator side.

    model            Pipeline, Operator, Port: read-only records and the DAG
    schema/          the rules of Clara's pipeline language, with line numbers
    yamllines        YAML with a line number on every node
    textfile         the text of a file a user names, bounded (pipeline, bindings)
    loading          load(file) / check(file): a file through the rules into a Pipeline
    environment      the operator environment contract (CLARA_IO and friends)
    operator_io      where an operator's declared I/O lives in a local run
    variables        Variable: an operator's declared shared-memory input or output
    declared         what an operator opens by name: its job's context, `clara map NAME`
    driver           Driver: Clara's prepare / execute / cleanup life-cycle for operators
    runner           run(pipeline): the local job loop
    job_variables    the runner's record of variables, from allocation to free
    operator_duties  what the runner does for one operator (allocate, check, free after
                     the last reader), shared through the job's tally: one code path
                     for `clara run` and `clara exec-operator`
    pod_operator     `clara exec-operator`: one operator inside a pod, no runner
    operator_process one operator's process (group, death with the runner, output pipe)
    completion       an operator tells the runner its outputs are complete, before its exit
    export/          the job as one pod: an Argo Workflow or a Kubernetes Indexed Job
    results          what a run reports (RunResult, OperatorResult, VariableRecord)

Everything here uses the object model (Context, Allocation), never the reverse.
"""

from __future__ import annotations

from ..lazy import lazy_names

TYPE_CHECKING = False  # as typing's, without importing typing (an operator's start-up)

if TYPE_CHECKING:
    from .driver import Driver
    from .loading import check, load
    from .model import Operator, Pipeline, PipelineInvalid, Port, Problem
    from .runner import run
    from .variables import Variable

_LAZY = {
    "Driver": "driver",
    "Operator": "model",
    "Pipeline": "model",
    "PipelineInvalid": "model",
    "Port": "model",
    "Problem": "model",
    "Variable": "variables",
    "check": "loading",
    "load": "loading",
    "run": "runner",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "Driver",
    "Operator",
    "Pipeline",
    "PipelineInvalid",
    "Port",
    "Problem",
    "Variable",
    "check",
    "load",
    "run",
]
