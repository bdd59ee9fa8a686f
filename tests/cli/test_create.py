"""`clara create`, `publish`, `free` and `destroy`."""

from __future__ import annotations

import os
import shutil

import pytest

from clara_core import Context

from .clirun import clara, data, fails, ok


def test_create_context_prints_its_name(ctx: str) -> None:
    assert ok("create", "context", ctx).stdout.decode() == f"{ctx}\n"
    assert Context.exists(ctx)


def test_create_context_json_and_options(ctx: str) -> None:
    made = data(
        "create",
        "context",
        ctx,
        "--capacity",
        "64K",
        "--mode",
        "640",
        "--owner-pid",
        str(os.getpid()),
    )
    assert made == {"context": ctx, "owner_pid": os.getpid(), "mode": "640", "capacity": 65536}
    listed = data("dump")["contexts"]
    assert [(c["name"], c["status"], c["mode"], c["capacity"]) for c in listed] == [
        (ctx, "live", "640", 65536)
    ]


def test_context_name_taken_exits_10(ctx: str) -> None:
    ok("create", "context", ctx)
    assert "already exists" in fails(10, "create", "context", ctx)
    assert "already exists" in fails(10, "create", "context", ctx.upper())  # case-insensitive


@pytest.mark.parametrize(
    "args",
    [
        ["create", "context", "bad name"],
        ["create", "context", "x" * 256],
        ["create", "context", "ok", "--mode", "400"],
        ["create", "context", "ok", "--mode", "abc"],
        ["create", "context", "ok", "--capacity", "lots"],
        ["create", "context", "ok", "--owner-pid", "0"],
        ["create", "context", "ok", "--owner-pid", "x"],
    ],
)
def test_invalid_context_arguments_exit_2(args: list[str]) -> None:
    fails(2, *args)
    assert not Context.exists("ok")


def test_create_published_allocation(ctx: str) -> None:
    ok("create", "context", ctx)
    made = data("create", "allocation", "vol", "-c", ctx, "--dtype", "f32", "--shape", "2,3,4")
    assert made == {
        "context": ctx,
        "name": "vol",
        "handle": None,
        "dtype": "float32",
        "shape": [2, 3, 4],
        "nbytes": 96,
    }
    sized = data("create", "allocation", "buf", "-c", ctx, "--size", "4K")
    assert (sized["dtype"], sized["shape"], sized["nbytes"]) == ("uint8", [4096], 4096)
    typed = data("create", "allocation", "f", "-c", ctx, "--size", "64", "--dtype", "f64")
    assert typed["shape"] == [8]
    assert "already exists" in fails(10, "create", "allocation", "VOL", "-c", ctx, "--size", "1")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--size", "0"],
        ["--size", "12Q"],
        ["--dtype", "f128", "--shape", "3"],
        ["--dtype", "f32", "--shape", "3,0"],
        ["--dtype", "f32", "--shape", "a,b"],
        ["--size", "3", "--dtype", "f32"],  # 3 bytes are not whole float32s
        ["--size", "4", "--shape", "4"],
    ],
)
def test_invalid_allocation_arguments_exit_2(ctx: str, args: list[str]) -> None:
    ok("create", "context", ctx)
    fails(2, "create", "allocation", "vol", "-c", ctx, *args)
    assert data("dump", ctx)["allocations"] == []


def test_capacity_exceeded_exits_7(ctx: str) -> None:
    ok("create", "context", ctx, "--capacity", "16K")
    ok("create", "allocation", "a", "-c", ctx, "--size", "4K")
    line = fails(7, "create", "allocation", "b", "-c", ctx, "--size", "16K")
    assert "does not fit" in line
    assert [a["name"] for a in data("dump", ctx)["allocations"]] == ["a"]


def test_private_allocation_then_publish(ctx: str) -> None:
    ok("create", "context", ctx)
    handle = ok("create", "allocation", "-c", ctx, "--size", "100").stdout.decode().strip()
    assert len(handle) == 12
    [private] = data("dump", ctx)["allocations"]
    assert (private["kind"], private["name"]) == ("handle", handle)
    assert data("publish", handle, "vol", "-c", ctx) == {
        "context": ctx,
        "name": "vol",
        "handle": handle,
    }
    [published] = data("dump", ctx)["allocations"]
    assert (published["kind"], published["name"], published["nbytes"]) == ("published", "vol", 100)
    assert "does not exist" in fails(3, "publish", handle, "again", "-c", ctx)
    fails(2, "publish", "not-a-handle", "x", "-c", ctx)


