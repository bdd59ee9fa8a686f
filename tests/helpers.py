"""Helpers for tests that need real, separate processes."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest


class Child:
    """A python subprocess running `code`; it prints lines the test waits for.

    Its stdin is a pipe: `send` writes a line the child can wait for (`sys.stdin.readline()`),
    so a test decides when the child goes on instead of guessing with a sleep.
    """

    def __init__(self, code: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._pending = b""  # read from stdout, not yet returned as a line

    @property
    def pid(self) -> int:
        return self.process.pid

    def expect(self, word: str, timeout: float = 20.0) -> str:
        """Wait for a line starting with `word`; returns the line.

        The wait is bounded for real: stdout is read with select() against a deadline, so a
        wedged child fails the test (and is killed) instead of hanging the run.
        """
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while True:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode(errors="replace")
                if line.startswith(word):
                    return line.strip()
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.process.kill()
                _, err = self.process.communicate(timeout=10)
                raise AssertionError(f"child never printed {word!r} in {timeout} s: {err}")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.process.wait(10)
                raise AssertionError(f"child ended before {word!r}: {self.process.stderr.read()}")
            self._pending += chunk

    def send(self, line: str) -> None:
        """Write `line` (and a newline) to the child's stdin."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """kill -9 (unless it has ended and been reaped already), and reap."""
        if self.process.returncode is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        self.close()

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for the end; returns (exit code, stdout rest, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        rest, self._pending = self._pending.decode(errors="replace"), b""
        return self.process.returncode, rest + out, err

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


def sleeping_in(pid: int, waits: tuple[str, ...], timeout: float = 20.0) -> str:
    """Wait until process `pid` sleeps in one of the kernel functions `waits` (its wchan).

    How a test proves a waiter really waits (rather than came too late to have to): a
    bounded lock wait polls, sleeping in `hrtimer_nanosleep`; an endless one sleeps in
    `fcntl_setlk`. Returns the wchan seen; fails after `timeout` s naming the last one.
    """
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                seen = f.read().strip()
        except OSError:
            raise AssertionError(f"process {pid} ended before it waited") from None
        if seen in waits:
            return seen
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never waited in {waits}; last seen in {seen!r}")


def running(pid: int) -> bool:
    """Whether any thread of `pid` still runs (a zombie leader with live threads counts).

    A process whose leader shows as a zombie may still have threads (numpy's, say)
    holding its files, and so its locks: only an empty task list means it is gone.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except OSError:
            continue
    return False


def run_python(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter to the end."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def strace_lines(
    tmp_path: object, options: list[str], command: list[str], cwd: str | None = None
) -> list[str]:
    """The lines `strace -f -qq OPTIONS` writes about a real run of `command` (which must
    succeed); the test is skipped where strace is missing or may not trace."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    out = os.path.join(str(tmp_path), "calls.strace")
    done = subprocess.run(
        [strace, "-f", "-qq", *options, "-o", out, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out, encoding="utf-8", errors="replace") as lines:
        return lines.readlines()


def is_mapped(address: int) -> bool:
    """Whether any mapping of this process covers `address` (/proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(part, 16) for part in line.split()[0].split("-"))
            if start <= address < end:
                return True
    return False
