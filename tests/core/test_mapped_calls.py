"""The C calls of a map's usual steps (clara_core/shm/c/mapped.c): `map_staged` (the first
write map of a small fresh private allocation, staged), a Mapping's `__enter__` (its
numpy view) and `__exit__` (a staged map's unmap). Each must leave exactly what the
Python it stands for leaves (the "python" twin below: the same steps with the C calls
out of the way), on real shared memory: views alive at the unmap, forks, a failed write,
a failed mmap, an interrupt, another thread holding the lending lock."""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from clara_core import Context, Incomplete
from clara_core import maps as maps_module
from clara_core.mapping import Mapping
from clara_core.shm import header as hdr
from clara_core.shm import memory, processes, staging
from clara_core.shm.native import calls
from tests.helpers import run_python

_TWINS = ["python"] + (["c"] if calls is not None else [])
_NEEDS_C = pytest.mark.skipif(calls is None, reason="the C extension is not built here")


@pytest.fixture
def ctx() -> Iterator[Context]:
    context = Context.create("job")
    yield context
    Context.destroy("job")


@pytest.fixture(params=_TWINS)
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """'c': the C calls as built; 'python': the same steps in Python (the C calls out of
    the way: map's own staged case, Mapping._view and Mapping._exit)."""
    if request.param == "python":
        if calls is not None:  # (map's usual case: shm/c/usual_methods.c)
            monkeypatch.setattr(maps_module.Maps.map, "usual", False)
        monkeypatch.setattr(Mapping, "__enter__", Mapping._view)
        monkeypatch.setattr(Mapping, "__exit__", Mapping._exit)
    return request.param


def _python_frames(run: Any) -> list[str]:
    """The Python functions `run()` calls (not the C ones)."""
    names: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            names.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return names


def _lending_is_free() -> bool:
    """Whether memory's lending lock is free (not held by this thread either: another
    thread tries it)."""
    free: list[bool] = []

    def take() -> None:
        lock = memory.lending()
        free.append(lock.acquire(False))
        if free[0]:
            lock.release()

    other = threading.Thread(target=take)
    other.start()
    other.join()
    return free == [True]


def _data_state(alloc: Any) -> hdr.DataState:
    return hdr.read_data_state(alloc._pending)


def test_a_staged_with_block_leaves_what_the_python_steps_leave(ctx: Context, twin: str) -> None:
    alloc = ctx.create(dtype="uint64", shape=(512,))
    length = hdr.DATA_OFFSET + alloc.capacity
    with alloc.map("w") as array:
        region = alloc._maps[0]
        address = region.address
        assert type(region) is staging.Staged and address in staging._owned
        assert _data_state(alloc).state == hdr.WRITING
        assert alloc._undone == hdr.NEVER_WRITTEN
        array[:] = np.arange(512)
    pid, start = processes.identity()
    assert _data_state(alloc) == hdr.DataState(hdr.COMPLETE, pid, start, 1)
    assert alloc._maps == [] and address not in staging._owned
    assert (region.address, region._fd, region._holder) == (0, -1, None)
    assert not array.any()  # cut off: zeros
    array[:] = 9  # into nothing
    assert os.pread(alloc._fd, 8 * 512, hdr.DATA_OFFSET) == np.arange(512, dtype="u8").tobytes()
    del array  # its range is kept for the next staged map of its length
    assert address in staging._kept[length]
    with alloc.map("r") as read:
        assert read.tolist() == list(range(512))
        assert not read.flags.writeable
    alloc.release()


@_NEEDS_C
def test_the_c_calls_run_the_usual_with_block_without_a_python_frame(ctx: Context) -> None:
    """(The case the calls are for, taken by them: no `take`, `_view` or `_unmap`.)"""
    with ctx.create(64).map("w"):  # (this process's identity and the view known first)
        pass
    alloc = ctx.create(64)

    def usual() -> None:
        with alloc.map("w") as array:
            array[:] = 1

    assert _python_frames(usual) == ["usual"]  # (map: no frame of its own either)
    assert alloc.state == "complete"
    alloc.release()


def test_a_view_of_another_layout_or_shape_is_made_for_it(ctx: Context, twin: str) -> None:
    """The view made last is remembered (also by the C __enter__): a map of another
    layout gets its own, a many-dimensional one its shape, a read map a read-only one."""
    flat = ctx.create(dtype="float32", shape=(6,))
    square = ctx.create(dtype="int16", shape=(2, 3))
    for _ in range(2):
        with flat.map("w") as one, square.map("w") as two:
            assert (one.dtype, one.shape, two.dtype, two.shape) == (
                np.dtype("f4"), (6,), np.dtype("i2"), (2, 3)
            )  # fmt: skip
            one[:] = 1.5
            two[:] = [[1, 2, 3], [4, 5, 6]]
    with flat.map("r") as one, square.map("r") as two:
        assert one.tolist() == [1.5] * 6 and two.tolist() == [[1, 2, 3], [4, 5, 6]]
        assert not one.flags.writeable and not two.flags.writeable
        with pytest.raises(ValueError):
            two[0, 0] = 7
    flat.release()
    square.release()