def test_free_published_and_private(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "1K")
    handle = ok("create", "allocation", "-c", ctx, "--size", "1K").stdout.decode().strip()
    assert data("free", "vol", "-c", ctx) == {"context": ctx, "name": "vol", "handle": None}
    assert data("free", "--handle", handle, "-c", ctx)["handle"] == handle
    assert data("dump", ctx)["allocations"] == []
    fails(3, "free", "vol", "-c", ctx)
    fails(3, "map", "vol", "-c", ctx, "--read", "--out", "-")


def test_destroy_context(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "a", "-c", ctx, "--size", "1K")
    ok("create", "allocation", "b", "-c", ctx, "--size", "1K")
    assert data("destroy", "context", ctx) == {"context": ctx, "segments_removed": 2}
    assert not Context.exists(ctx)
    fails(3, "destroy", "context", ctx)
    fails(3, "dump", ctx)


def test_human_messages_go_to_stderr(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "a", "-c", ctx, "--size", "1K")
    freed = ok("free", "a", "-c", ctx)
    assert freed.stdout == b"" and b"freed" in freed.stderr
    destroyed = ok("destroy", "context", ctx)
    assert destroyed.stdout == b"" and b"destroyed" in destroyed.stderr


def test_help_lists_commands_and_exit_codes() -> None:
    out = ok("--help").stdout.decode()
    for command in ("create", "publish", "map", "dump", "leak-check", "free", "destroy"):
        assert f"  {command}" in out
    assert "9 corrupt" in out and "10 already exists" in out
    assert clara("--version").stdout.decode().startswith("clara, version")


def test_no_command_shows_help_and_exits_2() -> None:
    result = clara()
    assert result.returncode == 2
    assert b"Usage: clara" in result.stderr and b"Traceback" not in result.stderr


def test_unknown_command_exits_2() -> None:
    line = fails(2, "frobnicate")
    assert line == "clara: error: no such command 'frobnicate' (see 'clara --help')"


def test_a_mistyped_command_suggests_the_closest() -> None:
    assert "no such command 'dmp'; did you mean 'dump'" in fails(2, "dmp")
    line = fails(2, "create", "allocaton", "x")
    assert "did you mean 'allocation'?" in line and "'clara create --help'" in line


def test_help_lists_the_environment_variables() -> None:
    text = ok("--help").stdout.decode()
    variables = ["CLARA_NAMESPACE", "CLARA_CONTEXT", "CLARA_SHM_DIR", "CLARA_LOCK_TIMEOUT"]
    variables += ["CLARA_CONTEXT_OWNER", "CLARA_PURE_PYTHON", "NO_COLOR"]  # (README's list)
    for variable in variables:
        [line] = [line for line in text.splitlines() if line.split()[:1] == [variable]]
        assert len(line.split()) > 2  # one line saying what it does


def test_a_bad_shape_says_how_to_write_one(ctx: str) -> None:
    ok("create", "context", ctx)
    line = fails(2, "create", "allocation", "v", "-c", ctx, "--dtype", "f32", "--shape", "3,a")
    assert "use comma-separated integers, e.g. 512,512" in line
    made = data("create", "allocation", "v", "-c", ctx, "--dtype", "f32", "--shape", "2x3")
    assert made["shape"] == [2, 3]


@pytest.mark.parametrize("mode", ["999", "abc", "1777"])
def test_a_bad_mode_is_named_as_typed(mode: str) -> None:
    line = fails(2, "create", "context", "ok", "--mode", mode)
    assert line == f"clara: error: invalid mode '{mode}': use octal permission bits such as 600"
    assert not Context.exists("ok")
    assert "--mode OCTAL" in ok("create", "context", "--help").stdout.decode()  # not TEXT


def test_empty_text_input_is_one_line_and_creates_nothing(ctx: str) -> None:
    ok("create", "context", ctx)
    line = fails(2, "create", "allocation", "v", "-c", ctx, "--in", "-", "--format", "txt")
    assert line == "clara: error: standard input holds no numbers"
    assert data("dump", ctx)["allocations"] == []


