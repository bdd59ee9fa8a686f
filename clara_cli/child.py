"""Running `clara map NAME -- CMD` : CMD runs while the map is held, and its status is ours."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

import click

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
NOT_FOUND, NOT_EXECUTABLE = 127, 126  # what shells and env(1) exit with
_PR_SET_PDEATHSIG = 1


class CannotRun(click.ClickException):
    """CMD cannot be started (exit 127 if not found, 126 if not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def resolve(argv: Sequence[str]) -> str:
    """The executable of CMD, checked before anything is mapped."""
    program = argv[0]
    if "/" in program:
        if not os.path.exists(program):
            raise CannotRun(f"command not found: {program}", NOT_FOUND)
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise CannotRun(f"command is not executable: {program}", NOT_EXECUTABLE)
        return program
    found = shutil.which(program)
    if found is None:
        raise CannotRun(f"command not found: {program}", NOT_FOUND)
    return found


def run(argv: Sequence[str], executable: str, env: Mapping[str, str]) -> int:
    """Run CMD to its end and return its status as a shell reports it (128+N if killed).

    SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to clara are passed on to CMD, and clara
    waits for CMD to end. A ^C typed at the terminal already reaches CMD (same process
    group), so that one is not sent twice.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    try:
        child = subprocess.Popen(
            list(argv),
            executable=executable,
            env=dict(env),
            preexec_fn=lambda: _die_with(libc, parent),
        )
    except OSError as exc:
        code = NOT_FOUND if isinstance(exc, FileNotFoundError) else NOT_EXECUTABLE
        raise CannotRun(f"cannot run {argv[0]}: {exc.strerror or exc}", code) from None

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGINT, signal.SIGQUIT) and _from_terminal():
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status


def _die_with(libc: object, parent: int) -> None:
    """In CMD, before exec: be SIGKILLed when clara dies, even if it already has.

    The map is clara's: once clara is gone (kill -9 included) its lock is too, and CMD
    must not go on reading or writing memory that a new writer may now map.
    """
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # type: ignore[attr-defined]
    if os.getppid() != parent:
        os._exit(NOT_EXECUTABLE)


def _from_terminal() -> bool:
    """Whether we run in the foreground of a terminal, whose ^C reaches CMD by itself."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            continue
    return False
