"""examples/ct-native.yaml: Python -> C++ -> shell under `clara run`, and the C operator."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.cli.clirun import clara

from .conftest import NATIVE, ROOT

EXAMPLE = ROOT / "examples" / "ct-native.yaml"


@pytest.fixture(scope="module")
def operators(native) -> dict[str, str]:
    """The example operators, built where the example pipeline expects them."""
    made = subprocess.run(["make", "-C", str(NATIVE), "examples"], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    return {
        "cpp": str(NATIVE / "build" / "threshold_cpp"),
        "c": str(NATIVE / "build" / "threshold_c"),
    }


def check_run(result: subprocess.CompletedProcess, report_dir) -> None:
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert document["status"] == "succeeded"
    statuses = {op["name"]: op["status"] for op in document["operators"]}
    assert statuses == {"acquire": "succeeded", "threshold": "succeeded", "report": "succeeded"}
    variables = {v["name"]: v for v in document["variables"]}
    assert variables["threshold--mask"]["shape"] == [24, 128, 128]
    assert variables["threshold--mask"]["element_type"] == "uint8"
    report = (report_dir / "report.txt").read_text()
    counted = re.search(r"voxels\s+(\d+) above the level \(mask: (\d+)\)", report)
    assert counted, report
    assert counted.group(1) == counted.group(2) and int(counted.group(1)) > 1000


def test_the_example_pipeline_with_a_cpp_operator(operators, tmp_path):
    job = tmp_path / "job"  # the report's /output is a folder of the job directory
    result = clara("run", str(EXAMPLE), "--json", "--job-dir", str(job), timeout=120)
    check_run(result, job / "operators" / "report" / "report")


def test_the_same_pipeline_with_the_c_operator(operators, tmp_path):
    operators_dir = ROOT / "examples" / "operators"
    text = EXAMPLE.read_text()
    text = text.replace("../native/build/threshold_cpp", operators["c"])
    text = text.replace("operators/", f"{operators_dir}/")
    pipeline = tmp_path / "ct-native-c.yaml"
    pipeline.write_text(text)
    job = tmp_path / "job"
    result = clara("run", str(pipeline), "--json", "--job-dir", str(job), timeout=120)
    check_run(result, job / "operators" / "report" / "report")
