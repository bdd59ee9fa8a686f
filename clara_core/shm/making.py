"""Making segments, and the system calls of a create, a first publish and a free, each
sequence in one call.

`create_anonymous` makes a new, nameless segment. The one-call sequences (`create`,
`publish`, `lock_lifecycle`: shm/c/making.c; `free_named`: shm/c/freeing.c) are the C
extension's when it is built (`native.calls`), else their pure-Python twins here, which
make the same calls in the same order with the same results and errors (an OSError with
the errno, EINTR retried as PEP 475 does). They only make calls: what their results mean
(who made a file, a destroyed context, what a free expects) is decided by their callers,
in Python, once; `free_named` only compares what it finds with what it was told to
expect, as a compare-and-swap does (the name protocol needs the unlink under the same
lock as that comparison).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat as stats
import time
from _weakref import ref as weak_ref  # (weakref.ref, without the weakref module)

from . import libc, locks
from .header import LIFECYCLE_AT, ORIGIN_AT
from .native import calls
from .segment import directory_fd, translate

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_TMPFILE = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
_ZEROS = memoryview(bytes(64 << 10))  # what follows a small segment's header
CREATED_AT = ORIGIN_AT  # where a header's created_ns is (its origin's first field)
_fcntl, _SETLK = fcntl.fcntl, fcntl.F_OFD_SETLK
_SHARED_REFERENCE = locks.requests(locks.REFERENCE_BYTE)[0]
_, _EXCLUSIVE_LIFECYCLE, _UNLOCK_LIFECYCLE = locks.requests(locks.LIFECYCLE_BYTE)


def _create(
    dir_fd: int, mode: int, header: bytes | bytearray, size: int
) -> tuple[int, int, int, int, int]:
    """A nameless file of `size` bytes (at most 64 KiB after `header`) in the directory:
    openat(O_TMPFILE), fstat, then its memory reserved by writing it whole (`header`,
    then zeros; a short write is ENOSPC). Returns (fd, uid, mode, dev, ino) as made;
    closed again on any failure."""
    if len(header) > size or size - len(header) > len(_ZEROS):
        raise ValueError("create() writes a header and at most 64 KiB of zeros")
    fd = os.open(".", _TMPFILE, mode, dir_fd=dir_fd)
    try:
        made = os.fstat(fd)
        if os.pwritev(fd, (header, _ZEROS[: size - len(header)]), 0) < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except BaseException:
        os.close(fd)  # (a nameless file vanishes with its last descriptor)
        raise
    return fd, made.st_uid, made.st_mode, made.st_dev, made.st_ino


def _create_private(
    cls: Callable[..., Any],
    dir_fd: int,
    mode: int,
    template: bytes,
    size: int,
    context: object,
    registry: object,
    layout: object,
    visibility: str,
    what: str,
    born: int,
    private: dict[int, Any],
) -> tuple[Any, int, int]:
    """A new private allocation of a small segment (shm/c/creating.c): its header
    (`template` with the time of the create as created_ns), its segment (`create`'s
    calls), and `cls(context, registry, fd, True, layout, created_ns, (dev, ino),
    visibility, None, None, what, born)` with the header as its `_pending`, registered
    in `private` by id (a weak reference). Returns it, and the uid and mode the file was
    made with. On any failure nothing is left: no descriptor, no object."""
    if not isinstance(private, dict):
        raise TypeError("create_private() registers in a dict")
    if len(template) < CREATED_AT + 8 or len(template) > size or size - len(template) > len(_ZEROS):
        raise ValueError("create_private() writes a header and at most 64 KiB of zeros")
    created_ns = time.time_ns()
    header = bytearray(template)
    header[CREATED_AT : CREATED_AT + 8] = created_ns.to_bytes(8, "little")
    fd, uid, made_mode, dev, ino = _create(dir_fd, mode, header, size)
    made = None
    try:
        made = cls(
            context, registry, fd, True, layout, created_ns, (dev, ino), visibility, None, None,
            what, born,
        )  # fmt: skip
        made._pending = header
        private[id(made)] = weak_ref(made)
    except BaseException:
        if made is not None:  # never made, as far as anyone can tell
            made._closed = True
            private.pop(id(made), None)
            os.close(fd)
        elif denotes(fd, dev, ino):  # (else made but lost before it was bound, it closed
            os.close(fd)  # `fd` as it died: the number may be another file's now)
        raise
    return made, uid, made_mode


def denotes(fd: int, dev: int, ino: int) -> bool:
    """Whether `fd` is open and denotes the file (dev, ino): after an exception that may
    have come before or after a call that closes `fd` (^C as it returns), whether it is
    still ours to close. (Best effort: another reference of this process to the same file
    could have taken the number in between.)"""
    try:
        found = os.fstat(fd)
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (dev, ino)


def _publish(
    context_fd: int, fd: int, tail: bytes | bytearray, dir_fd: int, name: str | None
) -> int:
    """A nameless segment's first publish: the link count of its context's file (0: the
    context is destroyed, and nothing else is done); the shared reference lock (busy is
    no failure); `tail` written from the lifecycle on; linkat(AT_EMPTY_PATH) to `name`
    (skipped if None: the caller links it). Returns that link count."""
    links = os.fstat(context_fd).st_nlink
    if links == 0:
        return 0
    try:
        _fcntl(fd, _SETLK, _SHARED_REFERENCE)
    except OSError as exc:
        locks.busy(exc)  # (nobody else can hold it: the file has had no name)
    os.pwrite(fd, tail, LIFECYCLE_AT)
    if name is not None:
        libc.link_open_file(fd, dir_fd, name)
    return links


def _lock_lifecycle(fd: int, dir_fd: int, name: str | None) -> tuple[int, int, int] | None:
    """The exclusive lifecycle lock if nobody holds it (None: busy, not taken), then
    (the lifecycle byte, -1 if the file was cut short; the (dev, ino) `name` denotes
    now, (-1, -1) if none or `name` is None). Unlocked again on any failure."""
    try:
        _fcntl(fd, _SETLK, _EXCLUSIVE_LIFECYCLE)
    except OSError as exc:
        if locks.busy(exc):
            return None
    try:
        lifecycle = os.pread(fd, 1, LIFECYCLE_AT)
        dev = ino = -1
        if name is not None:
            try:
                found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                dev, ino = found.st_dev, found.st_ino
    except BaseException:
        _fcntl(fd, _SETLK, _UNLOCK_LIFECYCLE)
        raise
    return (lifecycle[0] if lifecycle else -1), dev, ino


def _free_named(
    fd: int, dir_fd: int, name: str, expected: int, dev: int, ino: int, freed: int, close: bool
) -> int | None:
    """A free of a named segment nobody pools (the name protocol, see removal.py): the
    exclusive lifecycle lock if nobody holds it (None: busy, nothing done); the lifecycle
    byte; if it is `expected` and `name` still denotes the segment (dev, ino), the
    lifecycle `freed` written and the name unlinked; the lock dropped; then `fd` closed
    if `close` (its own error unreported: the descriptor is gone whatever it says).
    Returns the lifecycle found; a file cut short (-1) is only unlocked, not closed. On
    any failure the lock is dropped and `fd` stays open."""
    if name is None:  # (as the C call, before any call)
        raise TypeError("free_named() needs a name")
    try:
        _fcntl(fd, _SETLK, _EXCLUSIVE_LIFECYCLE)
    except OSError as exc:
        if locks.busy(exc):  # (else it raises exc: a lock that failed)
            return None
    try:
        found = os.pread(fd, 1, LIFECYCLE_AT)
        lifecycle = found[0] if found else -1
        ours = _names(name, dir_fd, dev, ino)  # (whatever the lifecycle, as the C call)
        if lifecycle == expected and ours:
            try:  # (the write in it: an interrupt as it returns must find the name checked)
                os.pwrite(fd, bytes((freed,)), LIFECYCLE_AT)
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except BaseException:  # the name stays (EPERM: another user's file in a
                if _names(name, dir_fd, dev, ino):  # sticky directory; an interrupt before
                    os.pwrite(fd, bytes((lifecycle,)), LIFECYCLE_AT)  # the unlink): it must
                raise  # not denote a freed segment (gone: freed, as the C call leaves it)
    except BaseException:
        _fcntl(fd, _SETLK, _UNLOCK_LIFECYCLE)
        raise
    _fcntl(fd, _SETLK, _UNLOCK_LIFECYCLE)
    if close and lifecycle >= 0:
        try:  # noqa: SIM105
            os.close(fd)
        except OSError:
            pass
    return lifecycle


def _names(name: str, dir_fd: int, dev: int, ino: int) -> bool:
    """Whether `name` (in dir_fd) denotes the file (dev, ino) now."""
    try:
        named = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return named.st_dev == dev and named.st_ino == ino


# Chosen once: the C calls when the extension is built, else their twins.
create = calls.create if calls else _create
create_private = calls.create_private if calls else _create_private
publish = calls.publish if calls else _publish
lock_lifecycle = calls.lock_lifecycle if calls else _lock_lifecycle
free_named = calls.free_named if calls else _free_named


def create_anonymous(
    size: int,
    mode: int,
    what: str,
    header: bytes | bytearray = b"",
    owner: Callable[[int], tuple[int, int]] | None = None,
) -> tuple[int, tuple[int, int]]:
    """A new unnamed segment of `size` bytes, memory reserved, starting with `header`.

    Returns its fd and its identity (st_dev, st_ino). `owner`, given the uid the new
    file got, says whom to give it to (uid, gid; -1: as it is) for its context to admit
    it (`trust.Writers.new_owner`). Small segments are made and reserved in one call
    (`create`: written whole), large ones reserved with posix_fallocate.
    """
    what = f"{what} of {size} bytes"
    if size <= WHOLE_WRITE_MAX:
        try:
            fd, uid, made_mode, dev, ino = create(directory_fd(), mode, header, size)
        except OSError as exc:
            raise translate(exc, what) from exc
        adopt(fd, uid, made_mode, mode, owner, what)
        return fd, (dev, ino)
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=directory_fd())
        try:
            made = os.fstat(fd)
        except BaseException:  # (^C too: nothing else would ever close it)
            os.close(fd)
            raise
    except OSError as exc:
        raise translate(exc, what) from exc
    adopt(fd, made.st_uid, made.st_mode, mode, owner, what)
    try:
        if size >= _CHECK_FREE_FROM and size > _free_bytes(fd):
            # tmpfs refuses at once only what exceeds its *total* size; anything between
            # free and total it fills page by page before failing, which on a RAM-sized
            # /dev/shm can wake the out-of-memory killer for the whole machine.
            raise OSError(errno.ENOSPC, "larger than the free space")
        os.posix_fallocate(fd, 0, size)
        if header:
            os.pwrite(fd, header, 0)
    except BaseException as exc:  # (a ^C while it reserves: ~1 s per GB of fresh pages)
        os.close(fd)  # an anonymous file vanishes with its last descriptor
        if isinstance(exc, OSError):
            raise translate(exc, what) from exc
        raise
    return fd, (made.st_dev, made.st_ino)


def adopt(
    fd: int,
    uid: int,
    made_mode: int,
    mode: int,
    owner: Callable[[int], tuple[int, int]] | None,
    what: str,
) -> None:
    """Give a new segment, made by `uid` with `made_mode`, the owner its context admits
    and exactly `mode`, whatever the umask; closed if that fails. (A nameless file is
    ours alone: what its fstat showed holds, so the usual case, a umask that leaves the
    mode and a context of our own, costs no call.)"""
    try:
        if owner is not None:
            new_uid, new_gid = owner(uid)
            if new_uid != -1 or new_gid != -1:
                os.fchown(fd, new_uid, new_gid)
        if stats.S_IMODE(made_mode) != mode:  # (after fchown, which keeps these bits)
            os.fchmod(fd, mode)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise translate(exc, what) from exc
        raise


WHOLE_WRITE_MAX = 64 << 10  # the largest segment made and reserved by one `create`
_CHECK_FREE_FROM = 1 << 20


def _free_bytes(fd: int) -> int:
    found = os.fstatvfs(fd)
    return found.f_bavail * found.f_frsize
