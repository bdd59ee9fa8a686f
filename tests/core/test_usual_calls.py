"""The C calls of an allocation's usual create, first publish and free
(clara_core/shm/c/usual.c): each must leave exactly what the Python it stands for leaves
(the "python" twin below: those calls out of the way), on real shared memory, and hand
every unusual case back to it: a destroyed context, a name taken, a lifecycle lock held
by another open file, a file cut short, a failed lock, a file made with another mode, a
full file system, an interrupt anywhere."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from clara_core import (
    Allocation,
    AlreadyExists,
    ClaraError,
    Context,
    Corrupt,
    NotFound,
    OutOfSpace,
    Timeout,
    forks,
    members,
)
from clara_core.names import shm_dir
from clara_core.shm import header as hdr
from clara_core.shm import locks
from clara_core.shm.native import calls
from tests.helpers import run_python

_TWINS = ["python"] + (["c"] if calls is not None else [])


@pytest.fixture
def ctx() -> Iterator[Context]:
    context = Context.create("job")
    yield context
    Context.destroy("job")


@pytest.fixture(params=_TWINS)
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """'c': the calls as built; 'python': the same steps in Python (the calls out of the
    way)."""
    if request.param == "python":
        for method in _USUAL_METHODS:
            monkeypatch.setattr(method, "usual", False)
    return request.param


# The methods whose usual case is one C call with no frame (shm/c/usual_methods.c).
_USUAL_METHODS = (
    [] if calls is None else [members.create, Allocation.map, Allocation.publish, Allocation.free]
)


def _names(namespace: str) -> list[str]:
    return sorted(name for name in os.listdir(shm_dir()) if name.startswith(namespace))


def _usual(ctx: Context, name: str = "small") -> Any:
    """A create, publish and free of the usual kind, after one that makes them known."""
    first = ctx.create(4096)
    first.publish(name)
    first.free()
    return ctx.create(4096)


def test_create_publish_and_free_leave_what_the_python_leaves(
    ctx: Context, twin: str, namespace: str
) -> None:
    alloc = _usual(ctx)
    assert alloc.name is None and alloc._pending is not None and not alloc.released
    assert forks.private[id(alloc)]() is alloc
    header = os.pread(alloc._fd, hdr.DATA_OFFSET, 0)
    assert header[hdr.LIFECYCLE_AT] == hdr.PRIVATE and header[hdr.DATA_AT] == hdr.EMPTY
    assert os.fstat(alloc._fd).st_mode & 0o7777 == 0o600
    with alloc.map("w") as array:
        array[:] = 3
    alloc.publish("small")
    assert (alloc.name, alloc.is_published, alloc._pending, alloc._recycle) == (
        "small", True, None, None
    )  # fmt: skip
    assert id(alloc) not in forks.private
    assert alloc.describe() == "allocation 'small' in context 'job'"
    result = run_python(
        """
        from clara_core import Context
        with Context.open("job").get("small") as ref, ref.map("r") as array:
            print(int(array.sum()))
        """
    )
    assert (result.returncode, result.stdout) == (0, f"{3 * 4096}\n"), result.stderr
    fd = alloc._fd
    alloc.free()
    assert alloc.released
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    with pytest.raises(NotFound):
        ctx.get("small")
    assert len(_names(namespace)) == 1  # the context alone


@pytest.mark.skipif(calls is None, reason="the C extension is not built here")
def test_the_usual_calls_run_no_python_frame_of_their_own(ctx: Context) -> None:
    _usual(ctx).release()
    names: list[str] = []

    def usual() -> None:
        alloc = ctx.create(4096)
        alloc.publish("small")
        alloc.free()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            names.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        usual()
    finally:
        sys.setprofile(None)
    assert names == ["usual"]  # (create, publish and free: no frame of their own)


def test_a_publish_into_a_destroyed_context_is_not_found(ctx: Context, twin: str) -> None:
    alloc = _usual(ctx)
    Context.destroy("job")
    with pytest.raises(NotFound):
        alloc.publish("small")
    alloc.release()
    Context.create("job")  # (for the fixture's destroy)


def test_a_publish_under_a_name_taken_meanwhile_raises_already_exists(
    ctx: Context, twin: str
) -> None:
    alloc = _usual(ctx)
    other = ctx.create(4096)
    other.publish("small")
    with pytest.raises(AlreadyExists):
        alloc.publish("small")
    assert not alloc.is_published and not alloc.released
    alloc.publish("other")  # (it can still be published, under another name)
    alloc.free()
    other.free()


def test_a_free_waits_for_a_lifecycle_lock_held_elsewhere(ctx: Context, twin: str) -> None:
    """Another open file of the segment holds its lifecycle lock: the free waits for it up
    to its timeout, then says so, the reference still open."""
    alloc = _usual(ctx)
    alloc.publish("small")
    holder = os.open(f"/proc/self/fd/{alloc._fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        assert locks.try_lock(holder, locks.LIFECYCLE_BYTE, True)
        with pytest.raises(Timeout):
            alloc.free(timeout=0.2)
        assert not alloc.released and os.fstat(alloc._fd)
        locks.unlock(holder, locks.LIFECYCLE_BYTE)
        alloc.free()
        assert alloc.released
    finally:
        os.close(holder)
    with pytest.raises(NotFound):
        ctx.get("small")


def test_a_free_of_a_file_cut_short_is_corrupt_and_keeps_the_reference(
    ctx: Context, twin: str
) -> None:
    alloc = _usual(ctx)
    alloc.publish("small")
    os.ftruncate(alloc._fd, 8)  # (another process of the owner could)
    with pytest.raises(Corrupt):
        alloc.free()
    assert not alloc.released and os.fstat(alloc._fd)
    alloc.release()
    os.unlink(os.path.join(shm_dir(), ctx._registry.published_file("small")))


def test_a_free_that_cannot_lock_raises_and_keeps_the_reference(ctx: Context, twin: str) -> None:
    """Its descriptor read-only (a write lock is EBADF): the error, translated, and the
    reference still open (the call closes nothing it fails on)."""
    alloc = _usual(ctx)
    alloc.publish("small")
    fd = alloc._fd
    saved = os.dup(fd)
    read_only = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(read_only, fd)
        with pytest.raises(ClaraError) as caught:
            alloc.free()
        assert isinstance(caught.value.__cause__, OSError)
        assert not alloc.released
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(read_only)
    alloc.free()
    assert alloc.released


def test_a_create_whose_file_the_umask_narrowed_is_given_the_contexts_mode(
    twin: str, namespace: str
) -> None:
    old = os.umask(0o077)
    try:
        shared = Context.create("shared", mode=0o660)
        try:
            for _ in range(3):  # (the first makes the usual create known)
                alloc = shared.create(4096)
                assert os.fstat(alloc._fd).st_mode & 0o7777 == 0o660
                alloc.release()
        finally:
            Context.destroy("shared")
    finally:
        os.umask(old)


def test_a_create_on_a_full_file_system_is_out_of_space_and_leaves_nothing(
    twin: str, small_shm_dir: str
) -> None:
    ctx = Context.create("job")
    try:
        _usual(ctx).release()
        free = os.statvfs(small_shm_dir)
        filler = os.path.join(small_shm_dir, "filler")
        with open(filler, "wb") as file:
            os.posix_fallocate(file.fileno(), 0, free.f_bavail * free.f_frsize - 4096)
        try:
            with pytest.raises(OutOfSpace):
                ctx.create(4096)
        finally:
            os.unlink(filler)
        ctx.create(4096).release()  # (room again)
    finally:
        Context.destroy("job")
    assert os.listdir(small_shm_dir) == []


def test_an_interrupt_anywhere_in_create_publish_and_free_leaves_nothing_behind(
    ctx: Context, twin: str, namespace: str
) -> None:
    """A KeyboardInterrupt (a signal handler's) as any Python function starts or any C
    call returns: whatever was made is held (and released here), published (and freed
    here) or gone; no other file is left."""
    _usual(ctx).release()
    for at in range(80):
        held: list[Any] = []
        seen: list[str] = []

        def profile(frame: Any, event: str, arg: Any, at: int = at, seen: list = seen) -> None:
            if event == "call" or (event == "c_return" and arg is not sys.setprofile):
                seen.append(event)
                if len(seen) == at + 1:
                    sys.setprofile(None)
                    raise KeyboardInterrupt

        try:
            sys.setprofile(profile)
            held.append(ctx.create(4096))
            held[0].publish("small")
            held[0].free()
        except KeyboardInterrupt:
            pass
        finally:
            sys.setprofile(None)
        for alloc in held:
            if not alloc.released:
                alloc.free() if alloc.is_published else alloc.release()
        with contextlib.suppress(NotFound):  # (published, though its interrupted publish
            ctx.get("small").free()  # did not say so: the Python's)
        assert len(_names(namespace)) == 1, at  # the context alone
        if len(seen) <= at:  # every point was tried
            break


@pytest.mark.skipif(calls is None, reason="the C extension is not built here")
def test_the_usual_methods_are_their_python_functions_to_whoever_looks(ctx: Context) -> None:
    """help(), inspect and the class see the Python function; any other call than the
    usual one (keywords, other arguments, through the class) is the Python's."""
    for method in _USUAL_METHODS:
        python = method.__wrapped__
        assert (method.__doc__, method.__name__, method.__qualname__) == (
            python.__doc__, python.__name__, python.__qualname__
        )  # fmt: skip
    assert list(inspect.signature(Allocation.map).parameters)[:2] == ["self", "mode"]
    alloc = ctx.create(size=4096, dtype="uint8")
    assert next(iter(inspect.signature(alloc.map).parameters)) == "mode"
    assert alloc.free.__self__ is alloc and alloc.free.__func__ is Allocation.free
    with alloc.map(mode="w") as array, pytest.raises(ClaraError):
        alloc.map("w")  # (mapped already: the Python says so)
    array[:] = 1
    alloc.publish("small", timeout=5)
    with Allocation.map(alloc, "r") as read:
        assert read.sum() == 0  # (the view was cut off by the unmap)
    Allocation.free(alloc)
    assert alloc.released
    square = ctx.create(dtype="int16", shape=(2, 2))
    with square.map("w") as array:
        array[:] = 3
    assert square.state == "complete"
    square.release()


def test_a_free_that_finds_the_lifecycle_lock_busy_waits_for_it(ctx: Context, twin: str) -> None:
    """(The usual free's call finds it busy: the Python waits, then frees.)"""
    alloc = _usual(ctx)
    alloc.publish("small")
    holder = os.open(f"/proc/self/fd/{alloc._fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        assert locks.try_lock(holder, locks.LIFECYCLE_BYTE, True)
        letting_go = threading.Timer(0.2, locks.unlock, (holder, locks.LIFECYCLE_BYTE))
        letting_go.start()
        alloc.free()
        letting_go.join()
    finally:
        os.close(holder)
    assert alloc.released
    with pytest.raises(NotFound):
        ctx.get("small")
