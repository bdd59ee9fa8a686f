"""Crash-safe locks: Linux open-file-description (OFD) byte-range locks on a segment's fd.

The kernel drops these locks when the last descriptor of the open file goes, which
includes every kind of process death, so a `kill -9` can never leave a lock taken. Unlike
classic POSIX record locks they belong to one open() (not to the whole process), so two
references in one process exclude each other exactly as two processes do, and unlike
flock() several independent locks can live on one descriptor:

    REFERENCE_BYTE  shared by every open reference; exclusive only for whoever wants
                    proof that nobody references the segment (reclaim, recycling)
    MAP_BYTE        shared while mapped for reading, exclusive while mapped for writing
    LIFECYCLE_BYTE  exclusive while one process checks and changes the lifecycle
                    (publish, free), so that of two doing it at once exactly one does,
                    and while a name of the segment is removed (free, destroy, reclaim):
                    a name is removed only by whoever holds this lock and has checked,
                    under it, that the name still denotes this very file

A context's segment has its own bytes (see `registry`). No wait is ever endless unless
its caller asks for that (`map(timeout=math.inf)`): every other wait is bounded by the
caller's timeout or `default_wait()` ($CLARA_LOCK_TIMEOUT, 10 s), and a Timeout names
the processes that hold the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from _struct import Struct  # struct's C half (the module struct only re-exports it)

from ..errors import ClaraError, InvalidArgument, Timeout
from . import processes

REFERENCE_BYTE = 0
MAP_BYTE = 1
LIFECYCLE_BYTE = 2

# struct flock: l_type, l_whence, l_start, l_len, l_pid (must be 0 for OFD locks), padding.
_FLOCK = Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)


def _request(kind: int, byte: int) -> bytes:
    return _FLOCK.pack(kind, 0, byte, 1, 0)


class _Requests(dict):
    """Requests of one kind by byte, each packed once when first used (these run several
    times per get, map and unmap; a job's ready locks use bytes from 64 on)."""

    def __init__(self, kind: int) -> None:
        super().__init__((byte, _request(kind, byte)) for byte in range(8))
        self.kind = kind

    def __missing__(self, byte: int) -> bytes:
        packed = self[byte] = _request(self.kind, byte)
        return packed


_SHARED = _Requests(fcntl.F_RDLCK)
_EXCLUSIVE = _Requests(fcntl.F_WRLCK)
_UNLOCK = _Requests(fcntl.F_UNLCK)
_SETLK = fcntl.F_OFD_SETLK
_fcntl = fcntl.fcntl

DEFAULT_WAIT = 10.0  # seconds; $CLARA_LOCK_TIMEOUT overrides it
INFINITY = float("inf")  # math.inf, without loading math (start-up)
WAIT_ENV = "CLARA_LOCK_TIMEOUT"


def default_wait() -> float:
    """How long a bookkeeping lock is waited for: $CLARA_LOCK_TIMEOUT, else 10 s."""
    text = os.environ.get(WAIT_ENV)
    if not text:
        return DEFAULT_WAIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < INFINITY:
        raise InvalidArgument(f"invalid {WAIT_ENV} {text!r}: use seconds >= 0, e.g. 10")
    return value


def requests(byte: int) -> tuple[bytes, bytes, bytes]:
    """The (shared, exclusive, unlock) requests of `byte`, for the hot paths (every get,
    map and unmap) to issue themselves, a frame fewer than try_lock and unlock:
    ``fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)``; an OSError is then `busy`'s."""
    return _SHARED[byte], _EXCLUSIVE[byte], _UNLOCK[byte]


def busy(exc: OSError) -> bool:
    """After a try at a lock failed with `exc`: True if it is busy (held by others in a
    conflicting mode), else `exc` is raised (try_lock's answer, for callers of `requests`)."""
    if exc.errno in _BUSY:
        return True
    raise exc


def try_lock(fd: int, byte: int, exclusive: bool) -> bool:
    """Take the lock at once if nobody holds it in a conflicting mode; False if busy."""
    try:
        _fcntl(fd, _SETLK, (_EXCLUSIVE if exclusive else _SHARED)[byte])
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def lock(fd: int, byte: int, exclusive: bool, timeout: float) -> bool:
    """Take the lock, waiting up to `timeout` seconds (math.inf only if a user asked).

    Returns False if the lock was still busy when the time ran out. An endless wait
    sleeps in the kernel and wakes the moment the holder lets go; a bounded wait polls
    with a growing pause (50 us up to 5 ms), since the kernel offers no timed wait.
    """
    if try_lock(fd, byte, exclusive):
        return True
    if timeout == INFINITY:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, (_EXCLUSIVE if exclusive else _SHARED)[byte])
        return True
    deadline = time.monotonic() + timeout
    pause = 50e-6
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 5e-3)
        if try_lock(fd, byte, exclusive):
            return True


