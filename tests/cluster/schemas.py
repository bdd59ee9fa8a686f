"""Schema checks of exported manifests: Argo's (hera's models) and Kubernetes' (strict).

hera's models are generated from Argo's OpenAPI document and ignore unknown keys, so a
manifest is valid for Argo here when it parses AND dumps back to itself unchanged (a key
the schema does not know would be dropped). Kubernetes objects go through
kubernetes-validate's strict schemas (unknown keys are errors).
"""

from __future__ import annotations

import kubernetes_validate
from hera.workflows import models as argo

KUBERNETES_VERSION = kubernetes_validate.utils.latest_version()


def check_argo(manifest: dict) -> argo.Workflow:
    """The manifest as Argo's Workflow model; AssertionError naming what differs."""
    workflow = argo.Workflow.model_validate(manifest)
    again = workflow.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert again == manifest, _difference(manifest, again)
    return workflow


def check_kubernetes(manifest: dict) -> None:
    """Validate a Kubernetes object against the strict schema of the newest version."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def pod_of_template(template: dict) -> dict:
    """The Pod that Argo makes from a containerSet template (its Kubernetes parts)."""
    containers = []
    for node in template["containerSet"]["containers"]:
        container = {k: v for k, v in node.items() if k != "dependencies"}
        containers.append(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job"},
        "spec": {"containers": containers, "volumes": template["volumes"]},
    }


def _difference(expected: object, got: object, path: str = "") -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected.keys() | got.keys():
            if expected.get(key) != got.get(key):
                return _difference(expected.get(key), got.get(key), f"{path}.{key}")
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for index, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                return _difference(a, b, f"{path}[{index}]")
    return f"at {path or 'top'}: manifest has {expected!r}, Argo's schema reads {got!r}"
