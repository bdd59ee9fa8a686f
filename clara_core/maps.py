"""Taking maps of an allocation: the map lock, the mapping, the checks under the lock.

Many readers or one writer, across all processes: a map holds a shared (read) or
exclusive (write) lock on MAP_BYTE of its reference's open file. Under it the header is
read again through the fd (the layout may have been retyped since get, a writer may have
come and gone): the layout must be valid and the data state must allow the map
(NeverWritten, Incomplete); a write map marks the data *writing* until its unmap.
Mixed into Allocation (see reference.Reference for the state it works on).
"""

from __future__ import annotations

import os

from . import forks
from .errors import Busy, ClaraError, Corrupt, InvalidArgument, ReadOnly, Timeout
from .mapping import Mapping
from .private_maps import PrivateMaps, unreadable
from .shm import header as hdr
from .shm import locks, memory, processes, segment, staging
from .shm.access import map_locked
from .shm.header import DATA_OFFSET, Layout
from .shm.memory import Region
from .shm.native import calls
from .shm.staging import STAGED_BELOW, Staged

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .waiting import Deadline

# Bound once: these run on every map.
_pread = os.pread
_map_locked = map_locked
_READ, _READ_WRITE = memory.PROT_READ, memory.PROT_READ | memory.PROT_WRITE
_SHARED, _SHARED_POPULATE = memory.MAP_SHARED, memory.MAP_SHARED | memory.MAP_POPULATE
_POPULATE_FROM = segment.POPULATE_FROM
_MAP_SHARED, _MAP_EXCLUSIVE, _ = locks.requests(locks.MAP_BYTE)
_parse_layout = hdr.parse_layout
_spare_list_of = memory.spare_list_of
_LAYOUT_AT, _LAYOUT_END, _DATA_AT = hdr.LAYOUT_AT, hdr.LAYOUT_END, hdr.DATA_AT
_DATA_END, _COMPLETE, _EMPTY = hdr.DATA_END, hdr.COMPLETE, hdr.EMPTY
_own_write_states, _identity = hdr.own_write_states, processes.identity
_staged, _STAGED_BELOW = Staged.take, STAGED_BELOW


# The header's first bytes (up to the layout's end) and the mapping's length of the last
# read map of complete data, and their layout: a map that reads the same bytes for the
# same length (every map of a segment mapped before) has the same verdict and layout.
_last_read: tuple = (b"", -1, None)


def _remember_read(header: bytes, length: int, layout: Layout) -> None:
    global _last_read
    _last_read = (header, length, layout)


