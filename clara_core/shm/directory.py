"""The shared-memory directory and the names in it.

A segment is a file in the shared-memory directory (/dev/shm: what shm_open(3) opens on
Linux). This module holds the directory's descriptor (opened once, and refused if its
owner or mode would let others rename or remove our segments) and does everything done
to a segment *by name* except opening it (`segment.open_segment`, the one safe open):

- naming an open segment (publishing) is ``linkat(2)``, which is atomic and fails if the
  name is taken: the directory itself is the registry, so a crash can never leave a
  half-made entry;
- unlinking a name stops new opens, while descriptors and maps already held stay valid:
  the kernel frees the memory when the last of them is gone. A name is removed only by
  `remove_name`, which checks that it still denotes the file the caller holds (under a
  lock every remover takes).

OSErrors are translated here (`translate`) into clara_core's errors, naming the object.
"""

from __future__ import annotations

import errno
import os
import stat as stats

from ..errors import (
    AlreadyExists,
    ClaraError,
    Corrupt,
    InvalidArgument,
    NotFound,
    OutOfSpace,
    PermissionDenied,
)
from ..names import shm_dir, shm_dir_setting
from . import libc
from .native import calls
from .trust import user_name

# The two calls os lacks: the C extension's where it is built (ctypes, which libc's twins
# load, costs a process ~1.8 ms at its first publish), else libc's twins.
_link_open_file = calls.link_open_file if calls else libc.link_open_file
_rename_new = calls.rename_new if calls else libc.rename_new

_directory_fds: dict[str, int] = {}  # canonical path -> its descriptor
# $CLARA_SHM_DIR as set -> the descriptor of what shm_dir() makes of it: every open,
# link and unlink needs it, and this is one dictionary lookup. (Read by segment's open;
# changed only here, and never rebound.)
fd_by_setting: dict[object, int] = {}


