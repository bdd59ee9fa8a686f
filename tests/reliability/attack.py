"""The attacker's side of tests/reliability/test_attacker.py: another local user (uid 65534)
planting names in the shared-memory directory, holding locks, rewriting what a mode lets
it write. Every step runs as that user, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from .harness import SAFETY, as_other_user

ATTACKER = """
import fcntl, os, struct, sys, time
DIR = {directory!r}
FLOCK = struct.Struct("hhqqi4x")

def lock(fd, byte, kind):
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, FLOCK.pack(kind, 0, byte, 1, 0))

def plant(name, kind, size=4096 + (1 << 20), data=b"", target=""):
    path = os.path.join(DIR, name)
    if kind == "fifo":
        os.mkfifo(path, 0o666)
    elif kind == "directory":
        os.mkdir(path, 0o777)
    elif kind == "symlink":
        os.symlink(target or "/etc/passwd", path)
    elif kind == "hardlink":
        own = os.path.join(DIR, "i9-attacker-" + name)
        with open(own, "wb") as f:
            f.write(data or b"not a segment")
        os.chmod(own, 0o666)
        os.link(own, path)
        os.unlink(own)
    else:  # regular, sparse, header
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        os.fchmod(fd, 0o666)
        os.ftruncate(fd, size)
        if data:
            os.pwrite(fd, data, 0)
        os.close(fd)
"""


def as_other(
    code: str, directory: str, env: dict[str, str] | None = None, uid: int | None = None
) -> subprocess.CompletedProcess:
    """Run python `code` (after ATTACKER's helpers) as the other user, to its end."""
    prefix = as_other_user() if uid is None else _as_uid(uid)
    script = ATTACKER.format(directory=directory) + textwrap.dedent(code)
    result = subprocess.run(
        [*prefix, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result


def holding(code: str, directory: str) -> subprocess.Popen:
    """Start python `code` as the other user; it prints 'held' and then sleeps until
    killed (the locks it took stay held meanwhile)."""
    script = ATTACKER.format(directory=directory) + textwrap.dedent(code)
    script += "\nprint('held', flush=True)\ntime.sleep(600)\n"
    process = subprocess.Popen(
        [*as_other_user(), sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    line = process.stdout.readline()
    if line.strip() != "held":
        process.kill()
        raise AssertionError(f"the attacker could not take its locks: {process.stderr.read()}")
    return process


def _as_uid(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
