"""`clara dump`: contexts, allocations, one allocation and its values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import Child

from .clirun import CLARA, data, fails, ok, write_in

CONTEXT_KEYS = {
    "name",
    "owner_pid",
    "owner_alive",
    "status",
    "allocations",
    "bytes",
    "pooled_bytes",
    "foreign",
    "mode",
    "capacity",
    "created",
    "age_seconds",
}
ALLOCATION_KEYS = {
    "name",
    "kind",
    "dtype",
    "shape",
    "nbytes",
    "size",
    "state",
    "map_mode",
    "mapped_by",
    "referenced",
    "created",
    "age_seconds",
    "problem",
}


def test_dump_without_contexts() -> None:
    assert data("dump") == {"contexts": []}


def test_dump_all_contexts(ctx: str) -> None:
    ok("create", "context", ctx, "--owner-pid", str(os.getpid()))
    ok("create", "allocation", "a", "-c", ctx, "--size", "1K")
    ok("create", "allocation", "b", "-c", ctx, "--dtype", "f64", "--shape", "1024")
    [summary] = data("dump")["contexts"]
    assert set(summary) == CONTEXT_KEYS
    assert summary["name"] == ctx
    assert summary["foreign"] == 0  # no other user planted files under its names
    assert (summary["owner_pid"], summary["owner_alive"], summary["status"]) == (
        os.getpid(),
        True,
        "live",
    )
    assert summary["allocations"] == 2
    assert summary["bytes"] == 2 * 4096 + (4096 + 8192)  # each: a header page + the data pages
    assert summary["age_seconds"] >= 0 and summary["created"] <= time.time()


def test_dump_context_shows_state_and_who_maps(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "i16", "--shape", "8,8")
    ok("create", "allocation", "empty", "-c", ctx, "--size", "16")
    ok("map", "vol", "-c", ctx, "--write", "--in", "-", input=bytes(128))
    child = Child(
        f"""
        import time
        from clara_core import Context
        mapping = Context.open({ctx!r}).get("vol").map("r")
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    try:
        child.expect("ready")
        dumped = data("dump", ctx)
    finally:
        child.kill()
    assert dumped["context"]["name"] == ctx and dumped["context"]["status"] == "idle"
    rows = {row["name"]: row for row in dumped["allocations"]}
    assert set(rows) == {"vol", "empty"}
    assert all(set(row) == ALLOCATION_KEYS for row in rows.values())
    vol = rows["vol"]
    assert (vol["dtype"], vol["shape"], vol["nbytes"], vol["state"]) == (
        "int16",
        [8, 8],
        128,
        "complete",
    )
    assert vol["map_mode"] == "read"
    [reader] = [m for m in vol["mapped_by"] if m["pid"] == child.pid]
    python = Path(sys.executable).name  # python, python3...: however pytest was started
    assert reader["mode"] == "read" and reader["command"].startswith(f"{python} -c import time")
    assert rows["empty"]["state"] == "empty" and rows["empty"]["mapped_by"] == []


def test_dump_one_allocation_with_values(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "i32", "--shape", "2,3")
    write_in(ctx, "vol", np.arange(6, dtype=np.int32).tobytes())
    plain = data("dump", ctx, "vol")
    assert plain["context"] == ctx and set(plain["allocation"]) == ALLOCATION_KEYS
    assert "values" not in plain
    valued = data("dump", ctx, "vol", "--values")
    assert valued["values"] == [[0, 1, 2], [3, 4, 5]]
    assert valued["values_text"] == "[[0 1 2]\n [3 4 5]]"
    human = ok("dump", ctx, "vol", "--values").stdout.decode()
    assert "dtype:" in human and "int32" in human and "[[0 1 2]\n [3 4 5]]" in human


def test_large_values_are_truncated(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "big", "-c", ctx, "--dtype", "f32", "--shape", "100000")
    ok("map", "big", "-c", ctx, "--write", "--in", "-", input=bytes(400000))
    valued = data("dump", ctx, "big", "--values")
    assert valued["values"] is None
    assert "..." in valued["values_text"] and len(valued["values_text"]) < 1000


def test_complex_values_as_pairs(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "z", "-c", ctx, "--dtype", "c64", "--shape", "2")
    values = np.array([1 + 2j, -3j], np.complex64)
    ok("map", "z", "-c", ctx, "--write", "--in", "-", input=values.tobytes())
    assert data("dump", ctx, "z", "--values")["values"] == [[1.0, 2.0], [0.0, -3.0]]


def test_dump_errors(ctx: str) -> None:
    fails(3, "dump", ctx)
    ok("create", "context", ctx)
    fails(3, "dump", ctx, "nope")
    fails(2, "dump", ctx, "--values")
    fails(2, "dump", "bad name!")
    ok("create", "allocation", "v", "-c", ctx, "--size", "8")
    subprocess.run([*CLARA, "map", "v", "-c", ctx, "--write", "--", "false"], check=False)
    fails(6, "dump", ctx, "v", "--values")
    assert data("dump", ctx, "v", "--values", "--allow-incomplete")["values"] == [0] * 8


def test_plain_tables_when_not_a_terminal(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "u8", "--shape", "3")
    everything = ok("dump").stdout.decode().splitlines()
    assert everything[0].split() == ["CONTEXT", "OWNER", "STATUS", "ALLOCATIONS", "MEMORY", "AGE"]
    assert everything[1].split()[:3] == [ctx, "-", "idle"]
    assert everything[1].split()[3:6] == ["1", "8.0", "KiB"]  # data page + header page
    members = ok("dump", ctx).stdout.decode().splitlines()
    assert members[0].split() == [
        *["NAME", "KIND", "DTYPE", "SHAPE", "DATA", "STATE", "AGE", "MAPPED-BY"]
    ]
    assert members[1].split()[:7] == ["vol", "published", "uint8", "3", "3", "B", "empty"]
    assert not any(ch in "".join(everything + members) for ch in "─│┃━\x1b")


def test_rich_table_in_a_terminal_honours_no_color(ctx: str) -> None:
    ok("create", "context", ctx)
    main, secondary = os.openpty()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    process = subprocess.Popen([*CLARA, "dump"], stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(30) == 0
    text = output.decode()
    assert ctx in text and "CONTEXT" in text  # the same header case as in a pipe
    assert "\x1b[" not in text  # no colour, and no bold or italic either


def test_dump_of_a_context_another_user_may_not_read_is_permission_denied(ctx: str) -> None:
    """uid 65534 dumps root's context of mode 600: it exists (exit 8, as `dump CTX NAME`
    and every other command say), it is not 'does not exist' (exit 3)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run clara as another user")
    other = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    ok("create", "context", ctx, "--mode", "600")
    line = fails(8, "dump", ctx, prefix=other)
    assert line == f"clara: error: context '{ctx}': permission denied"
    assert "does not exist" in fails(3, "dump", ctx + "x", prefix=other)
