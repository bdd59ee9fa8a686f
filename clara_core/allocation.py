"""Allocation: one counted reference to a typed block of shared memory.

Life-cycle (Clara's, without its manual bookkeeping)::

    ctx.create(...)  -> private: only this process sees it; gone when released
    .publish(name)   -> every process of the context can ctx.get(name) a new reference
    .map('r'|'w')    -> many readers or one writer, across all processes
    .release()       -> drop this reference (also on close(), `with` and garbage collection)
    .free()          -> no new get() anywhere; references and maps already held stay
                        valid, and the kernel frees the memory when the last one is gone

Each reference is its own open file, with a shared lock on REFERENCE_BYTE: the kernel
counts references for us, and a crashed process can never keep a count too high.
"""

from __future__ import annotations

import os

from .dtypes import ElementType, element_type, format_size, nbytes_of, static_shape
from .errors import (
    Busy,
    ClaraError,
    Corrupt,
    InvalidArgument,
    ReadOnly,
)
from .freeing import Freeing
from .lifecycle import HANDLED, SHARED
from .maps import Maps
from .publishing import Publishing
from .registry import POOL_MIN_BYTES
from .shm import header as hdr
from .shm import locks, processes, segment
from .shm.fields import AllocationFields
from .shm.header import Layout

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    import numpy

    from .context import Context
    from .registry import Registry


