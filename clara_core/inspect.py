"""Plain data about the segments of a namespace, read from the segments alone.

Nothing here trusts bookkeeping: sizes come from stat, metadata from each segment's
header, who maps what from /proc/*/maps, and whether anyone holds a reference or a map
from the kernel's locks. `clara dump` and `clara leak-check` are both built on `survey()`.

A member that its context does not admit (another user's file put there behind clara's
back, see `shm.trust`) is reported as `foreign` from its stat alone: never opened, never
read, never counted in a context's bytes. Neither is anything that is not a regular file.
The listings of contexts (`contexts()`, `context_members()`) do not even list such files:
they count them per context (`ContextSummary.foreign`), so that a crowd planted under a
context's names costs them one stat per file.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

from .errors import ClaraError, NotFound
from .names import (
    HANDLE,
    POOLED,
    PUBLISHED,
    context_file,
    namespace,
    parse_file_name,
    same_name,
    validate_name,
)
from .records import Record
from .shm import header as hdr
from .shm import listing, locks, segment
from .shm.header import Header
from .shm.locks import MAP_BYTE
from .shm.processes import FileId, Mapper, is_alive, lock_holders, mappers
from .shm.trust import Refusal, Writers, file_type, header_trusted, user_name

KIND_NAMES = {None: "context", PUBLISHED: "published", HANDLE: "handle", POOLED: "pooled"}


class SegmentInfo:
    """One named segment of the namespace, as found on disk and in the kernel.

    A plain class, filled in as the survey learns more (not a dataclass: importing
    dataclasses and building one costs every `clara dump` and `leak-check` ~1 ms)."""

    __slots__ = _SEGMENT_FIELDS = (
        "file_name",
        "kind",  # context, published, handle or pooled
        "context_token",
        "size",
        "uid",
        "file_id",
        "modified",
        "mode",  # permission bits
        "header",
        "problem",  # why the header could not be read (corrupt, permission)
        "foreign",  # not admitted by its context: never opened, read or counted
        "unusable",  # not a regular file, or this user cannot open it
        "referenced",  # another open file holds a reference to it
        "write_locked",  # mapped for writing by a live holder
        "read_locked",  # mapped for reading by a live holder
        "mapped_by",  # the live processes that map it
    )

    def __init__(
        self,
        file_name: str,
        kind: str,
        context_token: str,
        size: int,
        uid: int,
        file_id: FileId,
        modified: float,
        mode: int = 0o600,
        header: Header | None = None,
        problem: str | None = None,
        foreign: bool = False,
        unusable: bool = False,
        referenced: bool = False,
        write_locked: bool = False,
        read_locked: bool = False,
        mapped_by: list[Mapper] | None = None,
    ) -> None:
        self.file_name, self.kind, self.context_token = file_name, kind, context_token
        self.size, self.uid, self.file_id, self.modified = size, uid, file_id, modified
        self.mode, self.header, self.problem = mode, header, problem
        self.foreign, self.unusable, self.referenced = foreign, unusable, referenced
        self.write_locked, self.read_locked = write_locked, read_locked
        self.mapped_by: list[Mapper] = [] if mapped_by is None else mapped_by

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self._SEGMENT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # (mutable, as a dataclass's with eq)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._SEGMENT_FIELDS)
        return f"SegmentInfo({fields})"

    @property
    def trusted(self) -> bool:
        """Whether only this user can have written it: its header's claims may be acted on."""
        return header_trusted(self.uid, self.mode)

    @property
    def path(self) -> str:
        """Absolute path of the segment."""
        return segment.path_of(self.file_name)

    @property
    def context(self) -> str:
        """The context's name (from the header when readable)."""
        return self.header.context if self.header else self.context_token

    @property
    def name(self) -> str:
        """The allocation's name, handle or pool id ('' for a context segment)."""
        if self.kind == "published" and self.header:
            return self.header.name
        return "" if self.kind == "context" else self.file_name.rsplit(".", 1)[1]

    @property
    def created(self) -> float:
        """Creation time (seconds since the epoch)."""
        return self.header.origin.created_ns / 1e9 if self.header else self.modified

    @property
    def age(self) -> float:
        """Seconds since creation."""
        return max(0.0, time.time() - self.created)

    @property
    def in_use(self) -> bool:
        """Whether any live process references or maps it."""
        return self.referenced or self.write_locked or self.read_locked or bool(self.mapped_by)

    @property
    def state(self) -> str:
        """Data state: empty, writing, complete or incomplete ('' for contexts)."""
        if self.header is None or self.header.layout is None:
            return ""
        data_state = self.header.data.state
        if data_state == hdr.WRITING and not self.write_locked:
            return "incomplete"
        return hdr.DATA_STATES[data_state]

    @property
    def map_mode(self) -> str:
        """'write' or 'read' while someone holds a map of it, else ''.

        From the locks: a process may keep an idle mapping (`mapped_by`) without a map.
        """
        if self.write_locked:
            return "write"
        return "read" if self.read_locked else ""


