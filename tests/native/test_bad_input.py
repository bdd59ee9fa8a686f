"""Bad input to the C API gives a clear code, never a crash: also under the sanitizers."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from clara_core import Context

from .conftest import HERE, run


@pytest.fixture
def ctx(namespace):
    context = Context.create("bad")
    alloc = context.create(dtype="u8", shape=(16,))
    alloc.publish("vol")
    alloc.release()
    yield context
    context.destroy()


@pytest.mark.parametrize("build", ["native", "sanitized"])
def test_every_bad_argument_is_refused_with_a_code(ctx, request, build):
    program = request.getfixturevalue(build).program(HERE / "bad_input.c", f"bad_input_{build}")
    env = {k: v for k, v in os.environ.items() if k not in ("CLARA_OPERATOR", "CLARA_FASTIO")}
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    result = run(program, "bad", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = re.fullmatch(r"(\d+) checks, 0 failures", result.stdout.strip())
    assert checks and int(checks.group(1)) >= 75, result.stdout
    assert "runtime error" not in result.stderr and "Sanitizer" not in result.stderr


def test_planted_files_are_refused_without_a_hang(ctx, tool, namespace):
    directory = "/dev/shm"
    fifo = os.path.join(directory, f"{namespace}.bad.a.fifo")
    link = os.path.join(directory, f"{namespace}.bad.a.link")
    os.mkfifo(fifo, 0o666)
    os.symlink(os.path.join(directory, f"{namespace}.bad.a.vol"), link)
    try:
        result = run(tool, "read", "bad", "fifo", timeout=10)
        assert result.returncode == 9 and "is a FIFO, not a clara segment" in result.stderr
        result = run(tool, "read", "bad", "link", timeout=10)
        assert result.returncode == 9 and "is a symbolic link" in result.stderr
    finally:
        os.unlink(fifo)
        os.unlink(link)


def test_a_foreign_users_file_in_a_private_context_is_refused(ctx, tool, namespace):
    planted = f"/dev/shm/{namespace}.bad.a.planted"
    with open(f"/dev/shm/{namespace}.bad.a.vol", "rb") as f:
        segment = bytearray(f.read())
    segment[513:521] = b"planted\0"  # a valid header naming itself
    segment[512] = len("planted")
    made = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            f"cat > {planted}",
        ],
        input=bytes(segment),
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot act as a second user here: {made.stderr.decode().strip()}")
    try:
        assert os.stat(planted).st_uid == 65534
        result = run(tool, "read", "bad", "planted")
        assert result.returncode == 8 and "another user (uid 65534)" in result.stderr
    finally:
        os.unlink(planted)
