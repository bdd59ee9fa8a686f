"""`clara map`: copies in and out in every format, refusals, and `-- CMD`."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import Child, sleeping_in

from .clirun import CLARA, clara, data, fails, mode_bits_apply, ok, write_in

NUMPY = {"u8": "u1", "i16": "i2", "f32": "f4", "f64": "f8", "c64": "c8"}
MEMMAP = (
    "import os, numpy as np; e = os.environ; "
    "a = np.memmap(e['CLARA_MAP_PATH'], dtype=e['CLARA_MAP_DTYPE'], mode={mode!r}, "
    "offset=int(e['CLARA_MAP_OFFSET']), "
    "shape=tuple(int(d) for d in e['CLARA_MAP_SHAPE'].split(',')));"
    " {body}"
)


def make(ctx: str, name: str = "vol", dtype: str = "f32", shape: str = "4,5") -> None:
    """A context (if new) with a published allocation."""
    if clara("dump", ctx).returncode != 0:
        ok("create", "context", ctx)
    ok("create", "allocation", name, "-c", ctx, "--dtype", dtype, "--shape", shape)


def read(ctx: str, name: str = "vol", fmt: str = "npy") -> np.ndarray:
    out = ok("map", name, "-c", ctx, "--read", "--out", "-", "--format", fmt).stdout
    return np.load(io.BytesIO(out)) if fmt == "npy" else out


def state(ctx: str, name: str = "vol") -> str:
    return data("dump", ctx, name)["allocation"]["state"]


@pytest.mark.parametrize("dtype", ["u8", "i16", "f32", "f64", "c64"])
def test_npy_round_trip_through_pipes(ctx: str, dtype: str) -> None:
    make(ctx, dtype=dtype, shape="3,7")
    values = (np.arange(21).reshape(3, 7) * 3).astype(NUMPY[dtype])
    stream = io.BytesIO()
    np.save(stream, values)
    ok("map", "vol", "-c", ctx, "--write", "--in", "-", "--format", "npy", input=stream.getvalue())
    back = read(ctx)
    assert back.dtype == values.dtype and back.shape == values.shape
    assert np.array_equal(back, values)
    assert state(ctx) == "complete"


def test_raw_file_round_trip_and_json_summary(ctx: str, tmp_path: Path) -> None:
    make(ctx, dtype="u16", shape="256")
    source = tmp_path / "in.raw"
    source.write_bytes(np.arange(256, dtype=np.uint16).tobytes())
    summary = data("map", "vol", "-c", ctx, "--write", "--in", str(source))
    assert summary == {
        "context": ctx,
        "name": "vol",
        "handle": None,
        "mode": "write",
        "dtype": "uint16",
        "shape": [256],
        "nbytes": 512,
        "format": "raw",
        "file": str(source),
    }
    out = tmp_path / "out.raw"
    assert data("map", "vol", "-c", ctx, "--read", "--out", str(out))["mode"] == "read"
    assert out.read_bytes() == source.read_bytes()


def test_txt_round_trip_2d(ctx: str, tmp_path: Path) -> None:
    make(ctx, dtype="f64", shape="2,3")
    source = tmp_path / "in.txt"
    source.write_text("0.1 0.2 0.3\n1e300 -2.5 7\n")
    ok("map", "vol", "-c", ctx, "--write", "--in", str(source), "--format", "txt")
    text = read(ctx, fmt="txt").decode()
    assert np.array_equal(np.loadtxt(io.StringIO(text)), [[0.1, 0.2, 0.3], [1e300, -2.5, 7]])


def test_npy_output_is_a_valid_npy(ctx: str, tmp_path: Path) -> None:
    make(ctx, dtype="i64", shape="2,2,2")
    write_in(ctx, "vol", np.arange(8, dtype=np.int64).tobytes())
    target = tmp_path / "out.npy"
    ok("map", "vol", "-c", ctx, "--read", "--out", str(target), "--format", "npy")
    assert np.array_equal(np.load(target), np.arange(8).reshape(2, 2, 2))


def test_fortran_ordered_npy_is_stored_in_c_order(ctx: str) -> None:
    make(ctx, dtype="f32", shape="3,4")
    values = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    stream = io.BytesIO()
    np.save(stream, values)
    ok("map", "vol", "-c", ctx, "--write", "--in", "-", "--format", "npy", input=stream.getvalue())
    assert np.array_equal(read(ctx), values)


def _written(ctx: str) -> bytes:
    """Fill vol (f32[4,5]) with known data and return it."""
    payload = np.full((4, 5), 3.5, np.float32).tobytes()
    ok("map", "vol", "-c", ctx, "--write", "--in", "-", input=payload)
    return payload


@pytest.mark.parametrize(
    ("fmt", "content", "complaint"),
    [
        ("raw", np.zeros(19, np.float32).tobytes(), "holds 76 bytes"),
        ("npy", "f8", "holds <f8 values"),
        ("npy", "shape", "has shape 5,4"),
        ("npy", b"not an npy file at all", "not a valid .npy"),
        ("npy", "swapped", "holds float32 values in the other byte order (>f4)"),
        ("npy", "text", "holds <U3 values, not numbers"),
        ("txt", "1 2 3\n", "has shape 1,3"),
        ("txt", "a b c d e\n", "not numbers"),
        ("txt", "", "holds no numbers"),  # (not numpy's warning, nor its shape 0,1)
        ("txt", "1 2 3 4 5\n1 2\n", "changed from 5 to 2 at row 2)"),  # (no numpy advice)
    ],
)
def test_bad_input_file_is_refused_before_anything_is_written(
    ctx: str, tmp_path: Path, fmt: str, content: object, complaint: str
) -> None:
    make(ctx)
    before = _written(ctx)
    source = tmp_path / "bad"
    if content == "f8":
        np.save(source.with_suffix(".npy"), np.zeros((4, 5)))
        source = source.with_suffix(".npy")
    elif content == "shape":
        np.save(source.with_suffix(".npy"), np.zeros((5, 4), np.float32))
        source = source.with_suffix(".npy")
    elif content in ("swapped", "text"):  # README: byte-swapped .npy is refused, saying so
        values = np.zeros((4, 5), ">f4") if content == "swapped" else np.array(["abc"])
        np.save(source.with_suffix(".npy"), values)
        source = source.with_suffix(".npy")
    elif isinstance(content, str):
        source.write_text(content)
    else:
        source.write_bytes(content)
    line = fails(2, "map", "vol", "-c", ctx, "--write", "--in", str(source), "--format", fmt)
    assert complaint in line
    assert state(ctx) == "complete"
    assert read(ctx, fmt="raw") == before


def test_npy_from_a_pipe_with_wrong_dtype_is_refused_untouched(ctx: str) -> None:
    make(ctx)
    before = _written(ctx)
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 5), np.int32))
    fails(
        2,
        "map",
        "vol",
        "-c",
        ctx,
        "--write",
        "--in",
        "-",
        "--format",
        "npy",
        input=stream.getvalue(),
    )
    assert state(ctx) == "complete" and read(ctx, fmt="raw") == before


def test_short_pipe_leaves_data_incomplete(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    line = fails(2, "map", "vol", "-c", ctx, "--write", "--in", "-", input=b"\0" * 40)
    assert "ended after 40 of 80 bytes" in line
    assert state(ctx) == "incomplete"
    fails(6, "map", "vol", "-c", ctx, "--read", "--out", "-")
    out = ok("map", "vol", "-c", ctx, "--read", "--out", "-", "--allow-incomplete").stdout
    assert len(out) == 80


def test_long_pipe_leaves_data_incomplete(ctx: str) -> None:
    make(ctx)
    line = fails(2, "map", "vol", "-c", ctx, "--write", "--in", "-", input=b"\0" * 81)
    assert "more than the 80 bytes" in line
    assert state(ctx) == "incomplete"


def test_unreadable_input_and_unwritable_output(ctx: str, tmp_path: Path) -> None:
    make(ctx)
    _written(ctx)
    fails(2, "map", "vol", "-c", ctx, "--write", "--in", str(tmp_path / "missing"))
    fails(2, "map", "vol", "-c", ctx, "--read", "--out", str(tmp_path / "no" / "such" / "dir"))
    assert state(ctx) == "complete"


def test_txt_refuses_more_than_two_dimensions(ctx: str) -> None:
    make(ctx, shape="2,2,2")
    fails(2, "map", "vol", "-c", ctx, "--read", "--out", "-", "--format", "txt")


@pytest.mark.parametrize(
    "args",
    [
        ["--in", "-"],  # neither --read nor --write
        ["--read", "--write", "--out", "-"],
        ["--read", "--in", "-"],
        ["--write", "--out", "-"],
        ["--read"],  # no --in, --out or CMD
        ["--read", "--out", "-", "--", "true"],
        ["--read", "--format", "npy", "--", "true"],
        ["--read", "--format", "csv", "--out", "-"],
        ["--read", "--timeout", "soon", "--out", "-"],
    ],
)
def test_usage_errors_exit_2_in_one_line(ctx: str, args: list[str]) -> None:
    make(ctx)
    line = fails(2, "map", "vol", "-c", ctx, *args)
    assert "see 'clara map --help'" in line


def test_out_to_stdout_cannot_go_with_json(ctx: str) -> None:
    make(ctx)
    fails(2, "--json", "map", "vol", "-c", ctx, "--read", "--out", "-")


def test_no_context_is_a_usage_error() -> None:
    assert "CLARA_CONTEXT" in fails(2, "map", "vol", "--read", "--out", "-")


def test_context_from_environment(ctx: str) -> None:
    make(ctx)
    payload = np.ones(20, np.float32).tobytes()
    ok("map", "vol", "--write", "--in", "-", input=payload, env={"CLARA_CONTEXT": ctx})
    assert read(ctx, fmt="raw") == payload


def test_missing_allocation_and_context_exit_3(ctx: str) -> None:
    make(ctx)
    assert "does not exist" in fails(3, "map", "nope", "-c", ctx, "--read", "--out", "-")
    fails(3, "map", "vol", "-c", "no-such-context", "--read", "--out", "-")


def _holder(ctx: str, mode: str) -> Child:
    child = Child(
        f"""
        import time
        from clara_core import Context
        mapping = Context.open({ctx!r}).get("vol").map({mode!r})
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    child.expect("ready")
    return child