def survey(prefix: str | None = None) -> list[SegmentInfo]:
    """Every named segment whose file name starts with `prefix` (default: the namespace)."""
    return _survey(prefix, foreign_rows=True)[0]


def _survey(
    prefix: str | None, foreign_rows: bool, token_only: str | None = None
) -> tuple[list[SegmentInfo], dict[str, int]]:
    """The segments under `prefix` (of the context token `token_only` alone, if given),
    and how many foreign members each context token has: with `foreign_rows` each of
    those is a SegmentInfo too, else it is only counted, from its stat (a planted crowd
    then costs one stat each and no object)."""
    ns = namespace()
    prefix = prefix or ns + "."
    found_infos = []
    foreign: dict[str, int] = {}
    # By name, a context's own segment comes before its members (its name is their
    # prefix), so its writers are known before any member is judged.
    rules: dict[str, tuple[Callable[[os.stat_result], bool], Refusal]] = {}
    for entry in listing.scan(prefix):
        parsed = parse_file_name(entry.name, ns)
        if parsed is None or (token_only is not None and parsed[0] != token_only):
            continue  # not ours; or another context whose name starts with this one's
        token, kind = parsed[0], parsed[1]
        try:
            found = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        if kind is None:
            if stat.S_ISREG(found.st_mode):
                writers = Writers.of(found)
                rules[token] = (writers.admits, writers.refusal)
            refusal = _anyone
        else:
            if (rule := rules.get(token)) is None:
                rule = rules[token] = _member_rule()
            if not rule[0](found):
                foreign[token] = foreign.get(token, 0) + 1
                if not foreign_rows:
                    continue
            refusal = rule[1]
        info = _inspect(entry.name, token, kind, found, refusal)
        if info is not None:
            found_infos.append(info)
    held = mappers({i.file_id for i in found_infos if not i.foreign and i.problem is None})
    for info in found_infos:
        info.mapped_by = held.get(info.file_id, [])
        if info.mapped_by and (info.write_locked or info.read_locked):
            # Who holds the map lock, and how; the others keep an idle mapping.
            locked = {m.pid: m for m in lock_holders(info.file_id, MAP_BYTE, info.mapped_by)}
            info.mapped_by = [locked.get(m.pid, m) for m in info.mapped_by]
    return found_infos, foreign


def _inspect(
    file_name: str,
    context_token: str,
    kind: str | None,
    found: os.stat_result,
    refusal: Refusal,
) -> SegmentInfo | None:
    info = SegmentInfo(
        file_name=file_name,
        kind=KIND_NAMES[kind],
        context_token=context_token,
        size=found.st_size,
        uid=found.st_uid,
        file_id=(found.st_dev, found.st_ino),
        modified=found.st_mtime,
        mode=stat.S_IMODE(found.st_mode),
    )
    if not stat.S_ISREG(found.st_mode):
        info.problem = f"{file_type(found.st_mode)} of {user_name(found.st_uid)}, not a segment"
        info.unusable = True
        return info
    why = refusal(found)
    if why is not None:
        info.foreign, info.problem = True, f"foreign: {why.split(':')[0]}"
        return info
    try:
        opened = segment.open_segment(file_name, file_name, refusal, read_only=True, header=False)
    except NotFound:
        return None  # removed meanwhile
    except ClaraError as exc:  # replaced meanwhile, or not readable by this user
        info.problem, info.unusable = str(exc), True
        return info
    fd = opened.fd
    try:
        info.referenced = locks.held_by_others(fd, locks.REFERENCE_BYTE)
        info.write_locked = locks.held_by_others(fd, locks.MAP_BYTE, exclusive_only=True)
        info.read_locked = not info.write_locked and locks.held_by_others(fd, locks.MAP_BYTE)
        info.header, now = segment.read_header(fd, f"segment {file_name}")
        info.file_id, info.size = (now.st_dev, now.st_ino), now.st_size
        info.uid, info.mode = now.st_uid, stat.S_IMODE(now.st_mode)
        expected = hdr.KIND_CONTEXT if kind is None else hdr.KIND_ALLOCATION
        if info.header.kind != expected:
            raise ClaraError(f"segment {file_name} is corrupt (wrong kind for its name)")
    except ClaraError as exc:
        info.header, info.problem = None, str(exc)
    finally:
        os.close(fd)
    return info


