"""`clara exec-operator`: the runner's duties done by each operator of a pod, with no
runner (decentralised through the job's tally in the context)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clara_core import Context
from tests.cli.clirun import clara, ok

from .simulate import argo_pod, job_pod, run_all_at_once, run_argo

PIPELINE = """\
api-version: 0.5.0
name: fan
operators:
- name: a
  container: {image: t, command: [bash, a.sh]}
  output: [{name: x, type: array, element-type: float32, shape: [4]}]
- name: b
  container: {image: t, command: [bash, sum.sh, y]}
  input: [{from: a, name: x, type: array, element-type: float32, shape: [4]}]
  output: [{name: y, type: float32}]
- name: c
  container: {image: t, command: [bash, sum.sh, z]}
  input: [{from: a, name: x, type: array, element-type: float32, shape: [4]}]
  output: [{name: z, type: float32}]
- name: d
  container: {image: t, command: [python, d.py]}
  input:
  - {from: b, name: y, type: float32}
  - {from: c, name: z, type: float32}
  output: [{name: report, type: stream, element-type: text, path: /out}]
"""
A_SH = "printf '1 2 3 4\\n' | clara map x --write --in - --format txt\n"
SUM_SH = """\
set -eo pipefail
clara map x --read --out - --format txt \\
  | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s }' \\
  | clara map "$1" --write --in - --format txt
"""
D_PY = """\
import os
import subprocess
from clara_core import Context, NotFound
def read(name):  # waits until its producer has completed it (clara run starts d early)
    return subprocess.run(["clara", "map", name, "--read", "--out", "-", "--format", "txt"],
                          capture_output=True, text=True, check=True).stdout.split()[0]
y, z = read("y"), read("z")
ctx = Context.open(os.environ["CLARA_CONTEXT"])
try:
    ctx.get("a--x")  # b and c, its readers, are done
    gone = False
except NotFound:
    gone = True
with open(os.path.join(os.environ["CLARA_OUTPUT"], "r.txt"), "w") as f:
    f.write(f"x freed before d: {gone}; y = {float(y):g}\\n")
"""


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """The operators' working directory (their 'image')."""
    directory = tmp_path / "image"
    directory.mkdir()
    (directory / "a.sh").write_text(A_SH)
    (directory / "sum.sh").write_text(SUM_SH)
    (directory / "d.py").write_text(D_PY)
    return directory


def export(tmp_path: Path, text: str, target: str) -> dict:
    pipeline = tmp_path / "fan.yaml"
    pipeline.write_text(text)
    return yaml.safe_load(ok("export", str(pipeline), "--to", target).stdout)


def destroy_pod_shm() -> None:
    """What the end of a failed pod does: its /dev/shm (an emptyDir) goes with it."""
    for name in Context.list():
        Context.destroy(name)


@pytest.mark.parametrize("target", ["argo", "k8s-job"])
def test_variables_are_freed_by_their_last_reader(image: Path, tmp_path: Path, target: str) -> None:
    manifest = export(tmp_path, PIPELINE, target)
    claim = tmp_path / "claim"
    if target == "argo":
        outcomes = run_argo(argo_pod(manifest, claim, name="w"), image)
        report = claim / "results/w/payload/d/report/r.txt"
    else:
        outcomes = run_all_at_once(job_pod(manifest, claim, name="j"), image)
        report = claim / "results/j/0/d/report/r.txt"
    assert all(o.code == 0 for o in outcomes.values()), outcomes
    # b and c read x (in parallel); the second of them to end freed it, before d started
    assert report.read_text() == "x freed before d: True; y = 10\n"
    assert Context.list() == []  # d, the last operator to end, destroyed the context


