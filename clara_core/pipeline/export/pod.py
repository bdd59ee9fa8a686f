"""One pipeline job as one Kubernetes pod: its containers, volumes and environment.

    pod = job_pod(pipeline, ExportOptions(), ARGO_PATHS)
    pod.containers, pod.volumes     # plain Kubernetes core/v1 dicts (camelCase keys)

Every operator is one container of the pod, running its command under
`clara exec-operator`, which does the runner's duties for that one operator (see
`operator_duties`). All containers share `/dev/shm`: an `emptyDir` in memory sized from
the declared static outputs plus headroom. Declared disk paths are mounts of one
persistent volume claim: a payload input reads `payloads/<payload>`, an output writes
`results/<job>/<operator>/<output>`, and an input with `from` reads its producer's folder.
How `<payload>` and `<job>` are spelled depends on the target (`JobPaths`).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from dataclasses import dataclass, field

from ...errors import InvalidArgument
from ..environment import JOB, JOB_ID, Declared, OperatorIO
from ..model import DISK, SHARED_MEMORY, Operator, Pipeline, Port
from ..operator_io import job_plan

WRAPPER = ("clara", "exec-operator", "--")
SHM_VOLUME, DATA_VOLUME = "dshm", "data"
PAGE = 4096
# Per variable: its header page, plus a page of slack for the layout's alignment.
SEGMENT_OVERHEAD = 2 * PAGE
MIB = 2**20
DEFAULT_HEADROOM = 1024 * MIB  # dynamic outputs (sizes known only at run time) live here
DEFAULT_CLAIM = "clara-data"
# Names Argo's executor gives its own containers in every pod it makes.
RESERVED_CONTAINERS = ("init", "wait")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class ExportOptions:
    """What `clara export` is told beyond the pipeline file."""

    claim: str = DEFAULT_CLAIM  # persistent volume claim holding payloads and results
    shm_size: int | None = None  # bytes of /dev/shm; None: computed (static + headroom)
    headroom: int = DEFAULT_HEADROOM
    payloads: tuple[str, ...] = ()  # fan-out: one job pod per payload


@dataclass(frozen=True)
class JobPaths:
    """How a target spells the per-job parts of volume sub-paths."""

    payload: str  # the payload folder's name, e.g. '{{inputs.parameters.payload}}'
    job: str  # the job's result folder, e.g. '{{workflow.name}}/{{inputs.parameters.payload}}'
    expression: bool = False  # True: use subPathExpr ($(VAR) from the container's env)


@dataclass
class JobPod:
    """The pod of one job: containers (with Argo `dependencies`) and volumes."""

    containers: list[dict] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)
    shm_bytes: int = 0


def job_pod(
    pipeline: Pipeline, options: ExportOptions, paths: JobPaths, extra_env: list[dict] = ()
) -> JobPod:
    """The pod that runs one job of `pipeline`; InvalidArgument if a cluster cannot run it."""
    names = container_names(pipeline)
    plan = job_plan(pipeline).to_json()
    pod = JobPod()
    uses_data = False
    for op in pipeline.order():
        io = container_io(pipeline, op)
        mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
        for mount in _disk_mounts(pipeline, op, paths):
            mounts.append(mount)
            uses_data = True
        _check_mounts(op, mounts)
        env = [{"name": k, "value": v} for k, v in op.variables.items()]
        env += [{"name": "PYTHONUNBUFFERED", "value": "1"}]
        env += [{"name": k, "value": v} for k, v in io.environment().items() if k != JOB_ID]
        env += [{"name": JOB, "value": plan}]
        env += [{"name": JOB_ID, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]
        env += list(extra_env)
        container: dict = {
            "name": names[op.name],
            "image": _image(op),
            "command": list(WRAPPER),
            "args": list(_command(op)),
            "env": env,
            "volumeMounts": mounts,
        }
        resources = resources_of(op)
        if resources:
            container["resources"] = resources
        upstream = [names[pipeline.operator(u).name] for u in op.upstream]
        if upstream:
            container["dependencies"] = upstream
        pod.containers.append(container)
    pod.shm_bytes = options.shm_size or shm_bytes(pipeline) + options.headroom
    pod.volumes.append(
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": quantity(pod.shm_bytes)}}
    )
    if uses_data:
        pod.volumes.append(
            {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": options.claim}}
        )
    return pod


def container_io(pipeline: Pipeline, op: Operator) -> OperatorIO:
    """What `op` learns in CLARA_IO inside its container (paths are its mount points).

    The job id is left empty: `clara exec-operator` fills it in from CLARA_JOB_ID (the
    pod's uid), which only the cluster knows.
    """

    def declared(direction: str, port: Port) -> Declared:
        allocation = path = None
        if port.medium == SHARED_MEMORY:
            producer, output = pipeline.producer(port) if port.source else (op, port)
            allocation = pipeline.allocation_name(producer, output)
        else:
            path = _mount_path(pipeline, port)
        return Declared(
            direction,
            port.name,
            port.type,
            port.element_type,
            port.shape,
            port.source,
            allocation,
            path,
        )

    return OperatorIO(
        "",
        pipeline.name,
        op.name,
        context_name(pipeline),
        tuple(declared("input", p) for p in op.inputs),
        tuple(declared("output", p) for p in op.outputs),
    )


def context_name(pipeline: Pipeline) -> str:
    """The job's context inside its pod: the pod's /dev/shm is its own, so a fixed name."""
    return pipeline.name


def container_names(pipeline: Pipeline) -> dict[str, str]:
    """Each operator's container name: a DNS label, unique, never one Argo reserves."""
    names: dict[str, str] = {}
    taken = set(RESERVED_CONTAINERS)
    for op in pipeline.operators:
        name = re.sub(r"[^a-z0-9-]+", "-", op.name.lower()).strip("-")[:63].strip("-")
        if not _DNS_LABEL.fullmatch(name) or name in taken:
            digest = hashlib.sha256(op.name.encode()).hexdigest()[:8]
            name = f"{name[:54].strip('-') or 'operator'}-{digest}"
        taken.add(name)
        names[op.name] = name
    return names


def shm_bytes(pipeline: Pipeline) -> int:
    """Bytes of /dev/shm the declared static outputs need at most (all alive at once)."""
    from ...dtypes import element_type, nbytes_of

    total = PAGE + SEGMENT_OVERHEAD  # the context, and the job's tally
    for op in pipeline.operators:
        for port in op.outputs:
            if port.medium != SHARED_MEMORY or port.is_dynamic or port.shape is None:
                continue
            data = nbytes_of(element_type(port.element_type), port.shape)
            total += SEGMENT_OVERHEAD + math.ceil(data / PAGE) * PAGE
    return total


def quantity(nbytes: int) -> str:
    """Bytes as a Kubernetes quantity, rounded up to whole MiB (e.g. '1025Mi')."""
    return f"{math.ceil(nbytes / MIB)}Mi"


def resources_of(op: Operator) -> dict:
    """Kubernetes resources from Clara's `requests` (memory in MB; gpus as nvidia.com/gpu)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if "cpu" in op.requests:
        requests["cpu"] = op.requests["cpu"]
    if "memory" in op.requests:
        requests["memory"] = f"{math.ceil(float(op.requests['memory']))}Mi"
    if "gpu" in op.requests:
        gpus = op.requests["gpu"]
        if float(gpus) != int(float(gpus)):
            raise InvalidArgument(f"operator '{op.name}' requests {gpus} gpus: use whole gpus")
        if int(float(gpus)):  # Kubernetes schedules GPUs by limits only
            limits["nvidia.com/gpu"] = str(int(float(gpus)))
    result: dict = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


# -- helpers ------------------------------------------------------------------------------


def _image(op: Operator) -> str:
    if not op.image:
        raise InvalidArgument(f"operator '{op.name}' has no container.image: a pod needs one")
    return f"{op.image}:{op.tag}" if op.tag else op.image


def _command(op: Operator) -> tuple[str, ...]:
    if not op.command:
        raise InvalidArgument(
            f"operator '{op.name}' has no container.command: give the command to run in "
            "its image with --bind OPERATOR=COMMAND (the wrapper `clara exec-operator` "
            "replaces the image's entry point)"
        )
    return op.command


def _mount_path(pipeline: Pipeline, port: Port) -> str | None:
    """Where a disk port is mounted in its container: its declared path, made absolute."""
    path = port.path
    if path is None and port.source is not None:
        path = pipeline.producer(port)[1].path
    return None if path is None else posixpath.normpath(posixpath.join("/", path))


def _folder(op: Operator, port: Port, index: int) -> str:
    """An output's folder name in the job's results: its name, or its position."""
    return f"{op.name}/{port.name or f'output-{index}'}"


def _disk_mounts(pipeline: Pipeline, op: Operator, paths: JobPaths) -> list[dict]:
    key = "subPathExpr" if paths.expression else "subPath"
    mounts = []
    for port in op.inputs:
        mount_path = _mount_path(pipeline, port)
        if port.medium != DISK or mount_path is None:
            continue
        if port.source is None:
            sub = f"payloads/{paths.payload}"
        else:
            producer, output = pipeline.producer(port)
            sub = f"results/{paths.job}/{_folder(producer, output, producer.outputs.index(output))}"
        mounts.append({"name": DATA_VOLUME, "mountPath": mount_path, key: sub, "readOnly": True})
    for index, port in enumerate(op.outputs):
        mount_path = _mount_path(pipeline, port)
        if port.medium != DISK or mount_path is None:
            continue
        sub = f"results/{paths.job}/{_folder(op, port, index)}"
        mounts.append({"name": DATA_VOLUME, "mountPath": mount_path, key: sub})
    return mounts


def _check_mounts(op: Operator, mounts: list[dict]) -> None:
    seen: set[str] = set()
    for mount in mounts:
        if mount["mountPath"] in seen:
            raise InvalidArgument(
                f"operator '{op.name}' declares {mount['mountPath']} twice: a container "
                "cannot mount two volumes at one path"
            )
        seen.add(mount["mountPath"])
