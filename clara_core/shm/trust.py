"""Whose files we use: the rules that decide whether a file found under one of our names
may be used, and whether what its header claims may be acted on.

Anyone can create any name in the shared-memory directory, so a name proves nothing;
the kernel's facts about the file do. Only root can give a file away (chown), and a
user can give a file only a group they belong to, so a file's owner and group say who
made it:

- a **context** is used only if it belongs to this user or root, or to the owner its
  opener names (`Context.open(name, owner=...)`, `$CLARA_CONTEXT_OWNER`);
- a **member** of a context (published, handle, pooled) is used only if one of the
  context's writers made it: its owner; a member of its group if the context's mode
  lets the group write (660); anyone if it lets others write (666). Its permission bits
  may not grant more than the context's;
- a **header** is a claim, not a fact, when a user other than this one could have
  written it (its file is not ours, or its mode lets others write): its owner pid,
  holder pid, lifecycle and age are then never grounds for removing anything.

The mode that counts is the context segment's own permission bits, which only its owner
(or root) can change, never the mode written in its header.
"""

from __future__ import annotations

import os
import stat

# collections.abc's own module, which os loads at start-up (collections.abc would load
# collections too: ~2 ms of a `clara map` copy).
from _collections_abc import Callable

from ..errors import InvalidArgument
from ..records import Record

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from .access import FileStat

# A check of a file's stat (open_segment's FileStat, or a whole os.stat_result): None if
# it may be used, else the reason it may not.
Refusal = Callable[["FileStat | os.stat_result"], "str | None"]

GROUP_WRITES = 0o020
OTHERS_WRITE = 0o002
OWNER_ENV = "CLARA_CONTEXT_OWNER"

_TYPES = {
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def file_type(mode: int) -> str:
    """'a FIFO', 'a directory', ... for a stat's st_mode ('a regular file' for a file)."""
    return _TYPES.get(stat.S_IFMT(mode), "a regular file")


def checked_mode(mode: object) -> int:
    """Permission bits for a context's segments (an int, or octal digits: '640'), checked."""
    given = mode  # named as the caller wrote it: '999', not what it parsed to
    if isinstance(mode, str):
        try:
            mode = int(mode, 8)
        except ValueError:
            mode = -1
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
        shown = f"{given:o}" if isinstance(given, int) and not isinstance(given, bool) else given
        raise InvalidArgument(f"invalid mode {shown!r}: use octal permission bits such as 600")
    if mode & 0o600 != 0o600:
        raise InvalidArgument(f"invalid mode {mode:o}: the owner needs read and write (6xx)")
    return mode


_user_names: dict[int, str] = {}  # (a dict, not functools.lru_cache: start-up)
_USER_NAMES_KEPT = 256


def user_name(uid: int) -> str:
    """'uid 1000 (alice)', or just 'uid 1000' when the user has no name."""
    known = _user_names.get(uid)
    if known is None:
        import pwd

        try:
            known = f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
        except KeyError:
            known = f"uid {uid}"
        if len(_user_names) >= _USER_NAMES_KEPT:
            _user_names.clear()
        _user_names[uid] = known
    return known


class Writers(Record):
    """Who may write the segments of a context: from its segment's owner, group and mode."""

    uid: int
    gid: int
    mode: int  # permission bits of the context's own segment file

    @classmethod
    def of(cls, context: FileStat | os.stat_result) -> Writers:
        """The writers of the context whose segment has this stat."""
        return cls(context.st_uid, context.st_gid, stat.S_IMODE(context.st_mode))

    @property
    def shared(self) -> bool:
        """Whether users other than the owner may write (group- or other-writable)."""
        return bool(self.mode & (GROUP_WRITES | OTHERS_WRITE))

    def admits(self, member: FileStat | os.stat_result) -> bool:
        """Whether one of the writers made this member (see the module's rules)."""
        return self.refusal(member) is None

    def refusal(self, member: FileStat | os.stat_result) -> str | None:
        """None if the member may be used (one of the writers made it: see the module's
        rules), else why not (for messages). This runs on every get: one frame."""
        uid, gid, mode = self  # (one unpack, not three field lookups)
        more = stat.S_IMODE(member.st_mode) & ~mode  # grants what the context does not
        if not more and (
            member.st_uid == uid
            or mode & OTHERS_WRITE
            or (mode & GROUP_WRITES and member.st_gid == gid)
        ):
            return None
        if more:
            return (
                f"has mode {stat.S_IMODE(member.st_mode):o}, more than its context's "
                f"{mode:o}: clara did not make it"
            )
        return (
            f"belongs to another user ({user_name(member.st_uid)}), who may not write "
            f"into this context (mode {mode:o} of {user_name(uid)}): it was "
            "put there behind clara's back and is ignored"
        )

    def new_owner(self, me: int) -> tuple[int, int]:
        """(uid, gid) a new segment made by uid `me` (the owner it got) must get to be
        admitted (-1: leave as is).

        Root gives it to the context's owner; a group member gives it the context's
        group; the owner and, in a mode that lets others write, anyone leave it alone.
        """
        if me == self.uid or self.mode & OTHERS_WRITE:
            return -1, -1
        if me == 0:
            return self.uid, self.gid
        return -1, self.gid


def owner_refusal(owner: int | str | None = None) -> Refusal:
    """The check a context's segment must pass: it belongs to `owner` (a uid or user
    name; default `$CLARA_CONTEXT_OWNER`, else this user or root)."""
    wanted = owner if owner is not None else os.environ.get(OWNER_ENV) or None
    accepted = {os.geteuid(), 0} if wanted is None else {uid_of(wanted)}

    def refusal(found: FileStat | os.stat_result) -> str | None:
        if found.st_uid in accepted:
            return None
        if wanted is None:
            hint = (
                f"if you mean to use that user's context, say so with "
                f"owner={found.st_uid} (CLARA_CONTEXT_OWNER={found.st_uid})"
            )
        else:
            hint = f"not to {user_name(uid_of(wanted))} as asked"
        return f"belongs to {user_name(found.st_uid)}: {hint}"

    return refusal


def removable_refusal(found: FileStat | os.stat_result) -> str | None:
    """The check before removing a file: it is ours (root may remove anyone's)."""
    me = os.geteuid()
    if found.st_uid == me or me == 0:
        return None
    return f"belongs to {user_name(found.st_uid)}: only that user (or root) can remove it"


def ours_refusal(found: FileStat | os.stat_result) -> str | None:
    """The check for tooling that acts on our own files only (reclaim, evict)."""
    if found.st_uid == os.geteuid():
        return None
    return f"belongs to {user_name(found.st_uid)}, not to this user"


def header_trusted(uid: int, mode: int) -> bool:
    """Whether only this user (or root) can have written a file of this owner and mode."""
    return uid == os.geteuid() and not mode & (GROUP_WRITES | OTHERS_WRITE)


def uid_of(owner: int | str) -> int:
    """The uid `owner` names (a uid, or a user name); InvalidArgument if none."""
    if isinstance(owner, int) and not isinstance(owner, bool) and owner >= 0:
        return owner
    text = str(owner).strip()
    if text.isdigit():
        return int(text)
    import pwd

    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise InvalidArgument(f"invalid owner {owner!r}: no such user") from None
