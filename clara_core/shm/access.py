"""The system calls of get and map, each sequence issued by one call.

`open_locked` and `map_locked` are the C extension's (clara_core/shm/c/access.c) where it
is built (shm/native.py), else the pure-Python twins below, which issue the very same
calls in the same order with the same results and errors (OSError with the errno); tests
run both on the same segments. They only issue calls: every check of what they return
is made by their callers (segment.open_segment, maps.Maps.map), once, for both.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat as stats
from _struct import pack

from . import memory_calls
from .native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

_fcntl, _SETLK = fcntl.fcntl, fcntl.F_OFD_SETLK
_BUSY = (errno.EAGAIN, errno.EACCES)
_UNLOCK = pack("h", fcntl.F_UNLCK)  # a request's l_type, its first field (locks._FLOCK)


def _open_locked(
    dir_fd: int,
    name: str,
    flags: int,
    lock: bytes | None,
    header_size: int,
    stat_type: type = os.stat_result,
) -> tuple[int, bool, os.stat_result, bytes | int | None]:
    """get's calls: open `name` in `dir_fd` with `flags`; try the lock `lock` (a packed
    request, never waited for: any failure leaves it not taken); fstat; and only for a
    regular file, the pread of `header_size` bytes at 0 (if that fails, its errno as an
    int: the file's checks come first). Returns (fd, locked, stat, header or None); closes
    the fd if it raises. (`stat_type`: os.stat_result, which the C twin builds.)"""
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
        return fd, locked, found, header
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
    address = 0
    try:
        if at is not None:
            address = memory_calls.map_at(at, length, prot, flags, fd)
        last = os.pread(fd, 1, length - 1)
        header = os.pread(fd, header_size, 0)
    except BaseException:
        if address:
            memory_calls.checked_munmap(address, length)
        if lock is not None:
            _fcntl(fd, _SETLK, _UNLOCK + lock[2:])
        raise
    return address, True, last, header


# os.stat_result as the C twin builds it: the 19 fields of Linux's (else the Python twin).
_STAT_FITS = os.stat_result.n_fields == 19 and os.stat_result.n_sequence_fields == 10

open_locked: Callable[
    [int, str, int, bytes | None, int, type], tuple[int, bool, os.stat_result, bytes | int | None]
] = calls.open_locked if calls is not None and _STAT_FITS else _open_locked
map_locked: Callable[
    [int, bytes | None, int | None, int, int, int, int], tuple[int, bool, bytes, bytes]
] = calls.map_locked if calls is not None else _map_locked
