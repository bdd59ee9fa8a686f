"""examples/ct-native.yaml: Python -> C++ -> shell under `clara run`, and the C operator."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from clara_core import Context
from clara_core.names import shm_dir
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


FAILING = """\
api-version: 0.5.0
name: c-early
operators:
- name: acquire
  container: {{command: [python, -c, "open('{trapped}').read(); raise SystemExit(3)"]}}
  output: [{{name: volume, type: array, element-type: float32, shape: [-1, 128, 128]}}]
- name: threshold
  container: {{command: [bash, -c, "trap '' TERM; echo > '{trapped}'; exec {threshold}"]}}
  input:
  - {{from: acquire, name: volume, type: array, element-type: float32, shape: [-1, 128, 128]}}
  output:
  - {{name: mask, type: array, element-type: uint8, shape: [-1, 128, 128]}}
  - {{name: voxels, type: uint64}}
"""


def test_a_c_operator_started_early_hears_that_its_producer_failed(operators, tmp_path):
    """threshold starts with the job (it reads acquire in shared memory) and ignores
    SIGTERM: only the producer's failure, read from its ready lock, ends its wait.

    acquire fails only once threshold's shell has ignored SIGTERM (a FIFO: the shell
    writes to it after its trap, acquire reads it to the end first); else, on a busy
    machine, acquire can fail before the shell runs its trap, and the runner's SIGTERM
    (rightly sent to an operator that has not completed) kills it before it says a word.
    """
    trapped = tmp_path / "trapped"
    os.mkfifo(trapped)
    pipeline = tmp_path / "c-early.yaml"
    pipeline.write_text(FAILING.format(threshold=operators["c"], trapped=trapped))
    # (--timeout: should threshold never start, acquire's wait on the FIFO ends with the job)
    result = clara("run", str(pipeline), "--json", "--grace", "60", "--timeout", "60", timeout=120)
    assert result.returncode == 1, result.stderr.decode()
    document = json.loads(result.stdout)
    assert document["reason"] == "operator 'acquire' exited with code 3"
    threshold = next(op for op in document["operators"] if op["name"] == "threshold")
    assert (
        "threshold: error: input 'volume' of operator 'threshold' will never be complete: "
        "operator 'acquire' failed" in threshold["output_tail"]
    ), threshold  # (all of it: an empty tail with exit code -15 was a SIGTERM before the trap)
    assert (threshold["status"], threshold["exit_code"]) == ("stopped", 1)


def test_the_cpp_operator_reads_a_volume_claimed_from_a_warm_pool(operators, tmp_path, namespace):
    """Run twice with --warm-pool: the second run's volume (1.5 MiB, allocated by the
    Python operator) is the segment the first run freed into the pool, rewritten as a
    member of the new job's context, and the C++ operator reads it like any other."""

    def pooled() -> list[int]:
        prefix = f"{namespace}.warm.p."
        return [
            os.stat(f"{shm_dir()}/{f}").st_ino
            for f in os.listdir(shm_dir())
            if f.startswith(prefix)
        ]

    try:
        for attempt in ("first", "second"):
            job = tmp_path / attempt
            result = clara(
                "run",
                str(EXAMPLE),
                "--json",
                "--job-dir",
                str(job),
                "--warm-pool",
                "warm",
                timeout=120,
            )
            check_run(result, job / "operators" / "report" / "report")
            if attempt == "first":
                kept = pooled()
                assert len(kept) == 1  # the volume; the rest is too small to pool
        assert pooled() == kept  # the second run claimed it (else both would be pooled)
    finally:
        Context.destroy("warm")
