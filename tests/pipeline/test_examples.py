"""The demo pipelines in examples/ run end to end and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clara_core import Context, leaks

from .conftest import EXAMPLES
from .pipes import clara, clara_run, operators


def files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_ct_smooth(examples: Path) -> None:
    job = examples / "job"
    code, result, err = clara_run(examples / "ct-smooth.yaml", "--job-dir", str(job))
    assert code == 0, err
    assert [op["status"] for op in result["operators"]] == ["succeeded"] * 4
    report = (job / "operators" / "report" / "report" / "report.txt").read_text()
    assert report.startswith("CT smoothing report")
    assert result["job_id"] in report
    assert {v["state"] for v in result["variables"]} == {"freed"}
    volume = next(v for v in result["variables"] if v["name"] == "acquire--volume")
    assert volume["shape"] == [48, 128, 128]  # set by acquire at run time
    assert leaks.check().clean and Context.list() == []


def test_ct_branches(examples: Path) -> None:
    job = examples / "job"
    code, result, err = clara_run(examples / "ct-branches.yaml", "--job-dir", str(job))
    assert code == 0, err
    ops = operators(result)
    assert all(op["status"] == "succeeded" for op in ops.values())
    for branch in ("smooth", "segment"):  # both read acquire in shared memory: start with it
        assert ops[branch]["started"] < ops["acquire"]["ended"]
        assert ops[branch]["started"] < min(ops["smooth"]["ended"], ops["segment"]["ended"])
    report = (job / "operators" / "summarise" / "report" / "report.txt").read_text()
    assert "CNR" in report
    assert leaks.check().clean and Context.list() == []


def test_dicom_seg_untyped_with_bindings(examples: Path) -> None:
    """The untyped example: no command in the file, stand-ins bound from a YAML file."""
    before = files(examples)
    checked = clara("validate", str(examples / "dicom-seg.yaml"))
    assert checked.returncode == 0 and checked.stdout.count(": warning: ") == 3
    code, result, err = clara_run(
        examples / "dicom-seg.yaml",
        "--payload",
        str(examples / "payload"),
        "--bindings",
        str(examples / "bindings/dicom-seg.yaml"),
    )
    assert code == 0, err
    ops = operators(result)
    assert ops["series-reader"]["output_tail"] == ["read 4 slices from the payload"]
    assert ops["organ-seg"]["output_tail"] == ["segmented liver in 2 of 4 slices"]
    summary = ops["series-writer"]["output_tail"]
    assert summary[0] == f"dicom-seg summary (dicom-seg {result['job_id']})"
    assert summary[1:] == [
        "  slice 1  value 40  -",
        "  slice 2  value 80  -",
        "  slice 3  value 120  liver",
        "  slice 4  value 160  liver",
    ]
    assert result["job_dir_kept"] is False and not Path(result["job_dir"]).exists()
    assert files(examples) == before  # nothing written next to the pipeline
    assert not Path("/publish").exists() and not Path("/output").exists()
    assert leaks.check().clean and Context.list() == []


def test_quickstart_hands_a_volume_between_two_processes() -> None:
    """README names examples/quickstart.py: it runs, says what it did, leaves nothing."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    producer, consumer, checked = done.stdout.splitlines()
    assert producer.startswith("producer (pid ") and producer.endswith("): wrote 4 MiB")
    assert consumer.startswith("consumer (pid ") and "float32[64, 128, 128], sum=" in consumer
    assert checked == "leak check: 0 leaked segment(s), 0 bytes"
    assert leaks.check().clean and Context.list() == []
