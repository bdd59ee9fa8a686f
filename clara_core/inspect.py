"""Plain data about the segments of a namespace, read from the segments alone.

Nothing here trusts bookkeeping: sizes come from stat, metadata from each segment's
header, who maps what from /proc/*/maps, and whether anyone holds a reference or a map
from the kernel's locks. `clara dump` and `clara leak-check` are both built on `survey()`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .errors import ClaraError, NotFound
from .names import (
    HANDLE,
    POOLED,
    PUBLISHED,
    context_file,
    namespace,
    parse_file_name,
    shm_dir,
    validate_name,
)
from .shm import header as hdr
from .shm import locks, segment
from .shm.header import Header
from .shm.locks import MAP_BYTE
from .shm.processes import FileId, Mapper, is_alive, lock_holders, mappers

KIND_NAMES = {None: "context", PUBLISHED: "published", HANDLE: "handle", POOLED: "pooled"}


@dataclass
class SegmentInfo:
    """One named segment of the namespace, as found on disk and in the kernel."""

    file_name: str
    kind: str  # context, published, handle or pooled
    context_token: str
    size: int
    uid: int
    file_id: FileId
    modified: float
    header: Header | None = None
    problem: str | None = None  # why the header could not be read (corrupt, permission)
    referenced: bool = False  # another open file holds a reference to it
    write_locked: bool = False  # mapped for writing by a live holder
    read_locked: bool = False  # mapped for reading by a live holder
    mapped_by: list[Mapper] = field(default_factory=list)

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
    ns = namespace()
    prefix = prefix or ns + "."
    found: list[SegmentInfo] = []
    for file_name in segment.list_names(prefix):
        parsed = parse_file_name(file_name, ns)
        if parsed is None:
            continue
        info = _inspect(file_name, *parsed[:2])
        if info is not None:
            found.append(info)
    held = mappers({info.file_id for info in found}, shm_dir())
    for info in found:
        info.mapped_by = held.get(info.file_id, [])
        if info.mapped_by and (info.write_locked or info.read_locked):
            # Who holds the map lock, and how; the others keep an idle mapping.
            locked = {m.pid: m for m in lock_holders(info.file_id, MAP_BYTE, info.mapped_by)}
            info.mapped_by = [locked.get(m.pid, m) for m in info.mapped_by]
    return found


def _inspect(file_name: str, context_token: str, kind: str | None) -> SegmentInfo | None:
    stat = segment.stat_named(file_name)
    if stat is None:
        return None  # removed meanwhile
    info = SegmentInfo(
        file_name=file_name,
        kind=KIND_NAMES[kind],
        context_token=context_token,
        size=stat.st_size,
        uid=stat.st_uid,
        file_id=(stat.st_dev, stat.st_ino),
        modified=stat.st_mtime,
    )
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(file_name, flags, dir_fd=segment.directory_fd())
    except FileNotFoundError:
        return None
    except OSError as exc:
        info.problem = str(segment.translate(exc, file_name))
        return info
    try:
        info.referenced = locks.held_by_others(fd, locks.REFERENCE_BYTE)
        info.write_locked = locks.held_by_others(fd, locks.MAP_BYTE, exclusive_only=True)
        info.read_locked = not info.write_locked and locks.held_by_others(fd, locks.MAP_BYTE)
        info.header, stat = segment.read_header(fd, f"segment {file_name}")
        info.file_id, info.size = (stat.st_dev, stat.st_ino), stat.st_size
        expected = hdr.KIND_CONTEXT if kind is None else hdr.KIND_ALLOCATION
        if info.header.kind != expected:
            raise ClaraError(f"segment {file_name} is corrupt (wrong kind for its name)")
    except ClaraError as exc:
        info.header, info.problem = None, str(exc)
    finally:
        os.close(fd)
    return info


@dataclass(frozen=True)
class ContextSummary:
    """A context and the totals of its allocations."""

    name: str
    segment: SegmentInfo
    allocations: int
    nbytes: int
    pooled_bytes: int
    owner_pid: int | None
    owner_alive: bool | None


def contexts() -> list[ContextSummary]:
    """Every readable context of the namespace, with counts and sizes."""
    return _summaries(survey())


def context_members(name: str) -> tuple[ContextSummary, list[SegmentInfo]]:
    """A context's summary and its allocations (published, handles, pooled)."""
    validate_name(name, "context name")
    own = context_file(name)
    infos = [i for i in survey(own) if i.file_name == own or i.file_name.startswith(own + ".")]
    summaries = _summaries(infos)
    if not summaries:
        raise NotFound(f"context '{name}' does not exist")
    return summaries[0], [info for info in infos if info.kind != "context"]


def _summaries(infos: list[SegmentInfo]) -> list[ContextSummary]:
    members: dict[str, list[SegmentInfo]] = {}
    for info in infos:
        if info.kind != "context":
            members.setdefault(info.context_token, []).append(info)
    out = []
    for info in infos:
        if info.kind != "context" or info.header is None:
            continue
        origin = info.header.origin
        own = members.get(info.context_token, [])
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
            )
        )
    return sorted(out, key=lambda c: c.name.lower())


def summaries(infos: list[SegmentInfo]) -> list[ContextSummary]:
    """The contexts among `infos` (one survey), each with the totals of its members there."""
    return _summaries(infos)
