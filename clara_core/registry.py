"""A context as its allocations and its pool see it: its open segment and its rules.

`Context` is what users hold; `Registry` is the narrow part of it that an `Allocation`
and the pool need (the context's file naming, who may write it, its capacity and pool
cap, its ledger and the locks on its segment), so that they depend on this small module
and never on `Context`.

Lock bytes on a context's segment (OFD locks, see `shm.locks`):

    QUOTA_BYTE      exclusive while the published bytes change (contexts with a capacity):
                    a publish counts and links, a free unlinks and uncounts, under it
    POOL_BYTE       exclusive while the pool's slots change
    LIFECYCLE_BYTE  (4) exclusive while the context's name is checked and removed
                    (destroy, reclaim): the context's counterpart of an allocation's

The counts themselves are in the context's ledger (`shm.ledger`), never found by listing
the directory, so that junk in /dev/shm costs a create or free nothing.

An OFD lock belongs to the open file, which every thread using this Registry shares: two
threads would both "hold" it at once. So QUOTA_BYTE and POOL_BYTE are taken under a lock
of this process first (`_local`), waited for as briefly as the byte itself, but never by
the thread that holds it: a finalizer (the collector runs them wherever a thread
allocates) or a signal handler runs inside that thread's section, and would wait for its
own frame; it does without the pool then, or its publish or free is Busy. A forked
child would share the open file too (the same locks as its parent's: both inside at
once): at the fork it gets an open file of its own for every live Registry, at the same
descriptor (`_forked`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from _thread import RLock
from _weakref import ref as weak_ref  # weakref.ref, without the weakref module (start-up)

from .errors import Busy, ClaraError, NotFound, OutOfSpace, PermissionDenied, Timeout
from .lazy import contextmanager
from .names import PUBLISHED, member_file, validate_name
from .shm import locks, segment
from .shm.header import KIND_CONTEXT, Header
from .shm.trust import Writers, ours_refusal

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .shm.access import FileStat

QUOTA_BYTE = 2
POOL_BYTE = 3
LIFECYCLE_BYTE = 4
POOL_WAIT = 0.5  # seconds: the pool is an optimisation, never worth a long wait
POOL_MIN_BYTES = 1 << 20  # below this, a fresh segment is cheaper than looking for one
_NAMES_KEPT = 1024  # published file names remembered per context


class Registry:
    """The open segment of a context, and the rules its allocations follow."""

    __slots__ = (
        "__weakref__",
        "_file_id",
        "_local",
        "_published_names",
        "capacity",
        "fd",
        "file_name",
        "incarnation",
        "made_in",
        "mode",
        "name",
        "pool_cap",
        "private_what",
        "published_names",
        "refusal",
        "uid",
        "warm_pool",
        "writable",
        "writers",
    )

    def __init__(
        self,
        name: str,
        file_name: str,
        fd: int,
        writable: bool,
        found: FileStat | os.stat_result,
        capacity: int | None,
        pool_cap: int,
        incarnation: int,
    ) -> None:
        self.name = name
        self.file_name = file_name  # fixed: the namespace it was opened in
        self.fd = fd
        self.writable = writable
        self.writers = Writers.of(found)
        self.refusal = self.writers.refusal  # (bound once: every get asks it)
        self.uid = found.st_uid
        self.mode = stat.S_IMODE(found.st_mode)
        self.capacity = capacity
        self.pool_cap = pool_cap
        # The context's created_ns, stamped into every allocation made in it: a context
        # destroyed and created again has the same name but another incarnation.
        self.incarnation = incarnation
        self.made_in = (0, incarnation)  # what made_here() accepts (see there)
        # How messages name a private allocation of it (Allocation.describe), made once:
        # every create and its first map name it.
        self.private_what = f"private allocation in context '{name}'"
        self._published_names: dict[str, tuple[str, str]] = {}  # name -> see `published`
        # (the same dict, read by the C calls of a usual publish and free: shm/c/usual.c)
        self.published_names = self._published_names
        # Another context whose pool this one claims from and retires into (`warm_pool`).
        self.warm_pool: Registry | None = None
        # This process's side of QUOTA_BYTE and POOL_BYTE (see the module); a forked
        # child's is a new one, and so is its open file (`_forked`, by `_file_id`).
        self._local = RLock()  # (an RLock to tell its own thread: never taken twice)
        self._file_id = (found.st_dev, found.st_ino)
        _live.add(weak_ref(self, _live.discard))

    @classmethod
    @contextmanager
    def of_file(
        cls, file_name: str, file_id: tuple[int, int] | None = None
    ) -> Iterator[Registry | None]:
        """The registry of our own context segment `file_name` (and of the file
        `file_id`, if given), open for writing, for tooling that repairs its ledger;
        None if it is gone, not ours, not writable, or not a context."""
        try:
            opened = segment.open_segment(file_name, file_name, ours_refusal)
        except ClaraError:
            yield None
            return
        try:
            header, found = opened.header, opened.stat
            if (
                header is None
                or header.kind != KIND_CONTEXT
                or not opened.writable
                or (file_id is not None and (found.st_dev, found.st_ino) != file_id)
            ):
                yield None
                return
            settings = header.settings
            yield cls(
                header.name,
                file_name,
                opened.fd,
                True,
                found,
                settings.capacity or None,
                settings.pool_cap,
                header.origin.created_ns,
            )
        finally:
            os.close(opened.fd)

    def member_file(self, kind: str, name: str) -> str:
        """File name of a member (published, handle or pooled) of this context."""
        return member_file(self.file_name, kind, name)

    def published(self, name: str) -> tuple[str, str]:
        """(file name, how messages name it) of the allocation published as `name`, which
        must be a valid name (InvalidArgument). Names met before are looked up: every get
        and publish asks."""
        found = self._published_names.get(name) if type(name) is str else None
        if found is None:
            valid = validate_name(name, "allocation name")
            what = f"allocation '{valid}' in context '{self.name}'"
            found = (member_file(self.file_name, PUBLISHED, valid), what)
            if len(self._published_names) >= _NAMES_KEPT:
                self._published_names.clear()
            self._published_names[name] = found
        return found

    def published_file(self, name: str) -> str:
        """File name of the allocation published as `name` (see `published`)."""
        return self.published(name)[0]

    def made_here(self, member: Header) -> bool:
        """Whether a member's header says it was made in this very context, not in an
        earlier one of the same name (left behind by a destroy that could not finish:
        killed, or a member's lock held too long). 0 (a writer that does not stamp
        members) is taken on trust."""
        return member.origin.context_created_ns in self.made_in

    def check_writable(self, action: str) -> None:
        """PermissionDenied unless this user may write the context (its mode says so)."""
        if not self.writable:
            raise PermissionDenied(
                f"cannot {action} context '{self.name}': this user may only read it "
                f"(mode {self.mode:o})"
            )

    def check_alive(self) -> None:
        """NotFound if this context was destroyed since it was opened."""
        if os.fstat(self.fd).st_nlink == 0:  # its name is gone: destroyed
            raise NotFound(f"context '{self.name}' was destroyed")

    @contextmanager
    def publishing(self, nbytes: int, what: str, timeout: float | None = None) -> Iterator[None]:
        """Count `nbytes` as published for the body, which links the name (contexts
        with a capacity only): OutOfSpace if they do not fit; uncounted if it raises."""
        assert self.capacity is not None
        from .shm.ledger import write_published  # (contexts with a capacity only)

        local = self._quota_locked(timeout)
        try:
            used = self._published()
            if used + nbytes > self.capacity:
                raise OutOfSpace(
                    f"{what} does not fit: context '{self.name}' holds {used} of its "
                    f"{self.capacity} bytes; free something first"
                )
            write_published(self.fd, used + nbytes)  # counted before it is linked
            try:
                yield
            except BaseException:
                write_published(self.fd, self._published() - nbytes)
                raise
        finally:
            locks.unlock(self.fd, QUOTA_BYTE)
            local.release()

    @contextmanager
    def unpublishing(self, nbytes: int, timeout: float | None = None) -> Iterator[None]:
        """Hold the quota lock while the body removes a published name, then uncount
        its `nbytes` (no-op for contexts without a capacity)."""
        if self.capacity is None:
            yield
            return
        from .shm.ledger import write_published

        local = self._quota_locked(timeout)
        try:
            yield
            write_published(self.fd, self._published() - nbytes)
        finally:
            locks.unlock(self.fd, QUOTA_BYTE)
            local.release()

    def _published(self) -> int:
        from .shm.ledger import read

        found = read(self.fd)
        return found.published if found.valid else self.count_published()

    def count_published(self) -> int:
        """Sizes of the segments published in the context, counted from the directory
        (a ledger never written, and leak-check's repair; the caller holds the quota
        lock). Only members the context admits and that were made in it count."""
        from .shm.listing import scan

        total = 0
        for entry in scan(f"{self.file_name}.{PUBLISHED}."):
            try:
                opened = segment.open_segment(
                    entry.name, entry.name, self.writers.refusal, read_only=True
                )
            except ClaraError:  # gone, not a segment, or not one the context admits
                continue
            os.close(opened.fd)
            if opened.header is not None and self.made_here(opened.header):
                total += opened.stat.st_size
        return total

    def recount_published(self, timeout: float | None = None) -> None:
        """Count the published bytes again from the directory (leak-check's repair)."""
        from .shm.ledger import write_published

        local = self._quota_locked(timeout)
        try:
            write_published(self.fd, self.count_published())
        finally:
            locks.unlock(self.fd, QUOTA_BYTE)
            local.release()

    @contextmanager
    def pool_locked(self) -> Iterator[bool]:
        """Hold the pool's lock; yields False (and holds nothing) if it stayed busy for
        POOL_WAIT seconds: the caller then does without the pool."""
        local = self._local
        if local._is_owned():  # (a finalizer or signal handler inside this thread's)
            yield False
            return
        started = time.monotonic()
        if not local.acquire(timeout=POOL_WAIT):
            yield False
            return
        try:
            left = max(POOL_WAIT - (time.monotonic() - started), 0.0)
            if not locks.lock(self.fd, POOL_BYTE, True, left):
                yield False
                return
            try:
                yield True
            finally:
                locks.unlock(self.fd, POOL_BYTE)
        finally:
            local.release()

    def _quota_locked(self, timeout: float | None) -> _Lock:
        """QUOTA_BYTE, under this process's lock (see the module), both waited for at most
        `timeout` seconds in all (None: the default); returns that lock, held (the caller
        unlocks the byte, then releases it)."""
        local = self._local
        if local._is_owned():
            raise Busy(
                f"{self._lock_name('quota')} is held by this very thread (a signal handler "
                "or finalizer run inside its publish or free)"
            )
        wait = locks.default_wait() if timeout is None else timeout
        started = time.monotonic()
        if not local.acquire(timeout=-1 if wait == locks.INFINITY else wait):
            raise Timeout(
                f"timed out after {wait:g} s waiting for {self._lock_name('quota')} "
                "(held by another thread of this process)"
            )
        try:
            left = max(wait - (time.monotonic() - started), 0.0)
            locks.acquire(self.fd, QUOTA_BYTE, True, self._lock_name("quota"), left)
        except BaseException:
            local.release()
            raise
        return local

    def _own_file(self) -> None:
        """In a forked child: an open file of its own for the context's segment, at the
        same descriptor (opened again through /proc/self/fd: no name is looked up), so
        that its locks are the child's, as another process's are. Nothing if the
        descriptor no longer denotes the segment (closed, its number reused), or without
        /proc (then the child shares its parent's locks, as before)."""
        fd = self.fd
        try:
            found = os.fstat(fd)
            if (found.st_dev, found.st_ino) != self._file_id or not stat.S_ISREG(found.st_mode):
                return
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
            own = os.open(f"/proc/self/fd/{fd}", access | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.dup2(own, fd, inheritable=False)
        except OSError:
            pass
        finally:
            os.close(own)

    def _lock_name(self, which: str) -> str:
        return f"the {which} lock of context '{self.name}'"


_Lock = type(RLock())
_live: set[weak_ref[Registry]] = set()  # every Registry alive in this process


def _forked() -> None:
    """In a forked child (one thread): every live Registry's lock of the process is new
    (a thread holding it is not in the child), and its open file the child's own."""
    for held in list(_live):
        registry = held()
        if registry is not None:
            registry._local = RLock()
            registry._own_file()


os.register_at_fork(after_in_child=_forked)