def test_input_that_ends_early_says_nothing_was_created(ctx: str) -> None:
    """Not 'is left incomplete', as a map's copy says: create drops what it made."""
    ok("create", "context", ctx)
    args = ("create", "allocation", "v", "-c", ctx, "--size", "4K", "--in", "-")
    line = fails(2, *args, input=b"\0" * 40)
    assert line == "clara: error: standard input ended after 40 of 4096 bytes; nothing was created"
    line = fails(2, *args, input=b"\0" * 4097)
    assert line.endswith(
        " bytes of private allocation in context '" + ctx + "'; nothing was created"
    )
    assert data("dump", ctx)["allocations"] == []
    assert data(*args, input=b"\0" * 4096)["name"] == "v"  # the name is free


def test_a_byte_swapped_npy_is_refused_saying_so(ctx: str, tmp_path) -> None:
    """Not 'unknown element type dtype('>f4')': float32 is known, its byte order is not ours."""
    import numpy as np

    ok("create", "context", ctx)
    source = tmp_path / "big-endian.npy"
    np.save(source, np.arange(6, dtype=">f4"))
    line = fails(2, "create", "allocation", "v", "-c", ctx, "--in", str(source), "--format", "npy")
    assert "holds float32 values in the other byte order (>f4)" in line
    assert "a.astype('<f4')" in line
    assert data("dump", ctx)["allocations"] == []


def test_an_npy_file_given_without_format_npy_gets_a_warning(ctx: str, tmp_path) -> None:
    """Raw is the default format: an .npy read as raw keeps its header as data, a uint8
    blob. Allowed (a file may be meant as bytes), but said, with what keeps dtype and shape."""
    import numpy as np

    ok("create", "context", ctx)
    source = tmp_path / "volume.npy"
    np.save(source, np.zeros((2, 3), np.float32))
    made = clara("--json", "create", "allocation", "v", "-c", ctx, "--in", str(source))
    assert made.returncode == 0
    assert made.stderr.decode() == (
        f"clara: warning: {source} is an .npy file, stored as raw bytes (header included); "
        "give --format npy to keep its dtype and shape\n"
    )
    assert data("dump", ctx, "v")["allocation"]["dtype"] == "uint8"  # as asked, still
    line = fails(2, "create", "allocation", "w", "-c", ctx, "--size", "24", "--in", str(source))
    assert line.endswith(f"({source} is an .npy file, read as raw bytes: give --format npy)")
    ok("create", "allocation", "y", "-c", ctx, "--dtype", "f32", "--shape", "2,3")
    line = fails(2, "map", "y", "-c", ctx, "--write", "--in", str(source))  # (the fast path)
    assert line.endswith(f"({source} is an .npy file, read as raw bytes: give --format npy)")
    raw = tmp_path / "plain.raw"
    raw.write_bytes(bytes(24))
    assert ok("create", "allocation", "x", "-c", ctx, "--in", str(raw)).stderr == b""


def test_a_name_another_writer_of_a_shared_context_took_is_not_called_planted(ctx: str) -> None:
    """uid 65534 asks for a name that root made in a context of mode 666: the name is
    taken by a writer of the context (free it, or choose another), not planted."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run clara as another user")
    other = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    ok("create", "context", ctx, "--mode", "666")
    ok("create", "allocation", "v", "-c", ctx, "--size", "4")
    line = fails(10, "create", "allocation", "v", "-c", ctx, "--size", "4", prefix=other)
    assert line == (
        f"clara: error: allocation 'v' in context '{ctx}' already exists; choose another "
        "name or free it first"
    )
    with Context.open(ctx) as context:
        assert context.names() == ["v"]  # (the other user's try left nothing)


def test_a_shm_dir_that_cannot_hold_segments_is_exit_2_not_1() -> None:
    """procfs has no O_TMPFILE (EOPNOTSUPP): a usage error of CLARA_SHM_DIR (exit 2),
    no longer the code of leaks and failed operators (exit 1)."""
    if os.geteuid() != 0:
        pytest.skip("as another user /proc refuses the file first (permission denied)")
    line = fails(2, "create", "context", "nowhere", env={"CLARA_SHM_DIR": "/proc"})
    assert line.endswith(
        "Operation not supported: the shared-memory directory /proc cannot hold clara's "
        "segments (check CLARA_SHM_DIR: a tmpfs, such as /dev/shm)"
    ), line