class Maps(PrivateMaps):
    """The map side of an Allocation (mixed into it): map, premap, unmap."""

    __slots__ = ()  # (the Allocation's)

    _layout: Layout
    _description: str | None
    _writable: bool
    describe: Callable[[], str]
    _holders: Callable[[], str]
    _check_open: Callable[[], None]
    state: str

    def map(
        self,
        mode: str = "r",
        timeout: float | Deadline | None = None,
        allow_incomplete: bool = False,
        populate: bool = True,
        wait: bool = False,
    ) -> Mapping:
        """Map for reading ('r') or writing ('w'); many readers or one writer at a time.

        A conflicting map fails at once with Busy (naming the holder) unless `timeout`
        gives seconds to wait (math.inf: as long as it takes); then Timeout. Reading data
        that was never written raises NeverWritten, data whose writer died mid-write
        Incomplete, unless `allow_incomplete`. With `wait` a read map first waits, up to
        `timeout` seconds (default 60), until a writer has finished: the data is complete
        (or incomplete, if that writer failed), which lets a reader start before its
        producer. `populate` maps every page at once (much faster than page by page for
        arrays used whole); pass False to touch a few pages of a huge allocation (then
        nothing is mapped until the first `.array` or `.buffer`: a map used only for
        copy_to/copy_from maps no page at all).
        Use as ``with alloc.map('r') as array: ...`` or keep the Mapping and unmap() it.
        """
        writable = mode == "w" or (mode != "r" and _parse_mode(mode))
        if self._closed:
            self._check_open()
        if writable and not self._writable:
            raise ReadOnly(f"{self.describe()} is read-only here; it cannot be mapped for writing")
        if self._maps and (writable or self._maps[0].writable):
            if self._mapped_by_parent():
                raise Busy(
                    f"{self.describe()} is mapped by the process this one was forked from, "
                    "through the reference it inherited (their locks are one)",
                    "get() a reference of its own to map it",
                )
            raise Busy(f"{self.describe()} is already mapped by this reference; unmap it first")
        if timeout is None and not wait:
            pass  # the usual map: nothing to wait for
        elif wait:
            if writable:
                raise InvalidArgument(
                    "wait waits for data to read; a write map waits for readers with timeout"
                )
            from .waiting import deadline  # (loaded by the maps that wait only)

            timeout = self._await_written(deadline(timeout))
        else:
            from .waiting import Deadline, seconds

            if isinstance(timeout, Deadline):
                timeout = max(timeout.left(), 1e-3)
            else:
                seconds(timeout)  # checks it
        what = self._description or self.describe()
        if self._seen != forks.count:
            self._adopt()
        pending = self._pending
        if pending is not None:
            if (
                writable
                and populate
                and self._warm is None
                and pending[_DATA_AT] == _EMPTY
                and (length := DATA_OFFSET + self._layout.capacity) < _STAGED_BELOW
            ):  # the usual first write map of a fresh private segment: staged, without
                # _map_private's frame. A COPY of _map_private's staged case (the staged
                # map's safety is in this order), and shm/c/mapped.c's map_staged does
                # the same steps in C: change all three or none.
                undone, (writing, completed) = _own_write_states(pending, _identity())
                try:
                    region = _staged(self._fd, length)
                except OSError as exc:
                    raise segment.translate(exc, what) from exc
                self._undone = undone
                pending[_DATA_AT:_DATA_END] = writing
                self._completed = completed
                self._maps.append(region)
                if self._pending is not pending:  # another thread forked meanwhile
                    self._public_meanwhile(pending)
                return Mapping(self, self._maps, region, self._layout)
            region, layout = self._map_private(pending, writable, allow_incomplete, populate, what)
            return Mapping(self, self._maps, region, layout)
        fd = self._fd
        maps = self._maps
        # One call (access.map_locked): the map lock (unless held), the mapping (a kept
        # one reused, or over a kept cut-off range, or deferred: see segment.map_segment),
        # the file's last byte and the header's first bytes. Busy: nothing is mapped.
        warm = self._warm if writable else self._warm_read
        if warm is not None:
            length, at = warm.length, None
        else:
            length = DATA_OFFSET + self._layout.capacity
            at = None
            if populate:  # a kept cut-off range to map over (memory.take_spare, inline)
                spare = _spare_list_of(length)
                try:
                    at = spare.pop() if spare else 0
                except IndexError:  # another thread took it
                    at = 0
        try:
            address, locked, last, header = _map_locked(
                fd,
                None if maps else _MAP_EXCLUSIVE if writable else _MAP_SHARED,
                at,
                length,
                _READ_WRITE if writable else _READ,
                _SHARED_POPULATE if length >= _POPULATE_FROM else _SHARED,
                _LAYOUT_END,
            )
        except OSError as exc:
            raise segment.translate(exc, what) from exc
        if not locked:
            if at:
                memory.give_back(at, length)
            if not timeout:
                raise Busy(f"{what} is mapped by {self._holders()}", _busy_hint(writable))
            return self._map_waiting(writable, allow_incomplete, populate, timeout, what)
        if warm is not None:
            # A new identity for the reused mapping: a Mapping of its earlier map
            # must see itself unmapped, not take this map for its own.
            region = warm.reissue()
            if writable:  # (unless another thread of this reference kept one since)
                if self._warm is warm:
                    self._warm = None
            elif self._warm_read is warm:
                self._warm_read = None
            if region is None:  # another thread of this reference took it first
                region = Region.deferred(fd, length, writable)
        elif address:
            region = Region(address, length, writable)
        else:
            region = Region.deferred(fd, length, writable)
        try:
            # Whether the file still covers the mapping: its last byte could be read
            # (cheaper than fstat, same answer).
            if not last:
                raise _cut_short(what, length)
            # Under the map lock: the layout is valid, the data state allows this map.
            known = _last_read  # (read once: another thread may replace it)
            if not writable and header == known[0] and length == known[1]:
                layout = known[2]  # the same bytes as the last read map's: the same verdict
            elif writable or len(header) < _LAYOUT_END or header[_DATA_AT] != _COMPLETE:
                layout = self._check_locked(header, length, writable, allow_incomplete, what)
            else:  # the usual read: complete data, needing no more than the layout
                layout = _parse_layout(header, length, what)
                _remember_read(header, length, layout)
        except BaseException:
            if not maps:
                locks.unlock(fd, locks.MAP_BYTE)
            region.release()
            raise
        maps.append(region)
        self._layout = layout
        return Mapping(self, maps, region, layout)

    def _map_waiting(
        self, writable: bool, allow_incomplete: bool, populate: bool, timeout: float, what: str
    ) -> Mapping:
        """`map` of a segment mapped by others in a conflicting mode, waiting for them up
        to `timeout` seconds."""
        fd = self._fd
        maps = self._maps
        # Mapping touches no data, so it may come before the lock: a map that had to
        # wait is then ready the moment the holder lets go.
        if writable:
            region, self._warm = self._warm, None
        else:
            region, self._warm_read = self._warm_read, None
        locked = False
        try:
            if region is not None:
                region = region.reissue()  # (see `map`; None: another thread took it)
            if region is None:
                region = segment.map_segment(
                    fd, DATA_OFFSET + self._layout.capacity, writable, what, populate
                )
            length = region.length
            # The file covers the mapping (see `map`): checked before any wait (no clara
            # ever shortens a segment, so the lock adds nothing to this check), which
            # keeps it off the path of a waiting reader woken by its writer.
            try:
                last = _pread(fd, 1, length - 1)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
            if not last:
                raise _cut_short(what, length)
            made, seen = None, b""
            if not writable:
                # Before it sleeps, its result is made from the header as it is now;
                # woken, it only checks the data state and layout bytes under the lock.
                seen, now = self._layout_now(length, what)
                made = Mapping(self, maps, region, now) if seen else None
            if not locks.lock(fd, locks.MAP_BYTE, writable, timeout):
                raise Timeout(
                    f"{what} stayed mapped by {self._holders()} for {timeout:g} s",
                    "wait longer with {timeout}",
                )
            locked = True
            try:
                header = _pread(fd, _LAYOUT_END, 0)
            except OSError as exc:
                raise segment.translate(exc, what) from exc
            # (made: seen's Mapping, None if nothing was seen)
            if (
                made is not None
                and header.startswith(seen, _LAYOUT_AT)
                and header[_DATA_AT] == _COMPLETE
            ):
                maps.append(region)
                self._layout = made.layout
                return made
            layout = self._check_locked(header, length, writable, allow_incomplete, what)
        except BaseException:
            if locked and not maps:
                locks.unlock(fd, locks.MAP_BYTE)
            if region is not None:
                region.release()
            raise
        maps.append(region)
        self._layout = layout
        return Mapping(self, maps, region, layout)

    def premap(self, mode: str = "r") -> None:
        """Prepare a later map(mode) now: fill this process's page tables for it (what
        ``populate`` does), without the map lock and without touching the data, so that
        the map itself is then instant. An operator does it while it waits for its inputs.
        """
        if self._closed:
            self._check_open()
        writable = mode == "w" or (mode != "r" and _parse_mode(mode))
        if writable and not self._writable:
            raise ReadOnly(f"{self.describe()} is read-only here; it cannot be mapped for writing")
        self._premap(writable, hdr.DATA_OFFSET + self._layout.capacity, self.describe())

    def unmap(self) -> None:
        """Unmap every map this reference holds (write maps are marked complete)."""
        self._unmap_all()

    def _await_written(self, deadline: Deadline) -> float:
        """Wait until a writer has finished (complete or incomplete data); Timeout if none
        has by the deadline. Returns the seconds left for the map lock (never 0: a read
        map arriving just as its writer let go would otherwise be called busy)."""

        def finished_state() -> str | None:
            state = self.state
            return state if state in ("complete", "incomplete") else None

        from .waiting import until

        finished = until(finished_state, deadline)
        if finished is None:
            if self.state == "empty":
                why = "was not written"
            else:
                why = f"was still being written by {self._holders()}"
            raise Timeout(
                f"{self.describe()} {why} within {deadline.length:g} s",
                "wait longer with {timeout}",
            )
        return max(deadline.left(), 1e-3)

    def _layout_now(self, length: int, what: str) -> tuple[bytes, Layout | None]:
        """Layout bytes and layout in the header now (no lock: a guess); b"" if not valid."""
        try:
            if len(now := _pread(self._fd, _LAYOUT_END, 0)) == _LAYOUT_END:
                return now[_LAYOUT_AT:], _parse_layout(now, length, what)
        except (ClaraError, OSError):
            pass
        return b"", None

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
            writing, self._completed = hdr.write_map_states(header, *processes.identity())
            self._undone = header[_DATA_AT:_DATA_END]
            segment.write_at(self._fd, writing, hdr.DATA_AT, what)
        elif header[_DATA_AT] != _COMPLETE:
            data = hdr.read_data_state(header)  # (Corrupt if it is no state at all)
            if not allow_incomplete:
                raise unreadable(data, what)
        return layout


