"""Naming an open segment (publish): linkat(AT_EMPTY_PATH) where the kernel lets an
ordinary user do it, else through /proc/self/fd, with the same result."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import pytest

OTHER_UID = 65534

# As an ordinary user: publish one allocation with the credentials it was created under,
# then change credentials (setregid to the same ids gives the process a new set) and
# publish one created before the change, which Linux no longer lets AT_EMPTY_PATH name.
SCRIPT = """
import json, os
from clara_core import Context
from clara_core.shm import directory

out = {}
with Context.create("linked") as ctx:
    try:
        first, second = ctx.create(8), ctx.create(8)
        for alloc, value in ((first, 7), (second, 9)):
            with alloc.map("w") as array:
                array[:] = value
        first.publish("first")
        out["after_first"] = directory._empty_path
        gid = os.getgid()
        os.setregid(gid, gid)
        second.publish("second")
        out["after_second"] = directory._empty_path
        for name in ("first", "second"):
            with ctx.get(name) as ref, ref.map("r") as array:
                out[name] = array.tolist()
        first.free()
        second.free()
    finally:
        Context.destroy("linked")
print(json.dumps(out))
"""


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = platform.release().split("-")[0].split(".")
    return (int(numbers[0]), int(numbers[1])) >= (major, minor)


def test_an_ordinary_user_publishes_with_either_way_of_linking() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run as another user")
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={OTHER_UID}",
            f"--regid={OTHER_UID}",
            "--clear-groups",
            sys.executable,
            "-c",
            textwrap.dedent(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["first"] == [7] * 8 and out["second"] == [9] * 8
    if _kernel_at_least(6, 10):  # AT_EMPTY_PATH for whoever opened the file
        assert out["after_first"] is True  # it named the first one itself
    # The second one's file was opened under the old credentials: /proc/self/fd named it,
    # and is used from then on.
    assert out["after_second"] is False
