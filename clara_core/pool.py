"""Recycling: freed segments wait in their context's pool for a create of a fitting size.

A fresh segment costs the kernel a zeroed page per 4 KiB (about 1 GB/s here); a segment
whose pages already exist fills at memory speed. So a freed segment that nobody else
references is renamed into the pool (``<ns>.<context>.p.<capacity>-<id>``) instead of being
removed, and a later create of a similar size takes it back.

Safety comes from the reference lock: a segment enters the pool only if this process can
take the exclusive reference lock (no other reference anywhere), and leaves it only to a
claimer who takes that same exclusive lock and then unlinks the pool name, so a segment
is never handed out while anyone else holds it. The pool of a context is capped in bytes
(`Context.create(pool_bytes=...)`, default a quarter of the shared-memory file system),
`destroy` empties it, leak-check reports it as `pooled` (reclaimable, never a leak), and a
create that meets a full file system empties the pools (of every context of the namespace)
and tries once more.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from .names import POOLED, member_file, namespace, parse_file_name, shm_dir
from .shm import header as hdr
from .shm import locks, segment
from .shm.header import DATA_OFFSET
from .shm.memory import Region

if TYPE_CHECKING:
    from .registry import Registry

MIN_BYTES = 1 << 20  # below this, a fresh segment is cheaper than looking for one
DEFAULT_FRACTION = 4  # default pool cap: 1/4 of the shared-memory file system


def default_cap() -> int:
    """The default pool cap: a quarter of the shared-memory file system."""
    try:
        stats = os.statvfs(shm_dir())
    except OSError as exc:
        raise segment.translate(exc, f"shared-memory directory {shm_dir()}") from exc
    return stats.f_blocks * stats.f_frsize // DEFAULT_FRACTION


def _prefix(context: Registry) -> str:
    return f"{context.file_name}.{POOLED}."


def _capacity(file_name: str) -> int:
    try:
        return int(file_name.rsplit(".", 1)[1].split("-", 1)[0], 16)
    except ValueError:
        return 0


def pooled(context: Registry) -> list[tuple[int, str]]:
    """(capacity, file name) of every segment in the context's pool, smallest first."""
    return sorted((_capacity(name), name) for name in segment.list_names(_prefix(context)))


def retire(
    context: Registry,
    fd: int,
    capacity: int,
    file_name: str | None,
    warm: Region | None = None,
) -> bool:
    """Move a segment into the pool instead of freeing it; False if it must be freed.

    `fd` is the caller's reference (with its shared reference lock); `file_name` its
    current name (a published, handle or pool name), or None for an anonymous segment.
    `warm` is a write mapping of it without views, which this process may keep for its
    next claim; it is taken over (kept or closed) in every case. On True the segment is
    in the pool and the caller just closes `fd`.
    """
    try:
        if capacity < MIN_BYTES or capacity > context.pool_cap:
            return False
        if not locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True):
            return False  # someone else still references it
        in_pool = file_name is not None and file_name.startswith(_prefix(context))
        what = f"pooled segment of context '{context.name}'"
        with context.pool_locked():
            target = file_name or ""
            if not in_pool:
                if sum(c for c, _ in pooled(context)) + capacity > context.pool_cap:
                    return False
                target = member_file(context.file_name, POOLED, f"{capacity:x}-{_token()}")
            segment.write_at(fd, hdr.pack_lifecycle(hdr.POOLED), hdr.LIFECYCLE_AT, what)
            if file_name is None:
                segment.link(fd, target, what)
            elif not in_pool:
                segment.rename(file_name, target, what)
        if warm is not None:
            locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=False)  # held by the cache
            _keep_warm(context, _Warm(os.dup(fd), warm, capacity, target))
            warm = None
        return True
    finally:
        if warm is not None:
            warm.release()