class Allocation(Publishing, Freeing, Maps, AllocationFields):
    """A reference to a typed block of shared memory in a context.

    One thread at a time: its map, views, unmap and release are not guarded against
    another thread's (a release closes the file another thread may map through); threads
    that work on one allocation each get() a reference of their own.
    """

    # Made as AllocationFields(context, registry, fd, writable, layout, created_ns,
    # identity, visibility, key, pool_name, description, forks.count), in C where it can
    # be (shm/fields.py): one is made on every get() and create(). Its fields: `context`,
    # those of the reference (reference.Reference: an Allocation is it), and `_registry`,
    # `_writable`, `_visibility`, `_key` (published name or handle), `_description` (what
    # describe() would make, if known), `_layout`, `_created_ns` (`created`: a float
    # division made when asked), `_identity` ((st_dev, st_ino); None: fstat when first
    # needed), `_pool_name` (a recycled one still sits in the pool under it, held by our
    # reference lock, until it is published). Its finalizer closes it unless released.
    __slots__ = ()

    context: Context
    _registry: Registry
    _visibility: str
    _key: str | None
    _pool_name: str | None
    _created_ns: int
    _identity: tuple[int, int] | None

    def _recycled_at_release(self) -> None:
        """A private allocation is reachable by its creator only: released means freed, so
        it is offered to the pool then, if the pool takes its capacity or it came from
        there (`_pool_name`). Its maker calls this once made."""
        if self._pool_name is not None or self._layout.capacity >= POOL_MIN_BYTES:
            self._recycle = self._recycler(self._pool_name)

    # -- what it is ---------------------------------------------------------------------

    @property
    def created(self) -> float:
        """When it was made, in seconds since the epoch."""
        return self._created_ns / 1e9

    @property
    def name(self) -> str | None:
        """The published name, or None while private."""
        return self._key if self._visibility == SHARED else None

    @property
    def file_id(self) -> tuple[int, int]:
        """(device, inode) of the segment: the same under any of its names."""
        return self._file_id

    @property
    def handle(self) -> str | None:
        """The handle given by make_handle(), while still private."""
        return self._key if self._visibility == HANDLED else None

    @property
    def is_published(self) -> bool:
        """Whether other processes can get() this allocation by name."""
        return self._visibility == SHARED

    @property
    def element_type(self) -> ElementType:
        """Element type (as last seen: a map always uses the current one)."""
        return self._layout.etype

    @property
    def dtype(self) -> numpy.dtype:
        """Element type as a numpy dtype."""
        return self._layout.etype.numpy

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data."""
        return self._layout.shape

    @property
    def nbytes(self) -> int:
        """Size of the typed data in bytes."""
        return self._layout.nbytes

    @property
    def capacity(self) -> int:
        """Bytes reserved for data (at least nbytes)."""
        return self._layout.capacity

    @property
    def released(self) -> bool:
        """Whether this reference has been released or freed."""
        return self._closed

    @property
    def read_only(self) -> bool:
        """Whether this reference may only read (opened read-only, or by such a user)."""
        return not self._writable

    @property
    def state(self) -> str:
        """'empty', 'writing', 'complete', or 'incomplete' (its writer died mid-write)."""
        self._check_open()
        pending = self._pending  # (kept in memory while nobody else can see it)
        raw = self._pread(0, hdr.DATA_END) if pending is None else pending
        if len(raw) < hdr.DATA_END:
            raise Corrupt(f"{self.describe()} is corrupt (its file was cut to {len(raw)} bytes)")
        data = hdr.read_data_state(raw)
        if data.state in (hdr.COMPLETE, hdr.EMPTY):
            return hdr.DATA_STATES[data.state]
        writing = any(m.writable for m in self._maps) or (
            pending is None and locks.held_by_others(self._fd, locks.MAP_BYTE, exclusive_only=True)
        )
        return "writing" if writing else "incomplete"

    def describe(self) -> str:
        """How messages name this allocation."""
        if self._description is None:  # made when first needed: most never are
            key, where = self._key, f"in context '{self._registry.name}'"
            if self._visibility == SHARED:
                self._description = f"allocation '{key}' {where}"
            elif self._visibility == HANDLED:
                self._description = f"private allocation {key} {where}"
            else:
                self._description = self._registry.private_what
        return self._description

    def _set_visibility(
        self, visibility: str, key: str | None, description: str | None = None
    ) -> None:
        self._visibility = visibility
        self._key = key  # published name or handle
        self._description = description  # what describe() makes now, if known

    def _repr_state(self) -> str:
        """The data state, or why there is none (a repr must never raise)."""
        if self.released:
            return "released"
        try:
            return self.state
        except ClaraError as exc:
            return f"unreadable: {exc}"

    def __repr__(self) -> str:
        maps = "" if self.released else f", {len(self._maps)} map(s)"
        return (
            f"<Allocation {self.describe()} {self.element_type.name}{list(self.shape)} "
            f"{format_size(self.nbytes)} {self._repr_state()}{maps}>"
        )

    def __rich_repr__(self) -> Iterator[Any]:
        """Fields for rich's pretty printer (rich itself is never imported here)."""
        yield "name", self.name, None
        yield "handle", self.handle, None
        yield "context", self._registry.name
        yield "dtype", self.element_type.name
        yield "shape", self.shape
        yield "nbytes", self.nbytes
        yield "state", self._repr_state()
        yield "maps", 0 if self.released else len(self._maps)

    def set_type_and_dimensions(self, dtype: object, shape: object) -> None:
        """Change element type and shape (Clara's call); the bytes must fit the capacity."""
        self._check_open()
        etype, dims = element_type(dtype), static_shape(shape)
        nbytes = nbytes_of(etype, dims)
        if nbytes > self._layout.capacity:
            raise InvalidArgument(
                f"{etype.name}{list(dims)} needs {nbytes} bytes, but {self.describe()} holds "
                f"{self._layout.capacity}"
            )
        self._require_writable_fd("retype")
        self._materialize(self.describe())  # (rare: as any segment from now on)
        if self._maps or not locks.try_lock(self._fd, locks.MAP_BYTE, exclusive=True):
            raise Busy(f"{self.describe()} is mapped by {self._holders()}; unmap it first")
        try:
            layout = Layout(etype, dims, nbytes, self._layout.capacity)
            self._write(layout.pack(), hdr.LAYOUT_AT)
            self._layout = layout
        finally:
            locks.unlock(self._fd, locks.MAP_BYTE)

    def __enter__(self) -> Allocation:
        return self

    # release(), whose other steps are for recycle=False only; the exception is ignored
    __exit__ = Maps._close

    # -- helpers ------------------------------------------------------------------------

    def _holders(self) -> str:
        """Who holds the map lock (for messages): among the processes mapping it, those
        whose files hold the lock; a process may map it without a lock (an idle mapping
        kept for reuse)."""
        mapping = processes.mappers({self._file_id}).get(self._file_id, [])
        found = processes.lock_holders(self._file_id, locks.MAP_BYTE, mapping) or mapping
        who = ", ".join(str(m) for m in found) or "another process"
        if any(m.lock == "write" for m in found):
            return f"{who} for writing"
        return f"{who} for reading" if any(m.lock for m in found) else who

    @property
    def _file_id(self) -> tuple[int, int]:
        """(device, inode) of the segment (fetched when first needed)."""
        identity = self._identity
        if identity is None:
            found = os.fstat(self._fd)
            identity = self._identity = (found.st_dev, found.st_ino)
        return identity

    @property
    def path(self) -> str:
        """A path at which other programs can open the segment (while this reference lives).

        It is this reference's descriptor (/proc/PID/fd/N), never the name: a name may be
        freed and given to another allocation meanwhile, and whoever opened that name
        would read or write the other one, whose locks nobody holds. A private
        allocation first brings the locks and data state it kept in memory to its file
        (as publish does): whoever opens the path sees what this process sees.
        """
        if self._pending is not None or self._maps:  # (a staged map: see _attach_staged)
            self._materialize(self.describe())
        return f"/proc/{os.getpid()}/fd/{self._fd}"

    def _check_open(self) -> None:
        if self.released:
            raise InvalidArgument("this allocation reference was released; get() a new one")

    def _require_writable_fd(self, action: str) -> None:
        if not self._writable:
            raise ReadOnly(f"cannot {action} {self.describe()}: this reference may only read it")

    def _pread(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise segment.translate(exc, self.describe()) from exc

    def _write(self, data: bytes, offset: int) -> None:
        try:
            os.pwrite(self._fd, data, offset)
        except OSError as exc:  # (describe() only when it is needed)
            raise segment.translate(exc, self.describe()) from exc
