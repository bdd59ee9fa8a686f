"""The floors of P1 and P2: the system calls clara's idiomatic form makes, in the same
order and with the same arguments, issued with as little Python as they allow.

What clara spends above a floor is Python; what the floor spends above raw posix_ipc +
mmap is the system calls clara's safety properties need (the reference and map locks, the
header read under them, the cut-off of a live view, the reservation at create, the name
protocol of free). A floor validates nothing, raises nothing and keeps no object but the
numpy view it yields: it is not a way to use shared memory, only the cost of the calls.

P2 has a second floor, its calls made by one C function (bench/c_floor.c, built here
with the system compiler when there is one): clara makes its calls from C too (the
extension clara_core.shm._calls), a few per call, so the C floor is what clara's calls
cost without any Python between them.

tests/bench/test_floor_calls.py compares each floor's calls with clara's own under
`strace`, so that a floor follows what clara does when clara changes.

P1 (get + map('r') + unmap; the view alive after the block, or deleted in it):
    openat(dir, name, O_RDWR|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC)   get: the safe open
    fcntl(F_OFD_SETLK, read lock of byte 0)                     the reference lock
    fstat                                                       its type, owner, size
    pread(768 @ 0)                                              the header
    fcntl(F_OFD_SETLK, read lock of byte 1)                     map: the map lock
    mmap(PROT_READ, MAP_SHARED)  (MAP_FIXED over a spare range) the mapping
    pread(1 @ its last byte)                                    the file covers it
    pread(160 @ 0)                                              the layout, data state
    [view alive]   mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)    unmap: the cut-off
    fcntl(F_OFD_SETLK, unlock of byte 1)                        the map lock
    [view deleted] munmap                                       release: the mapping
    close                                                       the reference
    (a cut-off range is kept, at most two per length, for the next map to replace)

P2 (create + map('w') + write + unmap + publish + free of 4 KiB):
    openat(dir, ".", O_TMPFILE|O_RDWR|O_CLOEXEC, mode)          create: a nameless file
    fstat                                                       its owner, mode, identity
    pwritev(header 768 + zeros)                                 its memory, reserved
    (map('w') of a fresh private segment: staged in private memory, a kept range, zeroed)
    pwrite(4096 @ 4096)                                         unmap: the data (staged)
    fstat(context)                                              publish: context alive
    fcntl(F_OFD_SETLK, read lock of byte 0)                     the reference lock
    pwrite(752 @ 16)                                            lifecycle, state, name
    linkat(fd, "", dir, name, AT_EMPTY_PATH)                    the name
    fcntl(F_OFD_SETLK, write lock of byte 2)                    free: the lifecycle lock
    pread(1 @ 16)                                               still published
    fstatat(dir, name, AT_SYMLINK_NOFOLLOW)                     the name is still ours
    pwrite(1 @ 16)                                              freed
    unlinkat(dir, name)                                         the name
    fcntl(F_OFD_SETLK, unlock of byte 2)
    close
    (the view dies: its private range is kept for the next staged map)

Until this round P2's map mapped the file (mmap), its write faulted the page in, the
unmap cut the live view off (mmap MAP_FIXED) and its death unmapped it (munmap): four
calls where a staged map (clara_core/shm/staging.py) makes one pwrite.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from clara_core import names
from clara_core.members import layout_for
from clara_core.shm import header as hdr
from clara_core.shm import processes
from clara_core.shm.segment import directory_fd

_libc: Any = None
_mmap: Any = None
_munmap: Any = None
_linkat: Any = None
_c_char: Any = None


def _load() -> None:
    """ctypes bindings of mmap, munmap and linkat, as clara makes them."""
    global _libc, _mmap, _munmap, _linkat, _c_char
    if _libc is not None:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pointer, size, number, text = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p
    libc.mmap.restype = pointer
    libc.mmap.argtypes = [pointer, size, number, number, number, ctypes.c_long]
    libc.munmap.restype = number
    libc.munmap.argtypes = [pointer, size]
    libc.linkat.argtypes = [number, text, number, text, number]
    _mmap, _munmap, _linkat, _c_char = libc.mmap, libc.munmap, libc.linkat, ctypes.c_char
    _libc = libc


_FLOCK = struct.Struct("hhqqi4x")  # l_type, l_whence, l_start, l_len, l_pid (0: OFD), pad


def _lock(kind: int, byte: int) -> bytes:
    return _FLOCK.pack(kind, 0, byte, 1, 0)


_SETLK = fcntl.F_OFD_SETLK
_READ_REFERENCE = _lock(fcntl.F_RDLCK, 0)
_READ_MAP, _UNLOCK_MAP = _lock(fcntl.F_RDLCK, 1), _lock(fcntl.F_UNLCK, 1)
_WRITE_LIFECYCLE, _UNLOCK_LIFECYCLE = _lock(fcntl.F_WRLCK, 2), _lock(fcntl.F_UNLCK, 2)
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TMPFILE = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
_AT_EMPTY_PATH = 0x1000
_MAP_FIXED = 0x10
_SHARED = mmap.MAP_SHARED
_SHARED_FIXED = mmap.MAP_SHARED | _MAP_FIXED
_PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_ZEROS_FIXED = _PRIVATE | _MAP_FIXED
_READ, _READ_WRITE = mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE
_KEEP = 2  # cut-off ranges kept per length (clara's memory._SPARE_PER_LENGTH)


class _CutOff:
    """Hung on a cut-off view's buffer: when the view dies, keeps its range for the next
    map (up to _KEEP), else unmaps it; with no `spare` list, always unmaps it."""

    __slots__ = ("address", "length", "spare")

    def __init__(self, address: int, length: int, spare: list[int] | None) -> None:
        self.address, self.length, self.spare = address, length, spare

    def __del__(self) -> None:
        spare = self.spare
        if spare is not None and len(spare) < _KEEP:
            spare.append(self.address)
        else:
            _munmap(self.address, self.length)


def _context_fd(context: str) -> tuple[int, hdr.Header]:
    """An fd of a context's own segment (read-only, until `release`) and its header."""
    fd = os.open(names.context_file(context), os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory_fd())
    _context_fds.append(fd)
    return fd, hdr.parse(os.pread(fd, hdr.HEADER_SIZE, 0), os.fstat(fd).st_size, context)


