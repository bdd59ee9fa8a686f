"""Input that never ends (/dev/zero, `yes |`) or never comes (a FIFO nobody writes), given
where a file is expected: one line, a documented exit code, never a hang (each run has a
timeout: a hang fails the test instead of the suite)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from clara_core import Context

from .clirun import CLARA, fails, ok

PIPELINE = """\
api-version: 0.5.0
name: tiny
operators:
- name: only
  container: {image: x, command: [true]}
"""


@pytest.mark.parametrize("command", ["validate", "graph", "run", "export"])
def test_a_pipeline_file_that_is_a_device_exits_2_at_once(command: str) -> None:
    args = [command, "/dev/zero"] + (["--to", "argo"] if command == "export" else [])
    line = fails(2, *args, timeout=20)
    assert line == "clara: error: pipeline file /dev/zero is a character device, not a file"


def test_a_bindings_file_that_is_a_device_exits_2(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE)
    line = fails(2, "run", str(pipeline), "--bindings", "/dev/zero", timeout=20)
    assert "bindings file /dev/zero is a character device" in line


def _fed_by(producer: list[str], *args: str) -> tuple[int, str]:
    """`producer | clara ARGS...`: exit code and stderr (the producer is stopped after)."""
    with subprocess.Popen(producer, stdout=subprocess.PIPE) as feed:
        try:
            done = subprocess.run(
                [*CLARA, *args], stdin=feed.stdout, capture_output=True, timeout=60
            )
        finally:
            feed.kill()
    return done.returncode, done.stderr.decode()


def test_an_endless_pipe_as_pipeline_file_stops_at_4_mib() -> None:
    code, err = _fed_by(["yes", "a: b"], "validate", "/dev/stdin")
    assert code == 2, err
    assert err == (
        "clara: error: pipeline file /dev/stdin holds more than 4 MiB, the most a pipeline "
        "file may hold\n"
    )


def test_a_huge_sparse_pipeline_file_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)
    assert "holds more than 4 MiB" in fails(2, "validate", str(huge), timeout=20)


def test_a_fifo_nobody_writes_to_is_an_error_after_the_writers_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    line = fails(2, "validate", str(fifo), timeout=40)  # (WRITER_WAIT: 10 s)
    assert line.endswith("is a pipe or FIFO whose writer sent nothing for 10 s (or has none)")


@pytest.mark.parametrize("first", ["reader", "writer"])
def test_a_fifo_is_read_whoever_opens_it_first(tmp_path: Path, first: str) -> None:
    """As cat reads one: `clara validate p & gen > p` (the reader first, which an early
    version refused: rev8's M1) and `gen > p & clara validate p`."""
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    write = ["sh", "-c", f"printf '%s' \"$0\" > {fifo}", PIPELINE]
    validate = [*CLARA, "validate", str(fifo)]
    if first == "reader":
        reader = subprocess.Popen(validate, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)  # (clara is at its wait for the writer by then, or soon)
        writer = subprocess.Popen(write)
    else:
        writer = subprocess.Popen(write)
        time.sleep(0.5)  # (the writer is in its open, waiting for a reader)
        reader = subprocess.Popen(validate, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = reader.communicate(timeout=40)
        assert reader.returncode == 0, err
        assert b"valid pipeline 'tiny'" in out
    finally:
        reader.kill()
        writer.kill()
        writer.wait()


def test_a_pipe_is_read_as_cat_reads_it() -> None:
    with subprocess.Popen(
        ["sh", "-c", 'sleep 0.5; printf "%s" "$0"', PIPELINE], stdout=subprocess.PIPE
    ) as feed:
        done = subprocess.run(
            [*CLARA, "validate", "/dev/stdin"], stdin=feed.stdout, capture_output=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert b"valid pipeline 'tiny'" in done.stdout


@pytest.mark.parametrize("fmt", ["raw", "txt"])
def test_map_write_from_dev_zero_ends(ctx: str, fmt: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--dtype", "f64", "--shape", "4")
    line = fails(
        2, "map", "v", "-c", ctx, "--write", "--in", "/dev/zero", "--format", fmt, timeout=20
    )
    expected = "not numbers as text (it holds a NUL byte)" if fmt == "txt" else "holds more than"
    assert expected in line


def test_map_write_endless_text_stops_past_its_numbers(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--dtype", "f64", "--shape", "4")
    code, err = _fed_by(
        ["yes", "1"], "map", "v", "-c", ctx, "--write", "--in", "-", "--format", "txt"
    )
    assert code == 2, err
    assert err == (
        "clara: error: standard input holds more text than 5 numbers take (more than 1.0 MiB)\n"
    )


@pytest.mark.parametrize("fmt", ["raw", "txt"])
def test_create_from_dev_zero_ends_and_leaves_nothing(ctx: str, fmt: str) -> None:
    ok("create", "context", ctx)
    line = fails(
        2, "create", "allocation", "v", "-c", ctx, "--in", "/dev/zero", "--format", fmt, timeout=20
    )
    if fmt == "raw":
        assert line.endswith(
            "/dev/zero is a character device that never ends: there is no length to size "
            "the allocation by"
        )
    with Context.open(ctx) as context:
        assert not list(context.names())


def test_create_from_an_endless_pipe_stops_at_the_free_space(small_shm_dir: str, ctx: str) -> None:
    ok("create", "context", ctx)
    code, err = _fed_by(["yes"], "create", "allocation", "v", "-c", ctx, "--in", "-")
    assert code == 7, err
    assert err.startswith("clara: error: standard input holds more than ")
    assert f"free in {small_shm_dir})" in err
    code, err = _fed_by(
        ["yes", "1"],
        "create",
        "allocation",
        "v",
        "-c",
        ctx,
        "--in",
        "-",
        "--format",
        "txt",
        "--dtype",
        "f64",
    )
    assert code == 7, err
    assert "standard input holds more numbers than fit in" in err
    with Context.open(ctx) as context:
        assert not list(context.names())


def test_create_from_dev_null_is_empty_not_endless(ctx: str) -> None:
    ok("create", "context", ctx)
    line = fails(2, "create", "allocation", "v", "-c", ctx, "--in", "/dev/null", timeout=20)
    assert line == "clara: error: /dev/null is empty: no data to size the allocation by"
