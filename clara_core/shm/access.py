"""The system calls of get and map, each sequence issued by one call.

`open_locked`, `map_locked` and `set_lock` are the C extension's (clara_core/shm/c/access.c)
where it is built (shm/native.py), else the pure-Python twins below, which issue the very
same calls in the same order with the same results and errors (OSError with the errno); tests
run both on the same segments. They only issue calls: every check of what they return
is made by their callers (segment.open_segment, maps.Maps.map), once, for both.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat as stats
from _struct import pack

from ..records import Record
from . import memory_calls
from .native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_fcntl, _SETLK = fcntl.fcntl, fcntl.F_OFD_SETLK
_BUSY = (errno.EAGAIN, errno.EACCES)
_UNLOCK = pack("h", fcntl.F_UNLCK)  # a request's l_type, its first field (locks._FLOCK)


class FileStat(Record):
    """The fields of a segment's fstat that its checks read (os.stat_result's first 7,
    named alike, so either does for the checks): what open_locked gives, as a tuple."""

    st_mode: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int


def _open_locked(
    dir_fd: int,
    name: str,
    flags: int,
    lock: bytes | None,
    header_size: int,
    known: tuple[Any, ...] | None,
) -> tuple[int, bool, tuple[int, ...], bytes | int | None]:
    """get's calls: open `name` in `dir_fd` with `flags`; try the lock `lock` (a packed
    request, never waited for: any failure leaves it not taken); fstat; and only for a
    regular file, the pread of `header_size` bytes at 0 (if that fails, its errno as an
    int: the file's checks come first). Returns (fd, locked, stat, header or None), stat
    the fields of FileStat as a plain tuple; closes the fd if it raises. `known`: None, or
    a tuple whose first two items are a stat and a header an earlier call gave: a stat or
    header equal to those is returned as that very object (its checks' verdict is
    remembered by identity: segment.open_unpacked)."""
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        locked = False
        if lock is not None:
            try:
                _fcntl(fd, _SETLK, lock)
                locked = True
            except OSError:
                pass
        found = os.fstat(fd)
        header: bytes | int | None = None
        if header_size > 0 and stats.S_ISREG(found.st_mode):
            try:
                header = os.pread(fd, header_size, 0)
            except OSError as exc:
                header = exc.errno
        fields = found[:7]
        if known is not None:
            if fields == known[0]:
                fields = known[0]
            if header == known[1]:
                header = known[1]
        return fd, locked, fields, header
    except BaseException:
        os.close(fd)
        raise


def _map_locked(
    fd: int,
    lock: bytes | None,
    at: int | None,
    length: int,
    prot: int,
    flags: int,
    header_size: int,
) -> tuple[int, bool, bytes, bytes]:
    """map's calls: try the map lock `lock` (None: held already), and if it is busy
    return (0, False, b"", b"") at once, nothing mapped; mmap `length` bytes of `fd`
    (`at` None: not at all, the address is 0; 0: anywhere; else over the kept range at
    `at`, MAP_FIXED, or anywhere if that fails); pread the file's last byte (b"": the file
    was cut short) and the first `header_size` bytes. Returns (address, True, last,
    header); if it raises, it has unmapped what it mapped and let go the lock it took,
    and if the lock failed, unmapped the kept range `at` too (the caller gives back only
    a busy one's). Pure Python whatever is built: the C map_locked's twin."""
    if lock is not None:
        try:
            _fcntl(fd, _SETLK, lock)
        except BaseException as exc:  # (OSError, or a signal handler's exception)
            if isinstance(exc, OSError) and exc.errno in _BUSY:
                return 0, False, b"", b""
            if at:
                memory_calls.checked_munmap(at, length)
            raise
    landed: list[int] = []  # the mapping, as soon as it is made (see memory_calls.map_at)
    try:
        if at is not None:
            memory_calls.map_at(at, length, prot, flags, fd, landed)
        last = os.pread(fd, 1, length - 1)
        header = os.pread(fd, header_size, 0)
    except BaseException:
        if landed:
            memory_calls.checked_munmap(landed[0], length)
        if lock is not None:
            _fcntl(fd, _SETLK, _UNLOCK + lock[2:])
        raise
    return landed[0] if landed else 0, True, last, header


def _set_lock(fd: int, request: bytes) -> None:
    """fcntl(F_OFD_SETLK) of `request`, a packed struct flock (locks.requests): never
    waited for (OSError, EAGAIN or EACCES, if it is busy). The C twin spares fcntl.fcntl's
    copy of the request into a new bytes result (unmap's unlock: every map)."""
    _fcntl(fd, _SETLK, request)


open_locked: Callable[
    [int, str, int, bytes | None, int, tuple[Any, ...] | None],
    tuple[int, bool, tuple[int, ...], bytes | int | None],
] = calls.open_locked if calls is not None else _open_locked
map_locked: Callable[
    [int, bytes | None, int | None, int, int, int, int], tuple[int, bool, bytes, bytes]
] = calls.map_locked if calls is not None else _map_locked
set_lock: Callable[[int, bytes], None] = calls.set_lock if calls is not None else _set_lock
