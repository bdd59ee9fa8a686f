"""The one-call sequences of create, a first publish and free (shm/making.py): the C
extension's calls and their pure-Python twins give the same results and the same errors
on the same real files, leave no descriptor open and no lock held where they fail.

Without the extension built, only the twins run (each test still checks what they do).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clara_core.shm import header as hdr
from clara_core.shm import locks, making
from clara_core.shm.native import calls

_TWINS = ["python"] + (["c"] if calls is not None else [])
_FLOCK = struct.Struct("hhqqi4x")


def _call(twin: str, name: str) -> Callable[..., Any]:
    return getattr(calls, name) if twin == "c" else getattr(making, "_" + name)


@pytest.fixture
def directory(tmp_path: Any) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _locked_by_other(fd: int, byte: int, exclusive: bool) -> bool:
    """Whether another open file holds a lock on `byte` that `exclusive` (or a shared
    one) conflicts with, seen through a fresh open file of the same file."""
    probe = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    try:
        kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        answer = fcntl.fcntl(probe, fcntl.F_OFD_GETLK, _FLOCK.pack(kind, 0, byte, 1, 0))
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(probe)


def _hold(fd: int, byte: int, exclusive: bool) -> int:
    """Another open file of `fd`'s file, holding a lock on `byte` (close it to drop it)."""
    other = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    fcntl.fcntl(other, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, 0, byte, 1, 0))
    return other


def _segment(directory: int, name: str | None = None, lifecycle: int = hdr.PUBLISHED) -> int:
    """A segment of 8 KiB whose lifecycle byte is `lifecycle`, named `name` if given."""
    fd = making._create(directory, 0o600, bytes(hdr.HEADER_SIZE), 8192)[0]
    os.pwrite(fd, bytes((lifecycle,)), hdr.LIFECYCLE_AT)
    if name is not None:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory)
    return fd


def _error(call: Callable[[], object]) -> tuple[type, int | None]:
    with pytest.raises(OSError) as caught:
        call()
    return type(caught.value), caught.value.errno


def test_the_c_calls_use_the_formats_offsets_and_bytes() -> None:
    if calls is None:
        pytest.skip("the extension is not built here")
    assert calls.LIFECYCLE_AT == hdr.LIFECYCLE_AT
    assert calls.REFERENCE_BYTE == locks.REFERENCE_BYTE
    assert calls.LIFECYCLE_BYTE == locks.LIFECYCLE_BYTE
    assert calls.CREATED_AT == making.CREATED_AT == hdr.ORIGIN_AT


@pytest.mark.parametrize("twin", _TWINS)
def test_create_makes_a_nameless_reserved_file_starting_with_its_header(
    twin: str, directory: int
) -> None:
    header = bytes(range(256)) * 3
    fd, uid, mode, dev, ino = _call(twin, "create")(directory, 0o640, header, 12288)
    try:
        found = os.fstat(fd)
        assert (uid, mode, dev, ino) == (found.st_uid, found.st_mode, found.st_dev, found.st_ino)
        assert found.st_nlink == 0 and found.st_size == 12288
        assert found.st_blocks * 512 >= 12288  # written whole: its memory is reserved
        assert os.pread(fd, 12288, 0) == header + bytes(12288 - len(header))
        assert mode & 0o777 == 0o640 & ~_umask()
        assert os.get_inheritable(fd) is False
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("twin", _TWINS)
def test_create_fails_alike_and_leaves_no_descriptor(twin: str, directory: int) -> None:
    create = _call(twin, "create")
    regular = os.open("a-file", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=directory)
    before = _open_fds()
    try:
        with pytest.raises(ValueError):
            create(directory, 0o600, b"", (64 << 10) + 1)
        assert _error(lambda: create(-1, 0o600, b"", 4096)) == (OSError, errno.EBADF)
        not_a_directory = _error(lambda: create(regular, 0o600, b"", 4096))
        assert not_a_directory == (NotADirectoryError, errno.ENOTDIR)
        assert _open_fds() == before
    finally:
        os.close(regular)


