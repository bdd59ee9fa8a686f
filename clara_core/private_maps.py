"""Maps of an allocation no other process can reach yet (see `reference._defer`).

A segment made in a private context's way (or not yet published or handed out) has no
name anyone else could open: its map needs no map lock, no file check (nobody could have
cut it short or retyped it), and its data state is kept in memory (`_pending`) until the
segment becomes visible. Mixed into Allocation under maps.Maps, whose `map` calls it.
The first write map of a small one is staged in this process's memory (shm/staging.py).
"""

from __future__ import annotations

from .errors import Incomplete, NeverWritten
from .reference import Reference
from .shm import header as hdr
from .shm import memory, processes, segment
from .shm.header import DATA_OFFSET, Layout
from .shm.memory import Region
from .shm.staging import STAGED_BELOW as _STAGED_BELOW
from .shm.staging import Staged

# Bound once: these run on every map of a private segment.
_READ, _READ_WRITE = memory.PROT_READ, memory.PROT_READ | memory.PROT_WRITE
_SHARED = memory.MAP_SHARED
_POPULATE_FROM = segment.POPULATE_FROM
_DATA_AT, _DATA_END = hdr.DATA_AT, hdr.DATA_END
_COMPLETE, _EMPTY = hdr.COMPLETE, hdr.EMPTY
_map_at, _take_spare, _own_write_states = memory.map_at, memory.take_spare, hdr.own_write_states
_staged = Staged.take
_identity = processes.identity  # (this process's)


class PrivateMaps(Reference):
    """The private map path of an Allocation (mixed into it, under maps.Maps)."""

    __slots__ = ()  # (the Allocation's)

    _layout: Layout

    def _map_private(
        self,
        pending: bytearray,
        writable: bool,
        allow_incomplete: bool,
        populate: bool,
        what: str,
    ) -> tuple[Region, Layout]:
        """`map` of a segment no other process can reach (see `_defer`): no lock to take, no
        file that anyone else could have cut short or retyped, the data state in `pending`."""
        if writable:
            undone, (writing, completed) = _own_write_states(pending, _identity())
            region, self._warm = self._warm, None
        else:
            if pending[_DATA_AT] != _COMPLETE and not allow_incomplete:
                raise unreadable(hdr.read_data_state(pending), what)
            region, self._warm_read = self._warm_read, None
        length = DATA_OFFSET + self._layout.capacity
        if region is not None:
            region = region.reissue()  # (see maps.Maps.map; None: another took it)
        if region is not None:
            pass
        elif writable and populate and length < _STAGED_BELOW and pending[_DATA_AT] == _EMPTY:
            # Small and never written (zeros): staged in this process's memory, written
            # to the file at unmap (see shm/staging.py). Maps.map has a COPY of this case
            # and of the bookkeeping below (its usual map, without this frame): change
            # both or neither.
            try:
                region = _staged(self._fd, length)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
        elif populate and length < _POPULATE_FROM:
            # A small one, mapped as Region.map would (over a kept range, else anywhere).
            prot, at = _READ_WRITE if writable else _READ, _take_spare(length)
            try:
                address = _map_at(at, length, prot, _SHARED, self._fd)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
            region = Region(address, length, writable)
        else:  # a fresh segment never written: its pages are fresh too
            fresh = pending[_DATA_AT] == _EMPTY
            region = segment.map_segment(self._fd, length, writable, what, populate, fresh)
        if writable:
            self._undone = undone
            pending[_DATA_AT:_DATA_END] = writing
            self._completed = completed
        self._maps.append(region)
        if self._pending is not pending:  # another thread forked meanwhile
            self._public_meanwhile(pending)
        return region, self._layout


def unreadable(data: hdr.DataState, what: str) -> Incomplete | NeverWritten:
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