def directory_fd() -> int:
    """An open descriptor of the shared-memory directory (opened once per directory).

    The directory must belong to root or to this user, and be sticky if others may
    write in it (as /dev/shm is): otherwise whoever owns it could rename or remove our
    segments at will.
    """
    setting = shm_dir_setting()
    fd = fd_by_setting.get(setting)
    if fd is not None:  # (segment.open_unpacked repeats this lookup to save a frame)
        return fd
    path = shm_dir()
    fd = _directory_fds.get(path)
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise translate(exc, f"shared-memory directory {path}") from exc
        try:
            _check_directory(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        _directory_fds[path] = fd
    fd_by_setting[setting] = fd
    return fd


def _check_directory(found: os.stat_result, path: str) -> None:
    if found.st_uid not in (0, os.geteuid()):
        raise InvalidArgument(
            f"shared-memory directory {path} belongs to {user_name(found.st_uid)}, who could "
            "remove or replace every segment in it: use one of root's or your own "
            "(check CLARA_SHM_DIR)"
        )
    if found.st_mode & 0o022 and not found.st_mode & stats.S_ISVTX:
        raise InvalidArgument(
            f"shared-memory directory {path} may be written by other users but is not "
            "sticky, so they could remove or replace our segments: `chmod +t` it, or "
            "use another (check CLARA_SHM_DIR)"
        )


def forget_directory(path: str) -> None:
    """Close the cached descriptor of a shared-memory directory (before unmounting it)."""
    fd = _directory_fds.pop(path, None)
    if fd is not None:
        for setting in [key for key, value in fd_by_setting.items() if value == fd]:
            del fd_by_setting[setting]
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
    if code == errno.EOPNOTSUPP:  # (ENOTSUP: the same on Linux) no O_TMPFILE, fallocate ...
        return InvalidArgument(
            f"{what}: {os.strerror(code)}: the shared-memory directory {shm_dir()} cannot "
            "hold clara's segments (check CLARA_SHM_DIR: a tmpfs, such as /dev/shm)"
        )
    if code in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
        return Corrupt(f"{what} is not a clara segment ({os.strerror(code).lower()})")
    if code in (errno.EMFILE, errno.ENFILE):
        return ClaraError(f"{what}: too many open files; release allocations you no longer use")
    return ClaraError(f"{what}: {os.strerror(code) if code else exc}")


def names_file(file_name: str, file_id: tuple[int, int]) -> bool:
    """Whether `file_name` (still) denotes the file (st_dev, st_ino) = `file_id`."""
    found = stat_named(file_name)
    return found is not None and (found.st_dev, found.st_ino) == file_id


def removable(found: os.stat_result) -> bool:
    """Whether this process may remove a name of the file whose stat is `found`: in a
    sticky directory (as /dev/shm) only the file's owner, the directory's, or root may,
    so a name another user made stays, whatever we do (then give it no other name)."""
    euid = os.geteuid()
    if euid in (0, found.st_uid):
        return True
    directory = os.fstat(directory_fd())
    return directory.st_uid == euid or not directory.st_mode & stats.S_ISVTX


def check_removable(fd: int, what: str) -> None:
    """PermissionDenied unless this process may remove the names of the open file `fd`
    (see `removable`)."""
    try:
        found = os.fstat(fd)
        if removable(found):
            return
    except OSError as exc:
        raise translate(exc, what) from exc
    raise PermissionDenied(
        f"{what} was made by {user_name(found.st_uid)}: only they or root may give it "
        "another name (the shared-memory directory is sticky: its name is theirs to remove)"
    )


def remove_name(file_name: str, file_id: tuple[int, int], what: str = "") -> bool:
    """Remove `file_name` if it still denotes the file `file_id`; False if it does not.

    The check and the unlink are two calls: the caller must hold the lock that every
    remover of this name takes (a segment's LIFECYCLE_BYTE; see `locks`), so that
    nobody can remove the name and give it to another file in between.
    """
    if not names_file(file_name, file_id):
        return False
    return unlink(file_name, what)


def link(fd: int, file_name: str, what: str) -> None:
    """Give the segment open at `fd` the name `file_name`; AlreadyExists if taken."""
    global _empty_path
    directory = directory_fd()
    if _empty_path:  # naming the open file itself costs less than a walk through /proc
        try:
            _link_open_file(fd, directory, file_name)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EPERM, errno.EINVAL):
                raise translate(exc, what) from exc
    try:
        os.link(
            f"/proc/self/fd/{fd}",
            file_name,
            src_dir_fd=directory,  # any dir fd makes Python use linkat(AT_SYMLINK_FOLLOW)
            dst_dir_fd=directory,
            follow_symlinks=True,
        )
    except OSError as exc:
        raise translate(exc, what) from exc
    _empty_path = False  # /proc/self/fd works where AT_EMPTY_PATH did not: from now on


_empty_path = True  # linkat(AT_EMPTY_PATH) still worth trying (see link)


def links_open_files() -> bool:
    """Whether linkat(AT_EMPTY_PATH) names an open file here (else `link` goes through
    /proc), as far as known: a caller may try it itself, and then calls `link` if not."""
    return _empty_path


def unlink(file_name: str, what: str = "") -> bool:
    """Remove a name; False if it was already gone."""
    try:
        os.unlink(file_name, dir_fd=directory_fd())
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise translate(exc, what or f"segment {file_name}") from exc
    return True


def rename_new(old: str, new: str, what: str) -> None:
    """Atomically rename a segment to a name nobody uses (AlreadyExists if one does)."""
    try:
        _rename_new(directory_fd(), old, new)
    except OSError as exc:
        raise translate(exc, what) from exc


def stat_named(file_name: str) -> os.stat_result | None:
    """stat of a name (not following a symbolic link), or None if there is none."""
    try:
        return os.stat(file_name, dir_fd=directory_fd(), follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise translate(exc, f"segment {file_name}") from exc