def test_busy_and_timeout(ctx: str) -> None:
    make(ctx)
    before = _written(ctx)
    holder = _holder(ctx, "r")
    try:
        line = fails(4, "map", "vol", "-c", ctx, "--write", "--in", "-", input=b"\0" * 80)
        assert f"pid {holder.pid}" in line
        fails(
            5, "map", "vol", "-c", ctx, "--write", "--timeout", "0.2", "--in", "-", input=b"\0" * 80
        )
        # readers share
        assert read(ctx, fmt="raw") == before
    finally:
        holder.kill()
    assert state(ctx) == "complete"


def test_waits_with_timeout_until_holder_goes(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    holder = _holder(ctx, "w")
    waiting = subprocess.Popen(
        [
            *CLARA,
            "map",
            "vol",
            "-c",
            ctx,
            "--read",
            "--timeout",
            "inf",
            "--allow-incomplete",
            "--out",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        holder.kill()  # dies mid-write: the reader gets in, and is allowed incomplete data
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    assert len(out) == 80


# -- map -- CMD ---------------------------------------------------------------------------


def test_command_writes_through_numpy_memmap(ctx: str) -> None:
    make(ctx, dtype="f64", shape="3,4")
    code = MEMMAP.format(mode="r+", body="a[:] = np.arange(12).reshape(3, 4); a.flush()")
    ok("map", "vol", "-c", ctx, "--write", "--", sys.executable, "-c", code)
    assert np.array_equal(read(ctx), np.arange(12).reshape(3, 4))
    assert state(ctx) == "complete"


def test_command_reads_through_numpy_memmap_and_sees_the_environment(ctx: str) -> None:
    make(ctx, dtype="i32", shape="5")
    write_in(ctx, "vol", np.arange(5, dtype=np.int32).tobytes())
    code = MEMMAP.format(
        mode="r",
        body="print(int(a.sum()), e['CLARA_MAP_NBYTES'], e['CLARA_MAP_MODE'], e['CLARA_CONTEXT'])",
    )
    out = ok("map", "vol", "-c", ctx, "--read", "--", sys.executable, "-c", code).stdout
    assert out.decode().split() == ["10", "20", "r", ctx]


def test_failing_command_passes_its_status_and_leaves_data_incomplete(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    result = clara("map", "vol", "-c", ctx, "--write", "--", "sh", "-c", "exit 3")
    assert result.returncode == 3
    assert state(ctx) == "incomplete"
    fails(6, "map", "vol", "-c", ctx, "--read", "--out", "-")
    assert clara("map", "vol", "-c", ctx, "--write", "--", "false").returncode == 1
    ok("map", "vol", "-c", ctx, "--write", "--", "true")
    assert state(ctx) == "complete"


def test_failing_reader_command_keeps_data_complete(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    assert clara("map", "vol", "-c", ctx, "--read", "--", "false").returncode == 1
    assert state(ctx) == "complete"


def test_killed_command_leaves_data_incomplete(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    result = clara("map", "vol", "-c", ctx, "--write", "--", "sh", "-c", "kill -KILL $$")
    assert result.returncode == 128 + signal.SIGKILL
    assert state(ctx) == "incomplete"


def test_sigterm_to_clara_reaches_the_command(ctx: str, tmp_path: Path) -> None:
    make(ctx)
    _written(ctx)
    started = tmp_path / "started"
    code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [*CLARA, "map", "vol", "-c", ctx, "--write", "--", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 42
    assert state(ctx) == "incomplete"


def test_unknown_command_is_refused_before_mapping(ctx: str) -> None:
    make(ctx)
    _written(ctx)
    result = clara("map", "vol", "-c", ctx, "--write", "--", "no-such-program-anywhere")
    assert result.returncode == 127
    assert result.stderr.decode().startswith("clara: error: command not found")
    assert state(ctx) == "complete"


def test_command_json_summary(ctx: str) -> None:
    make(ctx)
    summary = data("map", "vol", "-c", ctx, "--write", "--", "true")
    assert summary["command"] == ["true"] and summary["exit_code"] == 0


# -- damaged and forbidden ----------------------------------------------------------------


def test_corrupt_segment_exits_9(ctx: str) -> None:
    from clara_core.names import PUBLISHED, allocation_file
    from clara_core.shm.segment import path_of

    make(ctx)
    with open(path_of(allocation_file(ctx, PUBLISHED, "vol")), "r+b") as segment:
        segment.write(b"GARBAGE!")
    assert "corrupt" in fails(9, "map", "vol", "-c", ctx, "--read", "--out", "-")


@pytest.mark.must_run  # a permission test: a skip of it fails CI
def test_read_only_segment_exits_8(ctx: str) -> None:
    from clara_core.names import PUBLISHED, allocation_file
    from clara_core.shm.segment import path_of

    make(ctx)
    before = _written(ctx)
    os.chmod(path_of(allocation_file(ctx, PUBLISHED, "vol")), 0o400)
    prefix = mode_bits_apply()  # (root: without the capabilities that ignore mode bits)
    line = fails(
        8, "map", "vol", "-c", ctx, "--write", "--in", "-", input=b"\0" * 80, prefix=prefix
    )
    assert "read-only" in line
    assert read(ctx, fmt="raw") == before


def test_reader_that_stops_early_is_not_an_error(ctx: str) -> None:
    make(ctx, dtype="u8", shape=str(64 << 20))
    process = subprocess.Popen(
        [*CLARA, "map", "vol", "-c", ctx, "--read", "--out", "-", "--allow-incomplete"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(10)) == 10
    process.stdout.close()  # like `| head -c 10`
    err = process.stderr.read()
    assert process.wait(30) == 128 + signal.SIGPIPE
    assert err == b""
    assert state(ctx) == "empty"


def test_out_to_a_fifo_waits_for_its_reader_without_holding_the_map(
    ctx: str, tmp_path: Path
) -> None:
    """Opening a FIFO waits for its reader as long as it takes: meanwhile no lock is held,
    so a writer of the allocation is not shut out, and the reader gets what it wrote."""
    make(ctx, "vol", "u8", "8")
    write_in(ctx, "vol", bytes(8))
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    command = [*CLARA, "map", "vol", "-c", ctx, "--read", "--out", str(fifo)]
    copier = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        sleeping_in(copier.pid, ("wait_for_partner",))  # in the FIFO's open: no reader yet
        write_in(ctx, "vol", bytes(range(8)))  # exit 4 (busy) if the read map were held
        with open(fifo, "rb") as stream:
            got = stream.read()
        assert copier.wait(timeout=30) == 0, copier.stderr.read() if copier.stderr else ""
    finally:
        if copier.poll() is None:
            copier.kill()
            copier.wait()
        if copier.stderr:
            copier.stderr.close()
    assert got == bytes(range(8))
