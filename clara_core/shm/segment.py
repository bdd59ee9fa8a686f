"""Every operating-system call on shared memory goes through here.

A segment is a file in the shared-memory directory (/dev/shm: what shm_open(3) opens on
Linux), used through its file descriptor:

- a new segment starts *anonymous* (``O_TMPFILE``): it has no name, so if its creator dies
  before naming it the kernel frees it; nothing can be orphaned;
- naming it (publishing) is ``linkat(2)``, which is atomic and fails if the name is taken:
  the directory itself is the registry, so a crash can never leave a half-made entry;
- ``posix_fallocate`` reserves the memory up front, so a full file system is a clean
  OutOfSpace at creation, never a SIGBUS in the middle of a write;
- unlinking a name stops new opens, while descriptors and maps already held stay valid:
  the kernel frees the memory when the last of them is gone.

OSErrors are translated here into clara_core's errors, naming the object (`what`).
"""

from __future__ import annotations

import errno
import os

from ..errors import (
    AlreadyExists,
    ClaraError,
    InvalidArgument,
    NotFound,
    OutOfSpace,
    PermissionDenied,
)
from ..names import shm_dir
from .header import HEADER_SIZE, Header, parse
from .memory import Region

_directory_fds: dict[str, int] = {}


def directory_fd() -> int:
    """An open descriptor of the shared-memory directory (opened once per directory)."""
    path = shm_dir()
    fd = _directory_fds.get(path)
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise translate(exc, f"shared-memory directory {path}") from exc
        _directory_fds[path] = fd
    return fd


def forget_directory(path: str) -> None:
    """Close the cached descriptor of a shared-memory directory (before unmounting it)."""
    fd = _directory_fds.pop(path, None)
    if fd is not None:
        os.close(fd)


def path_of(file_name: str) -> str:
    """Absolute path of a named segment."""
    return os.path.join(shm_dir(), file_name)


def translate(exc: OSError, what: str) -> ClaraError:
    """The clara_core error for an OSError met while working on `what`."""
    if isinstance(exc, ClaraError):  # already translated (e.g. by directory_fd)
        return exc
    code = exc.errno
    if code == errno.ENOENT:
        return NotFound(f"{what} does not exist")
    if code == errno.EEXIST:
        return AlreadyExists(f"{what} already exists; choose another name or free it first")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{what}: permission denied (it belongs to another user or mode)")
    if code in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM, errno.EDQUOT):
        return OutOfSpace(
            f"{what}: not enough shared memory ({os.strerror(code)}); free some, or check "
            f"`df -h {shm_dir()}`"
        )
    if code == errno.ENOTDIR:
        return InvalidArgument(f"{what} is not a directory (check CLARA_SHM_DIR)")
    if code in (errno.EMFILE, errno.ENFILE):
        return ClaraError(f"{what}: too many open files; release allocations you no longer use")
    return ClaraError(f"{what}: {os.strerror(code) if code else exc}")


def create_anonymous(size: int, mode: int, what: str, header: bytes = b"") -> int:
    """A new unnamed segment of `size` bytes, memory reserved, starting with `header`.

    Returns its fd. Small segments are reserved by writing them whole (one call), large
    ones with posix_fallocate (no copying).
    """
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=directory_fd())
    except OSError as exc:
        raise translate(exc, what) from exc
    try:
        os.fchmod(fd, mode)  # exact mode, whatever the umask
        if size >= _CHECK_FREE_FROM and size > _free_bytes(fd):
            # tmpfs refuses at once only what exceeds its *total* size; anything between
            # free and total it fills page by page before failing, which on a RAM-sized
            # /dev/shm can wake the out-of-memory killer for the whole machine.
            raise OSError(errno.ENOSPC, "larger than the free space")
        if size <= _WRITE_WHOLE_BELOW:
            if os.pwrite(fd, header + bytes(size - len(header)), 0) < size:
                raise OSError(errno.ENOSPC, "short write")
        else:
            os.posix_fallocate(fd, 0, size)
            if header:
                os.pwrite(fd, header, 0)
    except OSError as exc:
        os.close(fd)  # an anonymous file vanishes with its last descriptor
        raise translate(exc, f"{what} of {size} bytes") from exc
    return fd