@pytest.mark.parametrize("twin", _TWINS)
def test_create_where_its_memory_does_not_fit_is_enospc_and_closes_the_file(
    twin: str, small_shm_dir: str
) -> None:
    directory = os.open(small_shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    filler = os.open("filler", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=directory)
    try:
        space = os.fstatvfs(directory)
        os.posix_fallocate(filler, 0, space.f_bavail * space.f_frsize - (32 << 10))
        before = _open_fds()
        # Half of it fits: the write is short, and that is no room (nothing half-made).
        failed = _error(lambda: _call(twin, "create")(directory, 0o600, b"h" * 768, 65536))
        assert failed == (OSError, errno.ENOSPC)
        assert _open_fds() == before
    finally:
        os.close(filler)
        os.unlink("filler", dir_fd=directory)
        os.close(directory)


class _Made:
    """What create_private makes an object of in these tests (an Allocation elsewhere)."""

    def __init__(self, *fields: object) -> None:
        self.fields = fields
        self._pending: bytearray | None = None
        self._closed = False


class _Refused(_Made):
    def __init__(self, *fields: object) -> None:
        raise KeyError("refused")


_TEMPLATE = bytes(range(256)) * 3  # (as a header: 768 bytes)


def _create_private(twin: str, directory: int, cls: type = _Made, **changed: Any) -> Any:
    arguments = {
        "template": _TEMPLATE,
        "size": 8192,
        "private": {},
    } | changed
    return _call(twin, "create_private")(
        cls, directory, 0o640, arguments["template"], arguments["size"], "context",
        "registry", "layout", "private", "what", 7, arguments["private"],
    )  # fmt: skip


@pytest.mark.parametrize("twin", _TWINS)
def test_create_private_makes_the_segment_and_its_object_at_once(twin: str, directory: int) -> None:
    private: dict[int, Any] = {}
    before = time.time_ns()
    made, uid, mode = _create_private(twin, directory, private=private)
    after = time.time_ns()
    fd = made.fields[2]
    try:
        found = os.fstat(fd)
        assert (uid, mode) == (found.st_uid, found.st_mode)
        assert found.st_nlink == 0 and found.st_size == 8192 and found.st_blocks * 512 >= 8192
        context, registry, _, writable, layout, created_ns, identity, *rest = made.fields
        assert (context, registry, writable, layout) == ("context", "registry", True, "layout")
        assert rest == ["private", None, None, "what", 7]
        assert identity == (found.st_dev, found.st_ino)
        assert before <= created_ns <= after
        header = bytearray(_TEMPLATE)
        header[hdr.ORIGIN_AT : hdr.ORIGIN_AT + 8] = created_ns.to_bytes(8, "little")
        assert made._pending == header and type(made._pending) is bytearray
        assert os.pread(fd, 8192, 0) == header + bytes(8192 - len(header))
        assert list(private) == [id(made)] and private[id(made)]() is made
        assert not made._closed and os.get_inheritable(fd) is False
    finally:
        os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
def test_create_private_that_fails_leaves_no_descriptor_and_no_object(
    twin: str, directory: int
) -> None:
    private: dict[int, Any] = {}
    before = _open_fds()
    with pytest.raises(KeyError, match="refused"):
        _create_private(twin, directory, _Refused, private=private)
    assert _error(lambda: _create_private(twin, -1, private=private)) == (OSError, errno.EBADF)
    with pytest.raises(ValueError):
        _create_private(twin, directory, size=(64 << 10) + len(_TEMPLATE) + 1, private=private)
    with pytest.raises(ValueError):  # no room for created_ns
        _create_private(twin, directory, template=bytes(hdr.ORIGIN_AT + 7), private=private)
    with pytest.raises(TypeError):
        _create_private(twin, directory, private=[])
    assert private == {}
    assert _open_fds() == before
    assert os.listdir(directory) == []


@pytest.mark.parametrize("twin", _TWINS)
def test_create_private_where_it_does_not_fit_is_enospc(twin: str, small_shm_dir: str) -> None:
    directory = os.open(small_shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    filler = os.open("filler", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=directory)
    try:
        space = os.fstatvfs(directory)
        os.posix_fallocate(filler, 0, space.f_bavail * space.f_frsize - (32 << 10))
        before = _open_fds()
        failed = _error(lambda: _create_private(twin, directory, size=65536))
        assert failed == (OSError, errno.ENOSPC)
        assert _open_fds() == before
    finally:
        os.close(filler)
        os.unlink("filler", dir_fd=directory)
        os.close(directory)


@pytest.mark.parametrize("twin", _TWINS)
def test_publish_locks_writes_and_links_the_file(twin: str, directory: int) -> None:
    context = _segment(directory, "context")
    fd = _segment(directory, lifecycle=hdr.PRIVATE)
    tail = bytes(range(256)) * 2 + bytes(hdr.HEADER_SIZE - hdr.LIFECYCLE_AT - 512)
    try:
        links = _call(twin, "publish")(context, fd, tail, directory, "published")
        assert links == 1  # the context's name
        named = os.stat("published", dir_fd=directory, follow_symlinks=False)
        assert (named.st_dev, named.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        assert os.pread(fd, len(tail), hdr.LIFECYCLE_AT) == tail
        assert _locked_by_other(fd, locks.REFERENCE_BYTE, exclusive=True)  # ours, shared
        assert not _locked_by_other(fd, locks.REFERENCE_BYTE, exclusive=False)
    finally:
        os.close(fd)
        os.close(context)


@pytest.mark.parametrize("twin", _TWINS)
def test_publish_without_a_name_links_nothing(twin: str, directory: int) -> None:
    context = _segment(directory, "context")
    fd = _segment(directory, lifecycle=hdr.PRIVATE)
    try:
        assert _call(twin, "publish")(context, fd, b"\x01", directory, None) == 1
        assert os.listdir(directory) == ["context"]
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == b"\x01"
    finally:
        os.close(fd)
        os.close(context)


@pytest.mark.parametrize("twin", _TWINS)
def test_publish_into_a_destroyed_context_does_nothing(twin: str, directory: int) -> None:
    context = _segment(directory, "context")
    os.unlink("context", dir_fd=directory)
    fd = _segment(directory, lifecycle=hdr.PRIVATE)
    try:
        assert _call(twin, "publish")(context, fd, b"\x01", directory, "published") == 0
        assert os.listdir(directory) == []
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.PRIVATE,))
        assert not _locked_by_other(fd, locks.REFERENCE_BYTE, exclusive=True)
    finally:
        os.close(fd)
        os.close(context)


@pytest.mark.parametrize("twin", _TWINS)
@pytest.mark.parametrize("planted", ["file", "symlink", "fifo", "directory"])
def test_publish_over_a_taken_name_is_eexist_and_leaves_it(
    twin: str, planted: str, directory: int
) -> None:
    context = _segment(directory, "context")
    if planted == "file":
        os.close(os.open("taken", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=directory))
    elif planted == "symlink":
        os.symlink("/nonexistent", "taken", dir_fd=directory)
    elif planted == "fifo":
        os.mkfifo("taken", dir_fd=directory)
    else:
        os.mkdir("taken", dir_fd=directory)
    before = os.stat("taken", dir_fd=directory, follow_symlinks=False)
    fd = _segment(directory, lifecycle=hdr.PRIVATE)
    try:
        publish = _call(twin, "publish")
        failed = _error(lambda: publish(context, fd, b"\x01", directory, "taken"))
        assert failed == (FileExistsError, errno.EEXIST)
        after = os.stat("taken", dir_fd=directory, follow_symlinks=False)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
        os.close(context)


@pytest.mark.parametrize("twin", _TWINS)
def test_lock_lifecycle_reads_the_lifecycle_and_what_the_name_denotes(
    twin: str, directory: int
) -> None:
    fd = _segment(directory, "named")
    found = os.fstat(fd)
    try:
        state = _call(twin, "lock_lifecycle")(fd, directory, "named")
        assert state == (hdr.PUBLISHED, found.st_dev, found.st_ino)
        assert _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
        # Taken again by the same open file: at once, as the wait for it expects.
        assert _call(twin, "lock_lifecycle")(fd, directory, None) == (hdr.PUBLISHED, -1, -1)
        locks.unlock(fd, locks.LIFECYCLE_BYTE)
        os.unlink("named", dir_fd=directory)
        os.symlink("elsewhere", "named", dir_fd=directory)  # a planted name is not ours
        link = os.stat("named", dir_fd=directory, follow_symlinks=False)
        assert _call(twin, "lock_lifecycle")(fd, directory, "named") == (
            hdr.PUBLISHED,
            link.st_dev,
            link.st_ino,
        )
        locks.unlock(fd, locks.LIFECYCLE_BYTE)
        assert _call(twin, "lock_lifecycle")(fd, directory, "gone") == (hdr.PUBLISHED, -1, -1)
        locks.unlock(fd, locks.LIFECYCLE_BYTE)
        os.ftruncate(fd, 0)  # cut short by another process
        assert _call(twin, "lock_lifecycle")(fd, directory, None) == (-1, -1, -1)
    finally:
        os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
def test_lock_lifecycle_that_fails_after_the_lock_drops_it(twin: str, directory: int) -> None:
    fd = _segment(directory, "named")
    try:
        # "named/x": a path through a regular file, ENOTDIR from the stat under the lock.
        failed = _error(lambda: _call(twin, "lock_lifecycle")(fd, directory, "named/x"))
        assert failed == (NotADirectoryError, errno.ENOTDIR)
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        os.close(fd)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


def _free_named(twin: str, fd: int, directory: int, name: str, close: bool = True) -> Any:
    """free_named of a published segment `fd` expected under `name`."""
    found = os.fstat(fd)
    return _call(twin, "free_named")(
        fd, directory, name, hdr.PUBLISHED, found.st_dev, found.st_ino, hdr.FREED, close
    )


@pytest.mark.parametrize("twin", _TWINS)
def test_free_named_marks_freed_removes_the_name_unlocks_and_closes(
    twin: str, directory: int
) -> None:
    fd = _segment(directory, "named")
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)  # to look at the file afterwards
    try:
        assert _free_named(twin, fd, directory, "named") == hdr.PUBLISHED
        assert os.listdir(directory) == []
        assert os.pread(reader, 1, hdr.LIFECYCLE_AT) == bytes((hdr.FREED,))
        assert not _is_open(fd)
        assert not _locked_by_other(reader, locks.LIFECYCLE_BYTE, exclusive=True)
    finally:
        os.close(reader)
        if _is_open(fd):
            os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
