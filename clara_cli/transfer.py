"""Streaming copies between a file or pipe and a mapped allocation, in chunks.

Nothing here imports numpy: raw data goes straight between the file descriptor and the
map's memoryview (one read(2) into the shared memory, one write(2) out of it). A progress
bar appears on stderr only when stderr is a terminal and the copy is long; rich is
imported only then.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from clara_core.errors import ClaraError, Corrupt, InvalidArgument, OutOfSpace, PermissionDenied
from clara_core.shm.header import MAGIC  # how every segment starts

from . import exits

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from clara_core import Mapping

    Advance = Callable[[int], None]  # told how many more bytes were copied

CHUNK = 8 << 20  # 8 MiB: large enough to amortise syscalls, small enough to stay cache-warm
PROGRESS_FROM = 64 << 20  # copies shorter than this finish before a bar is worth drawing

# What sendfile and splice answer for files they cannot copy between.
_NO_KERNEL_COPY = (errno.EINVAL, errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP)


class ShortInput(Exception):
    """The input ended before the allocation was full (`.got` bytes of `.wanted`)."""

    def __init__(self, got: int, wanted: int) -> None:
        super().__init__(f"{got} of {wanted} bytes")
        self.got, self.wanted = got, wanted


class LongInput(Exception):
    """The input holds more bytes than the allocation."""


def file_error(exc: OSError, path: str, action: str) -> ClaraError:
    """The clara error for a failed read or write of a user's file."""
    where = "standard input" if path == "-" and action == "read" else path
    where = "standard output" if path == "-" and action == "write" else where
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EFAULT:  # the kernel met a mapped page the file no longer has
        return Corrupt(
            "the shared memory was cut short while being copied (another process "
            "truncated its segment)"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutOfSpace(f"cannot {action} {where}: {reason}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"cannot {action} {where}: {reason}")
    return InvalidArgument(f"cannot {action} {where}: {reason}")


def open_input(path: str) -> BinaryIO:
    """An unbuffered binary reader of `path`, or of standard input for '-'."""
    try:
        if path == "-":
            _check_open_at_start(0)
            return open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise file_error(exc, path, "read") from exc


def open_fifo(path: str) -> int | None:
    """The write end of `path` if it is a FIFO, once it has a reader; else None.

    Call it before taking the read map: a FIFO's open waits for its reader for as long as
    it takes, and that wait must not hold the lock that the allocation's writers wait for.
    """
    if path == "-":
        return None
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return None  # (opened after the map, as before: it may not even exist)
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, "write") from exc


def open_output(
    path: str, forbidden: tuple[int, int] | None = None, opened: int | None = None
) -> BinaryIO:
    """An unbuffered binary writer of `path` (truncated), or of standard output for '-'.

    `forbidden` is the (device, inode) of the segment being read: an output that is the
    segment itself (under any name) is refused before anything is truncated, and so is
    any other clara segment (another allocation, a context: its users would lose it).
    `opened`: a descriptor of `path` already open for writing (`open_fifo`), checked the
    same way.
    """
    try:
        if opened is not None:
            fd = opened
        elif path == "-":
            _check_open_at_start(1)
            sys.stdout.flush()
            fd = os.dup(sys.stdout.fileno())
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            found = os.fstat(fd)
            if forbidden is not None and (found.st_dev, found.st_ino) == forbidden:
                where = "standard output" if path == "-" else path
                raise InvalidArgument(
                    f"{where} is the very segment being read: writing it would destroy "
                    "what is read; choose another output"
                )
            if path != "-" and stat.S_ISREG(found.st_mode):
                if found.st_size >= len(MAGIC) and _starts_with_magic(fd):
                    raise InvalidArgument(
                        f"{path} is a clara segment: writing it would destroy it for "
                        "everyone using it; choose another output"
                    )
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return open(fd, "wb", buffering=0)
    except OSError as exc:
        raise file_error(exc, path, "write") from exc


def _starts_with_magic(fd: int) -> bool:
    """Whether the regular file open (for writing) at `fd` starts as a segment does: read
    through a new open of that very file (not of its name), if we may read it."""
    try:
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # write-only to us: not a segment of ours to protect
        return False
    try:
        return os.pread(reader, len(MAGIC), 0) == MAGIC
    finally:
        os.close(reader)


def require_stdout() -> None:
    """Refuse, before it acts, a command whose result is what it prints (`clara create
    allocation`'s name or handle) when stdout was closed at start: nobody would learn it."""
    try:
        _check_open_at_start(1)
    except OSError as exc:
        raise file_error(exc, "-", "write") from exc


def _check_open_at_start(fd: int) -> None:
    """A standard stream closed when clara started holds /dev/null now: copying from or
    to it would lose the data silently."""
    if fd in exits.closed_at_start:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


def regular_size(stream: BinaryIO) -> int | None:
    """Bytes left to read in a regular file, or None for a pipe, socket or terminal."""
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return info.st_size - stream.tell()
    except OSError:
        return None


def fill(buffer: memoryview, stream: BinaryIO, path: str, advance: Advance) -> None:
    """Read exactly len(buffer) bytes from `stream` into `buffer`.

    ShortInput if the stream ends early, LongInput if more bytes follow.
    """
    view = buffer.cast("B") if buffer.format != "B" else buffer
    total, done = len(view), 0
    try:
        while done < total:
            got = stream.readinto(view[done : done + CHUNK])
            if not got:
                raise ShortInput(done, total)
            done += got
            advance(got)
        if stream.read(1):
            raise LongInput()
    except OSError as exc:
        raise file_error(exc, path, "read") from exc


def plain_fd(stream: BinaryIO) -> int | None:
    """The file descriptor under `stream` if the kernel can copy to or from it directly
    (a blocking file or pipe), else None (e.g. an in-memory stream)."""
    try:
        fd = stream.fileno()
        return fd if os.get_blocking(fd) else None
    except (AttributeError, OSError, ValueError):
        return None


def fill_from(mapping: Mapping, stream: BinaryIO, path: str, advance: Advance) -> None:
    """Fill a write map from `stream`, as fill() does: kernel to kernel when it is a plain
    file descriptor (no page of the map touched, so no SIGBUS if the segment is cut
    short), else through the map's buffer."""
    fd = plain_fd(stream)
    if fd is not None:
        copied = 0

        def counted(count: int) -> None:
            nonlocal copied
            copied += count
            advance(count)

        try:
            got = mapping.copy_from(fd, counted)
        except OSError as exc:
            if copied or exc.errno not in (
                errno.EINVAL,
                errno.EXDEV,
                errno.ENOSYS,
                errno.EOPNOTSUPP,
            ):
                raise file_error(exc, path, "read") from exc
            # these files take no kernel copy (nothing was copied): copy by hand
        else:
            if got < mapping.nbytes:
                raise ShortInput(got, mapping.nbytes)
            try:
                if stream.read(1):
                    raise LongInput()
            except OSError as exc:
                raise file_error(exc, path, "read") from exc
            return
    fill(mapping.buffer, stream, path, advance)


def drain(buffer: memoryview, stream: BinaryIO, path: str, advance: Advance) -> None:
    """Write all of `buffer` to `stream`."""
    view = buffer.cast("B") if buffer.format != "B" else buffer
    total, done = len(view), 0
    try:
        while done < total:
            put = stream.write(view[done : done + CHUNK])
            if put is None:  # non-blocking output that is full: wait a moment
                import select

                select.select([], [stream], [])
                continue
            done += put
            advance(put)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise file_error(exc, path, "write") from exc


def send(mapping: Mapping, stream: BinaryIO, path: str, advance: Advance) -> None:
    """Write a mapping's data to `stream`: kernel to kernel when it is a plain file
    descriptor (no page of the map touched), else through the map's buffer."""
    fd = plain_fd(stream)
    if fd is not None:
        stream.flush()
        try:
            mapping.copy_to(fd, advance)
            return
        except BrokenPipeError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise file_error(exc, path, "write") from exc
            # this kind of file takes no sendfile (nothing was written): copy by hand
    drain(mapping.buffer, stream, path, advance)


class Progress:
    """A progress bar on stderr for long copies in a terminal; otherwise it does nothing."""

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self._bar = None
        self._task = None

    def __enter__(self) -> Advance:
        if self.total < PROGRESS_FROM or not sys.stderr.isatty():
            return _nothing
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        from .render import console

        self._bar = Progress(
            "{task.description}",
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total)
        bar, task = self._bar, self._task
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _nothing(_n: int) -> None:
    pass
