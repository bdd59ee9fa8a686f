"""A process an operator leaves behind outside its process group (setsid), still holding
the operator's output pipe: the runner cannot kill it with the group, and must not wait
for it either."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .pipes import clara_run, operators, write
from .test_run import HEAD, assert_clean


def test_a_stray_holding_the_output_pipe_does_not_hold_the_job(tmp_path: Path) -> None:
    """The operator succeeds and exits; its stray (a new session: out of reach of the
    group's SIGKILL at the reap) sleeps on with the pipe open. The job ends succeeded
    (the runner gives the pipes 1 s, as when it stops a job), not at --timeout: there
    the loop waited on the pipe without a deadline (none at all once it had timed out),
    until the stray's own end."""
    fifo, pid_file = tmp_path / "escaped", tmp_path / "stray.pid"
    os.mkfifo(fifo)
    script = tmp_path / "leave.sh"
    script.write_text(  # (the stray says it has left the group before the leader exits)
        f"setsid sh -c 'echo $$ > \"{fifo}\"; exec sleep 600' &\n"
        f'read stray < "{fifo}"\n'
        f'echo "$stray" > "{pid_file}"\n'
        "echo done\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="stray") + f"- name: leaver\n  container:\n"
        f"    command: [bash, {script}]\n",
    )
    try:
        code, result, err = clara_run(pipeline, "--timeout", "20")
        assert (code, result["status"]) == (0, "succeeded"), (result["reason"], err)
        leaver = operators(result)["leaver"]
        assert (leaver["status"], leaver["output_tail"]) == ("succeeded", ["done"]), leaver
        stray = int(pid_file.read_text())
        with open(f"/proc/{stray}/status") as status:  # it did outlive the job
            assert "sleep" in status.readline()
    finally:
        if pid_file.exists() and pid_file.read_text().strip():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert_clean()
