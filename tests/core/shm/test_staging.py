"""The calls of a staged write map (shm/staging.py): the C extension's `stage` and
`write_staged` and their pure-Python twins do the same to the same real memory and real
POSIX shared-memory segments (files of the shared-memory directory, as shm_open(3) makes
them, named in the test's namespace), and fail alike, a full tmpfs included. Without the
extension built, only the twins run."""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clara_core.names import shm_dir
from clara_core.shm import memory, memory_calls, staging
from clara_core.shm.header import DATA_OFFSET
from clara_core.shm.native import calls
from tests.helpers import is_mapped

_TWINS = ["python"] + (["c"] if calls is not None else [])
_LENGTH = DATA_OFFSET + 8192


def _call(twin: str, name: str) -> Callable[..., Any]:
    return getattr(calls, name) if twin == "c" else getattr(staging, "_" + name)


def _bytes_at(address: int, length: int) -> memoryview:
    return memoryview(memory.make_holder(address, length, True, None)).cast("B")


@pytest.fixture
def shm_path(namespace: str) -> Iterator[str]:
    """The path of a real POSIX shared-memory segment of `_LENGTH` bytes (reserved, zeros)
    in the test's namespace, removed at the end."""
    path = os.path.join(shm_dir(), f"{namespace}.staging")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, _LENGTH)
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        os.unlink(path)