@pytest.mark.parametrize("change", ["lifecycle", "name-gone", "symlink", "another-file"])
def test_free_named_removes_no_name_that_is_not_its_segments_own(
    twin: str, change: str, directory: int
) -> None:
    fd = _segment(directory, "named")
    if change == "lifecycle":  # freed (or published again) meanwhile by another
        os.pwrite(fd, bytes((hdr.FREED,)), hdr.LIFECYCLE_AT)
    else:
        os.unlink("named", dir_fd=directory)
        if change == "symlink":
            os.symlink("elsewhere", "named", dir_fd=directory)
        elif change == "another-file":  # the name given since to a newer allocation
            os.close(_segment(directory, "named"))
    before = os.listdir(directory)
    lifecycle = os.pread(fd, 1, hdr.LIFECYCLE_AT)[0]
    try:
        assert _free_named(twin, fd, directory, "named", close=False) == lifecycle
        assert os.listdir(directory) == before
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT)[0] == lifecycle  # not marked freed
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
        assert _free_named(twin, fd, directory, "named", close=True) == lifecycle
        assert not _is_open(fd)  # closed all the same
    finally:
        if _is_open(fd):
            os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
@pytest.mark.parametrize("call", ["lock_lifecycle", "free_named"])
def test_the_lifecycle_calls_on_a_held_lock_are_none_and_do_nothing(
    twin: str, call: str, directory: int
) -> None:
    fd = _segment(directory, "named")
    other = _hold(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    try:
        if call == "lock_lifecycle":
            assert _call(twin, "lock_lifecycle")(fd, directory, "named") is None
        else:
            assert _free_named(twin, fd, directory, "named") is None
        assert os.listdir(directory) == ["named"]
        assert _is_open(fd)
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.PUBLISHED,))
        os.close(other)
        other = -1
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        if other >= 0:
            os.close(other)
        os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
