"""The demo pipelines in examples/ run end to end and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from clara_core import Context, leaks

from .pipes import clara_run, operators


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
    for branch in ("smooth", "segment"):  # both start once acquire is done, not later
        assert ops[branch]["started"] >= ops["acquire"]["ended"]
        assert ops[branch]["started"] < min(ops["smooth"]["ended"], ops["segment"]["ended"])
    report = (job / "operators" / "summarise" / "report" / "report.txt").read_text()
    assert "CNR" in report
    assert leaks.check().clean and Context.list() == []
