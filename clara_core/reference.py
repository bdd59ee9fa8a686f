"""The operating-system side of one allocation reference: its fd and its maps.

A reference is an open file of the segment holding a shared lock on REFERENCE_BYTE (the
kernel counts references). Its maps are Regions under the map lock; mappings no view can
reach any more are kept ("warm") for its next map of the same kind, and at close the
segment may be offered to the pool (`recycle`).

A fresh private segment has no name: no other process can open it, so while it has none
its reference lock, map lock, the checks under that lock and the data-state writes would
count, exclude and tell nobody. They wait (the header it would have is kept `pending`, in
memory) until `go_public`, which the allocation calls before the file gets a name
(publish, make_handle); and before this process forks, so that a child sharing the file
sees the same segment as we do (docs/segment-format.md, 5.3).
"""

from __future__ import annotations

import atexit
import os

from . import forks
from .errors import Busy, ClaraError, Corrupt, Incomplete, NeverWritten, Timeout
from .forks import Inheritance, ParentsMap
from .shm import header as hdr
from .shm import locks, processes, segment
from .shm.header import DATA_OFFSET, Layout
from .shm.memory import Region

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Bound once: these run on every map.
_pread = os.pread
_parse_layout = hdr.parse_layout
_LAYOUT_AT, _LAYOUT_END, _DATA_AT = hdr.LAYOUT_AT, hdr.LAYOUT_END, hdr.DATA_AT
_DATA_END, _COMPLETE = hdr.DATA_END, hdr.COMPLETE