def test_a_failed_operator_stops_its_readers(image: Path, tmp_path: Path) -> None:
    (image / "a.sh").write_text("exit 3\n")
    manifest = export(tmp_path, PIPELINE, "argo")
    outcomes = run_argo(argo_pod(manifest, tmp_path / "claim"), image)
    assert outcomes["a"].code == 3  # the operator's own exit code is the container's
    assert all(outcomes[n].code is None for n in "bcd")  # Argo never starts them
    destroy_pod_shm()

    manifest = export(tmp_path, PIPELINE, "k8s-job")
    outcomes = run_all_at_once(job_pod(manifest, tmp_path / "claim"), image)
    assert outcomes["a"].code == 3
    for name in "bc":  # they were waiting for a: the tally says it failed
        assert outcomes[name].code == 1
        assert f"clara: error: operator '{name}' will not run: 'a' failed" in outcomes[name].output
    assert (
        "will not run: 'b' failed" in outcomes["d"].output or "'c' failed" in outcomes["d"].output
    )
    destroy_pod_shm()


def test_an_output_left_unwritten_fails_the_operator(image: Path, tmp_path: Path) -> None:
    (image / "a.sh").write_text("true\n")  # x was pre-allocated, but never written
    outcomes = run_argo(argo_pod(export(tmp_path, PIPELINE, "argo"), tmp_path / "c"), image)
    assert outcomes["a"].code == 1
    assert "clara: error: operator 'a' exited 0 but never wrote output 'x'" in outcomes["a"].output
    assert outcomes["b"].code is None
    destroy_pod_shm()


def test_a_command_that_cannot_run(image: Path, tmp_path: Path) -> None:
    text = PIPELINE.replace("[bash, a.sh]", "[no-such-command-here]")
    outcomes = run_all_at_once(job_pod(export(tmp_path, text, "k8s-job"), tmp_path / "c"), image)
    assert outcomes["a"].code == 127
    assert "no-such-command-here" in outcomes["a"].output
    assert outcomes["b"].code == 1  # recorded as a failure: its readers do not wait
    destroy_pod_shm()


def test_waiting_is_bounded(image: Path, tmp_path: Path) -> None:
    pod = job_pod(export(tmp_path, PIPELINE, "k8s-job"), tmp_path / "c")
    reader = next(c for c in pod if c.name == "b")
    argv = reader.argv
    reader.argv = [*argv[:3], "0.2", *argv[4:]]  # --wait 0.2, and a never runs
    outcomes = run_all_at_once([reader], image)
    assert outcomes["b"].code == 5
    assert "operator 'b' waited 0.2 s for 'a' to succeed" in outcomes["b"].output
    destroy_pod_shm()


def test_outside_a_pod_it_says_so(tmp_path: Path) -> None:
    unset = {name: "" for name in ("CLARA_OPERATOR", "CLARA_CONTEXT", "CLARA_IO", "CLARA_JOB")}
    result = clara("exec-operator", "--", "true", env=unset)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err == (  # what it is for, and what to run instead (not "inside `clara run`")
        "clara: error: not running in a job's pod (CLARA_OPERATOR, CLARA_CONTEXT, CLARA_IO, "
        "CLARA_JOB not set): "
        "exec-operator runs one operator of a pipeline exported by `clara export`; "
        "on this machine, run the pipeline with `clara run FILE`\n"
    )
    result = clara("exec-operator", "--wait", "-1", "--", "true")
    assert result.returncode == 2 and "invalid --wait -1" in result.stderr.decode()
    assert Context.list() == []


def test_clara_run_uses_the_same_tally(tmp_path: Path, image: Path) -> None:
    """The local runner does the same duties: the same pipeline runs, freeing as it goes."""
    from tests.pipeline.pipes import clara_run

    pipeline = image / "fan.yaml"
    pipeline.write_text(PIPELINE)
    code, result, err = clara_run(pipeline, "--job-dir", str(tmp_path / "job"))
    assert code == 0, err
    report = tmp_path / "job" / "operators" / "d" / "report" / "r.txt"  # /out, locally
    assert report.read_text() == "x freed before d: True; y = 10\n"
    assert {v["state"] for v in result["variables"]} == {"freed"}
    assert Context.list() == []
