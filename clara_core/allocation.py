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

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import pool, removal, waiting
from .dtypes import ElementType, element_type, format_size, nbytes_of, static_shape
from .errors import (
    AlreadyExists,
    Busy,
    ClaraError,
    Corrupt,
    InvalidArgument,
    NotFound,
    ReadOnly,
    Timeout,
)
from .mapping import Mapping
from .names import HANDLE, PUBLISHED, validate_name
from .reference import Reference
from .shm import header as hdr
from .shm import locks, processes, segment, trust
from .shm.header import DATA_OFFSET, Header, Layout
from .shm.memory import Region

if TYPE_CHECKING:
    import numpy

    from .context import Context
    from .registry import Registry

PRIVATE = "private"  # anonymous, known to this process only
HANDLED = "handle"  # private, but reachable by handle from other processes
SHARED = "published"


class Allocation:
    """A reference to a typed block of shared memory in a context."""

    def __init__(
        self,
        context: Context,
        registry: Registry,
        fd: int,
        writable: bool,
        header: Header,
        stat: os.stat_result | None,
        visibility: str,
        key: str | None = None,
        pool_name: str | None = None,
    ) -> None:
        assert header.layout is not None
        self.context = context
        self._registry = registry
        self._fd = fd
        self._writable = writable
        self._set_visibility(visibility, key)
        self._layout: Layout = header.layout
        self.created: float = header.origin.created_ns / 1e9  # seconds since the epoch
        self._stat = stat  # None: fstat only when a message needs the file's identity
        self._reference = Reference(fd)
        self._maps = self._reference.maps
        # A private allocation is reachable by its creator only: released means freed, so
        # it is offered to the pool. A recycled one still sits in the pool under
        # `pool_name`, held by our reference lock, until it is published.
        self._pool_name = pool_name
        if visibility == PRIVATE:
            self._reference.recycle = self._recycler(pool_name)

    # -- what it is ---------------------------------------------------------------------

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
        return self._reference.closed

    @property
    def read_only(self) -> bool:
        """Whether this reference may only read (opened read-only, or by such a user)."""
        return not self._writable

    @property
    def state(self) -> str:
        """'empty', 'writing', 'complete', or 'incomplete' (its writer died mid-write)."""
        self._check_open()
        raw = self._pread(0, hdr.DATA_END)
        if len(raw) < hdr.DATA_END:
            raise Corrupt(f"{self.describe()} is corrupt (its file was cut to {len(raw)} bytes)")
        data = hdr.read_data_state(raw)
        if data.state in (hdr.COMPLETE, hdr.EMPTY):
            return hdr.DATA_STATES[data.state]
        writing = any(m.writable for m in self._maps) or locks.held_by_others(
            self._fd, locks.MAP_BYTE, exclusive_only=True
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
                self._description = f"private allocation {where}"
        return self._description

    def _set_visibility(self, visibility: str, key: str | None) -> None:
        self._visibility = visibility
        self._key = key  # published name or handle
        self._description: str | None = None

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

    # -- life-cycle ---------------------------------------------------------------------

    def publish(self, name: str, timeout: float | None = None) -> None:
        """Make this private allocation visible to the whole context under `name`.

        Waits for the bookkeeping locks it needs at most `timeout` seconds (None: the
        default, `$CLARA_LOCK_TIMEOUT` or 10 s), then raises Timeout naming the holder.
        """
        validate_name(name, "allocation name")
        self._check_open()
        if self._visibility == SHARED:
            raise InvalidArgument(f"{self.describe()} is already published")
        self._require_writable_fd("publish")
        self._registry.check_writable("publish into")
        self._registry.check_alive()
        file_name = self._registry.member_file(PUBLISHED, name)
        what = f"allocation '{name}' in context '{self._registry.name}'"
        if self._visibility == HANDLED:  # other processes may hold the handle too
            with self._lifecycle_held(timeout) as lifecycle:
                if lifecycle != hdr.PRIVATE:  # another one published or freed it
                    raise NotFound(f"{self.describe()} was published or freed meanwhile")
                self._publish_as(name, file_name, what, timeout)
        else:  # only this reference can reach it
            self._publish_as(name, file_name, what, timeout)
        self._set_visibility(SHARED, name)
        self._reference.recycle = None  # published: released references do not free it

    def _publish_as(self, name: str, file_name: str, what: str, timeout: float | None) -> None:
        if self._registry.capacity is None:
            self._link_as(name, file_name, what, timeout)
        else:
            size = self._layout.capacity + DATA_OFFSET
            with self._registry.publishing(size, what, timeout):
                self._link_as(name, file_name, what, timeout)
        self._drop_old_name()

    def _link_as(self, name: str, file_name: str, what: str, timeout: float | None) -> None:
        self._write(hdr.pack_name(name), hdr.NAME_AT)
        self._write(hdr.pack_lifecycle(hdr.PUBLISHED), hdr.LIFECYCLE_AT)
        try:
            try:
                segment.link(self._fd, file_name, what)
            except AlreadyExists:
                # The name may be held by what an earlier context of this name left
                # (its destroy was killed, or could not finish): not ours to keep.
                if not removal.remove_leftover(self._registry, file_name, timeout):
                    raise
                segment.link(self._fd, file_name, what)
        except AlreadyExists:
            self._write(hdr.pack_lifecycle(hdr.PRIVATE), hdr.LIFECYCLE_AT)
            self._write(hdr.pack_name(""), hdr.NAME_AT)
            raise AlreadyExists(f"{what} already exists{_taken_by(file_name)}") from None

    def make_handle(self, holder_pid: int | None = None) -> str:
        """Give this private allocation a handle other processes can open or publish.

        The allocation then outlives this process until it is published and freed, or
        until `clara leak-check` finds its holder (`holder_pid`, default this process)
        dead. Returns the handle.
        """
        self._check_open()
        if self._visibility == SHARED:
            raise InvalidArgument(f"{self.describe()} is published: use its name, not a handle")
        if self._visibility == HANDLED:
            return self._key or ""
        self._require_writable_fd("hand over")
        self._registry.check_writable("hand over into")
        pid, start = processes.identity(holder_pid)
        origin = segment.read_header(self._fd, self.describe())[0].origin
        updated = origin._replace(owner_pid=pid, owner_start=start)
        self._write(updated.pack(), hdr.ORIGIN_AT)
        handle = os.urandom(6).hex()
        segment.link(self._fd, self._registry.member_file(HANDLE, handle), self.describe())
        self._drop_old_name()
        self._set_visibility(HANDLED, handle)
        self._reference.recycle = None
        return handle

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
        if self._maps or not locks.try_lock(self._fd, locks.MAP_BYTE, exclusive=True):
            raise Busy(f"{self.describe()} is mapped by {self._holders()}; unmap it first")
        try:
            layout = Layout(etype, dims, nbytes, self._layout.capacity)
            self._write(layout.pack(), hdr.LAYOUT_AT)
            self._layout = layout
        finally:
            locks.unlock(self._fd, locks.MAP_BYTE)

    def release(self, recycle: bool = True) -> None:
        """Drop this reference (unmapping it first); a private allocation is then gone
        (offered to its context's pool for reuse, unless `recycle` is False)."""
        if not recycle and self._visibility == PRIVATE:
            self._reference.recycle = None
            if self._pool_name is not None and not self.released:  # claimed: leave the pool
                pool.leave(self._registry, self._fd, self._pool_name)
                self._pool_name = None
        self._reference.close()

    close = release

    def __del__(self) -> None:
        reference = getattr(self, "_reference", None)  # absent if __init__ failed
        if reference is not None:
            reference.close()

    def free(self, timeout: float | None = None) -> None:
        """Forbid new get()s job-wide and drop this reference.

        References and maps that others already hold stay valid; the memory is freed by
        the kernel when the last of them is gone. When free() returns, the name is free
        (whoever of several freeing it at once gets there first removes it). Waits for
        the locks it needs at most `timeout` seconds (None: the default).
        """
        self._check_open()
        if self._visibility != PRIVATE:
            self._require_writable_fd("free")
            kind = PUBLISHED if self._visibility == SHARED else HANDLE
            file_name = self._registry.member_file(kind, self._key or "")
            expected = hdr.PUBLISHED if self._visibility == SHARED else hdr.PRIVATE
            self._reference.unmap_all()  # write maps complete before it may be recycled
            with self._lifecycle_held(timeout) as lifecycle:
                # Names are removed only under this lock, by whoever finds the lifecycle
                # unchanged and the name still denoting this segment: of several
                # freeing it at once exactly one removes it, before any returns, and a
                # name given since to a newer allocation is never touched.
                if lifecycle == expected and segment.names_file(file_name, self._file_id):
                    self._remove_name(file_name, timeout)
            self._reference.recycle = None
        self.release()

    def _remove_name(self, file_name: str, timeout: float | None) -> None:
        """Under the lifecycle lock: move the segment into the pool, or remove its name."""
        size = DATA_OFFSET + self._layout.capacity
        counted = self._visibility == SHARED  # only published bytes count toward a capacity
        with self._registry.unpublishing(size if counted else 0, timeout):
            warm = self._reference.take_warm()
            if self._recycles(file_name, warm):
                return
            self._write(hdr.pack_lifecycle(hdr.FREED), hdr.LIFECYCLE_AT)
            segment.unlink(file_name, self.describe())

    def _recycles(self, file_name: str | None, warm: Region | None) -> bool:
        """Offer the segment to the pool (taking over `warm`); False if it was not taken."""
        try:
            return pool.retire(self._registry, self._fd, self._layout.capacity, file_name, warm)
        except (ClaraError, OSError):  # recycling is an optimisation only
            return False

    def __enter__(self) -> Allocation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- maps ---------------------------------------------------------------------------

    def map(
        self,
        mode: str = "r",
        timeout: float | waiting.Deadline | None = None,
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
        arrays used whole); pass False to touch a few pages of a huge allocation.
        Use as ``with alloc.map('r') as array: ...`` or keep the Mapping and unmap() it.
        """
        writable = _parse_mode(mode)
        self._check_open()
        if writable and self.read_only:
            raise ReadOnly(f"{self.describe()} is read-only here; it cannot be mapped for writing")
        if self._maps and (writable or self._maps[0].writable):
            raise Busy(f"{self.describe()} is already mapped by this reference; unmap it first")
        if wait:
            if writable:
                raise InvalidArgument(
                    "wait waits for data to read; a write map waits for readers with timeout"
                )
            timeout = self._await_written(waiting.deadline(timeout))
        elif isinstance(timeout, waiting.Deadline):
            timeout = max(timeout.left(), 1e-3)
        elif timeout is not None:
            waiting.seconds(timeout)  # checks it
        region, self._layout = self._reference.map(
            writable,
            timeout,
            allow_incomplete,
            populate,
            self._layout,
            self.describe(),
            self._holders,
        )
        return Mapping(self, self._reference, region, self._layout)

    def unmap(self) -> None:
        """Unmap every map this reference holds (write maps are marked complete)."""
        self._reference.unmap_all()

    def _await_written(self, deadline: waiting.Deadline) -> float:
        """Wait until a writer has finished (complete or incomplete data); Timeout if none
        has by the deadline. Returns the seconds left for the map lock (never 0: a read
        map arriving just as its writer let go would otherwise be called busy)."""

        def finished_state() -> str | None:
            state = self.state
            return state if state in ("complete", "incomplete") else None

        finished = waiting.until(finished_state, deadline)
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

    # -- helpers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lifecycle_held(self, timeout: float | None = None) -> Iterator[int]:
        """Hold the segment's lifecycle lock; yields the lifecycle as it is now."""
        what = f"the lifecycle lock of {self.describe()}"
        locks.acquire(self._fd, locks.LIFECYCLE_BYTE, True, what, timeout)
        try:
            yield self._pread(hdr.LIFECYCLE_AT, 1)[0]
        finally:
            locks.unlock(self._fd, locks.LIFECYCLE_BYTE)

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
        if self._stat is None:
            self._stat = os.fstat(self._fd)
        return (self._stat.st_dev, self._stat.st_ino)

    def _drop_old_name(self) -> None:
        """After a new name was linked: remove the handle or pool name it had before
        (a handle under the lifecycle lock, held by the caller)."""
        if self._visibility == HANDLED:
            segment.remove_name(self._registry.member_file(HANDLE, self._key or ""), self._file_id)
        if self._pool_name is not None:
            pool.leave(self._registry, self._fd, self._pool_name)
            self._pool_name = None

    def _recycler(self, pool_name: str | None) -> Callable[[int, Region | None], None]:
        """At the close of a private allocation: offer it to the pool, else remove the
        pool name it was claimed under (if any)."""
        registry, capacity = self._registry, self._layout.capacity

        def recycle(fd: int, warm: Region | None) -> None:
            try:
                pooled = pool.retire(registry, fd, capacity, pool_name, warm)
            except (ClaraError, OSError):  # recycling is an optimisation only
                pooled = False
            if not pooled and pool_name is not None:
                pool.leave(registry, fd, pool_name)

        return recycle

    @property
    def path(self) -> str:
        """A path at which other programs can open the segment (while this reference lives).

        It is this reference's descriptor (/proc/PID/fd/N), never the name: a name may be
        freed and given to another allocation meanwhile, and whoever opened that name
        would read or write the other one, whose locks nobody holds.
        """
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
        segment.write_at(self._fd, data, offset, self.describe())


def _taken_by(file_name: str) -> str:
    """'' if the name is taken by one of ours, else who took it (a planted name)."""
    found = segment.stat_named(file_name)
    if found is None or (found.st_uid == os.geteuid() and stat.S_ISREG(found.st_mode)):
        return "; choose another name or free it first"
    kind = trust.file_type(found.st_mode)
    return f" as {kind} of {trust.user_name(found.st_uid)}, not made by clara; choose another name"


def _parse_mode(mode: str) -> bool:
    value = str(mode).lower()
    if value in ("r", "read"):
        return False
    if value in ("w", "write"):
        return True
    raise InvalidArgument(f"invalid map mode {mode!r}: use 'r' (read) or 'w' (write)")
