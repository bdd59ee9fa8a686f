"""Context: the named, live registry of one pipeline run's shared memory.

The registry is the shared-memory directory itself: publishing is an atomic link(2) of
the allocation's segment under ``<ns>.<context>.a.<name>``, and get() is one open(2). No
table can be torn by a crash, no lock is needed to look a name up, and lookups stay O(1)
however many allocations a context holds. The context's own small segment records who
made it, the process it is bound to (if any), the mode of its segments and its capacity.
"""

from __future__ import annotations

import os

from . import members
from .allocation import HANDLED, SHARED, Allocation
from .errors import ClaraError, Corrupt, InvalidArgument, NotFound, Timeout
from .names import HANDLE, PUBLISHED, context_file, same_name, validate_name
from .registry import Registry
from .shm import header as hdr
from .shm import processes, segment, trust

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from .shm.access import FileStat
    from .shm.header import Header
    from .waiting import Deadline

_HANDLE_DIGITS = "0123456789abcdef"  # 12 of them; str methods, not `re` (start-up)


class _ContextType(type):
    """Context's type: `Context.create(name)`, `Context.destroy(name)` on the class are
    these properties (a type's own come first), so an instance's `create` is a plain
    method, with no descriptor written in Python (~0.6 us of every create)."""

    @property
    def create(cls) -> Callable[..., Context]:  # (see Context._create_context)
        return cls._create_context  # type: ignore[attr-defined]

    @property
    def destroy(cls) -> Callable[..., int]:  # (see Context._destroy_context)
        return cls._destroy_context  # type: ignore[attr-defined]


