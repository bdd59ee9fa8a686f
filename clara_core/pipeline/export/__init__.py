"""Pipelines on a cluster: one pipeline job is one Kubernetes pod.

pod        the job's pod: one container per operator under `clara exec-operator`,
           /dev/shm in memory, declared paths on a persistent volume claim
argo       an Argo Workflow (containerSet template, fan-out with withItems), via hera
kubejob    a Kubernetes Indexed Job (one pod per payload), plain dicts

manifest = export(load("examples/ct-smooth.yaml"), "argo", ExportOptions())
"""

from __future__ import annotations

from ..model import Pipeline
from .pod import ExportOptions

TARGETS = ("argo", "k8s-job")

__all__ = ["TARGETS", "ExportOptions", "export"]


def export(pipeline: Pipeline, target: str, options: ExportOptions) -> dict:
    """The manifest that runs `pipeline` on `target` (one of TARGETS)."""
    if target == "argo":
        from .argo import argo_workflow

        return argo_workflow(pipeline, options)
    from .kubejob import indexed_job

    return indexed_job(pipeline, options)