_WRITE_WHOLE_BELOW = 64 << 10
_CHECK_FREE_FROM = 1 << 20


def _free_bytes(fd: int) -> int:
    stats = os.fstatvfs(fd)
    return stats.f_bavail * stats.f_frsize


_POPULATE_FROM = 256 << 10


def open_named(file_name: str, what: str, read_only: bool = False) -> tuple[int, bool]:
    """Open a named segment; returns (fd, writable).

    Opens read-only if asked, or if this user may only read it.
    """
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    dir_fd = directory_fd()
    if not read_only:
        try:
            return os.open(file_name, flags | os.O_RDWR, dir_fd=dir_fd), True
        except PermissionError:
            pass
        except OSError as exc:
            raise translate(exc, what) from exc
    try:
        return os.open(file_name, flags | os.O_RDONLY, dir_fd=dir_fd), False
    except OSError as exc:
        raise translate(exc, what) from exc


def read_header(fd: int, what: str) -> tuple[Header, os.stat_result]:
    """Read and validate the header of an open segment, with the segment's stat."""
    try:
        stat = os.fstat(fd)
        raw = os.pread(fd, HEADER_SIZE, 0)
    except OSError as exc:
        raise translate(exc, what) from exc
    return parse(raw, stat.st_size, what), stat


def write_at(fd: int, data: bytes, offset: int, what: str) -> None:
    """Write header bytes at `offset` of an open segment."""
    try:
        os.pwrite(fd, data, offset)
    except OSError as exc:
        raise translate(exc, what) from exc


def link(fd: int, file_name: str, what: str) -> None:
    """Give the segment open at `fd` the name `file_name`; AlreadyExists if taken."""
    try:
        os.link(
            f"/proc/self/fd/{fd}",
            file_name,
            src_dir_fd=directory_fd(),  # any dir fd makes Python use linkat(AT_SYMLINK_FOLLOW)
            dst_dir_fd=directory_fd(),
            follow_symlinks=True,
        )
    except OSError as exc:
        raise translate(exc, what) from exc


def unlink(file_name: str, what: str = "") -> bool:
    """Remove a name; False if it was already gone."""
    try:
        os.unlink(file_name, dir_fd=directory_fd())
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise translate(exc, what or f"segment {file_name}") from exc
    return True


def rename(old: str, new: str, what: str) -> None:
    """Atomically rename a segment (the new name must not be in use)."""
    try:
        os.rename(old, new, src_dir_fd=directory_fd(), dst_dir_fd=directory_fd())
    except OSError as exc:
        raise translate(exc, what) from exc


def stat_named(file_name: str) -> os.stat_result | None:
    """stat of a named segment, or None if there is none."""
    try:
        return os.stat(file_name, dir_fd=directory_fd(), follow_symlinks=False)
    except FileNotFoundError:
        return None


def list_names(prefix: str) -> list[str]:
    """Names in the shared-memory directory that start with `prefix`, sorted."""
    try:
        entries = os.listdir(directory_fd())
    except OSError as exc:
        raise translate(exc, f"shared-memory directory {shm_dir()}") from exc
    return sorted(name for name in entries if name.startswith(prefix))


def total_size(file_names: list[str]) -> int:
    """Sum of the sizes of the named segments that still exist."""
    sizes = (stat_named(name) for name in file_names)
    return sum(stat.st_size for stat in sizes if stat is not None)


def map_segment(fd: int, length: int, writable: bool, what: str, populate: bool = False) -> Region:
    """Map the first `length` bytes of a segment, read-only unless `writable`.

    `populate` maps every page now (one kernel call) instead of one fault per page; it
    only pays off for large mappings, so small ones always fault their few pages in.
    """
    try:
        return Region.map(fd, length, writable, populate and length >= _POPULATE_FROM)
    except OSError as exc:
        raise translate(exc, what) from exc
