"""A pipeline as an Argo Workflow: one job is one pod, a `containerSet` template.

    workflow = argo_workflow(pipeline, ExportOptions(payloads=("study-1", "study-2")))

Built with hera (Argo's Python SDK, the optional extra `clara-fastio[cluster]`): its
models are generated from Argo's OpenAPI schema, so what it builds has Argo's shape.
Without `payloads`, the workflow's entry point is the job template and the workflow
argument `payload` (default `payload`) names the payload folder. With them, a steps
template runs the job template once per payload in parallel (`withItems`).
"""

from __future__ import annotations

import re

from ...errors import InvalidArgument
from ..model import Pipeline
from .pod import ExportOptions, JobPaths, job_pod

API_VERSION = "argoproj.io/v1alpha1"
JOB_TEMPLATE, FAN_OUT_TEMPLATE = "job", "payloads"
DEFAULT_PAYLOAD = "payload"
PATHS = JobPaths(
    payload="{{inputs.parameters.payload}}",
    job="{{workflow.name}}/{{inputs.parameters.payload}}",
)


def argo_workflow(pipeline: Pipeline, options: ExportOptions) -> dict:
    """The Workflow manifest (a dict, ready for YAML) that runs `pipeline` on Argo."""
    try:
        from hera.workflows import ContainerSet, Parameter, Step, Steps, Workflow
        from hera.workflows import models as m
    except ImportError:
        raise InvalidArgument(
            "clara export --to argo needs hera (Argo's Python SDK): "
            "pip install 'clara-fastio[cluster]'"
        ) from None
    pod = job_pod(pipeline, options, PATHS)
    job = ContainerSet(
        name=JOB_TEMPLATE,
        inputs=[Parameter(name="payload")],
        volumes=[m.Volume.model_validate(v) for v in pod.volumes],
        containers=[m.ContainerNode.model_validate(c) for c in pod.containers],
    )
    templates: list = [job]
    entrypoint = JOB_TEMPLATE
    arguments = [Parameter(name="payload", value=DEFAULT_PAYLOAD)]
    if options.payloads:
        fan_out = Steps(
            name=FAN_OUT_TEMPLATE,
            sub_steps=[
                Step(
                    name="job",
                    template=JOB_TEMPLATE,
                    with_items=list(options.payloads),
                    arguments=[Parameter(name="payload", value="{{item}}")],
                )
            ],
        )
        templates.insert(0, fan_out)
        entrypoint, arguments = FAN_OUT_TEMPLATE, []
    workflow = Workflow(
        generate_name=f"{dns_name(pipeline.name)}-",
        annotations={"clara-fastio/pipeline": pipeline.name},
        entrypoint=entrypoint,
        arguments=arguments or None,
        templates=templates,
    )
    return workflow.to_dict()


def dns_name(name: str) -> str:
    """A pipeline name as the start of a Kubernetes object name."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50].strip("-")
    return cleaned or "clara"