# Cut-off ranges whose views died, by length, for the next map of that length (as clara's
# memory._spare, which the floors of the idiomatic and the deleted form share alike).
_spare: dict[int, list[int]] = {}


_c_spare: dict[int, list[int]] = {}  # the same for the C floors (their own ranges)
_context_fds: list[int] = []  # the contexts P2's floors fstat, open until `release`
_staged: list[tuple[int, int]] = []  # P2's floors' staged ranges, until `release`


def release() -> None:
    """Unmap the cut-off ranges kept for later maps; close the floors' context files."""
    for kept in (_spare, _c_spare):
        for length, spare in kept.items():
            while spare:
                _munmap(spare.pop(), length)
    while _staged:
        _munmap(*_staged.pop())
    while _context_fds:
        os.close(_context_fds.pop())


def _layout_of(file_name: str, name: str) -> hdr.Layout:
    probe = os.open(file_name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory_fd())
    try:
        raw = os.pread(probe, hdr.HEADER_SIZE, 0)
        layout = hdr.parse(raw, os.fstat(probe).st_size, name).layout
    finally:
        os.close(probe)
    assert layout is not None
    return layout


def get_map_unmap(context: str, name: str, delete: bool = False) -> Callable[[], object]:
    """P1's floor for the allocation published as `name` in `context`: its view alive
    after the operation, or deleted in it with `delete` (`release` at the end)."""
    _load()
    dir_fd = directory_fd()
    file_name = names.allocation_file(context, names.PUBLISHED, name)
    layout = _layout_of(file_name, name)
    length = hdr.DATA_OFFSET + layout.capacity
    dtype, count = layout.etype.numpy, layout.nbytes // layout.etype.itemsize
    layout_end, data_at = hdr.LAYOUT_END, hdr.DATA_OFFSET
    spare = _spare.setdefault(length, [])
    os_open, fcntl_, fstat, pread, close = os.open, fcntl.fcntl, os.fstat, os.pread, os.close
    mmap_, munmap, c_char, frombuffer = _mmap, _munmap, _c_char, np.frombuffer

    def operation() -> object:
        fd = os_open(file_name, _OPEN, dir_fd=dir_fd)
        fcntl_(fd, _SETLK, _READ_REFERENCE)
        fstat(fd)
        pread(fd, 768, 0)
        fcntl_(fd, _SETLK, _READ_MAP)
        if spare:
            address = mmap_(spare.pop(), length, _READ, _SHARED_FIXED, fd, 0)
        else:
            address = mmap_(None, length, _READ, _SHARED, fd, 0)
        pread(fd, 1, length - 1)
        pread(fd, layout_end, 0)
        holder = c_char.__mul__(length).from_address(address)
        array = frombuffer(memoryview(holder).toreadonly(), dtype, count, data_at)
        if delete:
            del array, holder
            fcntl_(fd, _SETLK, _UNLOCK_MAP)
            munmap(address, length)
            close(fd)
            return None
        mmap_(address, length, _READ, _ZEROS_FIXED, -1, 0)
        holder.cut_off = _CutOff(address, length, spare)
        fcntl_(fd, _SETLK, _UNLOCK_MAP)
        close(fd)
        return array.shape  # the view dies on return: its range is kept, or unmapped

    return operation


