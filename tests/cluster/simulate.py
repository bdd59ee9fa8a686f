"""A local stand-in for a cluster: the containers of an exported job pod run as local
processes, each with the environment the manifest gives it, in the order the engine's
rules allow.

What a cluster would do and this does instead:
- image and working directory: every container runs in `workdir` (the examples' copy)
  with this interpreter's `clara` and `python` first on PATH;
- volume mounts: there are no mount namespaces, so each container path the manifest mounts
  is rewritten, in the environment (CLARA_IO included), to the local folder the claim's
  sub-path names (`claim/<subPath>`);
- /dev/shm: the pod's own tmpfs is the test's CLARA_NAMESPACE in the machine's /dev/shm;
- Argo (containerSet): a container starts once every container in its `dependencies` has
  exited 0, and never if one of them failed; independent ones run at once;
- Kubernetes (plain pod): every container starts at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BIN = os.path.dirname(sys.executable)


@dataclass
class Container:
    """One container of the pod, ready to run here."""

    name: str
    argv: list[str]
    env: dict[str, str]
    dependencies: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """How one container ended (None: never started)."""

    code: int | None
    output: str = ""


def argo_pod(
    workflow: dict, claim: Path, payload: str = "payload", name: str = "wf"
) -> list[Container]:
    """The containers of the job pod Argo would make for `payload`."""
    (template,) = [t for t in workflow["spec"]["templates"] if "containerSet" in t]
    values = {"inputs.parameters.payload": payload, "workflow.name": name}
    fields = {"metadata.uid": str(uuid.uuid4())}

    def substitute(text: str) -> str:
        return re.sub(r"\{\{([^}]+)\}\}", lambda m: values[m.group(1).strip()], text)

    return [
        _container(node, claim, fields, substitute)
        for node in template["containerSet"]["containers"]
    ]


def job_pod(job: dict, claim: Path, index: int = 0, name: str = "job") -> list[Container]:
    """The containers of pod `index` of a Kubernetes Indexed Job."""
    fields = {
        "metadata.uid": str(uuid.uuid4()),
        "metadata.annotations['batch.kubernetes.io/job-completion-index']": str(index),
        "metadata.labels['job-name']": name,
    }
    return [
        _container(c, claim, fields, lambda text: text)
        for c in job["spec"]["template"]["spec"]["containers"]
    ]


def run_argo(containers: list[Container], cwd: Path, timeout: float = 120) -> dict[str, Outcome]:
    """Run the pod as Argo's emissary does: each container after its dependencies."""
    outcomes: dict[str, Outcome] = {}
    running: dict[str, subprocess.Popen] = {}
    waiting = list(containers)
    while waiting or running:
        for container in list(waiting):
            deps = [outcomes.get(d) for d in container.dependencies]
            if any(d is not None and d.code != 0 for d in deps):
                outcomes[container.name] = Outcome(None)  # a dependency failed: never runs
                waiting.remove(container)
            elif all(d is not None for d in deps):
                running[container.name] = _start(container, cwd)
                waiting.remove(container)
        if not running:
            break
        name, process = _first_to_end(running, timeout)
        outcomes[name] = Outcome(process.returncode, _output(process))
        del running[name]
    return outcomes


def run_all_at_once(
    containers: list[Container], cwd: Path, timeout: float = 120
) -> dict[str, Outcome]:
    """Run the pod as Kubernetes does: every container at once."""
    running = {c.name: _start(c, cwd) for c in containers}
    outcomes = {}
    while running:
        name, process = _first_to_end(running, timeout)
        outcomes[name] = Outcome(process.returncode, _output(process))
        del running[name]
    return outcomes


# -- helpers ------------------------------------------------------------------------------


def _container(node: dict, claim: Path, fields: dict[str, str], substitute) -> Container:
    env: dict[str, str] = {}
    for item in node["env"]:
        if "value" in item:
            env[item["name"]] = substitute(item["value"])
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    mounts: dict[str, str] = {}
    for mount in node["volumeMounts"]:
        if mount["name"] == "dshm":
            continue
        if "subPathExpr" in mount:
            sub = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], mount["subPathExpr"])
        else:
            sub = substitute(mount["subPath"])
        local = claim / sub
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = str(local)
    env = {key: _remount(key, value, mounts) for key, value in env.items()}
    argv = [*node["command"], *node.get("args", [])]
    return Container(node["name"], argv, env, list(node.get("dependencies", [])))


def _remount(key: str, value: str, mounts: dict[str, str]) -> str:
    """A value of the container's environment with its mount points made local folders."""
    if key == "CLARA_IO":
        io = json.loads(value)
        for port in io["inputs"] + io["outputs"]:
            if port["path"] is not None:
                port["path"] = _local(port["path"], mounts)
        return json.dumps(io)
    return _local(value, mounts)


def _local(path: str, mounts: dict[str, str]) -> str:
    for mount_path, local in mounts.items():
        if path == mount_path or path.startswith(mount_path + "/"):
            return local + path[len(mount_path) :]
    return path


def _start(container: Container, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **container.env}
    env["PATH"] = BIN + os.pathsep + os.environ.get("PATH", os.defpath)
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _output); no pipe to drain
    process = subprocess.Popen(
        container.argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.stdout = log  # type: ignore[assignment]
    return process


def _first_to_end(
    running: dict[str, subprocess.Popen], timeout: float
) -> tuple[str, subprocess.Popen]:
    """The first of the running containers to end (bounded: AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in running.items():
            if process.poll() is not None:
                return name, process
        time.sleep(0.02)
    for process in running.values():
        process.kill()
        process.wait()
    raise AssertionError(f"{', '.join(running)} still running after {timeout} s")


def _output(process: subprocess.Popen) -> str:
    log = process.stdout
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    log.close()
    return text