class _Closer:
    """Closes a descriptor once: when called, or when it dies with its Context (as
    weakref.finalize would, without loading weakref: ~1 ms of a `clara map` copy)."""

    __slots__ = ("close", "fd")

    def __init__(self, fd: int) -> None:
        self.fd, self.close = fd, os.close  # (os.close: still at hand at interpreter exit)

    def __call__(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            self.close(fd)

    __del__ = __call__


class Context(metaclass=_ContextType):
    """A named registry of shared allocations that every process of a pipeline can open:
    `Context.create(name)` makes one, `ctx.create(size)` an allocation in it."""

    def __init__(
        self, fd: int, writable: bool, header: Header, found: FileStat | os.stat_result
    ) -> None:
        self.name = header.name
        self.file_name = context_file(header.name)  # fixed: the namespace it was opened in
        self.owner_pid: int | None = header.origin.owner_pid or None
        self._owner_start = header.origin.owner_start
        self.creator_pid = header.origin.creator_pid
        self.created = header.origin.created_ns / 1e9
        self.capacity: int | None = header.settings.capacity or None
        self._registry = Registry(
            self.name,
            self.file_name,
            fd,
            writable,
            found,
            self.capacity,
            header.settings.pool_cap,
            header.origin.created_ns,
        )
        # The segment's own mode, which only its owner can change (not the header's).
        self.mode = self._registry.mode
        self.owner_uid = found.st_uid
        self._finalizer = _Closer(fd)  # closes it when called, or with this Context
        self.warm_pool: Context | None = None  # the context whose pool this one uses

    # -- contexts -----------------------------------------------------------------------

    @classmethod
    def _create_context(
        cls,
        name: str,
        capacity: int | str | None = None,
        mode: int = 0o600,
        owner_pid: int | None = None,
        pool_bytes: int | str | None = None,
        warm_pool: str | None = None,
    ) -> Context:
        """Create a context; `owner_pid` binds it to a process (its death makes it a leak).

        `capacity` caps the bytes published in it (None: only /dev/shm's size); `mode` is
        the permission of every segment of the context (default owner only); `pool_bytes`
        caps its recycling pool (None: a quarter of /dev/shm; 0: no recycling);
        `warm_pool` names an existing context of yours, of the same mode, whose pool
        this one claims from and frees into instead (see `clara_core.warm_pool`).
        """
        validate_name(name, "context name")
        mode = trust.checked_mode(mode)
        warm = None if warm_pool is None else cls._open_warm_pool(warm_pool, name, mode)
        from . import contexts  # (not loaded by the copies, which make no context)

        try:
            context = contexts.make(name, capacity, mode, owner_pid, pool_bytes, cls)
        except BaseException:
            if warm is not None:
                warm.close()
            raise
        if warm is not None:
            context.warm_pool, context._registry.warm_pool = warm, warm._registry
        return context

    @classmethod
    def _open_warm_pool(cls, pool_name: str, name: str, mode: int) -> Context:
        """The context `pool_name`, checked fit to be the warm pool of `name` (`mode`)."""
        from .warm_pool import check as check_warm_pool

        warm = cls.open(pool_name)
        try:
            check_warm_pool(warm._registry, name, mode)
        except BaseException:
            warm.close()
            raise
        return warm

    def use_warm_pool(self, name: str) -> None:
        """From now on claim from and free into the pool of context `name` (see create)."""
        warm = self._open_warm_pool(name, self.name, self.mode)
        if self.warm_pool is not None:
            self.warm_pool.close()
        self.warm_pool, self._registry.warm_pool = warm, warm._registry

    @classmethod
    def open(cls, name: str, owner: int | str | None = None) -> Context:
        """Open an existing context; NotFound if there is none of that name.

        The context must belong to this user or root, or to `owner` (a uid or user name;
        default `$CLARA_CONTEXT_OWNER`): anyone can create any name first, so joining
        another user's context is something to say (PermissionDenied otherwise).
        """
        validate_name(name, "context name")
        what = f"context '{name}'"
        try:
            opened = segment.open_segment(context_file(name), what, trust.owner_refusal(owner))
        except NotFound:
            raise NotFound(f"{what} does not exist; create it first") from None
        header = opened.header
        assert header is not None
        if header.kind != hdr.KIND_CONTEXT or not same_name(header.name, name):
            os.close(opened.fd)
            raise Corrupt(f"{what} is corrupt (its segment names another object)")
        return cls(opened.fd, opened.writable, header, opened.stat)

    @classmethod
    def exists(cls, name: str) -> bool:
        """Whether a context of that name exists (or at least a file holds its name)."""
        return segment.stat_named(context_file(validate_name(name, "context name"))) is not None

    @classmethod
    def _destroy_context(cls, name: str, timeout: float | None = None) -> int:
        """Destroy a context and free everything in it; returns how many segments went.

        Processes that still hold references or maps keep them; the memory goes when they
        let go. New get()s fail at once. Files of other users are left alone (see
        `removal.destroy_context`); waits for locks at most `timeout` seconds in all.
        """
        validate_name(name, "context name")
        from . import removal  # here: not loaded by the many commands that never destroy

        return removal.destroy_context(name, timeout)

    def destroy(self) -> int:
        """Destroy this context (see Context.destroy) and close it."""
        try:
            return Context.destroy(self.name)
        finally:
            self.close()

    @classmethod
    def list(cls) -> list[str]:
        """Names of the contexts of this namespace that this user can open."""
        from . import contexts

        return contexts.names()

    @property
    def owner_alive(self) -> bool | None:
        """Whether the owner process still runs (None for a context without owner)."""
        if self.owner_pid is None:
            return None
        return processes.is_alive(self.owner_pid, self._owner_start)

    def close(self) -> None:
        """Close this handle on the context (the context itself stays)."""
        self._finalizer()
        if self.warm_pool is not None:
            self.warm_pool.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        owner = ""
        if self.owner_pid:
            owner = f" owner {self.owner_pid} ({'alive' if self.owner_alive else 'dead'}),"
        names = self._names_for_repr()
        count = "" if names is None else f", {len(names)} allocation(s)"
        return f"<Context {self.name!r}{owner} mode {self.mode:o}{count}>"

    def __rich_repr__(self) -> Iterator[Any]:
        """Fields for rich's pretty printer (rich itself is never imported here)."""
        yield self.name
        yield "owner_pid", self.owner_pid, None
        yield "owner_alive", self.owner_alive, None
        yield "mode", f"{self.mode:o}"
        yield "capacity", self.capacity, None
        yield "allocations", self._names_for_repr(), None

    def _names_for_repr(self) -> list[str] | None:
        try:
            return self.names()
        except (ClaraError, OSError):  # closed: the name still says which context it was
            return None

    # -- allocations --------------------------------------------------------------------

    # create(size) or create(dtype=, shape=): a new private allocation (see there).
    create = members.create  # (new_allocation, its usual case in one C call)

    def get(
        self,
        name: str,
        read_only: bool = False,
        wait: bool = False,
        timeout: float | Deadline | None = None,
    ) -> Allocation:
        """A new reference to the allocation published under `name`.

        A `read_only` reference is opened read-only: the kernel itself refuses to let it
        write, and it can neither be mapped for writing, nor freed, nor retyped. With
        `wait`, a name not published yet is waited for, up to `timeout` seconds (default
        60; math.inf: as long as it takes), then Timeout; else NotFound at once.
        Other waits (while a reclaimer or recycler checks the segment) are bounded by a
        numeric `timeout`, else by the default lock wait, and raise Timeout naming it.
        """
        file_name, what = self._registry.published(name)  # (checks the name)
        lock_wait = None if timeout is None or not isinstance(timeout, (int, float)) else timeout
        if wait:  # (partial, not a lambda: its six cells were made on every get)
            from functools import partial

            from . import waiting

            deadline = waiting.deadline(timeout)
            ready = partial(self._published, file_name, what, read_only, name, lock_wait)
            found = waiting.until(ready, deadline)
            if found is None:
                raise Timeout(
                    f"{what} was not published within {deadline.length:g} s",
                    "check the name, or wait longer with {timeout}",
                )
            return found
        try:
            return members.open_member(
                self, self._registry, file_name, what, SHARED, read_only, name, lock_wait
            )
        except NotFound:
            self._registry.check_alive()
            raise NotFound(f"{what} does not exist; publish it first or check the name") from None

    def _published(
        self, file_name: str, what: str, read_only: bool, name: str, lock_wait: float | None
    ) -> Allocation | None:
        """A reference to `name` if it is published now, else None (the context must live)."""
        try:
            return members.open_member(
                self, self._registry, file_name, what, SHARED, read_only, name, lock_wait
            )
        except NotFound:
            self._registry.check_alive()
            return None

    def open_handle(self, handle: str, timeout: float | None = None) -> Allocation:
        """A new reference to a private allocation handed over with make_handle()."""
        if not isinstance(handle, str) or len(handle) != 12 or handle.strip(_HANDLE_DIGITS):
            raise InvalidArgument(f"invalid handle {handle!r}: a handle is 12 hex digits")
        what = f"private allocation {handle} in context '{self.name}'"
        try:
            file_name = self._registry.member_file(HANDLE, handle)
            return members.open_member(
                self, self._registry, file_name, what, HANDLED, timeout=timeout
            )
        except NotFound:
            self._registry.check_alive()
            raise NotFound(f"{what} does not exist (published, freed, or never made)") from None

    def names(self) -> list[str]:
        """Names of the allocations published in this context, as published (members
        that another user put there behind clara's back are not among them)."""
        from .shm import listing

        found = []
        refusal = self._registry.writers.refusal
        for entry in listing.scan(f"{self.file_name}.{PUBLISHED}."):
            header = entry.header(refusal)
            if (
                header is not None
                and header.lifecycle == hdr.PUBLISHED
                and self._registry.made_here(header)  # not an earlier context's
            ):
                found.append(header.name)  # (not one whose freer died mid-free)
        return sorted(found, key=str.lower)
