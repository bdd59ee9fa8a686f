"""Readiness at completion: an operator that says its outputs are complete (the driver
after execute, a shell through $CLARA_COMPLETE_FD) lets its readers go before it exits,
once the runner has checked those outputs; its exit still decides its fate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from clara_core.pipeline.completion import COMPLETE_FD, CompletionChannel, tell_runner_complete

from .pipes import clara_run, operators, write
from .test_early_start import from_produce, reader
from .test_run import HEAD, assert_clean

X = "{name: x, type: array, element-type: int32, shape: [4]}"
Y = "{name: y, type: array, element-type: int32, shape: [4]}"

# Waits (bounded) in the producer, after it said its outputs are complete, for the sign
# that its reader has read them: before this change, readers waited for the producer's exit.
AWAIT_READER = (
    "import sys, time\nfrom pathlib import Path\n"
    "def reader_done(flag, seconds):\n"
    "    deadline = time.monotonic() + seconds\n"
    "    while not Path(flag).exists():\n"
    "        if time.monotonic() > deadline:\n"
    "            return False\n"
    "        time.sleep(0.01)\n"
    "    return True\n"
)


def driver_pipeline(
    tmp_path: Path, name: str, flag: Path, then: str, consumer_then: str = "return True"
) -> Path:
    """produce (a driver: x = 1..4, then a cleanup that waits for `flag` and does `then`)
    -> consume (a driver: y = 2x, prints it, creates `flag`, then does `consumer_then`)."""
    (tmp_path / "produce.py").write_text(
        AWAIT_READER + "from clara_core.pipeline import Driver\n"
        "def execute(driver, payload):\n"
        "    payload.outputs['x'].write([1, 2, 3, 4])\n"
        "    return True\n"
        "def cleanup(driver):\n"
        f"    print('reader done before my exit:', reader_done({str(flag)!r}, 30), flush=True)\n"
        f"    {then}\n"
        "Driver(execute=execute, cleanup=cleanup).run()\n"
    )
    (tmp_path / "consume.py").write_text(
        "import sys\nfrom pathlib import Path\nfrom clara_core.pipeline import Driver\n"
        "def execute(driver, payload):\n"
        "    with payload.inputs['x'].mapped() as x, payload.outputs['y'].mapped() as y:\n"
        "        y[:] = x * 2\n"
        "        print('y', y.tolist(), flush=True)\n"
        f"    Path({str(flag)!r}).touch()\n"
        f"    {consumer_then}\n"
        "Driver(execute=execute).run()\n"
    )
    return write(
        tmp_path,
        HEAD.format(name=name)
        + f"- name: produce\n  container: {{command: [python, {tmp_path / 'produce.py'}]}}\n"
        + f"  output:\n  - {X}\n"
        + f"- name: consume\n  container: {{command: [python, {tmp_path / 'consume.py'}]}}\n"
        + f"  input:\n  - {from_produce(X)}\n  output:\n  - {Y}\n",
    )


def test_a_driver_s_readers_go_on_once_execute_succeeded_not_at_its_exit(
    tmp_path: Path,
) -> None:
    """The producer's cleanup waits for its reader to have read x: it can only see that
    if the runner let the reader go when the driver said x was complete."""
    flag = tmp_path / "consumer-done"
    pipeline = driver_pipeline(tmp_path, "complete", flag, "return True")
    code, result, err = clara_run(pipeline, timeout=120)
    assert code == 0, (err, result["operators"])
    ops = operators(result)
    assert ops["produce"]["output_tail"] == ["reader done before my exit: True"]
    assert ops["consume"]["output_tail"] == ["y [2, 4, 6, 8]"]
    assert {v["name"]: v["state"] for v in result["variables"]} == {
        "produce--x": "freed",
        "consume--y": "freed",
    }
    assert_clean()


def test_a_producer_that_fails_after_saying_complete_still_fails_the_job(
    tmp_path: Path,
) -> None:
    """Its reader has read x (complete, checked) while it ran; it then exits 3: the job
    fails, naming it, as for any failed operator."""
    flag = tmp_path / "consumer-done"
    pipeline = driver_pipeline(tmp_path, "fails-late", flag, "sys.exit(3)")
    code, result, err = clara_run(pipeline, timeout=120)
    assert code == 1, (err, result["operators"])
    assert result["reason"] == "operator 'produce' exited with code 3"
    ops = operators(result)
    assert (ops["produce"]["status"], ops["produce"]["exit_code"]) == ("failed", 3)
    assert ops["produce"]["output_tail"] == ["reader done before my exit: True"]
    assert ops["consume"]["output_tail"] == ["y [2, 4, 6, 8]"]
    assert "operator 'produce' exited with code 3" in err
    assert_clean()


def test_a_reader_s_failure_lets_its_completed_producer_end_as_it_would(
    tmp_path: Path,
) -> None:
    """The reader fails (exit 3) while its producer, outputs complete, is still in its
    cleanup: the job fails naming the reader, but the producer is not stopped (no
    SIGTERM): it ends on its own and succeeded."""
    flag = tmp_path / "consumer-done"
    pipeline = driver_pipeline(tmp_path, "reader-fails", flag, "return True", "sys.exit(3)")
    code, result, err = clara_run(pipeline, timeout=120)
    assert code == 1, (err, result["operators"])
    assert result["reason"] == "operator 'consume' exited with code 3"
    ops = operators(result)
    assert (ops["consume"]["status"], ops["consume"]["exit_code"]) == ("failed", 3)
    assert (ops["produce"]["status"], ops["produce"]["exit_code"]) == ("succeeded", 0)
    assert ops["produce"]["output_tail"] == ["reader done before my exit: True"]
    assert_clean()


def test_a_completed_producer_the_runner_kills_after_grace_is_stopped_not_failed(
    tmp_path: Path,
) -> None:
    """The reader fails; its producer, outputs complete, is left to end on its own but
    is still in its cleanup when --grace runs out: the runner kills it. That exit is the
    runner's doing, not the producer's failure: it is reported stopped (as any operator
    the runner stops), and the job's reason stays the reader's."""
    flag = tmp_path / "consumer-done"
    slow = "import time; time.sleep(60)"
    pipeline = driver_pipeline(tmp_path, "killed-after-grace", flag, slow, "sys.exit(3)")
    code, result, err = clara_run(pipeline, "--grace", "1", timeout=120)
    assert code == 1, (err, result["operators"])
    assert result["reason"] == "operator 'consume' exited with code 3"
    ops = operators(result)
    assert (ops["consume"]["status"], ops["consume"]["exit_code"]) == ("failed", 3)
    assert ops["produce"]["status"] == "stopped", ops["produce"]
    assert ops["produce"]["reason"] == "was killed by SIGKILL while the job was stopping"
    assert_clean()


def shell_pipeline(tmp_path: Path, name: str, produce: str) -> tuple[Path, Path]:
    """produce (bash script `produce`) -> consume (bash: reads x, prints it, creates a
    flag file, whose path the producer finds in $FLAG)."""
    flag = tmp_path / "consumer-done"
    (tmp_path / "await.py").write_text(
        AWAIT_READER + "print('reader done before my exit:', reader_done(*sys.argv[1:2], "
        "float(sys.argv[2])))\n"
    )
    (tmp_path / "produce.sh").write_text(
        f"set -euo pipefail\nFLAG={flag}\nAWAIT='python {tmp_path / 'await.py'}'\n" + produce
    )
    (tmp_path / "read.sh").write_text(
        f"set -euo pipefail\nclara map x --read --out - --format txt\ntouch {flag}\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name=name)
        + f"- name: produce\n  container: {{command: [bash, {tmp_path / 'produce.sh'}]}}\n"
        + f"  output:\n  - {X}\n"
        + reader("consume", str(tmp_path / "read.sh"), [from_produce(X)]),
    )
    return pipeline, flag


def assert_reader_went_on(pipeline: Path, before_exit: bool) -> None:
    """Run a `shell_pipeline`: it succeeds, its reader reads x, and the producer saw the
    reader finish before its own exit exactly when `before_exit`."""
    code, result, err = clara_run(pipeline, timeout=120)
    assert code == 0, (err, result["operators"])
    ops = operators(result)
    assert ops["produce"]["output_tail"] == [f"reader done before my exit: {before_exit}"]
    assert ops["consume"]["output_tail"] == ["1", "2", "3", "4"]
    assert_clean()


def test_a_shell_operator_says_complete_through_its_descriptor(tmp_path: Path) -> None:
    """`printf complete >&$CLARA_COMPLETE_FD` from the operator's own shell, twice (a
    repeated claim is read and ignored, and never fails the writer)."""
    pipeline, _ = shell_pipeline(
        tmp_path,
        "shell-complete",
        "printf '1 2 3 4' | clara map x --write --in - --format txt\n"
        'printf complete >&"$CLARA_COMPLETE_FD"\n'
        'printf "complete\\n" >&"$CLARA_COMPLETE_FD"\n'
        '$AWAIT "$FLAG" 30\n',
    )
    assert_reader_went_on(pipeline, before_exit=True)


def test_claims_on_incomplete_data_or_from_another_process_release_no_reader(
    tmp_path: Path,
) -> None:
    """The operator claims completion before writing x (the runner's check finds it
    empty), then a child of it claims once x is written (not the process the runner
    started): neither lets the reader go; it reads x once the producer has exited."""
    pipeline, _ = shell_pipeline(
        tmp_path,
        "forged",
        'printf complete >&"$CLARA_COMPLETE_FD"\n'
        "printf '1 2 3 4' | clara map x --write --in - --format txt\n"
        "python -c \"import os; os.write(int(os.environ['CLARA_COMPLETE_FD']), b'complete')\"\n"
        '$AWAIT "$FLAG" 3\n',
    )
    assert_reader_went_on(pipeline, before_exit=False)


def test_the_channel_counts_only_complete_from_the_process_it_names() -> None:
    """Messages from another process, or of other content, are read and ignored."""
    channel = CompletionChannel()
    try:
        fd = channel.child_fd
        send = "import os, sys; os.write(int(sys.argv[1]), sys.argv[2].encode())"
        child = subprocess.Popen([sys.executable, "-c", send, str(fd), "complete"], pass_fds=(fd,))
        assert child.wait() == 0
        os.write(fd, b"completed")
        os.write(fd, b"ready")
        assert not channel.claimed_by(os.getpid())
        assert not channel.claimed_by(os.getpid())  # all were read
        os.write(fd, b"complete")
        assert channel.claimed_by(os.getpid())
        child = subprocess.Popen(
            [sys.executable, "-c", send, str(fd), "complete\n"], pass_fds=(fd,)
        )
        assert child.wait() == 0
        assert channel.claimed_by(child.pid)  # its message carries its pid, even now
    finally:
        channel.close()


def test_an_operator_tells_only_the_runner_s_socket(tmp_path: Path) -> None:
    """A descriptor number in $CLARA_COMPLETE_FD that is not the runner's (a file, a
    socket pair of this process's own) gets nothing: it may be anything by now."""
    path = tmp_path / "unrelated"
    with open(path, "wb") as unrelated:
        assert not tell_runner_complete({COMPLETE_FD: str(unrelated.fileno())})
    assert path.read_bytes() == b""
    mine, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with mine, other:
        other.setblocking(False)
        assert not tell_runner_complete({COMPLETE_FD: str(mine.fileno())})
        assert not tell_runner_complete({COMPLETE_FD: "not a number"})
        try:
            got = other.recv(64)
        except BlockingIOError:
            got = None
        assert got is None
        assert mine.fileno() >= 0  # left open


