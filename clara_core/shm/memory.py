"""Mapped memory, managed with mmap(2), mremap(2) and munmap(2) directly.

Python's mmap object can only tell whether views of it are alive by failing to close,
and duplicates the file descriptor. A Region instead lends every view (numpy arrays,
memoryviews) through one `holder` object and watches it with a weak reference:

- holder dead at unmap time: no view is left, the pages can be unmapped, or kept mapped
  ("warm") for the next map, sparing the kernel one page fault per 4 KiB;
- holder alive: views outlive the map. They are *cut off*: their address range is
  replaced by private zero-filled memory of the same protection (one mmap(MAP_FIXED)),
  so they stay safe to touch but can never again read or write the segment (a reader's
  stale view cannot see a later writer, a writer's cannot corrupt a reader); the holder
  unmaps that range when the last view dies, or, for a small read-only one, keeps it
  for the next map of that length to replace in place. With `detach()` a big mapping's
  shared pages first move, page tables and all, to a new address that stays warm; a
  small one is not worth the four extra system calls (its few pages fault in again for
  less).

Every munmap, mremap or MAP_FIXED costs a TLB flush (on a VM, often an interrupt to the
other CPU): the paths above use as few as they can.
"""

from __future__ import annotations

import errno
import os
from _thread import RLock
from _weakref import ref as weak_ref  # weakref.ref, without the weakref module (start-up)

from . import memory_calls
from .fields import RegionFields
from .native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

_PROT_NONE = 0
_MADV_POPULATE_WRITE = 23  # Linux 5.14
_PMD_SIZE = 2 << 20  # what one page-table page maps (x86-64 and 4 KiB-page arm64)
_MREMAP_MAYMOVE, _MREMAP_FIXED, _MREMAP_DONTUNMAP = 1, 2, 4
DETACH_FROM = _PMD_SIZE  # smaller mappings with live views are cut off, not moved
if calls is not None:  # (the C extension's: no mmap module to import)
    PROT_READ, PROT_WRITE = calls.PROT_READ, calls.PROT_WRITE
    MAP_SHARED, MAP_POPULATE = calls.MAP_SHARED, calls.MAP_POPULATE
else:  # Linux's values (the mmap module is a shared library to load: ~10 ms of every
    # pure-Python `clara map` copy, which maps nothing); MAP_POPULATE differs on a few
    PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1
    if os.uname().machine.startswith(("x86", "i686", "aarch64", "arm", "riscv", "ppc", "s390")):
        MAP_POPULATE = 0x8000
    else:  # (mips, parisc, alpha, ...)
        from mmap import MAP_POPULATE
_READ, _READ_WRITE = PROT_READ, PROT_READ | PROT_WRITE
_SHARED, _SHARED_POPULATE = MAP_SHARED, MAP_SHARED | MAP_POPULATE
# Address ranges of small read maps cut off from their segment whose last view has died,
# by length. They stay mapped: private, read-only, never written, so they hold no memory
# (a read of them maps the kernel's one zero page). The next map of that length replaces
# one in place (mmap MAP_FIXED), which costs the kernel about half of what a new mapping
# and the munmap of the old one do. Only this module maps or unmaps these ranges, so an
# address found here is always ours to replace. A few per length, a few lengths.
_spare: dict[int, list[int]] = {}
_SPARE_PER_LENGTH = 2
_SPARE_LENGTHS = 16

# Held from "no live holder?" to the holder made and registered, and from "a live holder?"
# to the munmap or the cut-off, so that another thread of the same reference can never
# make a view of a range being unmapped (it would read unmapped memory, or whatever is
# mapped there next). Reentrant: a garbage collection run inside may release another.
# An exception a signal handler raises (^C) may come right after an acquire call returns
# (before a `try`: it was left held for good, and every other thread hung at its next view
# or unmap), or interrupt its wait (nothing taken). So each acquire is in a `try` of its
# own whose `except` lets go only what it took (_let_go), then the work in a `try` whose
# `finally` releases: as safe as `with` (which costs ~650 more instructions a use).
_lending = RLock()
_lend, _lent = _lending.acquire, _lending.release  # (bound: cheaper than `with`)


def _new_lock_in_child() -> None:
    global _lending, _lend, _lent
    _lending = RLock()  # (the thread that held it at the fork is not in the child)
    _lend, _lent = _lending.acquire, _lending.release


def lending() -> RLock:
    """The lock under which Regions lend, release and detach (see `_lending`), for a
    Region's own change of its mapping (shm/staging.py: a staged map attached)."""
    return _lending


def _let_go() -> None:
    """After an exception at `_lend()`: release _lending if that call took it."""
    try:  # noqa: SIM105 (contextlib.suppress: a module more to load at start-up)
        _lent()
    except RuntimeError:  # not taken: the exception interrupted its wait
        pass


os.register_at_fork(after_in_child=_new_lock_in_child)


class _Nothing:
    pass


_KEPT = weak_ref(_Nothing())  # a Region's dead holder once it is kept warm: lends no more


# The list of kept ranges of a length, or None (a C call: maps.py pops from it inline).
spare_list_of = _spare.get


