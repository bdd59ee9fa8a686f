"""The operating-system side of an allocation reference: its fd, its maps, its close.

A reference is an open file of the segment holding a shared lock on REFERENCE_BYTE (the
kernel counts references). Its maps are Regions under the map lock (taken by `maps.Maps`);
mappings no view can reach any more are kept ("warm") for its next map of the same kind,
and at close the segment may be offered to the pool (`_recycle`).

The Allocation *is* the reference (this class and `forks.Inheritance` are mixed into it,
their state in its slots): one object per get() or create(), not two.

A fresh private segment has no name: no other process can open it, so while it has none
its reference lock, map lock, the checks under that lock and the data-state writes would
count, exclude and tell nobody. They wait (the header it would have is kept `_pending`,
in memory) until `_go_public`, which the allocation calls before the file gets a name
(publish, make_handle); and before this process forks, so that a child sharing the file
sees the same segment as we do (docs/segment-format.md, 5.3).
"""

from __future__ import annotations

import atexit
import os
import sys
from _weakref import ref as weak_ref  # weakref.ref, without the weakref module (start-up)

from . import forks
from .errors import Busy
from .forks import Inheritance, ParentsMap
from .shm import header as hdr
from .shm import locks, segment
from .shm.access import set_lock as _set_lock
from .shm.staging import Staged, of_this_thread

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .shm.memory import Region

_DATA_AT, _DATA_END = hdr.DATA_AT, hdr.DATA_END
_UNLOCK_MAP = locks.requests(locks.MAP_BYTE)[2]
_close_fd = os.close  # (bound once: every release)


