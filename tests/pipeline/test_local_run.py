"""What a local run adds to Clara: bindings, the job directory, --isolate, clear refusals."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from clara_core import Context, leaks
from clara_core.pipeline.isolate import unavailable
from tests.reliability.harness import as_other_user, require_root

from .pipes import CLARA, clara, clara_run, operators

UNBOUND = """\
api-version: 0.4.0
name: unbound
operators:
- name: reader
  container:
    image: example.org/reader
    tag: "1.0"
  input: [{path: /input}]
  output: [{path: /output}]
- name: checker
  container: {command: [sh, -c, 'ls "$0"', /input]}
  input: [{from: reader, path: /input}]
- name: writer
  container: {image: example.org/writer}
  input: [{from: reader, path: /input}]
  output: [{path: /output}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def assert_clean() -> None:
    assert leaks.check().clean and Context.list() == []


def test_unbound_operators_refuse_the_run_before_anything_starts(tmp_path: Path) -> None:
    pipeline = write(tmp_path, UNBOUND)
    job = tmp_path / "job"
    result = clara("run", str(pipeline), "--job-dir", str(job))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{pipeline}:4: operator 'reader' has no command (image example.org/reader:1.0)",
        f"{pipeline}:13: operator 'writer' has no command (image example.org/writer:latest)",
        "clara: error: 2 operators without a command (reader, writer): give each a local "
        "command with --bind OPERATOR=COMMAND or --bindings FILE; nothing was started",
    ]
    assert not job.exists()
    assert_clean()


def test_bindings_give_and_replace_commands(tmp_path: Path) -> None:
    pipeline = write(tmp_path, UNBOUND)
    (tmp_path / "bindings.yaml").write_text(
        "reader: [sh, -c, 'echo from-file > \"$0\"/marker', /output]\n"
        "writer: sh -c 'echo file-writer'\n"
    )
    job = tmp_path / "job"
    code, result, err = clara_run(
        pipeline,
        "--bindings",
        str(tmp_path / "bindings.yaml"),
        "--bind",
        "writer=sh -c 'cat \"$0\"/marker; echo bound-writer' /input",  # --bind wins
        "--job-dir",
        str(job),
    )
    assert code == 0, err
    ops = operators(result)
    assert ops["checker"]["output_tail"] == ["marker"]  # container.command, path replaced
    assert ops["writer"]["output_tail"] == ["from-file", "bound-writer"]
    assert (job / "operators" / "reader" / "output" / "marker").read_text() == "from-file\n"
    assert (job / "logs" / "writer.log").read_text() == "from-file\nbound-writer\n"
    assert_clean()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--bind=ghost=true",
            "--bind ghost: pipeline 'unbound' has no operator 'ghost' "
            "(operators: reader, checker, writer)",
        ),
        ("--bind=reader", "invalid --bind 'reader': use OPERATOR=COMMAND"),
        ("--bind=reader=", "--bind reader: the command is empty"),
        ("--service=nothing=localhost:1", "--service nothing: the pipeline declares no service"),
        ("--param=x=1", "--param x: no parameter of that name (parameters: none)"),
    ],
)
def test_bad_local_options_are_usage_errors(tmp_path: Path, option: str, message: str) -> None:
    pipeline = write(tmp_path, UNBOUND)
    result = clara("run", str(pipeline), option, "--bind", "reader=true", "--bind", "writer=true")
    assert result.returncode == 2
    assert message in result.stderr
    assert_clean()


def test_the_default_job_directory_goes_after_a_success_and_stays_after_a_failure(
    tmp_path: Path,
) -> None:
    pipeline = write(tmp_path, UNBOUND)
    binds = ["--bind", "reader=touch /output/done", "--bind", "writer=ls /input"]
    ok = clara("--json", "run", str(pipeline), *binds)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert f"clara: job directory {data['job_dir']}\n" in ok.stderr
    temp = os.path.realpath(os.environ["TMPDIR"])  # the session's (tests/conftest.py)
    assert data["job_dir"].startswith(os.path.join(temp, "clara-job-unbound-"))
    assert data["job_dir_kept"] is False and not os.path.exists(data["job_dir"])

    failing = clara("run", str(pipeline), *binds[:2], "--bind", "writer=sh -c 'echo no; exit 3'")
    assert failing.returncode == 1
    job = re.search(r"clara: job directory (\S+) kept", failing.stderr).group(1)
    try:
        assert (Path(job) / "logs" / "writer.log").read_text() == "no\n"
        assert (Path(job) / "operators" / "reader" / "output" / "done").exists()
        assert "rerun with --keep to inspect it afterwards (`clara dump CONTEXT`)" in (
            failing.stderr
        )
        assert "clara: pipeline unbound failed: operator 'writer' exited with code 3" in (
            failing.stderr
        )
    finally:
        shutil.rmtree(job)
    kept = clara("--json", "run", str(pipeline), *binds, "--keep", "--context", "kept-job")
    try:
        data = json.loads(kept.stdout)
        assert data["job_dir_kept"] is True and os.path.isdir(data["job_dir"])
    finally:
        Context.destroy("kept-job")
        shutil.rmtree(data["job_dir"])
    assert_clean()