@pytest.fixture
def segment(shm_path: str) -> Iterator[int]:
    """That segment open for reading and writing."""
    fd = os.open(shm_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def test_the_c_calls_use_the_formats_data_offset() -> None:
    if calls is None:
        pytest.skip("the extension is not built here")
    assert calls.DATA_OFFSET == DATA_OFFSET


@pytest.mark.parametrize("twin", _TWINS)
def test_stage_gives_zeros_new_or_in_a_kept_range_keeping_its_header_page(twin: str) -> None:
    stage = _call(twin, "stage")
    address = stage(0, _LENGTH)
    try:
        memory_now = _bytes_at(address, _LENGTH)
        assert not any(memory_now)
        memory_now[:] = b"\x05" * _LENGTH  # written (by a view that outlived its map)
        assert stage(address, _LENGTH) == address
        assert bytes(memory_now[:DATA_OFFSET]) == b"\x05" * DATA_OFFSET  # nobody's data
        assert not any(memory_now[DATA_OFFSET:])
    finally:
        memory.munmap(address, _LENGTH)


@pytest.mark.parametrize("twin", _TWINS)
@pytest.mark.parametrize("zero", [False, True])
def test_write_staged_writes_the_data_at_its_offset_and_zeros_it_if_asked(
    twin: str, zero: bool, segment: int
) -> None:
    address = staging.stage(0, _LENGTH)
    try:
        staged = _bytes_at(address, _LENGTH)
        staged[:] = bytes(range(256)) * (_LENGTH // 256)
        _call(twin, "write_staged")(segment, address, _LENGTH, zero)
        assert os.pread(segment, DATA_OFFSET, 0) == bytes(DATA_OFFSET)  # the header: not its
        written = os.pread(segment, _LENGTH, DATA_OFFSET)
        assert written == bytes(range(256)) * ((_LENGTH - DATA_OFFSET) // 256)
        assert any(staged[DATA_OFFSET:]) is not zero
    finally:
        memory.munmap(address, _LENGTH)


def _error(call: Callable[[], object]) -> tuple[type, object]:
    with pytest.raises((OSError, ValueError)) as caught:
        call()
    return type(caught.value), getattr(caught.value, "errno", None)


def test_the_twins_fail_alike(segment: int, shm_path: str) -> None:
    address = staging.stage(0, _LENGTH)
    read_only = os.open(shm_path, os.O_RDONLY)
    closed = os.open(shm_path, os.O_RDONLY)
    os.close(closed)
    try:
        cases: dict[str, Callable[[str], object]] = {
            "closed fd": lambda t: _call(t, "write_staged")(closed, address, _LENGTH, True),
            "read-only fd": lambda t: _call(t, "write_staged")(read_only, address, _LENGTH, 0),
            "header page only": lambda t: _call(t, "write_staged")(segment, address, 4096, 0),
            "stage, header page only": lambda t: _call(t, "stage")(0, DATA_OFFSET),
        }
        for case, call in cases.items():
            errors = {twin: _error(lambda call=call, twin=twin: call(twin)) for twin in _TWINS}
            assert len(set(errors.values())) == 1, (case, errors)
        assert _error(lambda: staging.write_staged(closed, address, _LENGTH, 0))[1] == 9
    finally:
        os.close(read_only)
        memory.munmap(address, _LENGTH)


@pytest.mark.parametrize("twin", _TWINS)
def test_write_staged_on_a_full_tmpfs_writes_what_fits_then_fails_with_enospc(
    twin: str, small_shm_dir: str, namespace: str
) -> None:
    """A segment not reserved (its pages taken at the write) on a tmpfs with one page
    left: the first pwrite writes that page alone (a short write: the loop goes on), the
    next writes nothing and fails with ENOSPC, which both twins raise as OSError."""
    page = os.sysconf("SC_PAGE_SIZE")
    path = os.path.join(small_shm_dir, f"{namespace}.staging")
    filler_path = os.path.join(small_shm_dir, f"{namespace}.filler")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    filler = os.open(filler_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    address = staging.stage(0, _LENGTH)
    try:
        os.ftruncate(fd, _LENGTH)  # sparse: no page of it taken yet
        free = os.statvfs(small_shm_dir)
        os.posix_fallocate(filler, 0, free.f_bavail * free.f_frsize - page)
        staged = _bytes_at(address, _LENGTH)
        staged[DATA_OFFSET:] = bytes(range(256)) * ((_LENGTH - DATA_OFFSET) // 256)
        with pytest.raises(OSError) as caught:
            _call(twin, "write_staged")(fd, address, _LENGTH, True)
        assert caught.value.errno == errno.ENOSPC
        assert os.pread(fd, page, DATA_OFFSET) == bytes(staged[DATA_OFFSET : DATA_OFFSET + page])
        assert os.pread(fd, _LENGTH, DATA_OFFSET + page) == bytes(_LENGTH - DATA_OFFSET - page)
        assert any(staged[DATA_OFFSET:])  # not zeroed: the data is not in the file
    finally:
        memory.munmap(address, _LENGTH)
        os.close(fd)
        os.close(filler)
        os.unlink(path)
        os.unlink(filler_path)


_DISOWNERS = [pytest.param((memory_calls.holder, memory_calls.disown), id="python")]
if calls is not None:
    _DISOWNERS.append(pytest.param((calls.holder, calls.disown), id="c"))


@pytest.mark.parametrize("twins", _DISOWNERS)
def test_a_disowned_holder_keeps_its_range_at_its_death_or_unmaps_it(twins: Any) -> None:
    """A staged map's views alive at unmap: their holder takes the range over as it is
    (no call), lets go of its owner, and at its death keeps the range (up to `keep`)."""
    make_holder, disown = twins
    address = staging.stage(0, _LENGTH)
    owner = _Owner()
    holder = make_holder(address, _LENGTH, True, owner)
    view = memoryview(holder).cast("B")
    view[DATA_OFFSET] = 7
    spare: list[int] = []
    dead = weakref.ref(owner)
    del owner
    disown(holder, spare, 1)
    assert dead() is None  # the map may die with its views alive
    assert view[DATA_OFFSET] == 7  # nothing mapped over it
    with pytest.raises(ValueError, match="owns its range already"):
        disown(holder, spare, 1)
    del holder, view  # the last view: its range is kept
    assert spare == [address] and is_mapped(address)
    again = make_holder(address, _LENGTH, True, None)
    disown(again, spare, 1)
    del again  # one kept already: unmapped
    assert spare == [address] and not is_mapped(address)


class _Owner:
    pass


def _maps_file(address: int, path: str) -> bool:
    inode = os.stat(path).st_ino
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if int(fields[0].split("-")[0], 16) == address:
                return int(fields[4]) == inode
    return False


@pytest.mark.parametrize("twin", _TWINS)
def test_attach_staged_writes_the_data_then_maps_the_file_over_it(
    twin: str, segment: int, shm_path: str
) -> None:
    address = staging.stage(0, _LENGTH)
    try:
        staged = _bytes_at(address, _LENGTH)
        staged[DATA_OFFSET:] = b"\x03" * (_LENGTH - DATA_OFFSET)
        _call(twin, "attach_staged")(segment, address, _LENGTH)
        assert _maps_file(address, shm_path)
        assert os.pread(segment, 8, DATA_OFFSET) == b"\x03" * 8
        staged[DATA_OFFSET] = 4  # through the file now
        assert os.pread(segment, 1, DATA_OFFSET) == b"\x04"
    finally:
        memory.munmap(address, _LENGTH)


@pytest.mark.parametrize("twin", _TWINS)
def test_attach_staged_that_fails_leaves_the_staged_memory_as_it_was(
    twin: str, shm_path: str
) -> None:
    address = staging.stage(0, _LENGTH)
    read_only = os.open(shm_path, os.O_RDONLY)
    try:
        _bytes_at(address, _LENGTH)[DATA_OFFSET:] = b"\x05" * (_LENGTH - DATA_OFFSET)
        with pytest.raises(OSError) as caught:
            _call(twin, "attach_staged")(read_only, address, _LENGTH)
        assert caught.value.errno == 9  # (EBADF: the write, before any map)
        assert not _maps_file(address, shm_path)
        assert set(_bytes_at(address, _LENGTH)[DATA_OFFSET:]) == {5}
    finally:
        os.close(read_only)
        memory.munmap(address, _LENGTH)