def take_spare(length: int) -> int:
    """A kept cut-off range of `length` bytes for a new map to replace, or 0."""
    spare = _spare.get(length)
    if spare:
        try:
            return spare.pop()
        except IndexError:  # another thread took it
            pass
    return 0


def give_back(address: int, length: int) -> None:
    """A range `take_spare` gave that was not mapped over after all: kept, or unmapped."""
    spare = _spare.get(length)
    if spare is not None and len(spare) < _SPARE_PER_LENGTH:
        spare.append(address)
    else:
        munmap(address, length)


# The C calls (clara_core/shm/c/access.c, holder.c) where the extension is built, else
# their ctypes twins (memory_calls.py). A C Holder is a small object with the buffer protocol,
# read-only for a read map, instead of a ctypes array read through a read-only memoryview.
if calls is not None:
    munmap, make_holder, cut_off = calls.munmap, calls.holder, calls.cut_off
    map_at, disown = calls.map_at, calls.disown
else:
    munmap, make_holder = memory_calls.checked_munmap, memory_calls.holder
    cut_off, map_at = memory_calls.cut_off, memory_calls.map_at
    disown = memory_calls.disown
READ_ONLY_HOLDERS = calls is not None  # a read map's holder refuses writes itself


def _spare_for(length: int) -> list[int] | None:
    """The list keeping dead read cut-offs of `length`, or None if none is kept."""
    spare = _spare.get(length)
    if spare is None and len(_spare) < _SPARE_LENGTHS:
        spare = _spare.setdefault(length, [])
    return spare


