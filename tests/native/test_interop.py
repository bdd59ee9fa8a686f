"""Python, C, C++ and `clara map` share allocations both ways, across processes."""

from __future__ import annotations

import io
import os
import subprocess

import numpy as np
import pytest

from clara_core import Context, NotFound, OutOfSpace
from clara_core.names import shm_dir
from clara_core.registry import POOL_BYTE
from clara_core.shm import locks
from tests.cli.clirun import ok
from tests.core.test_warm_pool_attacks import CLAIMER, pooled_one, publish_while_destroyed
from tests.helpers import Child, sleeping_in

from .conftest import HERE, run

DTYPES = ["uint8", "int16", "uint32", "int64", "float16", "float32", "float64", "complex64"]


@pytest.fixture
def ctx(namespace):
    context = Context.create("interop")
    yield context
    context.destroy()


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    values = np.arange(np.prod(shape), dtype=np.float64) * 1.5 - 7
    return values.astype(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_python_publishes_and_c_reads_values_and_shape(ctx, tool, dtype):
    array = sample(dtype, (3, 4, 5))
    alloc = ctx.create(dtype=dtype, shape=array.shape)
    with alloc.map("w") as view:
        view[...] = array
    alloc.publish("Volume")
    alloc.release()
    result = run(tool, "read", "interop", "volume")  # names are case-insensitive
    assert result.returncode == 0, result.stderr
    header, data = result.stdout.splitlines()
    assert header.split() == [dtype, "3,4,5", str(array.nbytes), "Volume"]
    assert bytes.fromhex(data) == array.tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32", "float64"])
def test_c_publishes_and_python_and_clara_map_read(ctx, tool, dtype):
    array = sample(dtype, (2, 3, 7))
    result = run(tool, "write", "interop", "made-in-c", dtype, "2,3,7", array.tobytes().hex())
    assert result.returncode == 0, result.stderr
    with ctx.get("made-in-c") as ref, ref.map("r") as view:
        assert view.dtype == np.dtype(dtype) and view.shape == (2, 3, 7)
        np.testing.assert_array_equal(view, array)
    raw = ok("map", "made-in-c", "-c", "interop", "--read", "--out", "-").stdout
    assert raw == array.tobytes()
    npy = ok("map", "made-in-c", "-c", "interop", "--read", "--out", "-", "--format", "npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.stdout)), array)


def test_c_frees_what_python_published_and_python_frees_what_c_published(ctx, tool):
    alloc = ctx.create(dtype="u8", shape=(10,))
    alloc.publish("py")
    alloc.release()
    assert run(tool, "free", "interop", "py").returncode == 0
    with pytest.raises(NotFound):
        ctx.get("py")
    assert run(tool, "write", "interop", "c", "u8", "4", "01020304").returncode == 0
    ctx.get("c").free()
    result = run(tool, "read", "interop", "c")
    assert result.returncode == 3 and "does not exist" in result.stderr


def test_a_held_python_reference_keeps_what_c_freed(ctx, tool):
    assert run(tool, "write", "interop", "kept", "u8", "3", "070809").returncode == 0
    ref = ctx.get("kept")
    assert run(tool, "free", "interop", "kept").returncode == 0
    with ref.map("r") as view:  # the memory lives until the last reference goes
        assert bytes(view) == b"\x07\x08\x09"
    ref.release()
    with pytest.raises(NotFound):
        ctx.get("kept")


def test_a_context_made_in_c_is_a_context_for_python(namespace, tool):
    assert run(tool, "context", "create", "Made-In-C", str(os.getpid())).returncode == 0
    try:
        ctx = Context.open("made-in-c")
        assert ctx.name == "Made-In-C" and ctx.owner_pid == os.getpid() and ctx.mode == 0o600
        ctx.close()
        assert "Made-In-C" in ok("--json", "dump").stdout.decode()
        result = run(tool, "context", "create", "made-in-c")
        assert result.returncode == 10 and "already exists" in result.stderr
        assert run(tool, "write", "made-in-c", "member", "u8", "1", "2a").returncode == 0
    finally:
        assert run(tool, "context", "destroy", "made-in-c").returncode == 0
    left = [f for f in os.listdir(shm_dir()) if f.startswith(namespace + ".")]
    assert not left  # the member went with its context
    assert run(tool, "context", "destroy", "made-in-c").returncode == 3


def test_clara_shm_dir_and_namespace_are_honoured(tool, tmp_path, monkeypatch):
    directory = "/dev/shm/" + os.environ["CLARA_NAMESPACE"] + "-dir"
    os.mkdir(directory)
    try:
        monkeypatch.setenv("CLARA_SHM_DIR", directory)
        ctx = Context.create("elsewhere")
        alloc = ctx.create(dtype="u8", shape=(2,))
        with alloc.map("w") as view:
            view[...] = [5, 6]
        alloc.publish("x")
        alloc.release()
        assert run(tool, "read", "elsewhere", "x").stdout.splitlines()[1] == "0506"
        other = run(tool, "read", "elsewhere", "x", env={**os.environ, "CLARA_NAMESPACE": "zz"})
        assert other.returncode == 3
        moved = {**os.environ, "CLARA_SHM_DIR": "/dev/shm"}
        assert run(tool, "read", "elsewhere", "x", env=moved).returncode == 3
        ctx.destroy()
    finally:
        from clara_core.shm import segment

        segment.forget_directory(directory)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def test_cpp_wrapper_reads_and_publishes(ctx, native):
    program = native.program(HERE / "wrapper.cpp")
    array = sample("float32", (4, 6))
    alloc = ctx.create(dtype="float32", shape=array.shape)
    with alloc.map("w") as view:
        view[...] = array
    alloc.publish("from-python")
    alloc.release()
    result = run(program, "interop", "from-python", "from-cpp")
    assert result.returncode == 0, result.stdout + result.stderr
    # The C++ program summed the float view and published float64 [sum, count] and
    # checked its own error codes (see wrapper.cpp).
    assert result.stdout.split() == ["dims", "4", "6", "ok"]
    with ctx.get("from-cpp") as ref, ref.map("r") as view:
        assert view.dtype == np.float64 and view.shape == (2,)
        assert view[0] == pytest.approx(float(array.sum())) and view[1] == array.size
    raw = ok("map", "from-cpp", "-c", "interop", "--read", "--out", "-", "--format", "txt")
    assert float(raw.stdout.split()[1]) == 24


def test_a_capacity_is_shared_by_c_and_python(namespace, tool):
    """Both count what they publish the same way, so neither can overfill the other."""
    ctx = Context.create("quota", capacity=3 * 8192)  # three 4 KiB allocations (a page each)
    page = "00" * 4096
    try:
        for name in ("c1", "c2"):
            assert run(tool, "write", "quota", name, "u8", "4096", page).returncode == 0
        python_made = ctx.create(dtype="u8", shape=(4096,))
        python_made.publish("p1")
        python_made.release()
        full = run(tool, "write", "quota", "c3", "u8", "4096", page)
        assert full.returncode == 7 and "holds 24576 of its 24576 bytes" in full.stderr
        with pytest.raises(OutOfSpace):
            ctx.create(dtype="u8", shape=(4096,)).publish("p2")
        assert run(tool, "free", "quota", "c1").returncode == 0
        again = ctx.create(dtype="u8", shape=(4096,))
        again.publish("p2")  # C's free made room for Python
        again.release()
        ctx.get("p1").free()  # and Python's for C
        assert run(tool, "write", "quota", "c3", "u8", "4096", page).returncode == 0
    finally:
        ctx.destroy()


def test_a_c_destroy_lists_and_removes_under_the_pool_lock(namespace, tool):
    """A free moving a segment into the pool of a context being destroyed must either
    name it before the destroy lists, or find the context destroyed (docs 5.9): the C
    destroy holds the pool lock from before it lists, as the Python one does. Here it
    waits for a member's lifecycle lock (held by this test) after listing: the pool lock
    must still be its."""
    context = Context.create("doomed", pool_bytes="64M")
    alloc = context.create(4096)
    alloc.publish("v")
    member = os.open(os.path.join(shm_dir(), f"{namespace}.doomed.a.v"), os.O_RDWR)
    own = os.open(os.path.join(shm_dir(), f"{namespace}.doomed"), os.O_RDWR)
    try:
        assert locks.try_lock(member, locks.LIFECYCLE_BYTE, True)
        destroyer = subprocess.Popen([str(tool), "context", "destroy", "doomed"])
        sleeping_in(destroyer.pid, ("hrtimer_nanosleep",))  # listed; waits for v's lock
        pool_busy = not locks.try_lock(own, POOL_BYTE, True)
        os.close(member)
        member = -1
        assert destroyer.wait(timeout=30) == 0
    finally:
        if member >= 0:
            os.close(member)
        os.close(own)
    alloc.release()
    context.close()
    assert pool_busy
    assert not [f for f in os.listdir(shm_dir()) if f.startswith(namespace + ".")]


def test_a_c_destroy_of_a_warm_pool_leaves_a_claimed_segment_to_its_claimer(namespace, tool):
    """As the Python destroy does (tests/core/test_warm_pool_attacks.py): the pool name
    of a segment another context claimed is the only name its claimer can publish from."""
    Context.create("warm", pool_bytes="64M").close()
    pool_name = pooled_one(namespace)
    claimer = Child(CLAIMER)
    try:
        assert claimer.expect("claimed").split()[1] == pool_name
        assert run(tool, "context", "destroy", "warm").returncode == 0
        claimer.send("")
        assert claimer.expect("published").split()[1] == "True"
        code, _, err = claimer.finish()
        assert code == 0, err
    finally:
        claimer.kill()
    assert not [f for f in os.listdir(shm_dir()) if f.startswith(namespace + ".")]


def test_a_c_destroy_of_the_warm_pool_while_a_claimer_is_publishing_leaves_it_the_name(
    namespace, tool
):
    """See the Python destroy's test of the same name (tests/core/test_warm_pool_attacks)."""
    publish_while_destroyed(namespace, lambda: run(tool, "context", "destroy", "warm"))