def _staged_map_failed(alloc: Maps, exc: OSError, _: object = None) -> None:
    """The error of map('w')'s one C call (map_staged) as map raises it: its staged range
    could not be mapped (translated: OutOfSpace), or what a later step raised."""
    if isinstance(exc, ClaraError):
        raise exc
    raise segment.translate(exc, alloc._description or alloc.describe()) from exc


def _cut_short(what: str, length: int) -> Corrupt:
    return Corrupt(
        f"{what} is corrupt (its file was cut short of the {length} bytes it needs); "
        "remove it with `clara leak-check --fix`"
    )


def _busy_hint(writable: bool) -> str:
    if writable:
        return "try again later, or wait for it with {timeout}"
    return "wait for its writer to finish with {wait} (or {timeout})"


def _parse_mode(mode: str) -> bool:
    value = str(mode).lower()
    if value in ("r", "read"):
        return False
    if value in ("w", "write"):
        return True
    raise InvalidArgument(f"invalid map mode {mode!r}: use 'r' (read) or 'w' (write)")


if calls is not None:  # what map_staged and a Mapping's __enter__ and __exit__ work with
    staging.set_up_maps(calls, Mapping, forks, processes, memory)
    # map('w')'s staged case in one C call, with no frame (shm/c/usual_methods.c; its
    # Python function, this `map`, makes every other map, and is what runs without it)
    Maps.map = calls.UsualMethod(calls.USUAL_MAP, Maps.map, _staged_map_failed)  # type: ignore[method-assign]