def claim(context: Registry, nbytes: int) -> tuple[int, str, Region | None] | None:
    """Take a pooled segment able to hold `nbytes` (and at most twice that).

    Returns (fd, pool file name, warm mapping or None). The fd holds a shared reference
    lock, so no other claimer can take the segment while it is in use, and it keeps its
    pool name until it is published (so if this process dies it is simply in the pool
    again). Its header is the caller's to rewrite. None if nothing fits.
    """
    if nbytes < MIN_BYTES:
        return None
    warm = _claim_warm(context, nbytes)
    if warm is not None:
        return warm.fd, warm.file_name, warm.memory
    for capacity, file_name in pooled(context):
        if not nbytes <= capacity <= 2 * nbytes:
            continue
        try:
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(file_name, flags, dir_fd=segment.directory_fd())
        except OSError:
            continue
        if (
            locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True)  # nobody else has it
            and os.fstat(fd).st_nlink == 1  # a publisher that died mid-way left 2 names
            and os.fstat(fd).st_size == DATA_OFFSET + capacity
        ):
            locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=False)  # now just a reference
            return fd, file_name, None
        os.close(fd)
    return None


def _token() -> str:
    return os.urandom(6).hex()


# -- warm segments: pooled by this process, still mapped, held by its reference lock ---


class _Warm(NamedTuple):
    fd: int
    memory: Region
    capacity: int
    file_name: str


WARM_PER_CONTEXT = 4  # warm segments one process keeps per context
WARM_FRACTION = 16  # and at most this part of the shared-memory file system in all
_warm: dict[str, list[_Warm]] = {}
_warm_pid = 0


def _warm_list(context_file: str) -> list[_Warm]:
    global _warm_pid
    if _warm_pid != os.getpid():  # inherited across fork: those belong to the parent
        _warm.clear()
        _warm_pid = os.getpid()
    return _warm.setdefault(context_file, [])


def _keep_warm(context: Registry, entry: _Warm) -> None:
    # Warm segments are held by this process: no other one can claim or evict them
    # while it runs. So a process keeps few of them, and at most a small part of the
    # file system, the rest of the pool staying free for anyone.
    stats = os.statvfs(shm_dir())
    cap = stats.f_blocks * stats.f_frsize // WARM_FRACTION
    if entry.capacity > cap:
        _drop(entry)
        return
    entries = _warm_list(context.file_name)
    entries.append(entry)
    while len(entries) > WARM_PER_CONTEXT:
        _drop(entries.pop(0))
    everything = [e for kept in _warm.values() for e in kept]
    while sum(e.capacity for e in everything) > cap:
        oldest = everything.pop(0)
        for kept in _warm.values():
            if oldest in kept:
                kept.remove(oldest)
        _drop(oldest)


def _claim_warm(context: Registry, nbytes: int) -> _Warm | None:
    entries = _warm_list(context.file_name)
    for entry in list(entries):
        if os.fstat(entry.fd).st_nlink == 0:  # evicted or destroyed meanwhile
            entries.remove(entry)
            _drop(entry)
        elif nbytes <= entry.capacity <= 2 * nbytes:
            entries.remove(entry)
            return entry
    return None


def _drop(entry: _Warm) -> None:
    entry.memory.release()
    os.close(entry.fd)


def forget(context_file: str) -> None:
    """Let go of this process's warm segments of a context (destroyed, or evicting)."""
    for entry in _warm_list(context_file):
        _drop(entry)
    _warm.pop(context_file, None)


def evict() -> int:
    """Remove the idle pooled segments of every context of the namespace (when the file
    system is full: memory idle in any pool serves better as a new segment).

    This process's warm segments go too; those another live process has claimed or keeps
    warm are left alone. Returns the bytes freed.
    """
    for context_file in list(_warm):
        forget(context_file)
    ns = namespace()
    freed = 0
    for file_name in segment.list_names(ns + "."):
        parsed = parse_file_name(file_name, ns)
        if parsed is None or parsed[1] != POOLED:
            continue
        try:
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(file_name, flags, dir_fd=segment.directory_fd())
        except OSError:  # gone meanwhile, or another user's
            continue
        try:
            if locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True) and segment.unlink(
                file_name
            ):
                freed += _capacity(file_name)
        finally:
            os.close(fd)
    return freed