def _p2_calls(context: str, name: str, nbytes: int) -> dict[str, Any]:
    """What P2's floors pass to their calls: descriptors, names and header bytes."""
    _load()
    context_fd, context_header = _context_fd(context)
    settings, created = context_header.settings, context_header.origin.created_ns
    assert settings is not None
    file_name = names.allocation_file(context, names.PUBLISHED, name)
    layout = layout_for(nbytes, None, None)  # (uint8, as clara's create(nbytes))
    pid, start = processes.identity()
    new = bytes(
        hdr.pack_new_allocation(layout, (time.time_ns(), pid, start, 0, 0, created), context)
    )
    published = bytearray(new)
    published[hdr.LIFECYCLE_AT] = hdr.PUBLISHED
    published[hdr.DATA_AT : hdr.DATA_END] = hdr.write_map_states(new, pid, start)[1]
    published[hdr.NAME_AT :] = hdr.pack_name(name)
    return {
        "dir_fd": directory_fd(),
        "context_fd": context_fd,
        "mode": settings.mode,
        "file_name": file_name,
        "new": new,
        "tail": bytes(published[hdr.LIFECYCLE_AT :]),  # lifecycle, data state, name
        "length": hdr.DATA_OFFSET + layout.capacity,
    }


def create_write_publish_free(context: str, name: str, nbytes: int) -> Callable[[], object]:
    """P2's floor: a fresh `nbytes` allocation of `context`, written through a map whose
    view is alive after its unmap, published as `name` and freed (`release` at the end)."""
    calls = _p2_calls(context, name, nbytes)
    dir_fd, context_fd, mode = calls["dir_fd"], calls["context_fd"], calls["mode"]
    file_name, new, publish_bytes = calls["file_name"], calls["new"], calls["tail"]
    encoded = os.fsencode(file_name)
    freed = hdr.pack_lifecycle(hdr.FREED)
    length = calls["length"]
    zeros = memoryview(bytes(length - len(new)))
    data_at, lifecycle_at = hdr.DATA_OFFSET, hdr.LIFECYCLE_AT
    os_open, fstat, pwritev, pwrite, pread = os.open, os.fstat, os.pwritev, os.pwrite, os.pread
    fcntl_, stat, unlink, close = fcntl.fcntl, os.stat, os.unlink, os.close
    linkat, frombuffer = _linkat, np.frombuffer
    parts = (new, zeros)
    # (the view of one operation is dead by the next: one range will do)
    staged = _c_char.__mul__(length).from_address(_staged_range(length))
    data = memoryview(staged).cast("B")[data_at:]

    def operation() -> object:
        fd = os_open(".", _TMPFILE, mode, dir_fd=dir_fd)
        fstat(fd)
        pwritev(fd, parts, 0)
        data[:] = zeros[: length - data_at]  # staged: zeros (as clara's `stage`)
        array = frombuffer(staged, np.uint8, nbytes, data_at)
        array[...] = 1
        pwrite(fd, data, data_at)  # unmap: the data into the file, the view cut off
        data[:] = zeros[: length - data_at]
        fstat(context_fd)
        fcntl_(fd, _SETLK, _READ_REFERENCE)
        pwrite(fd, publish_bytes, lifecycle_at)
        linkat(fd, b"", dir_fd, encoded, _AT_EMPTY_PATH)
        fcntl_(fd, _SETLK, _WRITE_LIFECYCLE)
        pread(fd, 1, lifecycle_at)
        stat(file_name, dir_fd=dir_fd, follow_symlinks=False)
        pwrite(fd, freed, lifecycle_at)
        unlink(file_name, dir_fd=dir_fd)
        fcntl_(fd, _SETLK, _UNLOCK_LIFECYCLE)
        close(fd)
        return array.shape  # the view dies on return: its range is unmapped

    return operation


