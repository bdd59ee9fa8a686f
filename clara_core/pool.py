"""Recycling: freed segments wait in their context's pool for a create of a fitting size.

A fresh segment costs the kernel a zeroed page per 4 KiB (about 1 GB/s here); a segment
whose pages already exist fills at memory speed. So a freed segment that nobody else
references is renamed into the pool (``<ns>.<context>.p.<capacity>-<id>``) instead of being
removed, and a later create of a similar size takes it back.

Safety comes from the reference lock, and from proving identity under it: a segment
enters the pool only if this process can take the exclusive reference lock (no other
reference anywhere), and leaves it only to a claimer who takes that same exclusive lock
and then proves, under it, that the file it holds is still that pool entry (the pool
name still denotes this very inode, and nothing else names it). So a segment is never
handed out while anyone else holds it, nor after a claimer before us has published it.

Which segments are in the pool is kept in the context's ledger (`shm.ledger`), not found
by listing the directory: a slot per pooled segment, written under the pool lock before
its name exists and cleared after the name is gone. Pooled names are never reused
(random tokens). Only members the context admits are ever claimed (`shm.trust`).

The pool of a context is capped in bytes (`Context.create(pool_bytes=...)`, default a
quarter of the shared-memory file system; 0 turns it off), `destroy` empties it,
leak-check reports it as `pooled` (reclaimable, never a leak), and a create that meets a
full file system empties the pools (of every context of the namespace) and tries once
more.

A context may instead use the pool of another, longer-lived context, its *warm pool*
(`Registry.warm_pool`, see `warm_pool`): then it claims from and retires into that pool
only. A segment retired there gets a whole new header (a pooled member of the warm pool,
its incarnation); a claimed one is rewritten whole as a new member of the claimer's
context (members.new_allocation), so each looks like any member of its context.
"""

from __future__ import annotations

import os
import time

from . import warm_segments
from .dtypes import UINT8
from .errors import ClaraError
from .names import POOLED, member_file, namespace, parse_file_name, shm_dir
from .registry import POOL_MIN_BYTES, Registry
from .shm import header as hdr
from .shm import ledger, listing, locks, processes, segment
from .shm.header import DATA_OFFSET, Layout
from .shm.ledger import Slot
from .shm.memory import Region
from .shm.trust import ours_refusal
from .warm_segments import Warm

MIN_BYTES = POOL_MIN_BYTES  # (kept with the context's registry: the pool loads on first use)
DEFAULT_FRACTION = 4  # default pool cap: 1/4 of the shared-memory file system


def default_cap() -> int:
    """The default pool cap: a quarter of the shared-memory file system."""
    try:
        stats = os.statvfs(shm_dir())
    except OSError as exc:
        raise segment.translate(exc, f"shared-memory directory {shm_dir()}") from exc
    return stats.f_blocks * stats.f_frsize // DEFAULT_FRACTION


def _home(context: Registry) -> Registry:
    """The registry whose pool `context` uses: its warm pool if it has one, else its own."""
    return context.warm_pool or context


def _prefix(context: Registry) -> str:
    return f"{context.file_name}.{POOLED}."


def _name(context: Registry, slot: Slot) -> str:
    return member_file(context.file_name, POOLED, slot.suffix)


def pooled(context: Registry) -> list[tuple[int, str]]:
    """(capacity, file name) of every segment in the context's pool, smallest first."""
    slots = ledger.read(context.fd).slots
    return sorted((slot.capacity, _name(context, slot)) for slot in slots if slot.capacity)


