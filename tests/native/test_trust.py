"""Whose files the C library uses, and which names it removes (docs/segment-format.md 5.1,
5.8): never a name that denotes another file by now, never a context of another user
unasked, never a member its context's writers could not have made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clara_core import Context, names
from clara_core.names import shm_dir

from .conftest import run

SECOND_USER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_free_never_removes_a_name_that_denotes_a_newer_file(namespace, tool):
    ctx = Context.create("re")
    first = ctx.create(dtype="u8", shape=(2,))
    first.publish("x")
    first.release()
    ctx.close()
    holder = subprocess.Popen(
        [str(tool), "hold-free", "re", "x"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "got"
        # The context goes and comes back with a new "x" while C still holds the old one.
        Context.destroy("re")
        ctx = Context.create("re")
        newer = ctx.create(dtype="u8", shape=(3,))
        with newer.map("w") as view:
            view[...] = [7, 8, 9]
        newer.publish("x")
        newer.release()
        holder.stdin.write("free\n")
        holder.stdin.flush()
        assert holder.wait(20) == 0, holder.stderr.read()
        with ctx.get("x") as ref, ref.map("r") as view:  # the newer one is still there
            assert list(view) == [7, 8, 9]
    finally:
        holder.kill()
        holder.wait()
    ctx.destroy()


def test_a_member_granting_more_than_its_context_is_refused(namespace, tool):
    ctx = Context.create("strict")  # mode 600
    alloc = ctx.create(dtype="u8", shape=(2,))
    alloc.publish("x")
    alloc.release()
    os.chmod(os.path.join(shm_dir(), names.allocation_file("strict", "a", "x")), 0o666)
    result = run(tool, "read", "strict", "x")
    assert result.returncode == 8 and "grants more" in result.stderr
    ctx.destroy()


def test_another_users_context_is_used_only_when_asked(namespace, tool):
    made = subprocess.run(
        [
            *SECOND_USER,
            sys.executable,
            "-c",
            "from clara_core import Context\n"
            "c = Context.create('theirs', mode=0o644)\n"
            "a = c.create(dtype='u8', shape=(1,))\na.map('w').unmap()\na.publish('x')\na.release()",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    if made.returncode != 0:
        pytest.skip(f"cannot act as a second user here: {made.stderr.strip()[-300:]}")
    try:
        result = run(tool, "read", "theirs", "x")
        assert result.returncode == 8 and "CLARA_CONTEXT_OWNER=65534" in result.stderr
        asked = run(tool, "read", "theirs", "x", env={**os.environ, "CLARA_CONTEXT_OWNER": "65534"})
        assert asked.returncode == 0, asked.stderr
        wrong = run(tool, "read", "theirs", "x", env={**os.environ, "CLARA_CONTEXT_OWNER": "0"})
        assert wrong.returncode == 8 and "not to uid 0" in wrong.stderr
    finally:
        for file_name in os.listdir(shm_dir()):
            if file_name.startswith(f"{namespace}.theirs"):
                os.unlink(os.path.join(shm_dir(), file_name))