class Reference(Inheritance):
    """The operating-system side of one reference: its fd and maps (also the finalizer)."""

    __slots__ = (
        "born",
        "closed",
        "completed",
        "fd",
        "maps",
        "parents",
        "pending",
        "recycle",
        "seen",
        "undone",
        "warm",
        "warm_read",
    )

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False
        self.born = forks.count  # a child of a later fork inherits it (see close)
        self.seen = forks.count  # when `maps` was last sorted (see forks.Inheritance)
        # Maps made by the process this one was forked from, still mapped here; None
        # while there are none (the usual case).
        self.parents: list[Region] | None = None
        # This process's maps, and a ParentsMap for each map of a parent process that
        # this one has let go of (the parent's map and lock remain).
        self.maps: list[Region] = []
        self.completed = b""  # the data state a write map's unmap marks (made by map)
        self.undone = b""  # the data state before that write map (see `abandon`)
        # Mappings no view can reach, kept for this reference's next map of that kind: no
        # mmap, no munmap, no page faults (for a big array, faulting its pages in again
        # costs more than the copy that follows). They hold no lock: others map meanwhile.
        self.warm: Region | None = None
        self.warm_read: Region | None = None
        # Called at close to offer the segment to the pool (or to free its name).
        self.recycle: Callable[[int, Region | None], None] | None = None
        # A nameless segment's header as it will be written when it goes public (data
        # state included), while nothing else can reach the file; None once it has.
        self.pending: bytearray | None = None

    def defer(self, header: bytes) -> None:
        """Keep the locks and data state of a fresh, nameless segment (starting with
        `header`) in memory until `go_public` (this reference holds no lock yet)."""
        self.pending = bytearray(header)
        forks.private[id(self)] = self

    def go_public(self, what: str) -> bytearray | None:
        """Before the file may reach another process: take the locks deferred while it
        had no name (the reference lock; the map lock of the maps held). Returns the
        header it was kept in memory, whose data state the caller writes (see
        `materialize`), or None if nothing was deferred."""
        pending = self.pending
        if pending is None:
            return None
        fd = self.fd
        # Nobody else can hold these: the file has had no name, no other open file.
        locks.try_lock(fd, locks.REFERENCE_BYTE, False)
        if self.maps and not locks.try_lock(fd, locks.MAP_BYTE, self.maps[0].writable):
            raise Busy(f"{what} is locked by a process that should not reach it")
        self.pending = None
        forks.private.pop(id(self), None)
        return pending

    def materialize(self, what: str) -> None:
        """`go_public`, and write the data state kept in memory to the file."""
        pending = self.go_public(what)
        if pending is not None:
            segment.write_at(self.fd, pending[_DATA_AT:_DATA_END], _DATA_AT, what)

    def map(
        self,
        writable: bool,
        timeout: float | None,
        allow_incomplete: bool,
        populate: bool,
        layout: Layout,
        what: str,
        holders: Callable[[], str],
        make: Callable[..., Any],
        owner: object,
    ) -> Any:
        """Take the map lock (Busy, or wait up to `timeout`), map the segment, check it.

        Returns make(owner, self, region, layout): region now one of `maps`, layout as found
        under the lock. `what` names the allocation in errors, `holders()` the lock's holders.
        """
        if self.seen != forks.count:
            self.adopt()
        pending = self.pending
        if pending is not None:
            mapped = self._map_private(pending, writable, allow_incomplete, populate, layout, what)
            return make(owner, self, *mapped)
        fd = self.fd
        locked = bool(self.maps) or locks.try_lock(fd, locks.MAP_BYTE, writable)
        if not locked and not timeout:
            raise Busy(f"{what} is mapped by {holders()}", _busy_hint(writable))
        # Mapping touches no data, so it may come before the lock: a map that had to
        # wait is then ready the moment the holder lets go.
        if writable:
            region, self.warm = self.warm, None
        else:
            region, self.warm_read = self.warm_read, None
        try:
            if region is None:
                region = segment.map_segment(
                    fd, DATA_OFFSET + layout.capacity, writable, what, populate
                )
            else:
                # A new identity for the reused mapping: a Mapping of its earlier map
                # must see itself unmapped, not take this map for its own.
                region = region.reissue()
            length = region.length
            # Whether the file still covers the mapping: its last byte can be read
            # (cheaper than fstat, same answer). Checked before any wait (no clara ever
            # shortens a segment, so the lock adds nothing to this check), which keeps
            # it off the path of a waiting reader woken by its writer.
            try:
                last = _pread(fd, 1, length - 1)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
            if not last:
                raise Corrupt(
                    f"{what} is corrupt (its file was cut short of the {length} "
                    "bytes it needs); remove it with `clara leak-check --fix`"
                )
            made, seen = None, b""
            if not locked:
                assert timeout is not None
                if not writable:
                    # Before it sleeps, its result is made from the header as it is now;
                    # woken, it only checks the data state and layout bytes under the lock.
                    seen, now = self._layout_now(length, what)
                    made = make(owner, self, region, now) if seen else None
                if not locks.lock(fd, locks.MAP_BYTE, writable, timeout):
                    raise Timeout(
                        f"{what} stayed mapped by {holders()} for {timeout:g} s",
                        "wait longer with {timeout}",
                    )
                locked = True
            # Under the map lock: the layout is valid, the data state allows this map.
            try:
                header = _pread(fd, _LAYOUT_END, 0)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
            if seen and header.startswith(seen, _LAYOUT_AT) and header[_DATA_AT] == _COMPLETE:
                self.maps.append(region)
                return made
            if writable or len(header) < _LAYOUT_END or header[_DATA_AT] != _COMPLETE:
                layout = self._check_locked(header, length, writable, allow_incomplete, what)
            else:  # the usual read: complete data, needing no more than the layout
                layout = _parse_layout(header, length, what)
        except BaseException:
            if locked and not self.maps:
                locks.unlock(fd, locks.MAP_BYTE)  # also when mmap itself failed
            if region is not None:
                region.release()
            raise
        self.maps.append(region)
        return make(owner, self, region, layout)

    def _layout_now(self, length: int, what: str) -> tuple[bytes, Layout | None]:
        """Layout bytes and layout in the header now (no lock: a guess); b"" if not valid."""
        try:
            if len(now := _pread(self.fd, _LAYOUT_END, 0)) == _LAYOUT_END:
                return now[_LAYOUT_AT:], _parse_layout(now, length, what)
        except (ClaraError, OSError):
            pass
        return b"", None

    def _map_private(
        self,
        pending: bytearray,
        writable: bool,
        allow_incomplete: bool,
        populate: bool,
        layout: Layout,
        what: str,
    ) -> tuple[Region, Layout]:
        """`map` of a segment no other process can reach (see `defer`): no lock to take, no
        file that anyone else could have cut short or retyped, the data state in `pending`."""
        if writable:
            pid, start = processes.identity()  # (not *identity(): no args tuple, P2's path)
            writing, completed = hdr.write_map_states(pending, pid, start)
            region, self.warm = self.warm, None
        else:
            if pending[_DATA_AT] != _COMPLETE and not allow_incomplete:
                raise _unreadable(hdr.read_data_state(pending), what)
            region, self.warm_read = self.warm_read, None
        if region is None:
            region = segment.map_segment(
                self.fd, DATA_OFFSET + layout.capacity, writable, what, populate
            )
        else:
            region = region.reissue()  # (see map)
        if writable:
            self.undone = bytes(pending[_DATA_AT:_DATA_END])
            pending[_DATA_AT:_DATA_END] = writing
            self.completed = completed
        self.maps.append(region)
        if self.pending is not pending:  # another thread forked meanwhile
            self._public_meanwhile(pending)
        return region, layout

    def _public_meanwhile(self, pending: bytearray) -> None:
        """Another thread forked while this one changed a map of a deferred segment: the
        fork brought its locks and data state to the file (`forks`) before the change
        was done (mmap lets the GIL go). Bring them there again, as the change left them."""
        fd = self.fd
        if self.maps:
            if not locks.try_lock(fd, locks.MAP_BYTE, self.maps[0].writable):
                raise Busy("a private allocation is locked by a process that should not reach it")
        else:
            locks.unlock(fd, locks.MAP_BYTE)
        segment.write_at(fd, pending[_DATA_AT:_DATA_END], _DATA_AT, "a private allocation")

    def _check_locked(
        self, header: bytes, length: int, writable: bool, allow_incomplete: bool, what: str
    ) -> Layout:
        """Under the map lock, from the header's first bytes: the layout is valid, the
        data state allows this map (a write map marks it *writing*).

        The header is read and written through the fd, never through the map: a file cut
        short by another process (a writer of a shared-mode context) is then an error
        here, not a SIGBUS; and touching the header page of a fresh map would fault in its
        neighbours too, all of which unmap then has to tear down again.
        """
        if len(header) < _LAYOUT_END:
            raise Corrupt(
                f"{what} is corrupt (its file was cut to {len(header)} bytes); remove it "
                "with `clara leak-check --fix`"
            )
        layout = _parse_layout(header, length, what)
        if writable:
            # What unmap will write is made now: waiters wake as soon as it is written.
            writing, self.completed = hdr.write_map_states(header, *processes.identity())
            self.undone = header[_DATA_AT:_DATA_END]
            segment.write_at(self.fd, writing, hdr.DATA_AT, what)
        elif header[_DATA_AT] != _COMPLETE:
            data = hdr.read_data_state(header)  # (Corrupt if it is no state at all)
            if not allow_incomplete:
                raise _unreadable(data, what)
        return layout

    def unmap(self, region: Region, complete: bool) -> None:
        """Finish one map: mark a write map complete (or leave it incomplete), unmap."""
        if self.seen != forks.count:
            self.adopt()
        if self.parents and region in self.parents:
            self.leave_to_parent(region)
            return
        writable = region.writable
        pending = self.pending
        if writable and complete:
            if pending is not None:  # nobody else can see it yet (see defer)
                pending[_DATA_AT:_DATA_END] = self.completed
            else:
                # What map() wrote stays as it was: the write lock kept every other clara out.
                try:
                    os.pwrite(self.fd, self.completed, _DATA_AT)
                except OSError as exc:
                    raise segment.translate(exc, "the data state") from exc
        maps = self.maps
        maps.remove(region)
        unlock = not maps and pending is None  # (a deferred map holds no lock)
        if (self.warm if writable else self.warm_read) is None:  # keep it for the next map
            # Views that outlive the map are cut off first, before anyone else may map
            # it (detach returns None if then nothing of it stays mapped).
            kept = region.detach()
            if unlock:
                locks.unlock(self.fd, locks.MAP_BYTE)
            if kept is not None:
                if writable:
                    self.warm = kept
                else:
                    self.warm_read = kept
        elif region.lent():
            region.release()  # views outlive the map: cut them off before anyone else
            if unlock:  # may map it
                locks.unlock(self.fd, locks.MAP_BYTE)
        else:
            if unlock:  # nothing reaches this memory: let waiters in first
                locks.unlock(self.fd, locks.MAP_BYTE)
            region.release()
        if pending is not None and self.pending is not pending:  # (see _map_private)
            self._public_meanwhile(pending)

    def abandon(self, region: Region) -> None:
        """Undo a map whose pages could not be mapped when its first view was taken (a
        map made with populate=False): nothing was written through it, so a write map
        puts back the data state it found (still under its lock), then it is unmapped,
        as if map() itself had failed."""
        if region not in self.maps:
            return
        if self.seen != forks.count:
            self.adopt()
        if self.parents and region in self.parents:
            self.leave_to_parent(region)
            return
        if region.writable and len(self.maps) == 1:
            if self.pending is not None:  # nobody else can see it yet (see defer)
                self.pending[_DATA_AT:_DATA_END] = self.undone
            else:
                try:
                    os.pwrite(self.fd, self.undone, _DATA_AT)
                except OSError as exc:
                    raise segment.translate(exc, "the data state") from exc
        self.unmap(region, complete=False)

    def unmap_all(self) -> None:
        """Finish every map (write maps are marked complete); in a forked child, its
        parent's maps are only unmapped here (see `_leave_to_parent`)."""
        for region in list(self.maps):
            if type(region) is not ParentsMap:
                self.unmap(region, complete=True)

    def premap(self, writable: bool, length: int, what: str) -> None:
        """Map the segment now, populated, as the mapping the next map of this kind will
        reuse; nothing if one is kept already. No lock is taken: mapping touches no data
        (see map), which checks the file and the data state under the lock as always."""
        if (self.warm if writable else self.warm_read) is not None:
            return
        region = segment.map_segment(self.fd, length, writable, what, populate=True)
        if writable:
            self.warm = region
        else:
            self.warm_read = region

    def take_warm(self, writable: bool = True) -> Region | None:
        """A kept mapping of the right kind, if any, for reuse by a new map."""
        if writable:
            warm, self.warm = self.warm, None
        else:
            warm, self.warm_read = self.warm_read, None
        return warm

    def close(self) -> None:
        """Finish every map, recycle or free the segment, close the file (once)."""
        if self.closed:
            return
        self.closed = True
        if self.pending is not None:
            forks.private.pop(id(self), None)
        if self.born != forks.count:
            self.close_inherited()
            return
        try:
            if self.maps:
                self.unmap_all()
            if self.warm_read is not None:
                self.warm_read.release()
                self.warm_read = None
            warm, self.warm = self.warm, None
            if self.recycle is not None and not _exiting:
                self.recycle(self.fd, warm)  # takes over `warm`
            elif warm is not None:
                warm.release()
        finally:
            os.close(self.fd)


def _unreadable(data: hdr.DataState, what: str) -> Incomplete | NeverWritten:
    """Why data in `data`'s state cannot be read (not complete)."""
    if data.state == hdr.WRITING:
        return Incomplete(
            f"{what} is incomplete: its writer (pid {data.writer_pid}) died or failed mid-write",
            "write it again, or read anyway with {allow_incomplete}",
        )
    return NeverWritten(
        f"{what} was never written",
        "write it first, wait for its writer with {wait}, "
        "or read what it holds anyway with {allow_incomplete} (zeros, or the old "
        "bytes of a recycled segment)",
    )


def _busy_hint(writable: bool) -> str:
    if writable:
        return "try again later, or wait for it with {timeout}"
    return "wait for its writer to finish with {wait} (or {timeout})"


_exiting = False  # at interpreter exit the kernel frees everything: nothing to recycle


@atexit.register
def _at_exit() -> None:
    global _exiting
    _exiting = True