def retire(
    context: Registry,
    fd: int,
    capacity: int,
    file_name: str | None,
    warm: Region | None = None,
) -> bool:
    """Move a segment into the pool instead of freeing it; False if it must be freed.

    `fd` is the caller's reference (with its shared reference lock); `file_name` its
    current name (a published or pool name; a published one the caller may remove, see
    `Allocation.free`), or None for an anonymous segment. `warm` is a write mapping of
    it without views, which this process may keep for its next claim; it is taken over
    (kept or closed) in every case. On True the segment is in the pool and the caller
    just closes `fd`.
    """
    try:
        home = _home(context)
        if capacity < MIN_BYTES or capacity > home.pool_cap or not home.writable:
            return False
        if not locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True):
            return False  # someone else still references it
        in_pool = file_name is not None and file_name.startswith(_prefix(home))
        what = f"pooled segment of context '{home.name}'"
        # Of our own pool, only the lifecycle changes; into a warm pool, the whole header
        # (it becomes a pooled member of the warm pool, nobody's data).
        if home is context:
            change, at = hdr.pack_lifecycle(hdr.POOLED), hdr.LIFECYCLE_AT
        else:
            change, at = _pooled_header(home, capacity), 0
        with home.pool_locked() as locked:
            # Destroyed (even just now: destroy lists under this lock) its names would
            # be orphans.
            if not locked or os.fstat(home.fd).st_nlink == 0:
                return False
            if in_pool:  # claimed, never published: its slot is still there
                target = file_name or ""
                segment.write_at(fd, change, at, what)
            else:
                index = _free_slot(home, capacity)
                if index is None:
                    return False
                slot = Slot(capacity, int.from_bytes(os.urandom(6), "little"))
                target = _name(home, slot)
                ledger.write_slot(home.fd, index, slot)  # before the name exists
                try:
                    segment.write_at(fd, change, at, what)
                    if file_name is None:
                        segment.link(fd, target, what)
                    else:
                        segment.rename_new(file_name, target, what)
                except BaseException:
                    # (unless named: a ^C as the link or rename returned, the entry is in)
                    found = os.fstat(fd)
                    if not segment.names_file(target, (found.st_dev, found.st_ino)):
                        ledger.write_slot(home.fd, index, Slot(0, 0))
                    raise
        if warm is not None:
            locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=False)  # held by the cache
            warm_segments.keep(home, Warm(os.dup(fd), warm, capacity, target))
            warm = None
        return True
    finally:
        if warm is not None:
            warm.release()


def _pooled_header(home: Registry, capacity: int) -> bytearray:
    """The whole header of a segment retired into the warm pool `home`: a pooled, never
    written, nameless member of it, made now by this process in its incarnation."""
    pid, start = processes.identity()
    origin = (time.time_ns(), pid, start, 0, 0, home.incarnation)
    layout = Layout(UINT8, (capacity,), capacity, capacity)
    whole = hdr.pack_new_allocation(layout, origin, home.name)
    whole[hdr.LIFECYCLE_AT] = hdr.POOLED
    return whole


def _free_slot(context: Registry, capacity: int) -> int | None:
    """A free slot for `capacity` more bytes within the cap (the pool lock is held).

    When the pool looks full, slots whose segment is gone (evicted, reclaimed, or left
    by a process killed half-way) are dropped first.
    """
    for attempt in range(2):
        found = ledger.read(context.fd)
        free = [i for i, slot in enumerate(found.slots) if not slot.capacity]
        if free and found.pooled + capacity <= context.pool_cap:
            return free[0]
        if attempt == 0 and not prune(context):
            return None
    return None


def prune(context: Registry) -> int:
    """Drop the slots whose segment is gone; returns how many (the pool lock is held)."""
    dropped = 0
    for index, slot in enumerate(ledger.read(context.fd).slots):
        if slot.capacity and segment.stat_named(_name(context, slot)) is None:
            ledger.write_slot(context.fd, index, Slot(0, 0))
            dropped += 1
    return dropped


def claim(context: Registry, nbytes: int) -> tuple[int, str, Region | None] | None:
    """Take a pooled segment able to hold `nbytes` (and at most twice that).

    Returns (fd, pool file name, warm mapping or None). The fd holds a shared reference
    lock, so no other claimer can take the segment while it is in use, and it keeps its
    pool name (and slot) until it is published (so if this process dies it is simply in
    the pool again). Its header is the caller's to rewrite. None if nothing fits.
    """
    home = _home(context)
    if nbytes < MIN_BYTES or nbytes > home.pool_cap or not home.writable:
        return None
    if not context.writable:
        return None
    group = _group_of(context)
    warm = warm_segments.claim(home, nbytes, group)
    if warm is not None:
        return warm.fd, warm.file_name, warm.memory
    with home.pool_locked() as locked:
        if not locked:
            return None
        slots = ledger.read(home.fd).slots
        fitting = sorted(
            (slot.capacity, index)
            for index, slot in enumerate(slots)
            if nbytes <= slot.capacity <= 2 * nbytes
        )
        for capacity, index in fitting:
            file_name = _name(home, slots[index])
            fd = _take(home, file_name, capacity, group)
            if fd == _GONE:
                ledger.write_slot(home.fd, index, Slot(0, 0))
            elif fd != _BUSY:
                return fd, file_name, None
    return None


_GONE, _BUSY = -1, -2