def test_a_block_that_raises_leaves_the_data_incomplete(ctx: Context, twin: str) -> None:
    alloc = ctx.create(dtype="u8", shape=(8,))
    with pytest.raises(RuntimeError), alloc.map("w") as array:
        array[:] = 3
        raise RuntimeError("the writer failed")
    assert alloc.state == "incomplete" and alloc._maps == []
    with pytest.raises(Incomplete):
        alloc.map("r")
    with alloc.map("r", allow_incomplete=True) as read:
        assert read.tolist() == [3] * 8  # (what it wrote went to the file all the same)
    alloc.release()


def test_a_larger_staged_map_cut_off_at_its_unmap_reads_zeros(ctx: Context, twin: str) -> None:
    """Over 64 KiB its range is not kept: private zeros are mapped over it (MAP_FIXED)."""
    alloc = ctx.create(dtype="uint8", shape=(128 << 10,))
    with alloc.map("w") as array:
        assert type(alloc._maps[0]) is staging.Staged
        array[:] = 4
    assert not array.any()
    assert os.pread(alloc._fd, 128 << 10, hdr.DATA_OFFSET) == bytes([4]) * (128 << 10)
    alloc.release()


def test_a_fork_inside_the_block_shares_the_map_and_its_unmap_completes_it(
    ctx: Context, twin: str
) -> None:
    """The fork makes the segment public (its staged map attached): the unmap is then not
    a private one (the Python's), and the child makes staged maps of its own."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    with alloc.map("w") as array:
        array[0] = 1
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                array[1] = 2  # through the map it inherited
                mine = ctx.create(dtype="u8", shape=(4,))
                with mine.map("w") as own:
                    own[:] = 5
                with mine.map("r") as own:
                    code = 0 if own.tolist() == [5] * 4 else 2
                mine.release()
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        array[2] = 3
    assert alloc._pending is None  # public since the fork
    assert alloc.state == "complete"
    with alloc.map("r") as read:
        assert read.tolist() == [1, 2, 3, 0]
    alloc.release()


def test_a_write_that_fails_at_the_unmap_leaves_the_data_incomplete(
    ctx: Context, twin: str
) -> None:
    """Its file open read-only under its descriptor: the unmap's pwrite fails (EBADF),
    raised as the Python raises it, and the data state is not marked complete."""
    alloc = ctx.create(dtype="u8", shape=(8,))
    fd = alloc._fd
    saved = os.dup(fd)
    read_only = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as caught, alloc.map("w") as array:
            array[:] = 6
            os.dup2(read_only, fd)
        assert caught.value.errno == errno.EBADF
        assert _data_state(alloc).state == hdr.WRITING and alloc._maps == []
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(read_only)
    assert alloc.state == "incomplete"
    alloc.release()


@pytest.mark.parametrize("python", [False, True], ids=["c", "python"])
def test_a_staged_map_with_no_memory_left_is_out_of_space_and_maps_nothing(
    namespace: str, python: bool
) -> None:
    """The address space limited to what the process maps already: the staged range's
    mmap fails (ENOMEM), a clean OutOfSpace, and the allocation is as it was."""
    if not python and calls is None:
        pytest.skip("the C extension is not built here")
    script = f"""
    import resource
    from clara_core import Context, OutOfSpace
    from clara_core import maps
    from clara_core.shm import header as hdr, processes

    if {python}:
        maps.Maps.map.usual = False
    processes.identity()
    ctx = Context.create("job")
    alloc = ctx.create(dtype="uint8", shape=(200 << 10,))  # (no kept range of its length)
    with ctx.create(8).map("w"):
        pass  # (the code of a staged map loaded)
    size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 10), resource.RLIM_INFINITY))
    try:
        alloc.map("w")
    except OutOfSpace as exc:
        print("OutOfSpace", "not enough shared memory" in str(exc))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
    print(alloc._maps, hdr.read_data_state(alloc._pending).state, alloc.state)
    with alloc.map("w") as array:
        array[:] = 1
    print(alloc.state)
    alloc.release()
    Context.destroy("job")
    """
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["OutOfSpace True", "[] 0 empty", "complete", ""]


def test_an_interrupt_at_any_call_of_a_with_block_leaves_a_consistent_allocation(
    ctx: Context, twin: str
) -> None:
    """A KeyboardInterrupt (a signal handler's) wherever one may come in a staged with
    block (as a Python function starts, as a C call returns): the data is complete only
    if the file holds what the block wrote, the allocation is released cleanly whatever
    the point was, and no lock stays held."""
    for at in range(60):
        alloc = ctx.create(dtype="u8", shape=(64,))
        seen: list[str] = []

        def profile(frame: Any, event: str, arg: Any, at: int = at, seen: list = seen) -> None:
            if event == "call" or (event == "c_return" and arg is not sys.setprofile):
                seen.append(event)
                if len(seen) == at + 1:
                    sys.setprofile(None)
                    raise KeyboardInterrupt

        try:
            sys.setprofile(profile)
            with alloc.map("w") as array:
                array[:] = 7
        except KeyboardInterrupt:
            pass
        finally:
            sys.setprofile(None)
        if alloc._pending is not None and _data_state(alloc).state == hdr.COMPLETE:
            assert os.pread(alloc._fd, 64, hdr.DATA_OFFSET) == bytes([7]) * 64, at
        alloc.release()
        assert _lending_is_free(), at
        if len(seen) <= at:  # every point was tried
            break


@_NEEDS_C
def test_while_another_thread_holds_the_lending_lock_the_unmap_waits_for_it(
    ctx: Context,
) -> None:
    """The C calls never make or drop a view while another thread holds memory's lending
    lock (it may be between "no view lent?" and its munmap): they leave the unmap to the
    Python, which waits for it."""
    alloc = ctx.create(dtype="u8", shape=(8,))
    mapping = alloc.map("w")
    array = mapping.__enter__()
    array[:] = 2
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with memory.lending():
            held.set()
            release.wait(30)

    other = threading.Thread(target=holder)
    other.start()
    held.wait(30)
    exited = threading.Event()
    unmapping = threading.Thread(target=lambda: (mapping.__exit__(None, None, None), exited.set()))
    unmapping.start()
    try:
        assert not exited.wait(0.3)  # waiting for the lock
        assert alloc._maps or _data_state(alloc).state == hdr.WRITING
    finally:
        release.set()
        other.join(30)
        unmapping.join(30)
    assert exited.is_set() and _data_state(alloc).state == hdr.COMPLETE
    assert not array.any()
    alloc.release()


@_NEEDS_C
def test_a_collection_inside_the_staged_map_call_never_reaches_freed_memory(
    namespace: str,
) -> None:
    """(rev8 H1) The C map holds what it reads: a collection at one of its allocations may
    run any code, here what another thread's publish does (the allocation's pending header
    dropped); a bytearray made just after must not be written into by the map."""
    script = """
    import gc
    from clara_core import Context

    ctx = Context.create("job")
    with ctx.create(4096).map("w"):
        pass  # (this process's identity and the view known)
    alloc = ctx.create(4096)
    size = len(alloc._pending)
    state = {"armed": False, "victim": None}

    def callback(phase, info):
        if phase == "start" and state["armed"]:
            state["armed"] = False
            alloc._pending = None  # (what a publish by another thread does)
            state["victim"] = bytearray(size)  # (likely in the memory just freed)

    gc.callbacks.append(callback)
    gc.collect()
    gc.set_threshold(1)
    state["armed"] = True
    try:
        alloc.map("w")
    finally:
        gc.set_threshold(700)
        gc.callbacks.remove(callback)
    victim = state["victim"]
    print(victim is not None, victim is not None and not any(victim))
    alloc.release()
    Context.destroy("job")
    """
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@_NEEDS_C
def test_an_error_after_the_staged_map_was_recorded_is_raised_not_taken_for_busy(
    namespace: str,
) -> None:
    """(rev8 L7) Its last step failing (a fork by another thread meanwhile, then its write
    of the data state failing): that error, not a retry of the map that finds it mapped
    already (Busy)."""
    script = """
    import errno, gc
    from clara_core import Allocation, Busy, ClaraError, Context

    ctx = Context.create("job")
    with ctx.create(4096).map("w"):
        pass  # (this process's identity and the view known)
    alloc = ctx.create(4096)

    def failing(self, pending):
        raise OSError(errno.EIO, "the data state could not be written")

    Allocation._public_meanwhile = failing
    state = {"armed": False}

    def callback(phase, info):
        if phase == "start" and state["armed"]:
            state["armed"] = False
            alloc._pending = bytearray(alloc._pending)  # (as a fork meanwhile leaves it)

    gc.callbacks.append(callback)
    gc.collect()
    gc.set_threshold(1)
    state["armed"] = True
    try:
        alloc.map("w")
    except Busy:
        print("Busy")
    except ClaraError as exc:
        print("ClaraError", isinstance(exc.__cause__, OSError))
    finally:
        gc.set_threshold(700)
        gc.callbacks.remove(callback)
    Context.destroy("job")
    """
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ClaraError", "True"]
