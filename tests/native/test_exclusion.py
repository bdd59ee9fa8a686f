"""Exclusion and crashes across languages: the same locks and states in C and Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from clara_core import Busy, Context, Incomplete, NotFound
from tests.cli.clirun import clara, data
from tests.helpers import running

from .conftest import run


@pytest.fixture
def ctx(namespace):
    context = Context.create("locks")
    alloc = context.create(dtype="u8", shape=(8192,))
    alloc.map("w").unmap()  # written (zeros), so readers may map it
    alloc.publish("vol")
    alloc.release()
    yield context
    context.destroy()


def test_a_python_write_map_makes_a_c_map_busy_or_time_out(ctx, tool):
    ref = ctx.get("vol")
    with ref.map("w"):
        busy = run(tool, "map", "locks", "vol", "r", "0")
        assert busy.returncode == 4 and "try again later" in busy.stderr
        waited = run(tool, "map", "locks", "vol", "w", "0.2")
        assert waited.returncode == 5 and "for 0.2 s" in waited.stderr
    assert run(tool, "map", "locks", "vol", "r", "0").returncode == 0
    ref.release()


def test_a_python_read_map_lets_c_read_but_not_write(ctx, tool):
    with ctx.get("vol") as ref, ref.map("r"):
        assert run(tool, "map", "locks", "vol", "r", "0").returncode == 0
        assert run(tool, "map", "locks", "vol", "w", "0").returncode == 4


def test_a_c_map_excludes_python_and_a_waiting_python_map_gets_in_when_c_unmaps(ctx, tool):
    holder = subprocess.Popen(
        [str(tool), "hold", "locks", "vol", "w"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "mapped"
        with ctx.get("vol") as ref:
            with pytest.raises(Busy):
                ref.map("r")
            holder.stdin.write("go\n")
            holder.stdin.flush()
            with ref.map("r", timeout=30) as view:  # C's unmap marked it complete
                assert view.shape == (8192,)
        assert holder.wait(10) == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_c_writer_killed_mid_map_leaves_incomplete_data_that_leak_check_reclaims(namespace, tool):
    writer = subprocess.Popen(
        [str(tool), "crash-writer", "crashed", "vol", str(1 << 20)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "mapped"
        with Context.open("crashed").get("vol") as ref:
            with pytest.raises(Busy):  # the writer is alive and holds the map
                ref.map("r")
            assert ref.state == "writing"
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(10)
            assert not running(writer.pid)
            assert ref.state == "incomplete"
            with pytest.raises(Incomplete, match=f"pid {writer.pid}"):
                ref.map("r")
            with ref.map("r", allow_incomplete=True) as view:  # half written, as it died
                assert view[0] == 0xAB and view[-1] == 0
        assert run(tool, "read", "crashed", "vol").returncode == 6
        report = clara("--json", "leak-check")
        assert report.returncode == 1
        found = {f["kind"]: f for f in json.loads(report.stdout)["findings"]}
        assert found["context"]["status"] == "owner-dead"
        assert found["published"]["status"] == "owner-dead" and found["published"]["incomplete"]
        fixed = data("leak-check", "--fix")
        assert {f["kind"] for f in fixed["removed"]} == {"context", "published"}
        assert fixed["clean"]
    finally:
        writer.kill()
        writer.wait()
    with pytest.raises(NotFound):
        Context.open("crashed")
    assert clara("leak-check").returncode == 0


def test_a_python_writer_that_failed_is_incomplete_for_c(ctx, tool):
    ref = ctx.get("vol")
    mapping = ref.map("w")
    mapping.unmap(complete=False)
    ref.release()
    result = run(tool, "read", "locks", "vol")
    assert result.returncode == 6 and "incomplete" in result.stderr
    assert run(tool, "read", "locks", "vol", "allow-incomplete").returncode == 0


def test_never_written_data_is_incomplete_for_c_unless_asked(namespace, tool):
    ctx = Context.create("fresh")
    alloc = ctx.create(dtype="u8", shape=(4,))
    alloc.publish("empty")
    alloc.release()
    result = run(tool, "read", "fresh", "empty")
    assert result.returncode == 6 and "never written" in result.stderr
    assert run(tool, "read", "fresh", "empty", "allow-incomplete").stdout.split()[-1] == "00000000"
    ctx.destroy()
