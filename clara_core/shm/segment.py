"""Every operating-system call on shared memory goes through here.

A segment is a file in the shared-memory directory (/dev/shm: what shm_open(3) opens on
Linux), used through its file descriptor:

- a new segment starts *anonymous* (``O_TMPFILE``): it has no name, so if its creator dies
  before naming it the kernel frees it; nothing can be orphaned;
- ``posix_fallocate`` reserves the memory up front, so a full file system is a clean
  OutOfSpace at creation, never a SIGBUS in the middle of a write;
- naming, unlinking and renaming it are the directory's (`directory`: linkat, unlinkat,
  renameat2), whose names this module gives too, so its callers have one door.

Every name found in the directory is opened by `open_segment`, which refuses anything
that is not a regular file made by someone allowed (see `trust`) and validates the header
before any lock is waited for. Here: that open, the header read, header writes and maps.

OSErrors are translated into clara_core's errors, naming the object (`what`).
"""

from __future__ import annotations

import errno
import os
import stat as stats

from ..errors import Corrupt, PermissionDenied
from ..names import shm_dir_setting
from ..records import Record
from . import locks
from .access import FileStat, open_locked
from .directory import (
    check_removable,
    directory_fd,
    fd_by_setting,
    forget_directory,
    link,
    links_open_files,
    names_file,
    path_of,
    removable,
    remove_name,
    rename_new,
    stat_named,
    translate,
    unlink,
)
from .header import HEADER_SIZE, Header, parse
from .memory import Region
from .trust import Refusal, Writers, file_type, user_name

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import NoReturn

# directory_fd()'s usual answer, looked up by open_unpacked itself (a frame less per get).
# (A bound method made once: `fd_by_setting.get(...)` of an imported name compiles to an
# attribute load that makes a bound method on every call, ~450 instructions more per get.)
_known_directory_fd = fd_by_setting.get

__all__ = [  # (what callers use; the directory's names are re-exported: one door)
    "POPULATE_FROM",
    "STAT_ONLY_REFUSAL",
    "WITH_HEADER",
    "FileStat",
    "Opened",
    "check_removable",
    "directory_fd",
    "forget_directory",
    "link",
    "links_open_files",
    "map_segment",
    "names_file",
    "never_written_at_end",
    "open_segment",
    "open_unpacked",
    "path_of",
    "read_header",
    "removable",
    "remove_name",
    "rename_new",
    "stat_named",
    "translate",
    "unlink",
    "write_at",
]

POPULATE_FROM = 256 << 10  # larger maps map every page at once (MAP_POPULATE)

# open_unpacked's booleans by name, for its positional calls (see there).
WITH_HEADER = True  # header: read and validate it
STAT_ONLY_REFUSAL = True  # stat_only_refusal: the refusal is a context's Writers'


class Opened(Record):
    """A segment opened by `open_segment`: its fd, whether it is open for writing, its
    stat and (if asked for) its validated header."""

    fd: int
    writable: bool
    stat: FileStat  # (the fields of os.stat_result that the checks read)
    header: Header | None


def open_segment(
    file_name: str,
    what: str,
    refusal: Refusal,
    *,
    read_only: bool = False,
    header: bool = True,
    lock: tuple[int, bool, bytes] | None = None,
    timeout: float | None = None,
    stat_only_refusal: bool = False,
) -> Opened:
    """Open a name of the shared-memory directory, the one safe way.

    In this order: open without following a symbolic link and without blocking (a FIFO
    would hang a plain open), read-write if this user may; `fstat`; refuse whatever
    `refusal` objects to (PermissionDenied: another user's, or more permissive than its
    context) and anything not a regular file (Corrupt); read and validate the header
    (unless `header` is False). `lock` = (byte, exclusive, its `locks.requests` one) is
    then held: taken at once if free (a try never waits, so it comes first, and the stat
    and header are then read under it), else waited for only after those checks, at most
    `timeout` seconds (None: `locks.default_wait()`), and the stat and header read again.

    `stat_only_refusal`: the caller's word that `refusal` decides from the stat alone, as
    a context's `Writers.refusal` does (nothing else is accepted: TypeError). Then an open
    whose stat (FileStat), header bytes and refusal are those of the last open that passed
    these checks gets that one's verdict, without the checks run again (every get opens
    the segment the get before it did). A refusal that reads anything else (the euid, as
    trust.ours_refusal does; the time) could change its verdict for the same key.
    """
    found = open_unpacked(
        file_name, what, refusal, read_only, header, lock, timeout, stat_only_refusal
    )
    return tuple.__new__(Opened, found)  # (a NamedTuple's own __new__ is Python code)


