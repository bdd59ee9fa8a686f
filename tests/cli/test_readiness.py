"""The data-readiness contract through real `clara` commands: fill before publish, never
read unwritten data, and --wait so that a consumer may start before its producer."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import numpy as np

from clara_core import Context
from tests.pipeline.pipes import clara_run, operators, write

from .clirun import CLARA, clara, data, fails, ok


def test_a_handle_is_filled_before_it_is_published(ctx: str) -> None:
    ok("create", "context", ctx)
    handle = ok("create", "allocation", "-c", ctx, "--dtype", "u8", "--shape", "5")
    handle = handle.stdout.decode().strip()
    summary = data("map", "--handle", handle, "-c", ctx, "--write", "--in", "-", input=b"hello")
    assert (summary["name"], summary["handle"], summary["mode"]) == (None, handle, "write")
    fails(3, "map", "greeting", "-c", ctx, "--read", "--out", "-")  # not visible yet
    ok("publish", handle, "greeting", "-c", ctx)
    assert ok("map", "greeting", "-c", ctx, "--read", "--out", "-").stdout == b"hello"
    # -- CMD works on a handle too
    other = ok("create", "allocation", "-c", ctx, "--size", "3").stdout.decode().strip()
    script = 'printf abc | dd of="$CLARA_MAP_PATH" bs=1 seek="$CLARA_MAP_OFFSET" conv=notrunc'
    ok("map", "--handle", other, "-c", ctx, "--write", "--", "sh", "-c", script)
    ok("publish", other, "abc", "-c", ctx)
    assert ok("map", "abc", "-c", ctx, "--read", "--out", "-").stdout == b"abc"


def test_create_fills_then_publishes(ctx: str, tmp_path: Path) -> None:
    ok("create", "context", ctx)
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    raw = ("create", "allocation", "raw", "-c", ctx, "--dtype", "f32", "--shape", "3,4")
    ok(*raw, "--in", "-", input=values.tobytes())
    stream = io.BytesIO()
    np.save(stream, values)
    npy = tmp_path / "v.npy"
    npy.write_bytes(stream.getvalue())
    made = data("create", "allocation", "npy", "-c", ctx, "--in", str(npy), "--format", "npy")
    assert (made["dtype"], made["shape"], made["nbytes"]) == ("float32", [3, 4], 48)
    text = data("create", "allocation", "txt", "-c", ctx, "--dtype", "i16", "--in", "-",
                "--format", "txt", input="1 2 3\n4 5 6\n")  # fmt: skip
    assert (text["dtype"], text["shape"]) == ("int16", [2, 3])
    piped = data("create", "allocation", "bytes", "-c", ctx, "--in", "-", input=b"abcdefg")
    assert (piped["dtype"], piped["shape"]) == ("uint8", [7])  # raw: 1-D of its length
    for name in ("raw", "npy"):
        out = ok("map", name, "-c", ctx, "--read", "--out", "-", "--format", "npy").stdout
        assert np.array_equal(np.load(io.BytesIO(out)), values)
    assert data("dump", ctx, "txt", "--values")["values"] == [[1, 2, 3], [4, 5, 6]]
    assert {row["state"] for row in data("dump", ctx)["allocations"]} == {"complete"}


def test_a_failed_fill_leaves_nothing(ctx: str) -> None:
    ok("create", "context", ctx)
    fails(2, "create", "allocation", "v", "-c", ctx, "--size", "16", "--in", "-", input=b"short")
    fails(2, "create", "allocation", "v", "-c", ctx, "--in", "-", "--format", "npy", input=b"no")
    fails(2, "create", "allocation", "v", "-c", ctx, "--in", "-", input=b"")
    fails(2, "create", "allocation", "-c", ctx, "--size", "4", "--in", "-", input=b"toolong")
    assert data("dump", ctx)["allocations"] == []  # no name, no handle, nothing pooled
    assert Context.open(ctx).names() == []


def test_reading_data_never_written_is_refused(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--size", "4")
    line = fails(6, "map", "v", "-c", ctx, "--read", "--out", "-")
    assert line.startswith(f"clara: error: allocation 'v' in context '{ctx}' was never written;")
    assert "--allow-incomplete" in line and "--wait" in line and "=True" not in line
    assert fails(6, "dump", ctx, "v", "--values") == line
    zeros = ok("map", "v", "-c", ctx, "--read", "--out", "-", "--allow-incomplete").stdout
    assert zeros == bytes(4)
    assert data("dump", ctx, "v", "--values", "--allow-incomplete")["values"] == [0] * 4


def test_a_consumer_started_first_waits_for_its_producer(ctx: str) -> None:
    ok("create", "context", ctx)
    consumer = subprocess.Popen(
        [*CLARA, "map", "v", "-c", ctx, "--read", "--wait", "--timeout", "60", "--out", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1)  # let it start waiting (the name does not exist yet); not asserted
        ok("create", "allocation", "v", "-c", ctx, "--in", "-", input=b"produced")
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert out == b"produced"


def test_waits_end_with_exit_5_or_6(ctx: str) -> None:
    ok("create", "context", ctx)
    line = fails(5, "map", "ghost", "-c", ctx, "--read", "--wait", "--timeout", "0.1", "--out", "-")
    assert "was not published within 0.1 s" in line and "--timeout SECONDS" in line
    ok("create", "allocation", "v", "-c", ctx, "--size", "4")
    line = fails(5, "map", "v", "-c", ctx, "--read", "--wait", "--timeout", "0.1", "--out", "-")
    assert "was not written within 0.1 s" in line
    assert clara("map", "v", "-c", ctx, "--write", "--", "false").returncode == 1
    line = fails(6, "map", "v", "-c", ctx, "--read", "--wait", "--timeout", "60", "--out", "-")
    assert "incomplete: its writer" in line  # a failed writer ends the wait at once
    fails(2, "map", "v", "-c", ctx, "--write", "--wait", "--in", "-", input=b"1234")


def test_a_writer_busy_error_names_the_flags(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--size", "4")
    holder = subprocess.Popen(
        [*CLARA, "map", "v", "-c", ctx, "--write", "--", "sh", "-c", "echo held; sleep 30"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        line = fails(4, "dump", ctx, "v", "--values")
        assert f"is mapped by pid {holder.pid} (" in line and "for writing" in line
        assert "--wait" in line and "--timeout SECONDS" in line and "timeout=" not in line
        line = fails(4, "map", "v", "-c", ctx, "--write", "--in", "-", input=b"1234")
        assert "--timeout SECONDS" in line
    finally:
        holder.kill()
        holder.wait()


def test_one_dimensional_dynamic_outputs_take_the_data_length(tmp_path: Path) -> None:
    """A shell operator writes a string and a uint8[-1] output raw, from a pipe and a file."""
    (tmp_path / "blob.bin").write_bytes(bytes(range(10)))
    produce = tmp_path / "produce.sh"
    produce.write_text(
        "set -euo pipefail\n"
        "printf 'hello from a pipe' | clara map label --write --in -\n"
        "clara map blob --write --in blob.bin\n"
    )
    consume = tmp_path / "consume.sh"
    consume.write_text(
        "set -euo pipefail\n"
        'echo "label=$(clara map label --read --out -)"\n'
        "echo \"blob=$(clara map blob --read --out - | od -An -tu1 | tr -s ' ' | xargs)\"\n"
    )
    pipeline = write(
        tmp_path,
        "api-version: 0.5.0\nname: dynamic\noperators:\n"
        "- name: produce\n  container: {command: [bash, produce.sh]}\n"
        "  output:\n  - {name: label, type: string}\n"
        "  - {name: blob, type: array, element-type: uint8, shape: [-1]}\n"
        "- name: consume\n  container: {command: [bash, consume.sh]}\n"
        "  input:\n  - {from: produce, name: label, type: string}\n"
        "  - {from: produce, name: blob, type: array, element-type: uint8, shape: [-1]}\n",
    )
    code, result, err = clara_run(pipeline)
    assert code == 0, err
    tail = operators(result)["consume"]["output_tail"]
    assert "label=hello from a pipe" in tail
    assert "blob=0 1 2 3 4 5 6 7 8 9" in tail