def _staged_range(length: int) -> int:
    """The address of private memory of `length` bytes for a P2 floor's staged map, as
    clara keeps one (mapped once, unmapped by `release`)."""
    address = _mmap(None, length, _READ_WRITE, _PRIVATE, -1, 0)
    _staged.append((address, length))
    return address


def c_floor(directory: str) -> ModuleType | str:
    """The C floors (bench/c_floor.c), built with the system compiler in `directory`
    and loaded; or why they cannot be, here."""
    import importlib.util
    import shutil
    import subprocess
    import sysconfig

    compiler = shutil.which("cc")
    if compiler is None:
        return "no C compiler (cc) here"
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_floor.c")
    target = os.path.join(directory, "c_floor" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    flags = ["-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE", "-shared", "-fPIC"]
    flags.append(f"-I{include}")
    built = subprocess.run(
        [compiler, *flags, source, "-o", target],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        return f"bench/c_floor.c did not build ({(built.stderr.strip() or '?').splitlines()[-1]})"
    spec = importlib.util.spec_from_file_location("c_floor", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        return f"bench/c_floor.c built but did not load ({exc})"
    return module


def get_map_unmap_in_c(
    built: ModuleType, context: str, name: str, delete: bool = False
) -> Callable[[], object]:
    """P1's C floor (`c_floor`): the calls of `get_map_unmap`, with the same arguments in
    the same order, all made by one C function (no numpy view); the cut-off range is kept
    for the next map (`release` at the end), as when the Python floor's view dies. (An
    `_load` first: the ctypes munmap of `release`.)"""
    _load()
    dir_fd = directory_fd()
    file_name = names.allocation_file(context, names.PUBLISHED, name)
    length = hdr.DATA_OFFSET + _layout_of(file_name, name).capacity
    arguments = (dir_fd, os.fsencode(file_name), length, hdr.LAYOUT_END)
    spare = _c_spare.setdefault(length, [])
    p1 = built.p1

    def operation() -> object:
        kept = p1(*arguments, spare.pop() if spare else 0, delete)
        if kept:
            spare.append(kept)  # (it took one, if there was one: never more than _KEEP)
        return None

    return operation


def create_write_publish_free_in_c(
    built: ModuleType, context: str, name: str, nbytes: int
) -> Callable[[], object]:
    """P2's C floor (`c_floor`): the calls of `create_write_publish_free`, with the same
    arguments in the same order, all made by one C function."""
    calls = _p2_calls(context, name, nbytes)
    arguments = (
        calls["dir_fd"],
        calls["mode"],
        calls["new"],
        calls["tail"],
        calls["context_fd"],
        os.fsencode(calls["file_name"]),
        calls["length"],
        nbytes,
        hdr.FREED,
        _staged_range(calls["length"]),
    )
    p2 = built.p2

    def operation() -> object:
        return p2(*arguments)

    return operation
