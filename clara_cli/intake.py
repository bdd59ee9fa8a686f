"""How much input of unknown length `--in` takes in before it stops: never a read that
does not end (`--in /dev/zero`, `yes |`), nor one that exhausts memory.

Raw data from a pipe is held in memory until its end gives its length (formats.length):
it may hold no more than shared memory has free, nor more than a third of the memory
available (it is held in chunks, joined, then copied into its allocation); a character
device that is not a terminal (/dev/zero) is refused at once. Text is parsed as it
is read (formats._load_text): at most `TEXT_PER_NUMBER` bytes a number the allocation
holds (plus `TEXT_SLACK` for comments), or, with no shape to count by, at most as many
numbers as the room above holds; a NUL byte ends it at once (it is not text).
"""

from __future__ import annotations

import io
import os
import stat

from clara_core.dtypes import format_size
from clara_core.errors import InvalidArgument, OutOfSpace

from .transfer import CHUNK, file_error

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import BinaryIO

TEXT_PER_NUMBER = 64  # "(-1.2345678901234567e+308-1.2345678901234567e+308j) " is 53
TEXT_SLACK = 1 << 20  # comments, blank lines


def room(where: str) -> tuple[int, str]:
    """The most bytes of data of unknown length clara takes in, and why that many."""
    from clara_core.names import shm_dir
    from clara_core.shm.system import meminfo

    directory = shm_dir()
    try:
        stats = os.statvfs(directory)
        free = stats.f_bavail * stats.f_frsize
    except OSError:
        free = None
    held = meminfo().get("MemAvailable")
    held = held // 3 if held is not None else None  # (in chunks, joined, then in shm)
    if free is not None and (held is None or free <= held):
        return free, f"{format_size(free)} free in {directory}"
    if held is not None:
        return held, (
            f"{format_size(held)}, a third of the memory available: {where} is held in memory "
            "until its end gives its length; give --size or --shape to stream it instead"
        )
    return 1 << 62, "no limit"


def read_whole(stream: BinaryIO, path: str, where: str) -> bytes:
    """All that is left in `stream` (a pipe: its length is known only at its end), up to
    `room`: OutOfSpace past it. A character device that is no terminal is refused at
    its first byte (/dev/zero never ends); /dev/null is empty."""
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        found = None
    if found is not None and stat.S_ISCHR(found.st_mode) and not os.isatty(stream.fileno()):
        try:
            first = stream.read(1)
        except OSError as exc:
            raise file_error(exc, path, "read") from exc
        if not first:  # (/dev/null: empty, as an empty file is)
            return b""
        raise InvalidArgument(
            f"{where} is a character device that never ends: there is no length to size "
            "the allocation by"
        )
    limit, reason = room(where)
    chunks, done = [], 0
    try:
        while chunk := stream.read(min(CHUNK, limit + 1 - done)):
            done += len(chunk)
            if done > limit:  # (`yes |`: it would never end)
                break
            chunks.append(chunk)
    except OSError as exc:
        raise file_error(exc, path, "read") from exc
    if done > limit:
        raise OutOfSpace(f"{where} holds more than {format_size(limit)} ({reason})")
    return b"".join(chunks)


def text_limit(count: int | None, itemsize: int, where: str) -> tuple[int, Exception]:
    """The most bytes of text to read for `count` numbers (None: not known yet, as many as
    fit the room), and the error to raise past it."""
    if count is not None:
        limit = count * TEXT_PER_NUMBER + TEXT_SLACK
        return limit, InvalidArgument(
            f"{where} holds more text than {count} number{'s' if count != 1 else ''} take "
            f"(more than {format_size(limit)})"
        )
    most, reason = room(where)
    # two bytes a number at least ("1\n"): no more numbers read than fit the room
    limit = 2 * (most // itemsize) + 2
    return limit, OutOfSpace(
        f"{where} holds more numbers than fit in {format_size(most)} ({reason})"
    )


class NotText(Exception):
    """The input holds a NUL byte: whatever it is, it is not numbers as text."""


class BoundedReader(io.RawIOBase):
    """A reader of `stream` that raises `error` once more than `limit` bytes came, and
    NotText at a NUL byte."""

    def __init__(self, stream: BinaryIO, limit: int, error: Exception) -> None:
        super().__init__()
        self.stream, self.limit, self.error, self.done = stream, limit, error, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        got = self.stream.readinto(buffer)
        if got:
            self.done += got
            if self.done > self.limit:
                raise self.error
            if b"\0" in bytes(memoryview(buffer)[:got]):
                raise NotText()
        return got or 0
