"""The kernel calls Python's os module does not offer, through ctypes (loaded on first use).

Each returns like its os counterpart would: None, or raises OSError with the errno (and
ValueError for a name with a NUL byte). link_open_file and rename_new are the twins of
the C extension's (shm/c/naming.c), used without it (shm/directory.py).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

AT_EMPTY_PATH = 0x1000
_RENAME_NOREPLACE = 1
_libc: Any = None
_get_errno: Any = None
# What os.fsencode does to a str, without its Python frames (a link on every publish).
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _load() -> Any:
    global _libc, _get_errno
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    number, text = ctypes.c_int, ctypes.c_char_p
    libc.linkat.argtypes = [number, text, number, text, number]
    libc.renameat2.argtypes = [number, text, number, text, ctypes.c_uint]
    _get_errno = ctypes.get_errno
    _libc = libc
    return libc


def _failed() -> OSError:
    code = _get_errno()
    return OSError(code, os.strerror(code))


def link_open_file(fd: int, dir_fd: int, name: str) -> None:
    """linkat(fd, "", dir_fd, name, AT_EMPTY_PATH): give the open file `fd` a name.

    Linux 6.10+ allows it to whoever opened the file (with the same credentials), older
    kernels only to CAP_DAC_READ_SEARCH; a refusal is ENOENT.
    """
    libc = _libc or _load()
    if libc.linkat(fd, b"", dir_fd, _encoded(name), AT_EMPTY_PATH):
        raise _failed()


def rename_new(dir_fd: int, old: str, new: str) -> None:
    """renameat2(RENAME_NOREPLACE) within one directory: EEXIST if `new` exists."""
    libc = _libc or _load()
    if libc.renameat2(dir_fd, _encoded(old), dir_fd, _encoded(new), _RENAME_NOREPLACE):
        raise _failed()


def _encoded(name: str) -> bytes:
    """`name` for the file system, as os functions (and the C calls) take it: a str,
    bytes or a path (else TypeError), ValueError on a NUL byte, which a char * would
    silently cut the name at."""
    encoded = name.encode(_FS_ENCODING, _FS_ERRORS) if type(name) is str else os.fsencode(name)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    return encoded
