"""The twins of get's and map's system calls (clara_core/shm/access.py, memory_calls.py): the C
extension's and the pure-Python ones, run on the same real segments and planted files,
give the same results and raise the same errors (errno).

The C side is skipped where the extension is not built (CI requires it: test_native).
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from clara_core import Context, names
from clara_core.shm import access, locks, memory, memory_calls, segment
from clara_core.shm.header import DATA_OFFSET, HEADER_SIZE, LAYOUT_END
from clara_core.shm.native import calls
from tests.helpers import is_mapped

NBYTES = 64 << 10
LENGTH = DATA_OFFSET + NBYTES
READ_WRITE = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
REFERENCE = locks.requests(locks.REFERENCE_BYTE)[0]
MAP_SHARED_LOCK, MAP_EXCLUSIVE_LOCK, _ = locks.requests(locks.MAP_BYTE)
PROT, FLAGS = memory.PROT_READ, memory.MAP_SHARED

needs_c = pytest.mark.skipif(calls is None, reason="the C extension is not built here")
OPENERS = [pytest.param(access._open_locked, id="python")]
MAPPERS = [pytest.param(access._map_locked, id="python")]
HOLDERS = [pytest.param((memory_calls.holder, memory_calls.cut_off), id="python")]
MAP_ATS = [pytest.param(memory_calls.map_at, id="python")]
SET_LOCKS = [pytest.param(access._set_lock, id="python")]
if calls is not None:
    OPENERS.append(pytest.param(calls.open_locked, id="c"))
    MAPPERS.append(pytest.param(calls.map_locked, id="c"))
    HOLDERS.append(pytest.param((calls.holder, calls.cut_off), id="c"))
    MAP_ATS.append(pytest.param(calls.map_at, id="c"))
    SET_LOCKS.append(pytest.param(calls.set_lock, id="c"))


@pytest.fixture
def published() -> Iterator[str]:
    """The file name of a published 64 KiB allocation holding 0, 1, 2 ... (mod 256)."""
    ctx = Context.create("acc")
    try:
        alloc = ctx.create(NBYTES)
        with alloc.map("w") as array:
            array[...] = np.arange(NBYTES) % 256
        alloc.publish("vol")
        alloc.release()
        name = names.allocation_file("acc", names.PUBLISHED, "vol")
        with open(segment.path_of(name), "rb") as file:
            file.read(1)  # its access time moves now, not between two twins' reads
        yield name
    finally:
        ctx.destroy()


@pytest.fixture
def planted() -> Iterator[Callable[[str], str]]:
    """plant(kind) -> the name of a FIFO, symbolic link, directory or short file planted
    in the shared-memory directory (removed at the end)."""
    made: list[tuple[str, bool]] = []
    dir_fd = segment.directory_fd()

    def plant(kind: str) -> str:
        name = names.allocation_file("planted", names.PUBLISHED, kind)
        if kind == "fifo":
            os.mkfifo(name, dir_fd=dir_fd)
        elif kind == "symlink":
            os.symlink("/etc/passwd", name, dir_fd=dir_fd)
        elif kind == "directory":
            os.mkdir(name, dir_fd=dir_fd)
        else:  # a regular file shorter than a header
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=dir_fd))
            os.truncate(segment.path_of(name), 100)
            with open(segment.path_of(name), "rb") as file:
                file.read(1)  # (its access time moves now: see `published`)
        made.append((name, kind == "directory"))
        return name

    yield plant
    for name, directory in made:
        os.rmdir(segment.path_of(name)) if directory else os.unlink(name, dir_fd=dir_fd)


def _outcome(call: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
    """What a call gave, its fd closed; or its error."""
    try:
        fd, locked, found, header = call()
    except OSError as exc:
        return ("raised", type(exc), exc.errno, exc.filename)
    os.close(fd)
    return (locked, type(found), found, header)


def _opened(opener: Callable[..., Any], name: str, flags: int = READ_WRITE) -> tuple[Any, ...]:
    dir_fd = segment.directory_fd()
    return _outcome(lambda: opener(dir_fd, name, flags, REFERENCE, HEADER_SIZE, None))


@pytest.mark.parametrize("opener", OPENERS)
def test_open_locked_gives_what_the_python_calls_give(opener: Any, published: str) -> None:
    dir_fd = segment.directory_fd()
    locked, kind, fields, header = _opened(opener, published)
    found = os.stat(published, dir_fd=dir_fd)
    # The stat's fields that the checks read: os.stat_result's first 7, which FileStat names.
    assert locked is True and kind is tuple and fields == tuple(found)[:7]
    named = access.FileStat(*fields)
    assert (named.st_mode, named.st_ino, named.st_dev, named.st_nlink) == (
        found.st_mode,
        found.st_ino,
        found.st_dev,
        found.st_nlink,
    )
    assert (named.st_uid, named.st_gid, named.st_size) == (found.st_uid, found.st_gid, LENGTH)
    with open(segment.path_of(published), "rb") as file:
        assert header == file.read(HEADER_SIZE)
    assert _opened(opener, published) == _opened(access._open_locked, published)


@pytest.mark.parametrize("opener", OPENERS)
def test_open_locked_gives_the_known_stat_and_header_themselves_when_equal(
    opener: Any, published: str
) -> None:
    """What lets a get compare by identity the stat and header of its last checked one."""
    dir_fd = segment.directory_fd()

    def opened(known: tuple[Any, ...] | None) -> tuple[Any, Any]:
        fd, _, found, header = opener(dir_fd, published, READ_WRITE, None, HEADER_SIZE, known)
        os.close(fd)
        return found, header

    first = opened(None)
    again = opened((*first, "what else the caller keeps"))
    assert again[0] is first[0] and again[1] is first[1]
    equal = (tuple(list(first[0])), bytes(bytearray(first[1])))  # equal, not the same
    assert all(x is y for x, y in zip(opened(equal), equal, strict=True))
    os.chmod(segment.path_of(published), 0o640)  # the stat changes, the header does not
    chmoded = opened(first)
    assert chmoded[0] is not first[0] and chmoded[0][0] & 0o777 == 0o640
    assert chmoded[1] is first[1]
    fd = os.open(segment.path_of(published), os.O_WRONLY)
    os.pwrite(fd, b"\xff", HEADER_SIZE - 1)  # the header changes, the stat does not
    os.close(fd)
    rewritten = opened(chmoded)
    assert rewritten[0] is chmoded[0] and rewritten[1] is not chmoded[1]
    assert rewritten[1][:-1] == first[1][:-1] and rewritten[1][-1] == 0xFF
    assert opened(((1, 2), b"other")) == rewritten  # (not known: fresh, equal objects)


@needs_c
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "short", "missing"])
def test_open_locked_twins_agree_on_planted_files(kind: str, planted: Any) -> None:
    name = names.allocation_file("planted", names.PUBLISHED, kind)
    if kind != "missing":
        plant = planted(kind)
        assert plant == name
    python, c = _opened(access._open_locked, name), _opened(calls.open_locked, name)
    assert c == python
    expected = {
        "fifo": None,  # opened (O_NONBLOCK), never read: the checks refuse it
        "symlink": errno.ELOOP,
        "directory": errno.EISDIR,
        "short": 100,  # bytes read
        "missing": errno.ENOENT,
    }[kind]
    if kind == "fifo":
        assert python[-1] is None and python[0] is True
    elif kind == "short":
        assert len(python[-1]) == expected
    else:
        assert python[:3] == ("raised", python[1], expected) and python[3] == name


@needs_c
def test_open_locked_twins_agree_on_a_held_lock_and_a_failed_read(published: str) -> None:
    holder = os.open(segment.path_of(published), os.O_RDWR)
    try:
        fcntl.fcntl(holder, fcntl.F_OFD_SETLK, locks.requests(locks.REFERENCE_BYTE)[1])
        busy = _opened(access._open_locked, published)
        assert busy == _opened(calls.open_locked, published)
        with open(segment.path_of(published), "rb") as file:  # (read all the same)
            assert busy[0] is False and busy[-1] == file.read(HEADER_SIZE)
    finally:
        os.close(holder)
    write_only = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    failed = _opened(access._open_locked, published, write_only)
    assert failed == _opened(calls.open_locked, published, write_only)
    assert failed[-1] == errno.EBADF  # the errno of the header's read, as an int


def _maps_of(name: str) -> list[str]:
    with open("/proc/self/maps") as maps:
        return [line for line in maps if name in line]


def _held_elsewhere(name: str, request: bytes) -> int:
    fd = os.open(segment.path_of(name), os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    return fd


def _try_exclusive_map_lock(name: str) -> bool:
    """Whether another open file may take the map lock exclusively (nobody holds it)."""
    fd = os.open(segment.path_of(name), os.O_RDWR)
    try:
        return locks.try_lock(fd, locks.MAP_BYTE, True)
    finally:
        os.close(fd)


@pytest.mark.parametrize("mapper", MAPPERS)
def test_map_locked_maps_under_the_lock_and_reads_last_byte_and_layout(
    mapper: Any, published: str
) -> None:
    fd = os.open(segment.path_of(published), READ_WRITE)
    try:
        address, locked, last, header = mapper(
            fd, MAP_SHARED_LOCK, 0, LENGTH, PROT, FLAGS, LAYOUT_END
        )
        assert locked is True and address and last == bytes([(NBYTES - 1) % 256])
        assert header == os.pread(fd, LAYOUT_END, 0)
        assert not _try_exclusive_map_lock(published)
        view = np.frombuffer(memory_calls.holder(address, LENGTH, False, None), np.uint8)
        assert view[DATA_OFFSET + 300] == 300 % 256
        del view
        memory.munmap(address, LENGTH)
        # Held already (None): no lock is tried; not mapped at all (at None): address 0.
        assert mapper(fd, None, None, LENGTH, PROT, FLAGS, 16) == (0, True, last, header[:16])
    finally:
        os.close(fd)
    assert _try_exclusive_map_lock(published) and _maps_of(published) == []


@pytest.mark.parametrize("mapper", MAPPERS)
def test_map_locked_replaces_a_kept_range_in_place(mapper: Any, published: str) -> None:
    memory_calls.lib()
    kept = memory.map_at(0, LENGTH, PROT, memory_calls.PRIVATE_ZEROS, -1)  # a cut-off range
    fd = os.open(segment.path_of(published), READ_WRITE)
    try:
        address, *_ = mapper(fd, MAP_SHARED_LOCK, kept, LENGTH, PROT, FLAGS, LAYOUT_END)
        assert address == kept and len(_maps_of(published)) == 1
        memory.munmap(address, LENGTH)
    finally:
        os.close(fd)


@pytest.mark.parametrize("mapper", MAPPERS)
def test_map_locked_on_a_busy_lock_maps_nothing(mapper: Any, published: str) -> None:
    writer = _held_elsewhere(published, MAP_EXCLUSIVE_LOCK)
    fd = os.open(segment.path_of(published), READ_WRITE)
    try:
        assert mapper(fd, MAP_SHARED_LOCK, 0, LENGTH, PROT, FLAGS, LAYOUT_END) == (
            0,
            False,
            b"",
            b"",
        )
        assert _maps_of(published) == []
    finally:
        os.close(fd)
        os.close(writer)


@pytest.mark.parametrize("set_lock", SET_LOCKS)
def test_set_lock_takes_and_lets_go_of_a_lock_and_never_waits(
    set_lock: Any, published: str
) -> None:
    unlock = locks.requests(locks.MAP_BYTE)[2]
    fd = os.open(segment.path_of(published), os.O_RDWR)
    try:
        assert set_lock(fd, MAP_SHARED_LOCK) is None
        assert not _try_exclusive_map_lock(published)  # (shared by us)
        assert set_lock(fd, unlock) is None
        assert _try_exclusive_map_lock(published)
        other = _held_elsewhere(published, MAP_EXCLUSIVE_LOCK)
        try:
            with pytest.raises(OSError) as busy:
                set_lock(fd, MAP_SHARED_LOCK)
            assert busy.value.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(other)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as closed:
        set_lock(fd, unlock)
    assert closed.value.errno == errno.EBADF


@pytest.mark.parametrize("mapper", MAPPERS)
def test_map_locked_unmaps_the_kept_range_it_was_given_when_the_lock_fails(
    mapper: Any, published: str
) -> None:
    memory_calls.lib()
    kept = memory.map_at(0, LENGTH, PROT, memory_calls.PRIVATE_ZEROS, -1)  # a cut-off range
    with pytest.raises(OSError) as bad_fd:  # neither busy nor mapped over: nobody else
        mapper(999_999, MAP_SHARED_LOCK, kept, LENGTH, PROT, FLAGS, LAYOUT_END)  # frees it
    assert bad_fd.value.errno == errno.EBADF and not is_mapped(kept)


@needs_c
def test_map_locked_twins_agree_on_errors_and_undo_what_they_did(
    published: str, planted: Any
) -> None:
    fifo_path = segment.path_of(planted("fifo"))
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
    other = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
    short = os.open(segment.path_of(planted("short")), os.O_RDWR)
    fd = os.open(segment.path_of(published), READ_WRITE)
    writer = os.open(segment.path_of(published), os.O_WRONLY)
    try:
        for mapper in (access._map_locked, calls.map_locked):
            with pytest.raises(OSError) as not_mappable:  # a FIFO has no pages
                mapper(fifo, MAP_SHARED_LOCK, 0, LENGTH, PROT, FLAGS, LAYOUT_END)
            assert not_mappable.value.errno == errno.ENODEV
            with pytest.raises(OSError) as bad_fd:
                mapper(999_999, MAP_SHARED_LOCK, 0, LENGTH, PROT, FLAGS, LAYOUT_END)
            assert bad_fd.value.errno == errno.EBADF
            with pytest.raises(OSError) as unreadable:  # the last byte of a FIFO: ESPIPE
                mapper(fifo, MAP_SHARED_LOCK, None, LENGTH, PROT, FLAGS, LAYOUT_END)
            assert unreadable.value.errno == errno.ESPIPE
            with pytest.raises(OSError) as write_only:  # the pread's errno, kept
                mapper(writer, None, None, LENGTH, PROT, FLAGS, LAYOUT_END)
            assert write_only.value.errno == errno.EBADF
            # Each failure let go of the lock it took: another file takes it exclusively.
            assert locks.try_lock(other, locks.MAP_BYTE, True)
            locks.unlock(other, locks.MAP_BYTE)
            # A file cut short of the mapping: its last byte reads as b"" (Python checks).
            address, locked, last, header = mapper(
                short, MAP_SHARED_LOCK, 0, LENGTH, PROT, FLAGS, LAYOUT_END
            )
            assert (locked, last, len(header)) == (True, b"", 100)
            memory.munmap(address, LENGTH)
            locks.unlock(short, locks.MAP_BYTE)
    finally:
        for opened in (fd, fifo, other, short, writer):
            os.close(opened)


@pytest.mark.parametrize("map_at", MAP_ATS)
def test_map_at_maps_anywhere_or_over_a_kept_range(map_at: Any, published: str) -> None:
    memory_calls.lib()
    fd = os.open(segment.path_of(published), READ_WRITE)
    try:
        address = map_at(0, LENGTH, PROT, FLAGS, fd)
        view = np.frombuffer(memory_calls.holder(address, LENGTH, False, None), np.uint8)
        assert view[DATA_OFFSET + 300] == 300 % 256
        del view
        memory.munmap(address, LENGTH)
        kept = map_at(0, LENGTH, PROT, memory_calls.PRIVATE_ZEROS, -1)  # a cut-off range
        assert map_at(kept, LENGTH, PROT, FLAGS, fd) == kept and len(_maps_of(published)) == 1
        # Over a range MAP_FIXED refuses (not page-aligned): anywhere else instead.
        elsewhere = map_at(kept + 1, LENGTH, PROT, FLAGS, fd)
        assert elsewhere not in (kept, kept + 1) and len(_maps_of(published)) == 2
        memory.munmap(kept, LENGTH)
        memory.munmap(elsewhere, LENGTH)
    finally:
        os.close(fd)
    assert _maps_of(published) == []


@needs_c
def test_map_at_twins_raise_the_same_errors_and_map_nothing(published: str, planted: Any) -> None:
    fifo = os.open(segment.path_of(planted("fifo")), os.O_RDWR | os.O_NONBLOCK)
    read_only = os.open(segment.path_of(published), os.O_RDONLY | os.O_CLOEXEC)
    write = PROT | memory.PROT_WRITE
    try:
        for map_at in (memory_calls.map_at, calls.map_at):
            for fd, prot, length, code in (
                (999_999, PROT, LENGTH, errno.EBADF),
                (fifo, PROT, LENGTH, errno.ENODEV),  # a FIFO has no pages
                (read_only, write, LENGTH, errno.EACCES),  # shared writes need O_RDWR
                (read_only, PROT, 0, errno.EINVAL),
            ):
                with pytest.raises(OSError) as failed:
                    map_at(0, length, prot, FLAGS, fd)
                assert failed.value.errno == code, (map_at, code)
        assert _maps_of(published) == []
    finally:
        os.close(fifo)
        os.close(read_only)


def _mapped(published: str) -> tuple[int, int]:
    """A fresh read mapping of `published`: (fd, address)."""
    fd = os.open(segment.path_of(published), READ_WRITE)
    return fd, memory.map_at(0, LENGTH, PROT, FLAGS, fd)


@pytest.mark.parametrize("twins", HOLDERS)
def test_a_holder_lends_views_and_its_cut_off_range_is_kept_or_unmapped(
    twins: Any, published: str
) -> None:
    make_holder, cut_off = twins
    fd, address = _mapped(published)
    try:
        owner = object()
        holder = make_holder(address, LENGTH, False, owner)
        assert holder.owner is owner
        if make_holder is calls_holder():  # read-only itself: numpy refuses to write
            array = np.frombuffer(holder, np.uint8, NBYTES, DATA_OFFSET)
            assert not array.flags.writeable and memoryview(holder).readonly
        else:
            array = np.frombuffer(memoryview(holder).toreadonly(), np.uint8, NBYTES, DATA_OFFSET)
        assert array[5] == 5 and int(array[-1]) == (NBYTES - 1) % 256
        spare: list[int] = []
        cut_off(holder, PROT, spare, 1)
        assert holder.owner is None and int(array.max()) == 0  # private zeros now
        with pytest.raises(ValueError, match="cut off already"):  # once only: its range
            cut_off(holder, PROT, spare, 1)  # is its own now, given back once, at death
        assert _maps_of(published) == []  # the segment is no longer mapped
        del holder, array  # the last view: its range is kept (fewer than 1 kept)
        assert spare == [address]
        again = make_holder(address, LENGTH, False, None)
        cut_off(again, PROT, spare, 1)
        del again  # one kept already: unmapped
        assert spare == [address] and not is_mapped(address)
    finally:
        os.close(fd)


def calls_holder() -> Any:
    return None if calls is None else calls.holder


@needs_c
def test_a_c_holder_for_writing_is_writable_and_never_reaches_the_segment_after_cut_off(
    published: str,
) -> None:
    fd = os.open(segment.path_of(published), READ_WRITE)
    address = memory.map_at(0, LENGTH, memory._READ_WRITE, FLAGS, fd)
    try:
        holder = calls.holder(address, LENGTH, True, None)
        array = np.frombuffer(holder, np.uint8, NBYTES, DATA_OFFSET)
        array[0] = 200
        assert os.pread(fd, 1, DATA_OFFSET) == bytes([200])
        calls.cut_off(holder, memory._READ_WRITE, None, 2)
        array[1] = 201  # private zeros: the segment never sees it
        assert os.pread(fd, 2, DATA_OFFSET) == bytes([200, 1])
        with pytest.raises(ValueError):
            calls.cut_off(holder, memory._READ_WRITE, None, 2)  # once only
        del holder, array  # (no spare list: unmapped)
        assert not is_mapped(address)
    finally:
        os.close(fd)


@needs_c
def test_a_c_holder_dies_cleanly_at_interpreter_exit_and_in_a_forked_child(
    published: str,
) -> None:
    driver = f"""
import os, numpy as np
from clara_core.shm import memory
fd = os.open({segment.path_of(published)!r}, os.O_RDWR)
address = memory.map_at(0, {LENGTH}, memory.PROT_READ, memory.MAP_SHARED, fd)
holder = memory.make_holder(address, {LENGTH}, False, None)
kept = []
memory.cut_off(holder, memory.PROT_READ, kept, 2)
view = np.frombuffer(holder, np.uint8)
pid = os.fork()
if pid == 0:
    del holder, view  # the child lets go of its copy of the range
    os._exit(0 if kept else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0 and not kept and view.max() == 0
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