def test_free_named_of_a_file_cut_short_only_unlocks(twin: str, directory: int) -> None:
    fd = _segment(directory, "named")
    os.ftruncate(fd, 0)  # by another process
    try:
        assert _free_named(twin, fd, directory, "named") == -1
        assert os.listdir(directory) == ["named"]
        assert _is_open(fd)  # the caller reports it, the reference still open
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
def test_free_named_that_fails_unlocks_and_closes_nothing(twin: str, directory: int) -> None:
    fd = _segment(directory, "named")
    try:
        # "named/x": a path through a regular file, ENOTDIR from the stat under the lock.
        failed = _error(lambda: _free_named(twin, fd, directory, "named/x"))
        assert failed == (NotADirectoryError, errno.ENOTDIR)
        assert _is_open(fd)
        assert os.listdir(directory) == ["named"]
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.PUBLISHED,))
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        os.close(fd)


@pytest.mark.parametrize("twin", _TWINS)
def test_free_named_of_a_read_only_descriptor_fails_at_its_lock(twin: str, directory: int) -> None:
    fd = _segment(directory, "named")
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)  # (a write lock needs a writer)
    try:
        found = os.fstat(fd)
        free_named = _call(twin, "free_named")
        arguments = (directory, "named", hdr.PUBLISHED, found.st_dev, found.st_ino, hdr.FREED)
        assert _error(lambda: free_named(reader, *arguments, True)) == (OSError, errno.EBADF)
        assert _is_open(reader) and os.listdir(directory) == ["named"]
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.PUBLISHED,))
    finally:
        os.close(reader)
        os.close(fd)


