"""`clara export`: the manifests validate against Argo's and Kubernetes' schemas and say
what the pipeline says (containers, dependencies, /dev/shm, mounts, requests)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.cli.clirun import clara, ok

from .schemas import check_argo, check_kubernetes, pod_of_template

EXAMPLES = Path(__file__).parents[2] / "examples"
DEMO, BRANCHES = EXAMPLES / "ct-smooth.yaml", EXAMPLES / "ct-branches.yaml"


def export(pipeline: Path, *options: str) -> dict:
    return yaml.safe_load(ok("export", str(pipeline), *options).stdout)


def job_template(workflow: dict) -> dict:
    (template,) = [t for t in workflow["spec"]["templates"] if "containerSet" in t]
    return template


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("pipeline", [DEMO, BRANCHES])
def test_argo_workflow_validates_and_follows_the_dag(pipeline: Path) -> None:
    workflow = export(pipeline, "--to", "argo")
    check_argo(workflow)
    template = job_template(workflow)
    check_kubernetes(pod_of_template(template))
    assert workflow["spec"]["entrypoint"] == template["name"]
    source = yaml.safe_load(pipeline.read_text())
    containers = {c["name"]: c for c in template["containerSet"]["containers"]}
    assert list(containers) == [op["name"] for op in source["operators"]]
    for op in source["operators"]:
        container = containers[op["name"]]
        upstream = sorted({i["from"] for i in op.get("input", [])})
        assert sorted(container.get("dependencies", [])) == upstream
        assert container["image"] == f"{op['container']['image']}:{op['container']['tag']}"
        assert container["command"] == ["clara", "exec-operator", "--"]
        assert container["args"] == op["container"]["command"]
        env = env_of(container)
        assert env["CLARA_OPERATOR"] == op["name"]
        assert json.loads(env["CLARA_IO"])["operator"] == op["name"]
        assert json.loads(env["CLARA_JOB"])["operators"][0] == "acquire"
        for key, value in op.get("variables", {}).items():
            assert env[key] == str(value)
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    (shm,) = [v for v in template["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    # spacing (24 B) and stats (64 B) are the static outputs: a page each plus 2 pages of
    # overhead, the context and the tally; then the default headroom of 1 GiB.
    assert shm["emptyDir"]["sizeLimit"] == "1025Mi"


def test_disk_paths_are_claim_mounts() -> None:
    template = job_template(export(DEMO, "--to", "argo", "--claim", "studies"))
    (claim,) = [v for v in template["volumes"] if v["name"] == "data"]
    assert claim == {"name": "data", "persistentVolumeClaim": {"claimName": "studies"}}
    (report,) = [c for c in template["containerSet"]["containers"] if c["name"] == "report"]
    (mount,) = [m for m in report["volumeMounts"] if m["name"] == "data"]
    assert mount == {
        "name": "data",
        "mountPath": "/output",
        "subPath": "results/{{workflow.name}}/{{inputs.parameters.payload}}/report/report",
    }
    assert env_of(report)["CLARA_OUTPUT"] == "/output"


def test_payload_inputs_requests_and_shm_override(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        textwrap.dedent(
            """\
            api-version: 0.5.0
            name: Reader_Writer
            operators:
            - name: Read_DICOM
              container: {image: reader, tag: "2", command: [read]}
              requests: {cpu: 2, memory: 4096, gpu: 1}
              input: [{type: stream, element-type: dicom, path: /input}]
              output:
              - {name: image, type: array, element-type: uint16, shape: [512, 512]}
              - {name: log, type: stream, element-type: text, path: /logs}
            - name: write
              container: {image: writer, command: [write, --from, /in]}
              input:
              - {from: Read_DICOM, name: image, type: array, element-type: uint16,
                 shape: [512, 512]}
              - {from: Read_DICOM, name: log, type: stream, element-type: text, path: /in}
              output: [{name: out, type: stream, element-type: dicom, path: /output}]
            """
        )
    )
    workflow = export(pipeline, "--to", "argo", "--shm-size", "64M")
    check_argo(workflow)
    template = job_template(workflow)
    check_kubernetes(pod_of_template(template))
    reader, writer = template["containerSet"]["containers"]
    assert reader["name"] == "read-dicom" and writer["image"] == "writer"
    assert writer["dependencies"] == ["read-dicom"]
    assert reader["resources"] == {
        "requests": {"cpu": "2", "memory": "4096Mi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    mounts = {m["mountPath"]: m for m in reader["volumeMounts"] + writer["volumeMounts"]}
    assert mounts["/input"]["subPath"] == "payloads/{{inputs.parameters.payload}}"
    assert mounts["/input"]["readOnly"] is True
    logs = "results/{{workflow.name}}/{{inputs.parameters.payload}}/Read_DICOM/log"
    assert mounts["/logs"]["subPath"] == mounts["/in"]["subPath"] == logs
    assert mounts["/in"]["readOnly"] is True
    (shm,) = [v for v in template["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["sizeLimit"] == "64Mi"
    default = job_template(export(pipeline, "--to", "argo", "--shm-headroom", "1M"))
    (shm,) = [v for v in default["volumes"] if v["name"] == "dshm"]
    # uint16[512, 512] is 512 KiB = 128 pages, + 2 pages; context + tally 3 pages; + 1 MiB
    assert shm["emptyDir"]["sizeLimit"] == "2Mi"


def test_argo_fan_out_runs_one_job_pod_per_payload() -> None:
    workflow = export(BRANCHES, "--to", "argo", "--payloads", "study-1, study-2,study-3")
    check_argo(workflow)
    entry = next(t for t in workflow["spec"]["templates"] if t["name"] == "payloads")
    assert workflow["spec"]["entrypoint"] == "payloads"
    ((step,),) = entry["steps"]
    assert step["template"] == job_template(workflow)["name"]
    assert step["withItems"] == ["study-1", "study-2", "study-3"]
    assert step["arguments"]["parameters"] == [{"name": "payload", "value": "{{item}}"}]


@pytest.mark.parametrize("payloads", [(), ("a", "b")])
def test_indexed_job_validates(payloads: tuple[str, ...]) -> None:
    options = ("--payloads", ",".join(payloads)) if payloads else ()
    job = export(BRANCHES, "--to", "k8s-job", *options)
    check_kubernetes(job)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == max(1, len(payloads))
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    for container in pod["containers"]:
        assert "dependencies" not in container  # the wrappers wait on the tally instead
        assert container["command"][:3] == ["clara", "exec-operator", "--wait"]
    if payloads:
        assert json.loads(job["metadata"]["annotations"]["clara-fastio/payloads"]) == ["a", "b"]


def test_output_file_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "workflow.yaml"
    ok("export", str(DEMO), "--to", "argo", "-o", str(target))
    check_argo(yaml.safe_load(target.read_text()))
    assert [p.name for p in tmp_path.iterdir()] == ["workflow.yaml"]


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (("--to", "argo", "--payloads", " , "), 2, "--payloads needs at least one"),
        (("--to", "argo", "--payloads", "../x"), 2, "invalid payload '../x'"),
        (("--to", "argo", "--shm-size", "lots"), 2, "invalid size 'lots'"),
        (("--to", "slurm"), 2, "'slurm' is not one of"),
        (("--to", "argo", "-o", "/nonexistent/dir/w.yaml"), 2, "cannot write"),
    ],
)
def test_bad_options_are_one_line_errors(options: tuple, code: int, message: str) -> None:
    result = clara("export", str(DEMO), *options)
    err = result.stderr.decode()
    assert result.returncode == code and message in err, err
    assert err.count("\n") == 1 and not result.stdout


def test_what_a_pod_cannot_run_is_refused(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    body = "api-version: 0.5.0\nname: p\noperators:\n- name: a\n  container: {command: [x]}\n"
    pipeline.write_text(body)
    result = clara("export", str(pipeline), "--to", "argo")
    assert result.returncode == 2
    assert "operator 'a' has no container.image" in result.stderr.decode()
    result = clara("export", str(tmp_path / "missing.yaml"), "--to", "argo")
    assert result.returncode == 3


def test_readme_shows_the_demo_workflow_as_exported() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("<!-- cluster:start -->")[1].split("<!-- cluster:end -->")[0]
    shown = section.split("```yaml\n")[1].split("```")[0]
    assert shown == ok("export", str(DEMO), "--to", "argo").stdout.decode()


def test_requests_are_validated(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "api-version: 0.5.0\nname: p\noperators:\n- name: a\n"
        "  container: {image: i, command: [x]}\n  requests: {cpu: lots, disk: 1}\n"
    )
    result = clara("validate", str(pipeline))
    out = result.stdout.decode()
    assert result.returncode == 2
    assert "p.yaml:6: unknown key 'disk' in requests" in out
    assert "requests.cpu must be a positive amount" in out


def test_the_schema_checks_catch_an_unknown_key() -> None:
    """The checks above can fail: a key neither Argo nor Kubernetes knows is reported."""
    import kubernetes_validate

    workflow = export(DEMO, "--to", "argo")
    job_template(workflow)["containerSet"]["containers"][0]["volumeMount"] = []
    with pytest.raises(AssertionError, match=r"containers\[0\]\.volumeMount"):
        check_argo(workflow)
    job = export(DEMO, "--to", "k8s-job")
    job["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        check_kubernetes(job)


def test_param_and_bind_work_as_in_clara_run(tmp_path: Path) -> None:
    """--param fills templates and --bind/--bindings give commands, as `clara run` does."""
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        textwrap.dedent(
            """\
            api-version: 0.4.0
            name: p
            parameters:
              TAG: "1.0"
            operators:
            - name: reader
              container: {image: example/reader, tag: "${{ TAG }}"}
              output: [{path: /output}]
            - name: writer
              container: {image: example/writer, tag: "${{ TAG }}", command: [old]}
              input: [{from: reader, path: /input}]
            """
        )
    )
    refused = clara("export", str(pipeline), "--to", "argo")
    assert refused.returncode == 2 and "reader" in refused.stderr.decode()
    bindings = tmp_path / "bindings.yaml"
    bindings.write_text("reader: read --all\nwriter: from-file\n")
    workflow = export(
        pipeline,
        "--to",
        "argo",
        "--param",
        "TAG=2.5",
        "--bindings",
        str(bindings),
        "--bind",
        "writer=write /input 'two words'",
    )
    check_argo(workflow)
    containers = {c["name"]: c for c in job_template(workflow)["containerSet"]["containers"]}
    assert containers["reader"]["image"] == "example/reader:2.5"
    assert containers["reader"]["args"] == ["read", "--all"]
    assert containers["writer"]["args"] == ["write", "/input", "two words"]  # --bind wins
    unknown = clara("export", str(pipeline), "--to", "argo", "--param", "NOPE=1")
    assert unknown.returncode == 2