def open_unpacked(
    file_name: str,
    what: str,
    refusal: Refusal,
    read_only: bool,
    header: bool,
    lock: tuple[int, bool, bytes] | None,
    timeout: float | None,
    stat_only_refusal: bool,
    /,
) -> tuple[int, bool, FileStat, Header | None]:
    """`open_segment`'s (fd, writable, stat, header) as a plain tuple, for a caller that
    unpacks it at once (every get: an Opened costs ~1,600 instructions more to make and
    free). Its arguments are positional (a keyword argument costs every get ~300-470
    instructions: CPython 3.11 specializes no call with keywords): pass the booleans
    as `WITH_HEADER`, `STAT_ONLY_REFUSAL` or a variable of their name, never bare."""
    global _last_checked
    request = None if lock is None else lock[2]
    size = HEADER_SIZE if header else 0
    # (read once: another thread may replace it)
    known = _last_checked if stat_only_refusal else None
    if read_only:
        opened = _open_read_only(file_name, what, refusal, request, size)
        (fd, locked, fields, raw), writable = opened, False
    else:
        try:  # the usual case, first and alone (one call: access.open_locked)
            dir_fd = _known_directory_fd(shm_dir_setting()) or directory_fd()
            opened = open_locked(dir_fd, file_name, _READ_WRITE, request, size, known)
            (fd, locked, fields, raw), writable = opened, True
        except (PermissionError, IsADirectoryError):  # may only read it (or a directory)
            opened = _open_read_only(file_name, what, refusal, request, size)
            (fd, locked, fields, raw), writable = opened, False
        except OSError as exc:
            _explain_refused(exc, file_name, what, refusal)
    try:
        # (open_locked gives the remembered stat and header themselves if they are equal)
        remembered = stat_only_refusal and (lock is None or locked) and refusal is known[2]
        if remembered and fields is known[0] and raw is known[1]:
            return fd, writable, known[3], known[4]
        found = tuple.__new__(FileStat, fields)
        if not stats.S_ISREG(found.st_mode) or refusal(found) is not None:
            _check_file(found, what, refusal)  # raises, saying why
        if lock is not None and not locked:  # busy (a file that takes no lock: refused)
            byte, exclusive, _ = lock
            if header:
                _read(fd, what, found, raw)  # no wait on a lock of a file that is no segment
            locks.acquire(fd, byte, exclusive, f"the lock on {what}", timeout)
            # What the lock protects may have changed until we held it: read it now.
            found = tuple.__new__(FileStat, _fstat(fd, what)[:7])
            if header:
                return fd, writable, found, _read(fd, what, found)
        if not header:
            return fd, writable, found, None
        parsed = _read(fd, what, found, raw)
        if stat_only_refusal:
            if getattr(refusal, "__func__", None) is not _WRITERS_REFUSAL:  # (the contract)
                raise TypeError(f"a verdict of {refusal!r} cannot be remembered: not Writers'")
            _last_checked = (fields, raw, refusal, found, parsed)
        return fd, writable, found, parsed
    except BaseException:
        os.close(fd)
        raise


# The last open (with `stat_only_refusal`) that passed every check: (its stat's fields as
# open_locked gave them, its header bytes, the refusal, its FileStat, its Header).
_last_checked: tuple = ((), b"", None, None, None)
_WRITERS_REFUSAL = Writers.refusal  # the one refusal known to read the stat alone


