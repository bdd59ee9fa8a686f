"""What a process made by fork() shares with its parent, and how references keep apart.

A forked child has its own copies of its parent's objects but the same open files, and
so the same OFD locks: a lock one of them drops, the other has lost too, and a lock one
takes, the other "holds" too. So:

- before any fork, every private allocation whose locks and data state wait in memory
  (`Reference._defer`) brings them to its file: parent and child see the same segment
  (a thread mapping or unmapping one meanwhile brings them there again when it is done:
  `Reference._public_meanwhile`);
- a reference made before the fork is *inherited* in the child (`count` differs from the
  one it was made under); the maps it held then are its parent's (`Inheritance._adopt`):
  the child may unmap them in itself (its pages, its views), never finish them (mark
  them complete, drop their lock), and never maps against them; its own maps are its
  own; nothing it inherited goes to the pool.
"""

from __future__ import annotations

import os
from _thread import RLock
from _weakref import ref as weak_ref  # weakref.ref, without the weakref module (start-up)

from .errors import ClaraError
from .shm import memory, staging
from .shm.staging import Staged

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .reference import Reference
    from .shm.memory import Region

count = 0  # how many forks made this process (a child counts its parent's and its own)

# References whose locks wait in memory (see Reference._defer), by id, held weakly (a
# reference is the Allocation itself, which must die, and so be released, as any other):
# before a fork they are taken, so that parent and child, sharing the open file, share
# one truth about it.
private: dict[int, weak_ref[Reference]] = {}
# References a fork made public while a staged map of another thread stayed staged (see
# Reference._attach_staged): no longer `private`, but a later fork from the thread that
# made the map must still attach it (its child shares the views, as always).
staged_elsewhere: dict[int, weak_ref[Reference]] = {}


# The hook below works on references other threads hold, by their fds: a reference whose
# fd were closed meanwhile by its thread (and the number reused by another file, a get()
# of a published allocation) would have its data state written into that other file. So
# a reference's close, once marked closed, waits while a hook runs (`wait_for_hook`), and
# the hook skips references closed. Reentrant: a finalizer run inside the hook may close
# another reference (never the one the hook holds).
_hook = RLock()
hook_running = False  # (read by every close: a hook has started and not yet ended)


def _go_public_before_fork() -> None:
    global hook_running
    # memory's lock first, then _hook: a thread inside a _lending section (a map, unmap,
    # view or release) may run a finalizer whose close waits for _hook, and a finalizer run
    # in the hook (or the attach of a staged map) takes _lending; taken in the other order
    # they waited for each other for good.
    with memory.lending(), _hook:
        hook_running = True
        try:
            staging.finish_attaching()  # (under memory's lock: only this thread's can be)
            for key, held in list(staged_elsewhere.items()) + list(private.items()):
                reference = held()
                if staged_elsewhere.get(key) is held:  # (kept again below if need be)
                    del staged_elsewhere[key]
                if reference is None or reference._closed:  # (closed: its fd may be
                    continue  # another file's now)
                try:  # noqa: SIM105 (contextlib is not loaded at start-up: clara_core.lazy)
                    reference._materialize("a private allocation", attach=False)
                except (ClaraError, OSError):  # (a fork hook must not raise)
                    pass
                if any(type(region) is Staged for region in reference._maps):
                    staged_elsewhere[key] = held
        finally:
            hook_running = False


def wait_for_hook() -> None:
    """Called by a reference's close after it is marked closed, while `hook_running`: wait
    until the fork hook no longer uses it (it checks `_closed` under the same lock)."""
    with _hook:
        pass


def _count_fork() -> None:
    global count, _hook, hook_running
    count += 1
    staged_elsewhere.clear()  # (a parent's: see staging._owned)
    _hook, hook_running = RLock(), False  # (a thread that held it is not in the child)


os.register_at_fork(before=_go_public_before_fork, after_in_child=_count_fork)


class ParentsMap:
    """Stands in `Reference.maps` for a parent process's map that a forked child has
    unmapped in itself: that map (and its lock on the shared open file) is still held."""

    __slots__ = ("writable",)

    def __init__(self, writable: bool) -> None:
        self.writable = writable


class Inheritance:
    """A reference's side of fork (mixed into Reference): which of its maps are a parent's."""

    __slots__ = ()  # (the Allocation's)

    _born: int  # `count` when the reference was made
    _seen: int  # `count` when its maps were last sorted into a parent's and its own
    _parents: list[Region] | None  # maps a parent made, still mapped here
    _maps: list[Region]
    _warm: Region | None
    _warm_read: Region | None
    _fd: int
    _unmap: Callable[[Region, bool], None]

    @property
    def _inherited(self) -> bool:
        """Whether this reference was made by a process this one was forked from: its
        open file, and so its locks, are that process's too."""
        return self._born != count

    def _mapped_by_parent(self) -> bool:
        """Whether a map this reference holds is a parent process's (see `_adopt`)."""
        if self._seen != count:
            self._adopt()
        return any(type(r) is ParentsMap for r in self._maps) or bool(self._parents)

    def _adopt(self) -> None:
        """At the first use in a forked child of a reference made before the fork: the
        maps it holds are its parent's (the child shares their open file and locks)."""
        self._seen = count
        maps = [r for r in self._maps if type(r) is not ParentsMap]
        self._parents = maps or None

    def _leave_to_parent(self, region: Region) -> None:
        """Unmap in this process a map its parent made: the parent's pages, data state and
        lock stay as they are (the parent finishes its own map); a ParentsMap stands in
        for it, so that this process neither drops that lock nor maps against it."""
        assert self._parents is not None
        self._parents.remove(region)
        maps: list = self._maps
        maps[maps.index(region)] = ParentsMap(region.writable)
        region.release()

    def _close_inherited(self, complete: bool = True) -> None:
        """Finish in a forked child a reference its parent made (its caller, the close,
        closes the file): the open file, and so its locks, are the parent's too, which
        may still be writing through its map. The child's own maps end as any close ends
        them (write maps complete, unless not `complete`); of its parent's maps only this
        process's mappings go (not marked complete, not unlocked); nothing is offered to
        the pool."""
        if self._seen != count:
            self._adopt()
        parents = self._parents or []
        for region in list(self._maps):
            # The child's own (a parent's map, still in `maps`, keeps its lock held).
            if type(region) is not ParentsMap and region not in parents:
                self._unmap(region, complete)
        for kept in [*parents, self._warm, self._warm_read]:
            if kept is not None:
                kept.release()
        self._maps.clear()
        self._parents = None
        self._warm = self._warm_read = None
