"""Small write maps of fresh private segments, staged in this process's own memory.

A fresh private segment has no name (reference._defer): no other process can reach it,
and its data is zeros. Its first write map need not map the file: its views are made
over private memory holding zeros, and its unmap writes what they hold into the file
(one pwrite), then zeros that memory, so that views outliving the map read zeros and
write to nothing, as a cut-off view does. A mapped file costs more for a few pages: the
mmap, a page fault per page, the cut-off of a view alive at unmap (an mmap MAP_FIXED that
also tears the shared pages down) and the munmap at its death. A range whose views have
died is kept for the next staged map of its length (zeroed again then, no system call).

Before the segment gets a name or a handle or goes to another program (`path`: see
reference._go_public), or is read or written through its fd while mapped (Mapping's
copies), a staged map is *attached*: its bytes are written to the file, then the file is
mapped in their place (mmap MAP_FIXED), so that its views see the segment from then on,
exactly as those of any other map. At a fork only the forking thread's (another thread
may be writing its views: see reference._attach_staged): the others stay staged, their
unmap writes the data as ever, and a forked child's copy of them is not the child's to
write back (its release there drops the memory only: `_owned` is this process's).

`stage` and `write_staged` are the C extension's (shm/c/making.c) where it is built,
else their pure-Python twins here (same calls, same results and errors).
"""

from __future__ import annotations

import errno
import os
from _thread import get_ident

from .header import DATA_OFFSET
from .memory import (
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    Region,
    cut_off,
    disown,
    lending,
    make_holder,
    map_at,
    munmap,
)
from .native import calls
from .segment import POPULATE_FROM

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

# Segments shorter than this (header page included) have their first write map staged:
# below it, one pwrite of the data costs less than mapping its pages and faulting them in
# one by one (measured: 4 KiB of data 31 -> 22 us, 32 KiB 54 -> 36, 124 KiB 125 -> 76 for
# create + map('w') + fill + unmap + release); from it on, maps are populated at once.
STAGED_BELOW = POPULATE_FROM
_READ_WRITE = PROT_READ | PROT_WRITE
# Ranges kept per length, lengths kept, longest kept: at most 1 MiB of this memory.
_KEEP, _LENGTHS, _KEPT_UP_TO = 2, 8, 64 << 10
# Staged ranges no view can reach any more, by length, for the next staged map. Only this
# module maps, keeps or unmaps them, so an address found here is always ours to reuse.
_kept: dict[int, list[int]] = {}
# This process's staged maps, until their release or attach: their addresses, and the
# thread that made each. A forked child has none (a staged map it inherited unattached,
# another thread's, is its parent's to write).
_owned: dict[int, int] = {}
# The attach under way (Staged.attach: address -> fd, length): a fork in the middle of it
# (a signal handler's, a finalizer's, in the attaching thread: another thread's waits for
# memory's lock) finishes it first (`finish_attaching`), else the child would inherit the
# private copy of a map its thread made, and its writes through the views be its own.
_attaching: dict[int, tuple[int, int]] = {}


def _forget_in_child() -> None:
    _owned.clear()
    _attaching.clear()  # (finished before the fork: the child's is a map of the file)


os.register_at_fork(after_in_child=_forget_in_child)


def _data_of(address: int, length: int) -> memoryview:
    """The data bytes (from DATA_OFFSET) of the staged range at `address`, writable."""
    return memoryview(make_holder(address, length, True, None)).cast("B")[DATA_OFFSET:]


def _stage(at: int, length: int) -> int:
    """Private, read-write memory of `length` bytes whose data (from DATA_OFFSET on) is
    zeros: the kept range `at`, its data zeroed, or (at 0) new private zeros."""
    if length <= DATA_OFFSET:
        raise ValueError("a staged range is longer than its header page")
    if at:
        _data_of(at, length)[:] = bytes(length - DATA_OFFSET)
        return at
    import mmap  # (pure Python only: the extension needs no mmap module)

    return map_at(0, length, _READ_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)


def _write_staged(fd: int, address: int, length: int, zero: bool) -> None:
    """The data of the staged range at `address` written into the file `fd` at the same
    offsets (a short write goes on, none at all is ENOSPC), then zeroed if `zero`."""
    if length <= DATA_OFFSET:
        raise ValueError("a staged range is longer than its header page")
    data = _data_of(address, length)
    done = 0
    while done < len(data):
        written = os.pwrite(fd, data[done:], DATA_OFFSET + done)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += written
    if zero:
        data[:] = bytes(len(data))


def _attach_staged(fd: int, address: int, length: int) -> None:
    """The staged data written into the file `fd`, then the file mapped in its place
    (MAP_FIXED). On a failure the range is private memory holding the staged data again
    (a fixed map that failed elsewhere is undone, the data read back into new zeros)."""
    _write_staged(fd, address, length, False)
    mapped = map_at(address, length, _READ_WRITE, MAP_SHARED, fd)
    if mapped == address:
        return
    munmap(mapped, length)  # (map_at maps elsewhere when the fixed map fails)
    import mmap  # (pure Python only)

    private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if map_at(address, length, _READ_WRITE, private, -1) == address:
        os.preadv(fd, [_data_of(address, length)], DATA_OFFSET)
    raise OSError(errno.ENOMEM, "mmap: a staged map could not be attached")


if calls is not None:
    stage, write_staged = calls.stage, calls.write_staged
    attach_staged = calls.attach_staged
else:
    stage, write_staged, attach_staged = _stage, _write_staged, _attach_staged