def test_a_flood_on_the_channel_never_holds_the_runner_up(tmp_path: Path) -> None:
    """Four processes of the operator write to the channel without end: the runner reads
    a bounded number of messages per wake-up, so its --timeout still ends the job."""
    flood = "import os\nfd = int(os.environ['CLARA_COMPLETE_FD'])\nos.fork(); os.fork()\n"
    flood += "while True:\n    os.write(fd, b'x' * 60)\n"
    (tmp_path / "flood.py").write_text(flood)
    pipeline = write(
        tmp_path,
        HEAD.format(name="flood")
        + f"- name: produce\n  container: {{command: [python, {tmp_path / 'flood.py'}]}}\n"
        + f"  output:\n  - {X}\n",
    )
    code, result, err = clara_run(pipeline, "--timeout", "3", "--grace", "1", timeout=60)
    assert code == 1, err
    assert result["reason"] == "timed out after 3 s"
    assert operators(result)["produce"]["status"] == "timed-out"
    assert_clean()


def test_a_claim_while_the_claimer_holds_a_lock_never_holds_the_runner_up(
    tmp_path: Path,
) -> None:
    """The operator writes x, then holds x's reference lock exclusively (so no check can
    open x) and claims completion: the runner gives up on the claim at once, rather than
    waiting $CLARA_LOCK_TIMEOUT (here 600 s) for the lock, so its --timeout still works."""
    (tmp_path / "hold.py").write_text(
        "import os, subprocess, time\n"
        "from clara_core import Context\nfrom clara_core.shm import locks\n"
        "subprocess.run(['clara', 'map', 'x', '--write', '--in', '-', '--format', 'txt'],"
        " input=b'1 2 3 4', check=True)\n"
        "with Context.open(os.environ['CLARA_CONTEXT']) as ctx, ctx.get('produce--x') as x:\n"
        "    mapping = x.map('r')\n"
        "    fd = os.open(mapping.path, os.O_RDWR)  # an open file of its own\n"
        "    mapping.unmap()\n"
        "locks.acquire(fd, locks.REFERENCE_BYTE, True, 'x')\n"
        "os.write(int(os.environ['CLARA_COMPLETE_FD']), b'complete')\n"
        "print('holding', flush=True)\n"
        "time.sleep(600)\n"
    )
    pipeline = write(
        tmp_path,
        HEAD.format(name="held")
        + f"- name: produce\n  container: {{command: [python, {tmp_path / 'hold.py'}]}}\n"
        + f"  output:\n  - {X}\n"
        + reader("consume", str(tmp_path / "read.sh"), [from_produce(X)]),
    )
    (tmp_path / "read.sh").write_text("clara map x --read --out /dev/null\n")
    env = dict(os.environ, CLARA_LOCK_TIMEOUT="600")
    code, result, err = clara_run(pipeline, "--timeout", "5", "--grace", "1", timeout=60, env=env)
    assert code == 1, err
    assert result["reason"] == "timed out after 5 s"
    ops = operators(result)
    assert ops["produce"]["output_tail"] == ["holding"]
    assert ops["produce"]["status"] == "timed-out"
    assert_clean()