def test_a_job_directory_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    pipeline = write(tmp_path, UNBOUND)
    job = tmp_path / "job"
    job.mkdir()
    (job / "old").write_text("previous run")
    binds = ("--bind", "reader=true", "--bind", "writer=true")
    result = clara("run", str(pipeline), "--job-dir", str(job), *binds)
    assert result.returncode == 10
    assert f"job directory {job} is not empty" in result.stderr
    assert sorted(os.listdir(job)) == ["old"]
    assert_clean()


def test_isolate_mounts_the_container_paths_for_unmodified_operators(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(f"--isolate is not available on this machine: {reason}")
    pipeline = write(
        tmp_path,
        """\
        api-version: 0.4.0
        name: isolated
        operators:
        - name: producer
          container: {command: [sh, -c, 'cat /input/seed; echo made > /output/result']}
          input: [{path: /input}]
          output: [{path: /output}]
        - name: consumer
          container:
            command: [sh, -c, 'cat /input/result; touch /input/x 2>/dev/null || echo read-only']
          input: [{from: producer, path: /input}]
        """,
    )
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "seed").write_text("seed\n")
    job = tmp_path / "job"
    assert not os.path.exists("/input") and not os.path.exists("/output")
    code, result, err = clara_run(
        pipeline, "--isolate", "--payload", str(payload), "--job-dir", str(job)
    )
    assert code == 0, err
    ops = operators(result)
    assert ops["producer"]["output_tail"] == ["seed"]
    assert ops["consumer"]["output_tail"] == ["made", "read-only"]  # inputs mounted read-only
    assert (job / "operators" / "producer" / "output" / "result").read_text() == "made\n"
    assert not os.path.exists("/input") and not os.path.exists("/output")
    assert os.listdir(job / ".isolate" / "producer") == []  # a mount point, empty outside
    assert_clean()


def test_isolate_refuses_clearly_where_unavailable(tmp_path: Path) -> None:
    """Where namespaces work, the probe says None; the flag is then accepted (above)."""
    reason = unavailable()
    if reason is None:
        pytest.skip("--isolate is available here: its refusal cannot be observed")
    pipeline = write(tmp_path, UNBOUND)
    result = clara(
        "run", str(pipeline), "--isolate", "--bind", "reader=true", "--bind", "writer=true"
    )
    assert result.returncode == 2
    assert f"--isolate is not available on this machine: {reason}" in result.stderr


def test_isolate_as_another_user_uses_a_user_namespace() -> None:
    """Unprivileged: a user namespace of its own; the operator keeps its uid, the host
    stays untouched."""
    require_root()
    probe = subprocess.run(
        [
            *as_other_user(),
            sys.executable,
            "-c",
            "from clara_core.pipeline import isolate; print(isolate.unavailable())",
        ],
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "None":
        why = (probe.stdout.strip() or probe.stderr.strip()).splitlines()[-1]
        pytest.skip(f"--isolate is not available to an unprivileged user here: {why}")
    base = Path(tempfile.mkdtemp(prefix="clara-isolate-user-"))
    try:
        base.chmod(0o777)  # the other user makes the job directory in it
        pipeline = write(
            base,
            """\
            api-version: 0.4.0
            name: isolated-user
            operators:
            - name: only
              container: {command: [sh, -c, 'id -u; echo hi > /output/x']}
              output: [{path: /output}]
            """,
        )
        job = base / "job"
        result = subprocess.run(
            [
                *as_other_user(),
                *CLARA,
                "--json",
                "run",
                str(pipeline),
                "--isolate",
                "--job-dir",
                str(job),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert operators(json.loads(result.stdout))["only"]["output_tail"] == ["65534"]
        assert (job / "operators" / "only" / "output" / "x").read_text() == "hi\n"
        assert not os.path.exists("/output")
    finally:
        shutil.rmtree(base)


BLAS_ENVIRONMENT = """\
api-version: 0.4.0
name: blas-environment
operators:
- name: default
  container: {command: [sh, -c, 'echo "timeout ${OPENBLAS_THREAD_TIMEOUT-unset}"']}
- name: own
  variables: {OPENBLAS_THREAD_TIMEOUT: "28"}
  container: {command: [sh, -c, 'echo "timeout ${OPENBLAS_THREAD_TIMEOUT-unset}"']}
"""


def test_operators_idle_blas_threads_sleep_unless_the_run_or_the_operator_says_otherwise(
    tmp_path: Path,
) -> None:
    pipeline = write(tmp_path, BLAS_ENVIRONMENT)
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    for runner_sets, expected in ((None, "4"), ("20", "20")):
        env = (
            environ if runner_sets is None else {**environ, "OPENBLAS_THREAD_TIMEOUT": runner_sets}
        )
        code, result, stderr = clara_run(pipeline, env=env)
        assert code == 0, stderr
        ops = operators(result)
        assert ops["default"]["output_tail"] == [f"timeout {expected}"]
        assert ops["own"]["output_tail"] == ["timeout 28"]
