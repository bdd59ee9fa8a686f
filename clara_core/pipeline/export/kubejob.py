"""A pipeline as a Kubernetes Indexed Job, for clusters without Argo.

    job = indexed_job(pipeline, ExportOptions(payloads=("study-1", "study-2")))

One job of the pipeline is one pod of the Job (completion index i runs payload i).
Plain Kubernetes starts all containers of a pod at once, so each operator's wrapper
waits (`clara exec-operator --wait`) until the operators it reads from have succeeded,
as the job's tally in the pod's /dev/shm says; an upstream failure ends it at once.
Volume sub-paths use the pod's own labels through `subPathExpr`: payload i is read from
`payloads/<i>` (the annotation `clara-fastio/payloads` lists which payload is which) and
results go to `results/<job name>/<i>/<operator>/<output>`.
"""

from __future__ import annotations

import json

from ..model import Pipeline
from .argo import dns_name
from .pod import ExportOptions, JobPaths, job_pod

WAIT_SECONDS = 7 * 24 * 3600  # bounded, but never before the pod's own deadline
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "job-name"
PATHS = JobPaths(
    payload="$(CLARA_JOB_INDEX)", job="$(CLARA_JOB_NAME)/$(CLARA_JOB_INDEX)", expression=True
)
SINGLE_PATHS = JobPaths(payload="payload", job="$(CLARA_JOB_NAME)/0", expression=True)
POD_ENV = [
    {
        "name": "CLARA_JOB_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
    },
    {
        "name": "CLARA_JOB_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}},
    },
]


def indexed_job(pipeline: Pipeline, options: ExportOptions) -> dict:
    """The batch/v1 Job manifest (a dict, ready for YAML) that runs `pipeline`."""
    paths = PATHS if options.payloads else SINGLE_PATHS
    pod = job_pod(pipeline, options, paths, POD_ENV)
    for container in pod.containers:
        container.pop("dependencies", None)
        container["command"] = [*container["command"][:-1], "--wait", str(WAIT_SECONDS), "--"]
    count = max(1, len(options.payloads))
    annotations = {"clara-fastio/pipeline": pipeline.name}
    if options.payloads:
        annotations["clara-fastio/payloads"] = json.dumps(list(options.payloads))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": f"{dns_name(pipeline.name)}-", "annotations": annotations},
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": dict(annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": pod.containers,
                    "volumes": pod.volumes,
                },
            },
        },
    }