def _open_read_only(
    file_name: str, what: str, refusal: Refusal, request: bytes | None, size: int
) -> tuple[int, bool, tuple[int, ...], bytes | int | None]:
    try:
        return open_locked(directory_fd(), file_name, _READ_ONLY, request, size, None)
    except (PermissionError, IsADirectoryError):
        found = stat_named(file_name)
        if found is not None:  # say whose it is rather than just "denied"
            _check_file(found, what, refusal)
        raise PermissionDenied(f"{what}: permission denied") from None
    except OSError as exc:
        _explain_refused(exc, file_name, what, refusal)


_READ_ONLY = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_RDONLY
_READ_WRITE = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_RDWR


def _explain_refused(exc: OSError, file_name: str, what: str, refusal: Refusal) -> NoReturn:
    """Raise the error for an open that failed with `exc` (not a permission error)."""
    if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symbolic link, a socket
        found = stat_named(file_name)
        if found is not None:
            _check_file(found, what, refusal)
    raise translate(exc, what) from exc


def _fstat(fd: int, what: str) -> os.stat_result:
    try:
        return os.fstat(fd)
    except OSError as exc:
        raise translate(exc, what) from exc


def _check_file(found: FileStat | os.stat_result, what: str, refusal: Refusal) -> None:
    if not stats.S_ISREG(found.st_mode):
        kind = file_type(found.st_mode)
        if found.st_uid != os.geteuid():
            raise PermissionDenied(
                f"{what} is {kind} of {user_name(found.st_uid)}, not a clara segment: "
                "it was put there behind clara's back and is ignored"
            )
        raise Corrupt(f"{what} is {kind}, not a clara segment; remove it by hand")
    why = refusal(found)
    if why is not None:
        raise PermissionDenied(f"{what} {why}")


def _read(
    fd: int, what: str, found: FileStat | os.stat_result, raw: bytes | int | None = None
) -> Header:
    """The header, validated: `raw` as open_locked read it (an int: its read's errno), or
    read now (None)."""
    if raw is None:
        try:
            raw = os.pread(fd, HEADER_SIZE, 0)
        except OSError as exc:
            raise translate(exc, what) from exc
    elif type(raw) is int:
        raise translate(OSError(raw, os.strerror(raw)), what)
    return parse(raw, found.st_size, what)


def read_header(fd: int, what: str) -> tuple[Header, os.stat_result]:
    """Read and validate the header of an open segment, with the segment's stat."""
    found = _fstat(fd, what)
    return _read(fd, what, found), found


def write_at(fd: int, data: bytes, offset: int, what: str) -> None:
    """Write header bytes at `offset` of an open segment."""
    try:
        os.pwrite(fd, data, offset)
    except OSError as exc:
        raise translate(exc, what) from exc


def never_written_at_end(fd: int, length: int) -> bool:
    """Whether the last page of the first `length` bytes of a segment was never written:
    a hole, or a page fallocate reserved and nobody has cleared yet (tmpfs counts a page
    as data only once it is). Then the pages before it most likely are fresh too, and a
    write map is cheapest populated for writing (see memory.Region.map's `fresh`); once
    a map has populated them, they are data. One lookup of one page, whatever `length`.
    A guess that only picks how to populate, never a fact anything relies on."""
    try:
        os.lseek(fd, (length - 1) & _PAGE_MASK, os.SEEK_DATA)
    except OSError as exc:
        return exc.errno == errno.ENXIO  # (no data from there on; else: cannot tell)
    return False


_PAGE_MASK = ~(os.sysconf("SC_PAGE_SIZE") - 1)


def map_segment(
    fd: int, length: int, writable: bool, what: str, populate: bool = False, fresh: bool = False
) -> Region:
    """Map the first `length` bytes of a segment, read-only unless `writable`.
    With `populate`, a large one's pages are all mapped now (`fresh` ones for writing: see
    memory.Region.map); else it waits for its first view (Region.deferred), so a map
    whose data only moves through the fd (sendfile, splice) never maps a page."""
    if not populate:
        return Region.deferred(fd, length, writable)
    try:
        return Region.map(fd, length, writable, length >= POPULATE_FROM, fresh)
    except OSError as exc:
        raise translate(exc, what) from exc
