"""Helpers of the reliability suite: safety-net deadlines, directory snapshots, other users.

Deadlines here are safety nets (a wedged lock must fail the test, not hang the run),
never assertions about speed: they are tens of seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from clara_core.names import namespace, shm_dir

SAFETY = 30.0  # seconds before a blocked step counts as hung
OTHER_UID = 65534  # nobody
# How long a lock of a process just reaped may still be seen held. The kernel drops an
# OFD lock when the last reference to its open file goes; a process reading the dead
# one's /proc/PID/maps or fdinfo at that instant (leak-check, top, another test's scan)
# holds such a reference for the length of its read, so the lock can outlive the death
# by microseconds. A lock really left behind is still held after this.
LEFT_LOCK = 5.0


class Hang(AssertionError):
    """A step that should end did not within its safety deadline."""


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with Hang if the block still runs after `seconds` (SIGALRM interrupts a
    blocking system call, such as a lock wait, in this process)."""

    def expire(_signum: int, _frame: object) -> None:
        raise Hang(f"{what}: still blocked after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout's, if any
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # give the per-test timeout back what is left of it (at least a tick)
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def our_files(directory: str | None = None) -> set[str]:
    """Names of the current namespace's files in the shared-memory directory."""
    prefix = namespace() + "."
    return {name for name in os.listdir(directory or shm_dir()) if name.startswith(prefix)}


def directory_listing() -> set[str]:
    """Every file of the shared-memory directory but those of other clara test sessions
    and benchmark runs, which may come and go meanwhile on a shared machine."""
    ours = namespace() + "."
    return {
        name
        for name in os.listdir(shm_dir())
        if name.startswith(ours) or not name.startswith(("claratest-", "clarabench-"))
    }


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = SAFETY) -> None:
    """Poll `predicate` until it holds; Hang after `seconds`."""
    end = time.monotonic() + seconds
    pause = 0.001
    while not predicate():
        if time.monotonic() > end:
            raise Hang(f"{what}: not the case after {seconds:g} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def kill9(process: subprocess.Popen) -> int:
    """kill -9 a child and reap it; returns its exit status (-9)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    return process.wait(SAFETY)


def require_root() -> None:
    """Skip, with the reason, unless we are root and can run a command as another user."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the 'other user' side runs under another uid")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv(1) (util-linux) to run a command under another uid")


def as_other_user() -> list[str]:
    """Command prefix that runs the rest under uid/gid 65534 with no extra groups."""
    return ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
