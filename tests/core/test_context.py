"""Contexts: create, open, list, destroy; modes, owners, capacity."""

import os
import stat

import pytest

from clara_core import AlreadyExists, Context, InvalidArgument, NotFound, OutOfSpace, names
from clara_core.names import shm_dir
from tests.helpers import run_python


def shm_files(namespace):
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace + "."))


def test_create_open_list_destroy(namespace):
    with Context.create("Job-1") as ctx:
        assert ctx.name == "Job-1"
        assert Context.list() == ["Job-1"]
        assert Context.exists("JOB-1")
        again = Context.open("job-1")  # case-insensitive
        assert again.name == "Job-1"
        again.close()
    assert Context.destroy("job-1") == 0
    assert not Context.exists("Job-1")
    assert shm_files(namespace) == []


def test_a_second_create_of_the_same_name_fails_cleanly(namespace):
    ctx = Context.create("job")
    try:
        with pytest.raises(AlreadyExists, match="context 'JOB' already exists"):
            Context.create("JOB")
        assert shm_files(namespace) == [names.context_file("job")]
    finally:
        ctx.destroy()


def test_missing_context_is_not_found():
    with pytest.raises(NotFound, match="context 'nope' does not exist"):
        Context.open("nope")
    with pytest.raises(NotFound):
        Context.destroy("nope")


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": 0o1777}, {"mode": 0o400}, {"mode": "abc"}, {"capacity": "-1"}, {"owner_pid": 0}],
)
def test_bad_settings_are_refused_before_anything_exists(namespace, kwargs):
    with pytest.raises(InvalidArgument):
        Context.create("job", **kwargs)
    assert shm_files(namespace) == []


def test_owner_must_be_running(namespace):
    dead = run_python("import os; print(os.getpid())").stdout.strip()
    with pytest.raises(InvalidArgument, match="not a running process"):
        Context.create("job", owner_pid=int(dead))
    assert shm_files(namespace) == []


def test_segments_are_owner_only_by_default_and_follow_the_context_mode(namespace):
    private = Context.create("private")
    shared = Context.create("shared", mode=0o640)
    try:
        a = private.create(10)
        a.publish("a")
        b = shared.create(10)
        b.publish("b")
        modes = {
            f: stat.S_IMODE(os.stat(os.path.join(shm_dir(), f)).st_mode)
            for f in shm_files(namespace)
        }
        assert modes == {
            names.context_file("private"): 0o600,
            names.allocation_file("private", "a", "a"): 0o600,
            names.context_file("shared"): 0o640,
            names.allocation_file("shared", "a", "b"): 0o640,
        }
        a.release()
        b.release()
    finally:
        private.destroy()
        shared.destroy()


def test_destroy_frees_everything_but_holders_keep_their_data(namespace):
    ctx = Context.create("job")
    for i in range(3):
        a = ctx.create(dtype="i32", shape=(10,))
        with a.map("w") as array:
            array[:] = i
        a.publish(f"a{i}")
        a.release()
    held = ctx.get("a2")
    mapping = held.map("r")
    assert Context.destroy("job") == 3
    assert shm_files(namespace) == []
    assert mapping.array.tolist() == [2] * 10  # still valid: the kernel frees it later
    with pytest.raises(NotFound, match="destroyed"):
        ctx.get("a1")
    fresh = ctx.create(8)
    with pytest.raises(NotFound, match="destroyed"):
        fresh.publish("late")
    held.release()


def test_capacity_limits_published_bytes(namespace):
    ctx = Context.create("job", capacity="16K")
    try:
        first = ctx.create(4096)
        first.publish("first")  # 4 KiB header page + 4 KiB data
        second = ctx.create(4096)
        second.publish("second")
        third = ctx.create(1)
        with pytest.raises(OutOfSpace, match="holds 16384 of its 16384 bytes"):
            third.publish("third")
        assert ctx.names() == ["first", "second"]
        first.free()
        third.publish("third")
        assert ctx.names() == ["second", "third"]
    finally:
        ctx.destroy()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o660, 0o666])
def test_segments_get_their_context_mode_whatever_the_umask(umask, mode):
    """The context's mode exactly, for the context and a published allocation, whether
    the umask takes bits away (then clara sets the mode) or none (then it needs not)."""
    old = os.umask(umask)
    try:
        ctx = Context.create("moded", mode=mode)
        try:
            alloc = ctx.create(4096)
            alloc.publish("data")
            for file_name in (
                names.context_file("moded"),
                names.allocation_file("moded", "a", "data"),
            ):
                found = os.stat(os.path.join(names.shm_dir(), file_name))
                assert stat.S_IMODE(found.st_mode) == mode, (file_name, oct(found.st_mode))
            alloc.free()
        finally:
            Context.destroy("moded")
    finally:
        os.umask(old)


def _descriptors_of(path: str) -> list[int]:
    """This process's descriptors open on `path`'s file (by device and inode)."""
    wanted = os.stat(path)
    found = []
    for entry in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(int(entry))
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if (st.st_dev, st.st_ino) == (wanted.st_dev, wanted.st_ino):
            found.append(int(entry))
    return found


def test_a_context_closes_its_descriptor_once_when_closed_or_dropped(namespace):
    segment = os.path.join(shm_dir(), names.context_file("job"))
    Context.create("job").close()
    try:
        ctx = Context.open("job")
        assert len(_descriptors_of(segment)) == 1
        del ctx  # dropped without close(): its descriptor goes with it
        assert _descriptors_of(segment) == []
        ctx = Context.open("job")
        (fd,) = _descriptors_of(segment)
        other = os.open(os.devnull, os.O_RDONLY)  # (another number than the context's)
        ctx.close()
        assert _descriptors_of(segment) == []
        os.dup2(other, fd)  # another file now has the number the context had
        try:
            ctx.close()  # a second close must not close it
            del ctx
            os.fstat(fd)
        finally:
            os.close(fd)
            os.close(other)
    finally:
        Context.destroy("job")