def test_free_named_refuses_what_the_os_functions_refuse() -> None:
    unused = 1 << 20  # (no such descriptor: above any limit of open files here)
    for twin in _TWINS:
        free_named = _call(twin, "free_named")
        with pytest.raises(TypeError):
            free_named(unused, -1, None, 1, 0, 0, 2, True)  # a name is needed
        assert _error(lambda f=free_named: f(unused, -1, "x", 1, 0, 0, 2, True)) == (
            OSError,
            errno.EBADF,
        )


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def _immutable(fd: int, on: bool) -> None:
    """Set or clear the immutable flag of the directory `fd` (nothing can be unlinked in
    it, not even by root); skips the test where it cannot be set."""
    flags = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8)))[0]
    flags = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
    try:
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", flags))
    except OSError as exc:  # (no such flag on this file system, or not privileged)
        pytest.skip(f"cannot make a directory immutable here: {exc}")


@pytest.mark.parametrize("twin", _TWINS)
def test_free_named_whose_unlink_fails_leaves_the_lifecycle_as_it_was(
    twin: str, directory: int
) -> None:
    """The name stays (here an immutable directory; in use, another user's file in the
    sticky shared-memory directory: EPERM): the segment must not stay marked freed under
    it, which nobody could then get or free (brk7)."""
    fd = _segment(directory, "named")
    _immutable(directory, True)
    try:
        assert _error(lambda: _free_named(twin, fd, directory, "named")) == (
            PermissionError,
            errno.EPERM,
        )
        assert os.listdir(directory) == ["named"]
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.PUBLISHED,))
        assert _is_open(fd)
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        _immutable(directory, False)
        os.close(fd)


def test_free_named_twin_interrupted_after_its_unlink_leaves_the_segment_freed(
    directory: int,
) -> None:
    """A signal handler's exception (^C) right after the twin's unlink succeeded: the
    name is gone, so the lifecycle stays freed, as the C call leaves it (no Python code
    runs between its unlinkat and its return); only a name that stays is given back its
    lifecycle (rev7 R6)."""
    fd = _segment(directory, "named")

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_return" and getattr(arg, "__name__", "") == "unlink":
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        with pytest.raises(KeyboardInterrupt):
            _free_named("python", fd, directory, "named", close=False)
    finally:
        sys.setprofile(None)
    try:
        assert os.listdir(directory) == []
        assert os.pread(fd, 1, hdr.LIFECYCLE_AT) == bytes((hdr.FREED,))
        assert not _locked_by_other(fd, locks.LIFECYCLE_BYTE, exclusive=False)
    finally:
        os.close(fd)
