"""Reading the text of a file a user names (a pipeline file, a bindings file), bounded.

A pipeline file is YAML a person writes: a few KiB. Whatever is named instead must end in
an error, never in a read that does not end (`clara validate /dev/zero`) nor in a wait
for a writer that never comes (a FIFO nobody opens): devices and sockets are refused
before they are opened (an open can act: a tape rewinds), a FIFO or pipe is read as `cat`
reads it, its writer waited for (never `WRITER_WAIT` seconds without a byte), and nothing
is read past `LIMIT`.
"""

from __future__ import annotations

import os
import stat

from ..errors import InvalidArgument, NotFound, PermissionDenied

LIMIT = 4 << 20  # 4 MiB: far more than any pipeline file (~1 KiB an operator)
LIMIT_TEXT = "4 MiB"
WRITER_WAIT = 10  # seconds a pipe or FIFO may go without a byte (or its writer's end)
_CHUNK = 1 << 20

# What a path names that is no file to read text from, as messages say it.
_NOT_FILES = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_text(path: str, kind: str) -> str:
    """The text of the `kind` file at `path` (e.g. "pipeline"), newlines as "\\n".

    NotFound if it does not exist, PermissionDenied if we may not read it,
    InvalidArgument if it cannot be read (a directory, a device, a pipe or FIFO that goes
    WRITER_WAIT seconds without a byte),
    holds more than LIMIT bytes, or is not UTF-8.
    """
    data = _read_bytes(path, kind)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"cannot read {kind} file {path}: it is not UTF-8 text (byte {exc.start})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # (as open()'s universal newlines)


def _read_bytes(path: str, kind: str) -> bytes:
    try:
        what = _NOT_FILES.get(stat.S_IFMT(os.stat(path).st_mode))
        if what is not None:
            raise InvalidArgument(f"{kind} file {path} is {what}, not a file")
        # O_NONBLOCK: the open of a FIFO does not wait for a writer (see _read_pipe)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            found = os.fstat(fd)
            if stat.S_ISFIFO(found.st_mode):
                return _read_pipe(fd, path, kind)
            if stat.S_ISREG(found.st_mode) and found.st_size > LIMIT:
                raise _too_long(path, kind)
            return _read_at_most(fd, path, kind)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise NotFound(f"{kind} file {path} does not exist") from None
    except PermissionError as exc:
        raise PermissionDenied(f"cannot read {kind} file {path}: {exc.strerror}") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {kind} file {path}: {exc.strerror or exc}") from None


def _read_pipe(fd: int, path: str, kind: str) -> bytes:
    """A pipe or FIFO's text, read as `cat` reads it (a FIFO named before its writer
    opens it, `clara validate p & gen > p`, waits for it), to its writer's end; but never
    more than WRITER_WAIT seconds without a byte, then an error: no wait for a writer
    that may never come, or never go on."""
    import select

    ready = select.poll()
    ready.register(fd, select.POLLIN)  # (POLLHUP, POLLERR come unasked)
    chunks, done = [], 0
    # A FIFO that no writer has opened yet reports nothing (not even POLLHUP), and reads
    # as ended: read only once poll reports bytes, or a writer gone (then 0 is the end).
    while ready.poll(WRITER_WAIT * 1000):
        try:
            chunk = os.read(fd, min(_CHUNK, LIMIT + 1 - done))
        except BlockingIOError:  # another reader of the FIFO took the bytes
            continue
        if not chunk:
            return b"".join(chunks)
        done += len(chunk)
        if done > LIMIT:
            raise _too_long(path, kind)
        chunks.append(chunk)
    raise InvalidArgument(
        f"{kind} file {path} is a pipe or FIFO whose writer sent nothing for {WRITER_WAIT} s"
        + ("" if done else " (or has none)")
    )


def _read_at_most(fd: int, path: str, kind: str, done: int = 0) -> bytes:
    """What is left to read at `fd`; InvalidArgument once it passes LIMIT (with `done`
    bytes read before)."""
    chunks = []
    while chunk := os.read(fd, min(_CHUNK, LIMIT + 1 - done)):
        done += len(chunk)
        if done > LIMIT:
            raise _too_long(path, kind)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_long(path: str, kind: str) -> InvalidArgument:
    return InvalidArgument(
        f"{kind} file {path} holds more than {LIMIT_TEXT}, the most a {kind} file may hold"
    )
