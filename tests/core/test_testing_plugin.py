"""clara's pytest plugin, as a user meets it: a real pytest run of a user's test file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from clara_core.names import shm_dir

USER_TESTS = """\
    import os
    import numpy as np
    from clara_core import Context


    def test_clean(clara_context):
        alloc = clara_context.create(dtype="float32", shape=(2, 3))
        with alloc.map("w") as array:
            array[...] = 1.0
        alloc.publish("volume")
        assert Context.open(clara_context.name).get("volume").shape == (2, 3)
        assert os.environ["CLARA_NAMESPACE"].startswith(os.environ["OUTER"] + "-")


    def test_leaky(clara_namespace):
        print("NAMESPACE", clara_namespace)
        ctx = Context.create("forgotten")
        vol = ctx.create(dtype="uint8", shape=(4096,))
        with vol.map("w") as array:
            array[...] = 7
        vol.publish("scan")
        vol.release()
        ctx.close()


    def test_namespaces_differ(clara_namespace, request):
        assert clara_namespace != os.environ["OUTER"]
"""


def test_the_plugin_is_registered_for_pytest():
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("clara") == "clara_core.testing"


def test_a_users_test_run_gets_namespaces_a_context_and_a_table_of_leftovers(
    tmp_path: Path, namespace: str
):
    (tmp_path / "test_ops.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(  # no conftest there: the fixtures come from the entry point
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_ops.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OUTER": namespace},
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 1, out
    assert "3 passed, 1 error" in out, out  # the leak fails the test at teardown
    assert "ERROR at teardown of test_leaky" in out
    leaked_ns = re.search(r"NAMESPACE (\S+)", out).group(1)
    assert leaked_ns.startswith(namespace + "-")
    assert f"test left 2 segment(s) of namespace {leaked_ns} in {shm_dir()} (now removed)" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "KIND" in line)
    assert lines[header].split() == ["KIND", "CONTEXT", "NAME", "SIZE", "CREATOR", "STATE"]
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert [r[:3] for r in rows] == [
        ["context", "forgotten", "-"],
        ["published", "forgotten", "scan"],
    ]
    scan = rows[1]
    assert scan[3:5] == ["8.0", "KiB"]  # the segment: a header page and the data page
    assert scan[5] == str(int(scan[5])) and scan[-1] == "complete"  # creator pid, data state
    # removed, so that the next run starts clean
    assert [f for f in os.listdir(shm_dir()) if f.startswith(leaked_ns + ".")] == []
