"""The exported pod, run here: its containers as local processes through
`clara exec-operator`, in the order Argo (or Kubernetes) allows (see simulate.py).
Results equal `clara run`'s and nothing is left in /dev/shm."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from clara_core import Context, leaks
from tests.cli.clirun import ok
from tests.pipeline.pipes import clara_run

from .simulate import argo_pod, job_pod, run_all_at_once, run_argo

EXAMPLES = Path(__file__).parents[2] / "examples"
# pipeline -> the report's folder, <operator>/<output>: under the claim, and under the
# operators/ folder of a local run's job directory
REPORTS = {
    "ct-smooth": ("report/report",),
    "ct-branches": ("summarise/report",),
}


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/: the operators' 'image' (their working directory)."""
    shutil.copytree(EXAMPLES / "operators", tmp_path / "operators")
    for pipeline in EXAMPLES.glob("*.yaml"):
        shutil.copy(pipeline, tmp_path)
    return tmp_path


def export(pipeline: Path, *options: str) -> dict:
    return yaml.safe_load(ok("export", str(pipeline), *options).stdout)


def local_report(examples: Path, name: str) -> list[str]:
    """The report of `clara run` (job id line left out: it differs by design)."""
    job = Path(tempfile.mkdtemp(prefix="local-job-", dir=examples)) / "job"
    code, _, err = clara_run(examples / f"{name}.yaml", "--job-dir", str(job))
    assert code == 0, err
    return _without_job(job / "operators" / REPORTS[name][0] / "report.txt")


def _without_job(report: Path) -> list[str]:
    """The report's lines but those naming the job (its id, and the series uid made of it)."""
    lines = report.read_text().splitlines()
    return [line for line in lines if not line.startswith(("  job ", "  series "))]


def assert_nothing_left() -> None:
    assert Context.list() == []
    assert leaks.check().clean


@pytest.mark.parametrize("name", ["ct-smooth", "ct-branches"])
def test_argo_pod_gives_what_clara_run_gives(examples: Path, tmp_path: Path, name: str) -> None:
    expected = local_report(examples, name)
    claim = tmp_path / "claim"
    pod = argo_pod(export(examples / f"{name}.yaml", "--to", "argo"), claim, name="wf-1")
    outcomes = run_argo(pod, examples)
    for container, outcome in outcomes.items():
        assert outcome.code == 0, (container, outcome.output)
    report = claim / "results" / "wf-1" / "payload" / REPORTS[name][0] / "report.txt"
    assert _without_job(report) == expected
    job_id = pod[0].env["CLARA_JOB_ID"]  # the pod's uid: each operator learns it
    if name == "ct-smooth":
        text = report.read_text()
        assert f"ct-smooth {job_id}" in text  # report.sh: from $CLARA_JOB_ID
        # acquire.py: from the driver (CLARA_IO, whose job id exec-operator filled in)
        assert f"series    1.2.826.0.1.3680043.10.{uuid.UUID(job_id).int % 10**12}" in text
    assert_nothing_left()


def test_fan_out_runs_one_pod_per_payload(examples: Path, tmp_path: Path) -> None:
    workflow = export(examples / "ct-branches.yaml", "--to", "argo", "--payloads", "a,b")
    (fan_out,) = [t for t in workflow["spec"]["templates"] if "steps" in t]
    claim = tmp_path / "claim"
    reports = []
    for payload in fan_out["steps"][0][0]["withItems"]:
        outcomes = run_argo(argo_pod(workflow, claim, payload, "wf-2"), examples)
        assert all(o.code == 0 for o in outcomes.values()), outcomes
        report = claim / "results" / "wf-2" / payload / "summarise" / "report" / "report.txt"
        reports.append(_without_job(report))
    assert reports[0] == reports[1] == local_report(examples, "ct-branches")
    assert_nothing_left()


@pytest.mark.parametrize("name", ["ct-smooth", "ct-branches"])
def test_kubernetes_pod_starts_everything_at_once(
    examples: Path, tmp_path: Path, name: str
) -> None:
    expected = local_report(examples, name)
    claim = tmp_path / "claim"
    job = export(examples / f"{name}.yaml", "--to", "k8s-job", "--payloads", "p0,p1")
    outcomes = run_all_at_once(job_pod(job, claim, index=1, name="job-7"), examples)
    for container, outcome in outcomes.items():
        assert outcome.code == 0, (container, outcome.output)
    report = claim / "results" / "job-7" / "1" / REPORTS[name][0] / "report.txt"
    assert _without_job(report) == expected
    assert_nothing_left()