class Region(RegionFields):
    """A mapping of the first `length` bytes of a segment file.

    A deferred one (`Region.deferred`) is mapped when a view of it is first lent: the
    copies of `clara map --in/--out` move the data through the file descriptor and never
    need its pages, nor ctypes (~2 ms of their start-up).
    """

    # Made as RegionFields(address, length, writable), in C where it can be (fields.py).
    __slots__ = ()

    address: int  # 0: deferred, not mapped (yet)
    length: int
    writable: bool
    _holder: weak_ref[Any] | None
    _fd: int  # a deferred region's file, until it is mapped or released

    @classmethod
    def deferred(cls, fd: int, length: int, writable: bool) -> Region:
        """A region of `fd` mapped (never populated) only when a view is first lent: while
        it is lent from, `fd` must stay open (a Reference keeps it open while it is mapped)."""
        region = cls(0, length, writable)
        region._fd = fd
        return region

    @classmethod
    def map(
        cls, fd: int, length: int, writable: bool, populate: bool, fresh: bool = False
    ) -> Region:
        """Map a segment (read-only pages unless `writable`; all pages now if `populate`).

        `fresh`: pages not yet written since the file was made (a fresh fallocate, not yet
        cleared). MAP_POPULATE takes a read fault for each of them (the kernel's
        fault-around finds nothing to map: each page is cleared on its own fault), which
        costs ~40% more than the write faults of a fill, so a writable map populates them
        for writing (MADV_POPULATE_WRITE): ~30% less. Best effort, as MAP_POPULATE: where
        it fails (before Linux 5.14), the pages fault in as they are written.
        """
        if populate and fresh and writable:
            region = cls.map(fd, length, writable, False)
            memory_calls.lib().madvise(region.address, length, _MADV_POPULATE_WRITE)
            return region
        prot = _READ_WRITE if writable else _READ
        flags = _SHARED_POPULATE if populate else _SHARED
        return cls(map_at(take_spare(length), length, prot, flags, fd), length, writable)

    def reissue(self) -> Region | None:
        """The same mapping as a new Region, for a new map (a warm mapping has no live
        views); this one keeps nothing: it lends, unmaps and reissues nothing more. None
        if it was reissued or released already: two threads of one reference took the same
        warm mapping, and two Regions of one address would unmap each other's pages."""
        try:
            _lend()  # (see _lending: taken by exactly one, as release() is)
        except BaseException:
            _let_go()
            raise
        try:
            address, self.address = self.address, 0
        finally:
            _lent()
        return Region(address, self.length, self.writable) if address else None

    def lend(self, owner: object) -> memoryview:
        """A byte memoryview of the whole region for views; `owner` lives as long as they do."""
        view = memoryview(self.holder(owner)).cast("B")
        return view if self.writable else view.toreadonly()

    def holder(self, owner: object) -> Any:
        """The one object every view of the region is made from (a buffer: read-only for
        a read-only region if READ_ONLY_HOLDERS, else callers make read-only views of
        it); `owner` lives as long as it does."""
        ref = self._holder  # (read once: no lock)
        if ref is not None and (holder := ref()) is not None:
            return holder
        try:
            _lend()  # (see _lending)
        except BaseException:
            _let_go()
            raise
        try:
            ref = self._holder  # (again: another thread may have lent or unmapped)
            if ref is not None:
                if (holder := ref()) is not None:
                    return holder
                if ref is _KEPT:  # unmapped meanwhile, by another thread
                    raise OSError(errno.EBADF, "mmap: this mapping was unmapped")
            if not self.address:
                self._map_deferred()
            holder = make_holder(self.address, self.length, self.writable, owner)
            self._holder = weak_ref(holder)
            return holder
        finally:
            _lent()

    def _map_deferred(self) -> None:
        if self._fd < 0:  # released: its fd may be closed, or another file's now
            raise OSError(errno.EBADF, "mmap: this mapping was released")
        mapped = Region.map(self._fd, self.length, self.writable, populate=False)
        self.address, self._fd = mapped.address, -1

    def lent(self) -> bool:
        """Whether any view lent out is still alive."""
        return (ref := self._holder) is not None and ref() is not None  # (read once)

    def release(self) -> None:
        """Unmap now, or cut off the views still alive (unmapped when they die).

        Returns None, so that ``region = region.release()`` forgets it.
        """
        try:
            _lend()  # (see _lending)
        except BaseException:
            _let_go()
            raise
        try:
            holder = ref() if (ref := self._holder) is not None else None
            if holder is None:
                address, fd = self.address, self._fd
                self.address, self._fd = 0, -1
                if address:
                    self._unmap_range(address, fd)
            else:
                self._cut_off(holder)
        finally:
            _lent()

    def _unmap_range(self, address: int, fd: int) -> None:
        """`release` of a range no view can reach (a staged map first writes it out)."""
        munmap(address, self.length)

    def detach(self) -> Region | None:
        """Move the shared pages (page tables and all) to a new address, away from the
        views lent out, which are cut off; returns the moved, warm Region. A region
        smaller than DETACH_FROM is only cut off (None: nothing stays mapped)."""
        try:
            _lend()  # (see _lending)
        except BaseException:
            _let_go()
            raise
        try:
            holder = ref() if (ref := self._holder) is not None else None
            if holder is None:
                if not self.address:  # deferred and never mapped: nothing is warm
                    self._fd = -1
                    return None
                self._holder = _KEPT  # kept warm: it lends nothing more (see `holder`)
                return self
            if self.length < DETACH_FROM:
                self._cut_off(holder)
                return None
            return self._move(holder)
        finally:
            _lent()

    def _move(self, holder: Any) -> Region | None:
        """`detach` of a large one with live views (under _lending)."""
        libc = memory_calls.lib()
        # Reserve a spot whose address is congruent to ours modulo 2 MiB: then the kernel
        # moves whole page-table pages (about 0.08 ms for 256 MiB) instead of one entry
        # per 4 KiB page (about 0.9 ms).
        span = self.length + _PMD_SIZE
        zeros = memory_calls.PRIVATE_ZEROS
        spot = memory_calls.check(libc.mmap(None, span, _PROT_NONE, zeros, -1, 0), "mmap")
        target = spot + (self.address - spot) % _PMD_SIZE
        # DONTUNMAP: the old range keeps mapping the file (its pages are gone, faulted in
        # again if touched) until the cut-off below replaces it; a plain move would leave
        # a hole there meanwhile, in which a view read by another thread faults (SIGSEGV).
        flags = _MREMAP_MAYMOVE | _MREMAP_FIXED | _MREMAP_DONTUNMAP
        moved = libc.mremap(self.address, self.length, self.length, flags, target)
        if memory_calls.failed(moved):  # (DONTUNMAP of a file: Linux 5.13)
            libc.munmap(spot, span)
            self._cut_off(holder)
            return None
        if target > spot:
            libc.munmap(spot, target - spot)
        if spot + span > target + self.length:
            libc.munmap(target + self.length, spot + span - target - self.length)
        self._cut_off(holder)
        return Region(moved, self.length, self.writable)

    def _cut_off(self, holder: Any) -> None:
        try:
            length = self.length
            if self.writable:
                prot, spare = _READ_WRITE, None  # zeros a write view may have written to
            else:  # are given back (unmapped); read-only zeros hold no memory once their
                prot, spare = _READ, _spare.get(length)  # views die: kept for reuse
                if spare is None and length < DETACH_FROM:
                    spare = _spare_for(length)
            # The views need nothing of their map any more: the holder lets go of its
            # owner (a Mapping, and through it the allocation), which must not live on
            # with them, nor the reference's other maps and locks (`with ref.map("r") as
            # old:` leaves `old` bound after the block).
            cut_off(holder, prot, spare, _SPARE_PER_LENGTH)
        except BaseException as exc:
            if not isinstance(exc, OSError):  # (an OSError replaced nothing)
                self._finish_cut_off(holder)
            raise
        self._holder = None
        self.address, self._fd = 0, -1  # the zeros are the holder's now: lend nothing more

    def _finish_cut_off(self, holder: Any) -> None:
        """`_cut_off` interrupted by an exception a signal handler raised (^C), before the
        range was replaced or after (the pure-Python cut_off: between its mmap and its
        unmapper): finish it. Left half done, a Region whose views then died would keep
        warm, or unmap, a range of zeros that its holder unmaps too, or never does."""
        try:  # noqa: SIM105 (contextlib.suppress: a module more to load at start-up)
            cut_off(holder, _READ_WRITE if self.writable else _READ, None, 0)
        except ValueError:  # it was, already
            pass
        self._holder = None
        self.address, self._fd = 0, -1