def set_up_maps(calls: Any, mapping: type, *modules: Any) -> None:
    """Give the C calls that make, view and unmap a staged map in one call each
    (shm/c/mapped.c) the classes, this module's state and limits, and the globals of
    `modules` (forks, processes, memory) that they read."""
    calls.set_up_maps(
        Staged, mapping, _kept, _owned, *(vars(module) for module in modules),
        _KEEP, _LENGTHS, _KEPT_UP_TO, STAGED_BELOW,
    )  # fmt: skip


def finish_attaching() -> None:
    """Before a fork: finish the attach this thread is in the middle of, if any (see
    `_attaching`); attaching again what is attached already changes nothing."""
    for address, (fd, length) in list(_attaching.items()):
        try:
            attach_staged(fd, address, length)
        except OSError:  # (a fork hook must not raise: the attach itself will, and
            continue  # leaves it staged)
        _owned.pop(address, None)  # (done: the attach, resumed, has nothing more to do)


def _maps_the_file(address: int, fd: int) -> bool:
    """Whether the mapping at `address` is of the file `fd` (not private memory)."""
    inode = os.fstat(fd).st_ino
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if int(fields[0].split("-")[0], 16) == address:
                return int(fields[4]) == inode
    return False


def of_this_thread(region: Region) -> bool:
    """Whether `region` is a staged map this thread made (and has not attached)."""
    return type(region) is Staged and _owned.get(region.address) == get_ident()


class Staged(Region):
    """A write map of a fresh private segment held in private memory (see the module).

    A Region whose `release` writes the data into the file first; its file is `_fd` (a
    deferred Region's slot: a staged one is always mapped), until it is released or
    attached (then it *is* a plain Region: same slots, its class changed in place)."""

    __slots__ = ()

    @classmethod
    def take(cls, fd: int, length: int) -> Staged:
        """A staged write map of the fresh segment `fd` (`length` bytes, header page and
        data, as a Region of it), over a kept range or a new one."""
        kept = _kept.get(length)
        at = 0
        if kept:
            try:  # noqa: SIM105 (contextlib is not loaded at start-up: clara_core.lazy)
                at = kept.pop()
            except IndexError:  # another thread took it
                pass
        region = cls(stage(at, length), length, True)
        region._fd = fd
        _owned[region.address] = get_ident()
        return region

    def attach(self) -> None:
        """Write the staged data into the file and map the file in its place (MAP_FIXED):
        from now on its views see the segment, and this is a plain Region."""
        with lending():  # (not while another thread releases it, or lends from it)
            address, fd, length = self.address, self._fd, self.length
            owner = _owned.get(address)
            if type(self) is not Staged or owner is None:  # attached, released, or a
                return  # parent process's
            _attaching[address] = fd, length
            try:
                # A plain Region first: an exception a signal handler raises (^C) right
                # after the call must find a map of the file, never a "private" range to
                # keep (the next staged map would zero the file's data through it).
                self.__class__, self._fd = Region, -1
                if _owned.pop(address, None) is None:  # a fork attached it meanwhile, or
                    return  # this is that fork's child: a map of the file already
                attach_staged(fd, address, length)
            except BaseException:
                _attaching.pop(address, None)  # (first: a fork now leaves it as it is)
                if not _maps_the_file(address, fd):  # (rare: failed, or cut short
                    self.__class__, self._fd = Staged, fd  # before its mmap) staged
                    _owned[address] = owner
                raise
            finally:
                _attaching.pop(address, None)

    # Nothing stays mapped to keep warm (the next map stages again): `release` (returns None).
    detach = Region.release  # type: ignore[assignment]

    def write_out(self) -> None:
        """Write the data into the file now (it stays staged): the unmap of a map whose
        segment went public meanwhile (a fork), before the file says complete."""
        address = self.address
        if address in _owned:
            write_staged(self._fd, address, self.length, False)

    def _unmap_range(self, address: int, fd: int) -> None:
        # Region.release, no view alive: the data goes to the file (unless the map is a
        # parent process's), the range is kept.
        if address in _owned:
            _owned.pop(address, None)
            write_staged(fd, address, self.length, False)
        _give_back(address, self.length)

    def _cut_off(self, holder: Any) -> None:
        # Region.release, views alive: the data goes to the file, the views read zeros
        # (they can never reach the file: it is not mapped here); their holder owns the
        # range from now on (kept at their death, or unmapped) and lets go of its owner
        # (the map may die, as after cut_off).
        address, length = self.address, self.length
        keep = length <= _KEPT_UP_TO  # (else not worth its pages while the views live)
        if address in _owned:
            _owned.pop(address, None)
            write_staged(self._fd, address, length, keep)
        elif keep:  # a parent process's (see `_owned`): its views here read zeros too
            stage(address, length)
        if keep:
            kept = _kept.get(length)  # (as _kept_for finds it, without its frame)
            disown(holder, kept if kept is not None else _kept_for(length), _KEEP)
        else:  # private zeros mapped over it (no page stays in memory), unmapped at death
            cut_off(holder, _READ_WRITE, None, 0)
        self._holder = None
        self.address, self._fd = 0, -1


def _kept_for(length: int) -> list[int] | None:
    """The list keeping ranges of `length` whose views died, or None if none is kept."""
    kept = _kept.get(length)
    if kept is None and len(_kept) < _LENGTHS and length <= _KEPT_UP_TO:
        kept = _kept.setdefault(length, [])
    return kept


def _give_back(address: int, length: int) -> None:
    """Keep the range no view can reach for the next staged map, or unmap it."""
    kept = _kept_for(length)
    if kept is not None and len(kept) < _KEEP:
        kept.append(address)
    else:
        munmap(address, length)