def _group_of(context: Registry) -> int | None:
    """The group a claimed segment must belong to, if the mode of `context` lets its
    group read (None: any). A segment keeps the group of the process that made it,
    which may be another of this user's groups (sg, newgrp): claimed as it is, our data
    would be readable by that group."""
    return context.writers.gid if context.mode & 0o070 else None


def _take(context: Registry, file_name: str, capacity: int, group: int | None) -> int:
    """The pooled segment `file_name` with a shared reference lock, proven to be that
    pool entry; _BUSY if someone holds it (or it is not of `group`), _GONE if it is no
    longer a usable entry."""
    what = f"pooled segment {file_name}"
    try:
        opened = segment.open_segment(file_name, what, context.writers.refusal, header=False)
    except ClaraError:  # gone, or not one the context admits: never ours to use
        return _GONE
    fd = opened.fd
    if not opened.writable:
        os.close(fd)
        return _GONE
    if not locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True):
        os.close(fd)
        return _BUSY
    # Nobody else references it now, so nobody can change it: but between our open and
    # our lock another claimer may have taken it, published it (a new name) and let go.
    # It is still ours to take only if the pool name still denotes it, nothing else
    # names it, and its header still says it is pooled (or claimed by one who died).
    found = os.fstat(fd)
    if group is not None and found.st_gid != group:
        os.close(fd)
        return _BUSY  # a pool entry still, for a claimer of its group
    if not segment.removable(found):  # another user's in a sticky directory: its pool
        os.close(fd)  # name would stay at publish (theirs to remove)
        return _BUSY  # a pool entry still, for them
    lifecycle = os.pread(fd, 1, hdr.LIFECYCLE_AT)
    if (
        segment.names_file(file_name, (found.st_dev, found.st_ino))
        and found.st_nlink == 1
        and found.st_size == DATA_OFFSET + capacity
        and lifecycle in (bytes([hdr.POOLED]), bytes([hdr.PRIVATE]))
    ):
        locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=False)  # now just a reference
        return fd
    os.close(fd)
    return _GONE


def leave(context: Registry, fd: int, file_name: str) -> None:
    """A claimed segment was published: remove its pool name, then its slot.

    Pool names are never reused and only the claimer (who holds the one reference) or a
    destroy removes them, so the name still denotes this segment or nothing.
    """
    home = context.warm_pool
    if home is None or not file_name.startswith(_prefix(home)):
        home = context  # claimed from its own pool
    found = os.fstat(fd)
    segment.remove_name(file_name, (found.st_dev, found.st_ino))
    slot = ledger.parse_suffix(file_name.rsplit(".", 1)[1])
    with home.pool_locked() as locked:
        if locked and slot is not None:
            for index, kept in enumerate(ledger.read(home.fd).slots):
                if kept == slot:
                    ledger.write_slot(home.fd, index, Slot(0, 0))  # after the name went


def _token() -> str:
    return os.urandom(6).hex()


def evict() -> int:
    """Remove the idle pooled segments of every context of the namespace (when the file
    system is full: memory idle in any pool serves better as a new segment).

    This process's warm segments go too; those another live process has claimed or keeps
    warm are left alone, and so is anything not ours. Slots left in the ledgers are
    dropped when next met. Returns the bytes freed.
    """
    warm_segments.forget_all()
    ns = namespace()
    freed = 0
    touched: set[str] = set()
    for entry in listing.scan(ns + "."):
        parsed = parse_file_name(entry.name, ns)
        if parsed is None or parsed[1] != POOLED:
            continue
        touched.add(f"{ns}.{parsed[0]}")
        try:
            opened = segment.open_segment(entry.name, entry.name, ours_refusal, header=False)
        except ClaraError:  # gone meanwhile, or not ours
            continue
        try:
            found = opened.stat
            # Exclusive: nobody uses it. Pool names are never reused, and only a holder of
            # the exclusive reference lock (or a destroy) removes one.
            unused = locks.try_lock(opened.fd, locks.REFERENCE_BYTE, exclusive=True)
            if unused and segment.remove_name(entry.name, (found.st_dev, found.st_ino)):
                freed += found.st_size - DATA_OFFSET
        finally:
            os.close(opened.fd)
    for context_file in touched:  # their ledgers: drop the slots of what went
        with Registry.of_file(context_file) as registry:
            if registry is not None:
                with registry.pool_locked() as locked:
                    if locked:
                        prune(registry)
    return freed