class Reference(Inheritance):
    """The operating-system side of one reference (mixed into Allocation, which sets
    these fields when it is made, and whose finalizer closes it)."""

    __slots__ = ()  # (the Allocation's)

    _fd: int
    _closed: bool
    # This process's maps, and a ParentsMap for each map of a parent process that this
    # one has let go of (the parent's map and lock remain). `_parents`: maps made by the
    # process this one was forked from, still mapped here; None while there are none.
    _maps: list[Region]
    _completed: bytes  # the data state a write map's unmap marks (made by map)
    _undone: bytes  # the data state before that write map (see `_abandon`)
    # Mappings no view can reach, kept for this reference's next map of that kind: no
    # mmap, no munmap, no page faults (for a big array, faulting its pages in again
    # costs more than the copy that follows). They hold no lock: others map meanwhile.
    _warm: Region | None
    _warm_read: Region | None
    # Called at close to offer the segment to the pool (or to free its name).
    _recycle: Callable[[int, Region | None], None] | None
    # A nameless segment's header as it will be written when it goes public (data
    # state included), while nothing else can reach the file; None once it has.
    _pending: bytearray | None

    def _defer(self, header: bytearray) -> None:
        """Keep the locks and data state of a fresh, nameless segment (starting with
        `header`, taken over: not copied) in memory until `_go_public` (this reference
        holds no lock yet)."""
        self._pending = header
        forks.private[id(self)] = weak_ref(self)

    def _go_public(self, what: str, attach: bool = True) -> bytearray | None:
        """Before the file may reach another process: take the locks deferred while it
        had no name (the reference lock; the map lock of the maps held). Returns the
        header it was kept in memory, whose data state the caller writes (see
        `_materialize`), or None if nothing was deferred."""
        if self._maps:  # (even if a fork brought the rest to the file already)
            self._attach_staged(attach)
        pending = self._pending
        if pending is None:
            return None
        fd = self._fd
        # Nobody else can hold these: the file has had no name, no other open file.
        locks.try_lock(fd, locks.REFERENCE_BYTE, False)
        if self._maps and not locks.try_lock(fd, locks.MAP_BYTE, self._maps[0].writable):
            raise Busy(f"{what} is locked by a process that should not reach it")
        self._pending = None
        forks.private.pop(id(self), None)
        return pending

    def _attach_staged(self, all_threads: bool = True) -> None:
        """Before the file gets a name or a handle, or goes to another program (`path`): a
        staged map's views see the file from now on (see shm/staging.py). At a fork
        (`all_threads` False) only the forking thread's own: attaching copies the views'
        bytes, then maps the file over them, and another thread writing its views
        meanwhile (numpy lets the GIL go) would lose what it wrote in between; such a map
        stays staged, the data state in the file says *writing* until its unmap writes
        the data, and a child's copy of it writes nothing back (nor is it shared). The
        forking thread is inside os.fork: nothing of it writes meanwhile."""
        for region in self._maps:
            if type(region) is Staged and (all_threads or of_this_thread(region)):
                region.attach()

    def _materialize(self, what: str, attach: bool = True) -> None:
        """`_go_public`, and write the data state kept in memory to the file."""
        pending = self._go_public(what, attach)
        if pending is not None:
            segment.write_at(self._fd, pending[_DATA_AT:_DATA_END], _DATA_AT, what)

    def _public_meanwhile(self, pending: bytearray) -> None:
        """Another thread forked while this one changed a map of a deferred segment: the
        fork brought its locks and data state to the file (`forks`) before the change
        was done (mmap lets the GIL go). Bring them there again, as the change left them."""
        fd = self._fd
        if self._maps:
            if not locks.try_lock(fd, locks.MAP_BYTE, self._maps[0].writable):
                raise Busy("a private allocation is locked by a process that should not reach it")
            # A map staged as it forked, which the fork could not see: a later fork of
            # the thread that made it attaches it (see forks.staged_elsewhere).
            if any(type(region) is Staged for region in self._maps):
                forks.staged_elsewhere[id(self)] = weak_ref(self)
        else:
            locks.unlock(fd, locks.MAP_BYTE)
        segment.write_at(fd, pending[_DATA_AT:_DATA_END], _DATA_AT, "a private allocation")

    def _unmap(self, region: Region, complete: bool) -> None:
        """Finish one map: mark a write map complete (or leave it incomplete), unmap."""
        if self._seen != forks.count:
            self._adopt()
        if self._parents and region in self._parents:
            self._leave_to_parent(region)
            return
        writable = region.writable
        pending = self._pending
        # A deferred one (`pending`: nobody else can see it yet, see _defer) is marked
        # complete at the end, once its data is in the file: a staged map's is written by
        # its release, and a fork meanwhile brings that state to the file.
        if writable and complete and pending is None:
            # What the map wrote stays as it was: the write lock kept every other clara out.
            try:
                if type(region) is Staged:  # (public since a fork, see _attach_staged)
                    region.write_out()  # its data first
                os.pwrite(self._fd, self._completed, _DATA_AT)
            except OSError as exc:
                raise segment.translate(exc, "the data state") from exc
        maps = self._maps
        unlock = len(maps) == 1 and pending is None  # (a deferred map holds no lock)
        kept = None
        try:
            maps.remove(region)
            if (self._warm if writable else self._warm_read) is None:  # keep it for the next
                # map. Views that outlive the map are cut off first, before anyone else may
                # map it (detach returns None if then nothing of it stays mapped).
                kept = region.detach()
                if unlock:
                    _set_lock(self._fd, _UNLOCK_MAP)  # locks.unlock, in one C call
                if kept is not None:  # (self._keep(kept, writable), inline: every unmap)
                    if writable:
                        if self._warm is None:
                            self._warm = kept
                        else:
                            kept.release()
                    elif self._warm_read is None:
                        self._warm_read = kept
                    else:
                        kept.release()
            elif region.lent():
                region.release()  # views outlive the map: cut them off before anyone else
                if unlock:  # may map it
                    _set_lock(self._fd, _UNLOCK_MAP)  # locks.unlock, in one C call
            else:
                if unlock:  # nothing reaches this memory: let waiters in first
                    _set_lock(self._fd, _UNLOCK_MAP)  # locks.unlock, in one C call
                region.release()
        except BaseException as exc:
            if not isinstance(exc, OSError):  # (an OSError: as before, nothing more)
                self._unmap_cut_short(region, unlock, kept)
            raise
        if pending is not None:
            if writable and complete:
                pending[_DATA_AT:_DATA_END] = self._completed
            if self._pending is not pending:  # (see _map_private)
                self._public_meanwhile(pending)

    def _unmap_cut_short(self, region: Region, unlock: bool, kept: Region | None) -> None:
        """An unmap cut short by an exception a signal handler raised (^C, as any call
        returned): the region is out of the list (or about to be), and what its detach
        moved away (`kept`, if that call returned) may not be kept warm yet: nobody would
        ever release them, their ranges mapped until the process ends. Release them now
        (again, if they were: nothing to do then; not one kept warm already), then let go
        of the map lock (unless another thread of this reference has mapped since: the
        lock is its now). (Left: an exception as detach returns loses what it moved.)"""
        for left in (region, kept):
            if left is None or left is self._warm or left is self._warm_read:
                continue  # (kept warm: the next map takes it, the close releases it)
            try:  # noqa: SIM105 (contextlib.suppress: a module more to load at start-up)
                left.release()
            except ValueError:  # cut off already, the flags not yet cleared: its holder
                pass  # owns the range
        if unlock and not self._maps:
            _set_lock(self._fd, _UNLOCK_MAP)

    def _abandon(self, region: Region) -> None:
        """Undo a map whose pages could not be mapped when its first view was taken (a
        map made with populate=False): nothing was written through it, so a write map
        puts back the data state it found (still under its lock), then it is unmapped,
        as if map() itself had failed."""
        if region not in self._maps:
            return
        if self._seen != forks.count:
            self._adopt()
        if self._parents and region in self._parents:
            self._leave_to_parent(region)
            return
        if region.writable and len(self._maps) == 1:
            if self._pending is not None:  # nobody else can see it yet (see _defer)
                self._pending[_DATA_AT:_DATA_END] = self._undone
            else:
                try:
                    os.pwrite(self._fd, self._undone, _DATA_AT)
                except OSError as exc:
                    raise segment.translate(exc, "the data state") from exc
        self._unmap(region, complete=False)

    def _unmap_all(self, complete: bool = True) -> None:
        """Finish every map (write maps are marked complete, unless not `complete`); in a
        forked child, its parent's maps are only unmapped here (see `_leave_to_parent`)."""
        for region in list(self._maps):
            if type(region) is not ParentsMap:
                self._unmap(region, complete)

    def _premap(self, writable: bool, length: int, what: str) -> None:
        """Map the segment now, populated, as the mapping the next map of this kind will
        reuse; nothing if one is kept already. No lock is taken: mapping touches no data
        (see `maps.Maps.map`), which checks the file and the data state under the lock
        as always. A write map of pages nobody has written yet (a new segment of a job,
        premapped by its producer) populates them for writing: ~30 % less than faulting
        each fresh page in for reading, which clears it on its own fault."""
        if (self._warm if writable else self._warm_read) is not None:
            return
        fresh = writable and segment.never_written_at_end(self._fd, length)
        self._keep(segment.map_segment(self._fd, length, writable, what, True, fresh), writable)

    def _keep(self, region: Region, writable: bool) -> None:
        """Keep `region` warm for the next map of its kind, unless another thread of this
        reference kept one meanwhile: then it is released (two kept, one would be lost,
        its pages mapped until the process ends)."""
        if writable:
            if self._warm is None:
                self._warm = region
                return
        elif self._warm_read is None:
            self._warm_read = region
            return
        region.release()

    def _take_warm(self, writable: bool = True) -> Region | None:
        """A kept mapping of the right kind, if any, for reuse by a new map."""
        if writable:
            warm, self._warm = self._warm, None
        else:
            warm, self._warm_read = self._warm_read, None
        return warm

    def _close(self, *_exit: object) -> None:
        """Finish every map, recycle or free the segment, close the file (once). (It is
        also the Allocation's `__exit__`, whose arguments `_exit` are: one frame less.)"""
        if self._closed:
            return
        self._closed = True
        if forks.hook_running:  # (after `_closed`: see forks._hook)
            forks.wait_for_hook()
        try:  # (from here: marked closed, nothing else would ever close the fd, ^C or not)
            if self._pending is not None:
                forks.private.pop(id(self), None)
            # A write map still held when an uncaught exception ends the interpreter was
            # cut short, not finished: its data is left incomplete.
            if self._born != forks.count:
                self._close_inherited(complete=not _crashed)
                return
            if self._maps:
                self._unmap_all(complete=not _crashed)
            if (warm := self._warm_read) is not None:
                self._warm_read = None
                warm.release()
            if (warm := self._warm) is not None:
                self._warm = None
            if self._recycle is not None and not _exiting:
                self._recycle(self._fd, warm)  # takes over `warm`
            elif warm is not None:
                warm.release()
        finally:
            _close_fd(self._fd)


_exiting = False  # at interpreter exit the kernel frees everything: nothing to recycle
_crashed = False  # the interpreter is ending on an uncaught exception (^C included)


@atexit.register
def _at_exit() -> None:
    global _exiting, _crashed
    _exiting = True
    # The interpreter's report of an uncaught exception (not SystemExit) keeps it here
    # before the atexit hooks run; every object alive when it was raised still is (its
    # traceback holds their frames), and dies only in the teardown that follows. An
    # interactive prompt (sys.ps1) keeps one after every error it showed and went on.
    _crashed = hasattr(sys, "last_value") and not hasattr(sys, "ps1")