def _anyone(_found: os.stat_result) -> str | None:
    return None  # any user's context may be looked at: a context holds no data


def _member_rule() -> tuple[Callable[[os.stat_result], bool], Refusal]:
    """The admission rule of members whose context has no (regular) segment: only our
    own files. As (admits, refusal), like a context's Writers."""
    me = os.geteuid()

    def refusal(found: os.stat_result) -> str | None:
        if found.st_uid == me:
            return None
        return f"belongs to another user ({user_name(found.st_uid)}): its context is gone"

    return (lambda found: found.st_uid == me), refusal


class ContextSummary(Record):
    """A context and the totals of its allocations."""

    name: str
    segment: SegmentInfo
    allocations: int
    nbytes: int
    pooled_bytes: int
    owner_pid: int | None
    owner_alive: bool | None
    foreign: int = 0  # files under its names not made by its writers: never read or counted


def left_by_earlier(member: SegmentInfo, context: SegmentInfo | None) -> bool:
    """Whether `member` was made in an earlier context of the name of `context` (left
    behind by a destroy that did not finish), not in that context itself."""
    if member.header is None or context is None or context.header is None:
        return False
    if claimed_elsewhere(member, context):  # its header is its claimer's, not a leftover's
        return False
    made_in = member.header.origin.context_created_ns
    return bool(made_in) and made_in != context.header.origin.created_ns


def claimed_elsewhere(member: SegmentInfo, pool_context: SegmentInfo) -> bool:
    """Whether a pooled member was claimed from a warm pool by another context: still
    private, its header rewritten as that context's. Its pool name is the fact that
    counts: if its claimer is gone, the next claim takes it (pool._take)."""
    header, owner = member.header, pool_context.header
    if member.kind != "pooled" or header is None or owner is None:
        return False
    return header.lifecycle == hdr.PRIVATE and not same_name(header.context, owner.name)


def contexts() -> list[ContextSummary]:
    """Every readable context of the namespace, with counts and sizes."""
    return _summaries(*_survey(None, foreign_rows=False))


def context_members(name: str) -> tuple[ContextSummary, list[SegmentInfo]]:
    """A context's summary and its allocations (published, handles, pooled). Foreign
    members (see the module) are not among them: the summary only counts them."""
    validate_name(name, "context name")
    own = context_file(name)
    infos, foreign = _survey(own, foreign_rows=False, token_only=own[len(namespace()) + 1 :])
    summaries = _summaries(infos, foreign)
    if not summaries:
        if segment.stat_named(own) is not None:  # there, but not listed: unreadable to us
            from .context import Context  # (its refusal, as every other command says it)

            Context.open(name).close()
        raise NotFound(f"context '{name}' does not exist")
    context = summaries[0].segment
    return summaries[0], [
        info for info in infos if info.kind != "context" and not left_by_earlier(info, context)
    ]


def _summaries(
    infos: list[SegmentInfo], foreign: dict[str, int] | None = None
) -> list[ContextSummary]:
    members: dict[str, list[SegmentInfo]] = {}
    for info in infos:
        if info.kind != "context":
            members.setdefault(info.context_token, []).append(info)
    out = []
    for info in infos:
        if info.kind != "context" or info.header is None:
            continue
        origin = info.header.origin
        own = [
            m
            for m in members.get(info.context_token, [])
            if not m.foreign and not left_by_earlier(m, info)
        ]
        out.append(
            ContextSummary(
                name=info.header.name,
                segment=info,
                allocations=sum(1 for m in own if m.kind == "published"),
                nbytes=sum(m.size for m in own),
                pooled_bytes=sum(m.size for m in own if m.kind == "pooled"),
                owner_pid=origin.owner_pid or None,
                owner_alive=is_alive(origin.owner_pid, origin.owner_start)
                if origin.owner_pid
                else None,
                foreign=(foreign or {}).get(info.context_token, 0),
            )
        )
    return sorted(out, key=lambda c: c.name.lower())


def summaries(infos: list[SegmentInfo]) -> list[ContextSummary]:
    """The contexts among `infos` (one survey), each with the totals of its members there."""
    return _summaries(infos)
