"""A process's warm segments: segments it put into a pool (`pool.retire`), still mapped
for writing and held by its shared reference lock, for its own next claim of that size.

A claim of one costs no open, no proof and no map: the pool's ledger still lists it (so
if this process dies it is simply in the pool again) but no other process can take it
while this one holds it. So a process keeps few of them (`WARM_PER_CONTEXT`), and at most
a small part of the file system (`WARM_FRACTION`): the rest of the pool stays free for
anyone. Not to be confused with a *warm pool* (warm_pool.py: another context's pool).
"""

from __future__ import annotations

import contextlib
import os
from _thread import allocate_lock

from .names import shm_dir
from .records import Record
from .registry import Registry
from .shm.memory import Region


class Warm(Record):
    """A warm segment: its fd (holding a shared reference lock), its write mapping
    without views, its capacity and its pool name."""

    fd: int
    memory: Region
    capacity: int
    file_name: str


WARM_PER_CONTEXT = 4  # warm segments one process keeps per context
WARM_FRACTION = 16  # and at most this part of the shared-memory file system in all
_warm: dict[str, list[Warm]] = {}
# Held while `_warm` is read or changed: threads of this process, each creating and
# releasing allocations of its own, share it (two claiming one entry: one got a raw
# ValueError; one dropping an entry while another claimed it: an fstat of a closed fd).
# Never waited for without bound: a signal handler (or a finalizer) runs in the thread
# that may hold it, and its create or destroy would wait for that thread for good.
_warm_lock = allocate_lock()
_FORGET_WAIT = 1.0  # seconds a destroy waits for it (then the segments go when next met)


def _warm_list(context_file: str) -> list[Warm]:
    return _warm.setdefault(context_file, [])


def _drop_inherited() -> None:
    """In a forked child: its parent's warm segments are the parent's (the same open
    files); the child's copies go at once, else they would hold those segments (their
    memory, their reference lock) after the parent let them go, as long as it lives."""
    global _warm_lock
    _warm_lock = allocate_lock()  # (a thread holding it at the fork is not in the child)
    for entries in _warm.values():
        for entry in entries:
            with contextlib.suppress(OSError):  # (a fork hook must not raise)
                _drop(entry)
    _warm.clear()


os.register_at_fork(after_in_child=_drop_inherited)


def keep(context: Registry, entry: Warm) -> None:
    """Keep `entry` (just pooled by this process) warm for its next claim, or drop it
    (closed, unmapped) if this process keeps enough already."""
    # Warm segments are held by this process: no other one can claim or evict them
    # while it runs. So a process keeps few of them, and at most a small part of the
    # file system, the rest of the pool staying free for anyone.
    stats = os.statvfs(shm_dir())
    cap = stats.f_blocks * stats.f_frsize // WARM_FRACTION
    if entry.capacity > cap:
        _drop(entry)
        return
    if not _warm_lock.acquire(blocking=False):  # (a finalizer never waits: just drop)
        _drop(entry)
        return
    dropped = []
    try:
        entries = _warm_list(context.file_name)
        entries.append(entry)
        while len(entries) > WARM_PER_CONTEXT:
            dropped.append(entries.pop(0))
        everything = [e for kept in _warm.values() for e in kept]
        while sum(e.capacity for e in everything) > cap:
            oldest = everything.pop(0)
            for kept in _warm.values():
                if oldest in kept:
                    kept.remove(oldest)
            dropped.append(oldest)
    finally:
        _warm_lock.release()
    for old in dropped:
        _drop(old)


def claim(context: Registry, nbytes: int, group: int | None) -> Warm | None:
    """A warm segment of `context` able to hold `nbytes` (at most twice that) of the
    group `group` (None: any), taken out of the cache; None if none fits."""
    dropped, claimed = [], None
    if not _warm_lock.acquire(blocking=False):  # busy: the pool, or a fresh segment
        return None  # (a signal handler's create may run while its thread holds it)
    try:
        entries = _warm_list(context.file_name)
        for entry in list(entries):
            found = os.fstat(entry.fd)
            if found.st_nlink == 0:  # evicted or destroyed meanwhile
                entries.remove(entry)
                dropped.append(entry)
            elif nbytes <= entry.capacity <= 2 * nbytes and group in (None, found.st_gid):
                entries.remove(entry)
                claimed = entry
                break
    finally:
        _warm_lock.release()
    for old in dropped:
        _drop(old)
    return claimed


def _drop(entry: Warm) -> None:
    entry.memory.release()
    os.close(entry.fd)


def forget(context_file: str) -> None:
    """Let go of this process's warm segments of a context (destroyed, or evicting); if
    they stay busy (a destroy in a signal handler of the thread that holds them), those
    of a destroyed context go at the next claim (their names gone) or at exit."""
    if not _warm_lock.acquire(timeout=_FORGET_WAIT):
        return
    try:
        entries = _warm.pop(context_file, [])
    finally:
        _warm_lock.release()
    for entry in entries:
        _drop(entry)


def forget_all() -> None:
    """Let go of this process's warm segments of every context (the file system is full:
    see pool.evict)."""
    for context_file in list(_warm):
        forget(context_file)
