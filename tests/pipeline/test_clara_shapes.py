"""Realistic Clara pipelines (see shapes.py) validate as Clara would and run locally with
stand-in commands, through real `clara` subprocesses, creating nothing outside the job
directory: not the declared container paths, not next to the pipeline, not in the cwd."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from clara_core import Context, leaks

from . import shapes
from .pipes import clara, clara_run, operators

STANDIN = Path(__file__).with_name("standin.py")


def files_under(root: Path, skip: Path) -> set[str]:
    """Every path under `root` except those under `skip`."""
    found = set()
    for path in root.rglob("*"):
        if path != skip and skip not in path.parents:
            found.add(str(path.relative_to(root)))
    return found


def container_paths(text: str) -> set[str]:
    """Top-level directories of the rooted paths a pipeline text declares."""
    return {
        "/" + line.split("path: /", 1)[1].split("/")[0].strip(" }]\n")
        for line in text.splitlines()
        if "path: /" in line
    }


def run_shape(
    tmp_path: Path, text: str, bindings: dict[str, str], *options: str
) -> tuple[int, dict, str, Path]:
    """Write `text` and a bindings file, run it with a job dir, prove nothing leaked out."""
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(text)
    (tmp_path / "bindings.yaml").write_text(
        "".join(f"{op}: {json.dumps(command)}\n" for op, command in bindings.items())
    )
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "series-1.dcm").write_text("DICM")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    job = tmp_path / "job"
    declared = container_paths(text)
    assert not any(os.path.lexists(p) for p in declared)  # else the check below proves nothing
    before = files_under(tmp_path, job)
    code, result, err = clara_run(
        pipeline,
        "--bindings",
        str(tmp_path / "bindings.yaml"),
        "--payload",
        str(payload),
        "--job-dir",
        str(job),
        *options,
        cwd=cwd,
    )
    assert files_under(tmp_path, job) == before, "a run wrote outside its job directory"
    assert not any(os.path.lexists(p) for p in declared), "a container path was created"
    assert leaks.check().clean and Context.list() == []
    return code, result, err, job


def fresh(directory: Path) -> Path:
    directory.mkdir()
    return directory


def standin(*args: str) -> str:
    return " ".join([sys.executable, str(STANDIN), *args])


def record(job: Path, op: str, folder: str = "output") -> dict:
    return json.loads((job / "operators" / op / folder / f"{op}.json").read_text())


def lineage(job: Path, op: str, folder: str = "output") -> list[str]:
    return (job / "operators" / op / folder / "lineage.txt").read_text().split()


def test_dicom_chain(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(shapes.DICOM_CHAIN)
    checked = clara("validate", str(path))
    assert checked.returncode == 0, checked.stdout
    warnings = [line for line in checked.stdout.splitlines() if ": warning: " in line]
    assert len(warnings) == 3 and all("has no container.command" in w for w in warnings)
    assert f"{path}:13: note: operator 'dicom-reader' requests cpu 1, memory 2048" in checked.stdout
    assert clara("validate", "--strict", str(path)).returncode == 2

    bindings = {
        "dicom-reader": standin("--expect-file", "/input/series-1.dcm", "--out", "/output"),
        "segmentation": standin("--expect-file", "/input/lineage.txt"),
        "dicom-writer": standin("--expect-file", "/input/original/lineage.txt"),
    }
    code, result, err, job = run_shape(tmp_path, shapes.DICOM_CHAIN, bindings)
    assert code == 0, err
    assert [o["status"] for o in result["operators"]] == ["succeeded"] * 3
    # mask (reader -> segmentation), then original (reader), then itself: through folders
    assert lineage(job, "dicom-writer") == [
        "dicom-reader",
        "segmentation",
        "dicom-reader",
        "dicom-writer",
    ]
    reader = record(job, "dicom-reader")
    assert reader["argv"] == [
        "--expect-file",
        str(job / "payload" / "series-1.dcm"),
        "--out",
        str(job / "operators" / "dicom-reader" / "output"),
    ]
    assert reader["paths"] == {
        "/input": str(job / "payload"),
        "/output": str(job / "operators" / "dicom-reader" / "output"),
        "/logs": str(job / "operators" / "dicom-reader" / "logs"),
    }
    assert reader["env"]["LEVEL"] == "debug"  # container.variables
    assert reader["env"]["CLARA_INPUT"] == str(job / "payload")
    assert reader["env"]["CLARA_OUTPUT_LOGS"] == str(job / "operators" / "dicom-reader" / "logs")
    assert reader["input_entries"] == [["", str(job / "payload")]]  # Driver API: local paths
    writer = record(job, "dicom-writer")
    assert writer["paths"]["/input/mask"] == str(job / "operators" / "segmentation" / "output")
    assert writer["env"]["CLARA_INPUT_FROM_DICOM_READER"] == writer["paths"]["/input/original"]
    assert sorted(os.listdir(job / "operators" / "dicom-writer")) == ["logs", "output", "publish"]
    assert (job / "logs" / "segmentation.log").read_text().startswith("segmentation: 1 inputs")


def test_fan_out_fan_in(tmp_path: Path) -> None:
    text = shapes.fan_out_fan_in()
    bindings = {op: standin() for op in ["prepare", *[f"model-{o}" for o in shapes.ORGANS]]}
    bindings["merger"] = standin(*[f"/input/{o}/lineage.txt" for o in shapes.ORGANS])
    code, result, err, job = run_shape(tmp_path, text, bindings, "--quiet")
    assert code == 0, err
    ops = operators(result)
    assert all(o["status"] == "succeeded" for o in ops.values())
    assert len(os.listdir(job / "operators" / "prepare")) == 6  # one folder per output
    merged = lineage(job, "merger")
    assert merged.count("prepare") == 6 and merged[-1] == "merger"
    assert {f"model-{o}" for o in shapes.ORGANS} <= set(merged)
    merger = record(job, "merger")
    assert merger["argv"] == [
        str(job / "operators" / f"model-{o}" / "output" / "lineage.txt") for o in shapes.ORGANS
    ]
    assert merger["env"]["CLARA_INPUT_FROM_MODEL_LIVER"] == merger["paths"]["/input/liver"]
    assert record(job, "model-spleen")["paths"]["/input"] == str(
        job / "operators" / "prepare" / "spleen"
    )
    for organ in shapes.ORGANS:  # each model started once prepare was done
        assert ops[f"model-{organ}"]["started"] >= ops["prepare"]["ended"]
        assert ops["merger"]["started"] >= ops[f"model-{organ}"]["ended"]


def test_services(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(shapes.WITH_SERVICES)
    checked = clara("validate", str(path))
    assert checked.returncode == 0
    assert "note: operator 'inference' uses service 'inference-server' (exports " in checked.stdout
    bindings = {"inference": standin()}
    code, result, err, job = run_shape(
        fresh(tmp_path / "bound"),
        shapes.WITH_SERVICES,
        bindings,
        "--service",
        "inference-server=127.0.0.1:8000",
        "--service",
        "NVIDIA_CLARA_METRICS=127.0.0.1:8002",
    )
    assert code == 0, err
    env = record(job, "inference")["env"]
    assert env["NVIDIA_CLARA_TRTISURI"] == "127.0.0.1:8000"
    assert env["NVIDIA_CLARA_METRICS"] == "127.0.0.1:8002"
    assert env["MODEL"] == "chest-xray"
    assert result["warnings"] == []

    code, result, err, job = run_shape(fresh(tmp_path / "unbound"), shapes.WITH_SERVICES, bindings)
    assert code == 0, err
    warning = (
        "NVIDIA_CLARA_TRTISURI is not set for operator 'inference': service "
        "'inference-server' has no address; give --service inference-server=URI"
    )
    assert f"clara: warning: {warning}" in err
    assert warning in result["warnings"]
    assert "NVIDIA_CLARA_TRTISURI" not in record(job, "inference")["env"]


def test_templated(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(shapes.TEMPLATED)
    missing = clara("validate", str(path))
    assert missing.returncode == 2
    assert missing.stdout.strip() == (
        f"{path}:18: placeholder ${{{{ threshold }}}} has no value: parameter 'threshold' "
        "has no default; give --param threshold=VALUE"
    )
    unknown = clara("validate", str(path), "--param", "threshold=1", "--param", "organs=x")
    assert unknown.returncode == 2
    assert "--param organs: no parameter of that name (parameters: model-tag, organ, " in (
        unknown.stdout
    )
    valid = clara("validate", str(path), "--param", "threshold=0.5", "--param", "organ=spleen")
    assert valid.returncode == 0, valid.stdout
    assert "valid pipeline 'organ-spleen'" in valid.stdout
    assert "segment-spleen  after load" in valid.stdout

    bindings = {"load": standin(), "segment-spleen": standin()}
    code, result, err, job = run_shape(
        fresh(tmp_path / "run"),
        shapes.TEMPLATED,
        bindings,
        "--param",
        "organ=spleen",
        "--param",
        "threshold=0.5",
    )
    assert code == 0, err
    assert result["pipeline"] == "organ-spleen"
    env = record(job, "segment-spleen")["env"]
    assert env["ORGAN"] == "spleen"
    assert lineage(job, "segment-spleen") == ["load", "segment-spleen"]


def test_genomics_three_unnamed_inputs(tmp_path: Path) -> None:
    bindings = {op: standin() for op in ("trim-reads", "correct-reads", "count-kmers")}
    bindings["assemble"] = standin("--expect-file", "/input/kmers/lineage.txt")
    code, _, err, job = run_shape(tmp_path, shapes.GENOMICS, bindings)
    assert code == 0, err
    assembled = record(job, "assemble")
    assert assembled["paths"] == {
        "/input/reads": str(job / "operators" / "trim-reads" / "output"),
        "/input/corrected": str(job / "operators" / "correct-reads" / "output"),
        "/input/kmers": str(job / "operators" / "count-kmers" / "output"),
        "/output": str(job / "operators" / "assemble" / "output"),
    }
    assert sorted(lineage(job, "assemble")) == sorted(
        ["trim-reads", "trim-reads", "correct-reads", "trim-reads", "count-kmers", "assemble"]
    )
    assert "requests cpu 8, memory 65536: ignored by a local run" in err


def test_api_version_030_runs_its_own_commands(tmp_path: Path) -> None:
    code, result, err, job = run_shape(tmp_path, shapes.OLD_030, {})
    assert code == 0, err
    out = job / "operators" / "second" / "out"
    assert (out / "series-1.dcm").read_text() == "DICM"  # payload -> first -> second
    assert (out / "log.txt").read_text() == "copied\n"
    assert result["job_dir"] == str(job) and result["job_dir_kept"] is True


@pytest.mark.parametrize("shape", ["DICOM_CHAIN", "WITH_SERVICES", "GENOMICS", "OLD_030"])
def test_every_shape_is_valid_clara(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(getattr(shapes, shape))
    result = clara("--json", "validate", str(path))
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["files"][0]["problems"] == []
