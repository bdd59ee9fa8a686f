"""Clara's name rule, and how user names become file names in the shared-memory directory.

User names are 1-255 characters of ``[A-Za-z0-9_-]``, compared case-insensitively. File
names must be short and unique, so each part is lower-cased and, when too long, cut and
suffixed with ``~`` plus a hash (``~`` never occurs in a valid name, so a hashed name cannot
collide with a plain one). The full user name is kept in the segment header.

Layout of the files of one namespace (default ``clara``, or ``$CLARA_NAMESPACE``)::

    <ns>.<context>                 the context's own segment (its header: owner, mode, ...)
    <ns>.<context>.a.<name>        an allocation published under <name>
    <ns>.<context>.h.<handle>      a private allocation given a handle (`make_handle`)
    <ns>.<context>.p.<id>          a freed segment kept in the context's recycling pool
"""

from __future__ import annotations

import os
from _functools import partial  # (functools' C half: functools itself loads more)

from .errors import InvalidArgument

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

NAME_MAX_CHARS = 255
DEFAULT_NAMESPACE = "clara"
DEFAULT_SHM_DIR = "/dev/shm"

NAMESPACE_MAX_CHARS = 64
# What a name may be made of. Checked with str.strip, not a regular expression: `re` costs
# every start-up of `clara` ~3 ms (it imports enum, functools ...), see clara_cli.fastpath.
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_CONTEXT_TOKEN_CHARS = 80
_NAME_TOKEN_CHARS = 100

PUBLISHED = "a"
HANDLE = "h"
POOLED = "p"
KINDS = (PUBLISHED, HANDLE, POOLED)


def validate_name(name: object, what: str = "name") -> str:
    """Return `name` if it follows Clara's name rule, else raise InvalidArgument."""
    if isinstance(name, str) and _made_of_name_chars(name, NAME_MAX_CHARS):
        return name
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise InvalidArgument(
        f"invalid {what} {shown}: use 1-{NAME_MAX_CHARS} characters of A-Z, a-z, 0-9, '_' and '-'"
    )


def _made_of_name_chars(text: str, most: int) -> bool:
    """Whether `text` has 1 to `most` characters, each one of A-Z, a-z, 0-9, '_' and '-'."""
    # strip() removes the allowed characters from both ends: all of them only if every
    # character is allowed.
    return 0 < len(text) <= most and not text.strip(_NAME_CHARS)


def same_name(a: str, b: str) -> bool:
    """Whether two valid names denote the same object (names are case-insensitive)."""
    return a.lower() == b.lower()


def namespace() -> str:
    """The namespace every file name starts with: `$CLARA_NAMESPACE`, or 'clara'."""
    value = os.environ.get("CLARA_NAMESPACE") or DEFAULT_NAMESPACE
    if not _made_of_name_chars(value, NAMESPACE_MAX_CHARS):
        raise InvalidArgument(
            f"invalid CLARA_NAMESPACE {value!r}: use 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
        )
    return value


def shm_dir() -> str:
    """The shared-memory directory: `$CLARA_SHM_DIR`, or /dev/shm, as a canonical path.

    Canonical (symbolic links resolved, no `//` or `..`) so that the path other tools see
    (/proc/PID/maps, CLARA_MAP_PATH) is the one we name.
    """
    given = _environment_value(SHM_DIR_ENV) or DEFAULT_SHM_DIR
    path = _canonical.get(given)
    if path is None:
        path = _canonical[given] = os.path.realpath(given)
    return path


_canonical: dict[str, str] = {}
SHM_DIR_ENV = b"CLARA_SHM_DIR"
# os.environ.get costs a raised and caught KeyError (~1 us) for an unset variable, and
# shm_dir() runs on every open, link and unlink: read the dict os.environ keeps current
# (os.environ.get and os.environ["..."] = ... go through it; bytes on POSIX) directly.
_ENVIRON = getattr(os.environ, "_data", None)
if not isinstance(_ENVIRON, dict) or not all(isinstance(k, bytes) for k in _ENVIRON):
    _ENVIRON = None


def _shm_dir_setting() -> object:
    return os.environ.get(SHM_DIR_ENV.decode())


# $CLARA_SHM_DIR as set (None if unset), cheaply: a key for caches of what shm_dir()
# makes of it (which stays the same for a setting, see above). Every get asks: a C call
# (_ENVIRON.get bound to the name), no Python frame.
shm_dir_setting: Callable[[], object] = (
    _shm_dir_setting if _ENVIRON is None else partial(_ENVIRON.get, SHM_DIR_ENV)
)


def _environment_value(name: bytes) -> str | None:
    """The value of environment variable `name` (bytes), or None: os.environ's, faster."""
    if _ENVIRON is None:
        return os.environ.get(name.decode())
    value = _ENVIRON.get(name)
    return None if value is None else os.fsdecode(value)


def _token(name: str, limit: int) -> str:
    key = name.lower()
    if len(key) <= limit:
        return key
    import hashlib  # only for very long names

    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: limit - 17]}~{digest}"


def context_file(context: str) -> str:
    """File name of a context's own segment."""
    return f"{namespace()}.{_token(context, _CONTEXT_TOKEN_CHARS)}"


def member_prefix(context: str) -> str:
    """Prefix shared by the file names of every allocation of a context."""
    return context_file(context) + "."


def allocation_file(context: str, kind: str, name: str) -> str:
    """File name of an allocation of `kind` (published, handle or pooled) in a context."""
    return member_file(context_file(context), kind, name)


def member_file(context_file_name: str, kind: str, name: str) -> str:
    """File name of an allocation, given its context's file name."""
    return f"{context_file_name}.{kind}.{_token(name, _NAME_TOKEN_CHARS)}"


def parse_file_name(file_name: str, ns: str) -> tuple[str, str | None, str | None] | None:
    """Split a file name of namespace `ns` into (context token, kind, member token).

    Returns None for names outside the namespace; kind and member are None for a
    context's own segment.
    """
    if not file_name.startswith(ns + "."):
        return None
    parts = file_name[len(ns) + 1 :].split(".", 2)
    if len(parts) == 1 and parts[0]:
        return parts[0], None, None
    if len(parts) == 3 and parts[0] and parts[1] in KINDS and parts[2]:
        return parts[0], parts[1], parts[2]
    return None
