"""One operator as a local process: its own process group, a pidfd, and its output pipe.

Each operator runs in a new session (so a terminal's Ctrl-C reaches only the runner,
which then stops operators in order) and is killed by the kernel if the runner dies
(PR_SET_PDEATHSIG). Its stdout and stderr share one pipe, read by the runner's event
loop (and copied, as it comes, to the operator's log file); a pidfd makes its exit an
event too, so the runner never polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: be SIGKILLed when the runner dies, even if it already has."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)


class OperatorProcess:
    """A started operator command."""

    def __init__(
        self,
        argv: list[str],
        cwd: str,
        env: Mapping[str, str],
        log: str | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        global _libc
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getpid()
        # The log is closed with the output pipe (close_output), or here if the start fails.
        self.log = open(log, "ab", buffering=0) if log else None  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=pass_fds,
                preexec_fn=lambda: _die_with_parent(parent),
            )
        except BaseException:
            if self.log is not None:
                self.log.close()
            raise
        self.pid = self.process.pid
        self.pidfd = os.pidfd_open(self.pid)
        assert self.process.stdout is not None
        self.output_fd = self.process.stdout.fileno()
        os.set_blocking(self.output_fd, False)
        self.returncode: int | None = None

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the operator's whole process group (while its leader is unreaped)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def reap(self) -> int:
        """Collect the exit status once the pidfd said it exited; kills stray children first.

        Strays are killed before reaping, while the leader's pid still pins the process
        group id, so no unrelated group can be hit.
        """
        if self.returncode is None:
            self.signal_group(signal.SIGKILL)
            self.returncode = self.process.wait()
            os.close(self.pidfd)
        return self.returncode

    def read_output(self) -> bytes | None:
        """Whatever the pipe holds now; b'' if nothing yet, None at end of file."""
        try:
            data = os.read(self.output_fd, 65536)
        except BlockingIOError:
            return b""
        if data and self.log is not None:
            self.log.write(data)
        return data or None

    def close_output(self) -> None:
        """Close the output pipe (and the log file)."""
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.log is not None:
            self.log.close()


def describe_exit(returncode: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"
