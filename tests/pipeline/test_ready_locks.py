"""The ready locks of a job (docs/segment-format.md 5.11), between real processes: a
reader waits for the runner only; a final status ends every wait; a runner that goes
away without settling a producer fails its readers instead of leaving them waiting."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clara_core import Context
from clara_core.errors import ClaraError, Timeout
from clara_core.names import PUBLISHED, allocation_file
from clara_core.pipeline.environment import JOB, JobPlan
from clara_core.pipeline.operator_duties import TALLY, Tally, UpstreamFailed
from clara_core.pipeline.readiness import READY_BASE, ReadyLocks, wait_for_producer
from clara_core.shm import locks
from clara_core.shm.segment import path_of

PLAN = JobPlan(("produce", "consume"), {"produce--x": 1})
OTHER_UID = 65534

HOLD = """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
request = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, int(sys.argv[2]), 1, 0)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
print("held", flush=True)
time.sleep(600)
"""

READ = """
from clara_core import Context
from clara_core.errors import ClaraError
from clara_core.pipeline.readiness import wait_for_producer
import sys
try:
    wait_for_producer(Context.open(sys.argv[1]), "produce", "input 'x' of operator 'consume'")
except ClaraError as exc:
    print(type(exc).__name__, exc, flush=True)
    sys.exit(exc.exit_code)
print("ready", flush=True)
"""


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """A job's context made by this process (which plays the runner), CLARA_JOB set."""
    monkeypatch.setenv(JOB, PLAN.to_json())
    monkeypatch.setenv("CLARA_LOCK_TIMEOUT", "1")
    ctx = Context.create("ready-locks", mode=0o666)
    try:
        yield ctx
    finally:
        ctx.destroy()


def hold_ready_lock(ctx: Context, prefix: list[str] = ()) -> subprocess.Popen:
    """Another process holding produce's ready lock exclusively (it has write access)."""
    tally_file = path_of(allocation_file(ctx.name, PUBLISHED, TALLY))
    holder = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLD, tally_file, str(READY_BASE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def other_user() -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to hold the lock as another user")
    return ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]


@pytest.mark.parametrize("who", ["same-user", "other-user"])
def test_a_lock_held_by_anyone_but_the_runner_is_waited_for_a_bounded_time(
    job: Context, who: str
) -> None:
    tally = Tally(job, PLAN)  # produce: waiting, and nobody settles it
    holder = hold_ready_lock(job, other_user() if who == "other-user" else [])
    try:
        with pytest.raises(Timeout) as caught:
            wait_for_producer(job, "produce", "input 'x' of operator 'consume'")
        assert "input 'x' of operator 'consume'" in str(caught.value)
        assert "not by the job's runner" in str(caught.value)
        assert str(holder.pid) in str(caught.value)  # root sees every holder
        # A final status ends the wait, whoever holds the lock.
        tally.succeeded("produce", [], [])
        wait_for_producer(job, "produce", "input 'x' of operator 'consume'")
    finally:
        stop(holder)
        tally.release()


def test_a_failed_producer_fails_its_reader_whoever_holds_the_lock(job: Context) -> None:
    tally = Tally(job, PLAN)
    tally.failed("produce")
    holder = hold_ready_lock(job)
    try:
        with pytest.raises(UpstreamFailed, match="operator 'produce' failed"):
            wait_for_producer(job, "produce", "input 'x' of operator 'consume'")
    finally:
        stop(holder)
        tally.release()


def test_readers_go_on_when_the_runner_settles_the_producer(job: Context) -> None:
    runner = ReadyLocks(job, PLAN)
    try:
        reader = subprocess.Popen(
            [sys.executable, "-c", READ, job.name], stdout=subprocess.PIPE, text=True
        )
        runner.tally.succeeded("produce", [], [])
        runner.release("produce")
        out, _ = reader.communicate(timeout=60)
        assert (reader.returncode, out) == (0, "ready\n")
    finally:
        runner.close()


def blocked_in_a_lock_wait(pid: int) -> bool:
    """Whether a thread of process `pid` sleeps in fcntl(F_OFD_SETLKW), in the kernel."""
    wanted = hex(fcntl.F_OFD_SETLKW)
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/syscall") as syscall:
            if syscall.read().split()[2:3] == [wanted]:
                return True
    return False


def test_a_waiting_reader_sleeps_in_the_kernel_until_the_runner_lets_go(job: Context) -> None:
    """The reader does not poll the ready lock (which would add up to a poll's pause to
    every edge of the pipeline): it sleeps in F_OFD_SETLKW and goes on when woken."""
    runner = ReadyLocks(job, PLAN)
    try:
        reader = subprocess.Popen(
            [sys.executable, "-c", READ, job.name], stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60  # against a hang only: the reader must get there
        while not blocked_in_a_lock_wait(reader.pid):
            assert reader.poll() is None and time.monotonic() < deadline, "never blocked"
            time.sleep(0.01)
        runner.tally.succeeded("produce", [], [])
        runner.release("produce")
        out, _ = reader.communicate(timeout=60)
        assert (reader.returncode, out) == (0, "ready\n")
    finally:
        runner.close()


def test_a_runner_gone_without_settling_fails_the_waiting_reader(job: Context) -> None:
    runner = ReadyLocks(job, PLAN)
    reader = subprocess.Popen(
        [sys.executable, "-c", READ, job.name], stdout=subprocess.PIPE, text=True
    )
    runner.close()  # its locks go, as they would with it: produce is still waiting
    out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 1, out
    assert out == (
        "UpstreamFailed input 'x' of operator 'consume' will never be complete: operator "
        "'produce' did not finish (the job's runner stopped or died)\n"
    )


def test_outside_a_job_nothing_is_waited_for(job: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tally in the context (or no CLARA_JOB): a read does not wait."""
    wait_for_producer(job, "produce", "input 'x'")
    monkeypatch.delenv(JOB)
    Tally(job, PLAN).release()
    wait_for_producer(job, "produce", "input 'x'")


def test_a_reader_that_may_start_no_thread_still_waits_a_bounded_time(job: Context) -> None:
    """The wait sleeps in a helper thread; a process that may start none (RLIMIT_NPROC,
    a container's pids limit) polls instead: the same Timeout, no traceback."""
    tally = Tally(job, PLAN)  # produce: waiting, and nobody settles it
    holder = hold_ready_lock(job)  # not the runner (this process)
    no_threads = "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (1, 1))\n"
    try:
        reader = subprocess.run(
            [*other_user(), sys.executable, "-c", no_threads + READ, job.name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.stderr == ""
        assert reader.returncode == Timeout.exit_code, reader.stdout
        assert reader.stdout.startswith("Timeout waited 1 s to read input 'x' of operator")
    finally:
        stop(holder)
        tally.release()


def test_an_error_of_the_kernel_wait_is_a_clara_error(tmp_path) -> None:
    """The kernel may refuse the wait itself (ENOLCK: its lock table is full; here EBADF:
    a write lock on a file open for reading): one of clara's errors naming the lock (a
    clear line and an exit code), not a raw OSError out of the waiting reader."""
    path = tmp_path / "tally"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDONLY)
    try:
        wait = locks.KernelWait(fd, READY_BASE, True, "the ready lock of operator 'produce'")
        with pytest.raises(ClaraError) as raised:
            wait.granted(60)
        assert str(raised.value) == (
            "cannot wait for the ready lock of operator 'produce': Bad file descriptor"
        )
    finally:
        os.close(fd)