def acquire(fd: int, byte: int, exclusive: bool, what: str, timeout: float | None = None) -> None:
    """Take the lock within `timeout` seconds (None: `default_wait()`), else Timeout
    naming who holds it; `what` names the lock in the message."""
    if try_lock(fd, byte, exclusive):  # the usual case: no need to read the environment
        return
    wait = default_wait() if timeout is None else timeout
    if not lock(fd, byte, exclusive, wait):
        raise Timeout(f"waited {wait:g} s for {what}, held by {holders(fd, byte)}")


def holders(fd: int, byte: int) -> str:
    """Who holds a lock on `byte` of the open file `fd` (for messages)."""
    info = os.fstat(fd)
    found = processes.lock_holders((info.st_dev, info.st_ino), byte)
    if found:
        return ", ".join(str(holder) for holder in found)
    return "a process this user cannot see (another user's)"


class KernelWait:
    """A wait for a lock that sleeps in the kernel and still lets its caller look up.

    A helper thread blocks in F_OFD_SETLKW on a duplicate of `fd` (the same open file,
    so the lock it gets is `fd`'s) and wakes the moment the holder lets go; the caller
    waits for that in slices (`granted(seconds)`) and may look at anything in between,
    which a bounded poll (`lock`) does with a delay of up to 5 ms. A caller that gives
    up leaves the thread behind: it closes its duplicate once it has the lock (which
    goes with the open file, once the caller has closed `fd` too) or the process ends.
    Where no thread (or descriptor) can be had, `granted` polls as `lock` does.
    """

    def __init__(self, fd: int, byte: int, exclusive: bool, what: str = "a lock") -> None:
        import threading  # here: only waiting readers need it

        self._fd, self._byte, self._exclusive, self._what = fd, byte, exclusive, what
        self._done: threading.Event | None = None  # None: no thread, `granted` polls
        self._error: OSError | None = None
        request = (_EXCLUSIVE if exclusive else _SHARED)[byte]
        try:
            own = os.dup(fd)  # its own descriptor: `fd` may be closed while it waits
        except OSError:  # no descriptor to spare (EMFILE): a bounded poll does it too
            return
        done = threading.Event()

        def block() -> None:
            try:
                fcntl.fcntl(own, fcntl.F_OFD_SETLKW, request)
            except OSError as exc:
                self._error = exc
            finally:
                os.close(own)
                done.set()

        try:
            threading.Thread(target=block, name="clara-lock-wait", daemon=True).start()
        except RuntimeError:  # no thread to spare (RLIMIT_NPROC, a cgroup's pids.max):
            os.close(own)  # the poll then, rather than a traceback and a lost descriptor
            return
        self._done = done

    def granted(self, seconds: float) -> bool:
        """Whether the lock is held (by `fd`'s open file) within `seconds`; an error of
        the wait itself (the kernel's lock table full: ENOLCK ...) is a ClaraError
        naming `what`."""
        try:
            if self._done is None:
                return lock(self._fd, self._byte, self._exclusive, seconds)
            if not self._done.wait(seconds):
                return False
            if self._error is not None:
                raise self._error
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ClaraError(f"cannot wait for {self._what}: {reason}") from exc
        return True


def unlock(fd: int, byte: int) -> None:
    """Drop this descriptor's lock on `byte` (a no-op if it holds none)."""
    _fcntl(fd, _SETLK, _UNLOCK[byte])


def held_by_others(fd: int, byte: int, exclusive_only: bool = False) -> bool:
    """Whether any other open file holds a lock on `byte` (only write locks if asked)."""
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, (_SHARED if exclusive_only else _EXCLUSIVE)[byte])
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
