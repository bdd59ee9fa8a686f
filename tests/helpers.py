"""Helpers for tests that need real, separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time


class Child:
    """A python subprocess running `code`; it prints lines the test waits for."""

    def __init__(self, code: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def expect(self, word: str, timeout: float = 20.0) -> str:
        """Wait for a line starting with `word`; returns the line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"child ended before {word!r}: {self.process.stderr.read()}")
            if line.startswith(word):
                return line.strip()
        raise AssertionError(f"child never printed {word!r}")

    def send(self, line: str) -> None:
        """Not used with stdin closed; kept for symmetry."""
        raise NotImplementedError

    def kill(self) -> None:
        """kill -9, and reap."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        self.close()

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for the end; returns (exit code, stdout rest, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def close(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


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
