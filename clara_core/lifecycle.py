"""An allocation's names over its life: publish, hand over by handle, release, free.

The name protocol (see removal.py): a name is linked or removed only by a process holding
the segment's lifecycle lock, after checking under that lock that the lifecycle is what it
expects and that the name still denotes this segment. Published bytes are counted in the
context's ledger; a freed or released private segment is offered to the context's pool.
"""

from __future__ import annotations

import os
import stat

from . import forks
from .errors import AlreadyExists, ClaraError, Corrupt, InvalidArgument, NotFound
from .lazy import contextmanager
from .names import HANDLE
from .reference import Reference
from .registry import POOL_MIN_BYTES
from .shm import header as hdr
from .shm import locks, making, processes, segment, trust
from .shm.header import DATA_OFFSET

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .registry import Registry
    from .shm.header import Layout
    from .shm.memory import Region

_PUBLISHED, _FREED = hdr.pack_lifecycle(hdr.PUBLISHED), hdr.pack_lifecycle(hdr.FREED)
_NAME_IN_TAIL = hdr.NAME_AT - hdr.LIFECYCLE_AT  # where the name is in what publish writes
_LIFECYCLE_AT, _PUBLISHED_BYTE, _FREED_BYTE = hdr.LIFECYCLE_AT, hdr.PUBLISHED, hdr.FREED
_packed_names = hdr.packed_names  # (a name packed before: no frame, see hdr.pack_name)
PRIVATE = "private"  # anonymous, known to this process only
HANDLED = "handle"  # private, but reachable by handle from other processes
SHARED = "published"


class Lifecycle(Reference):
    """The naming half of an Allocation (mixed into it): how it gains and loses names."""

    __slots__ = ()  # (the Allocation's)

    # The state and helpers of the Allocation this is mixed into.
    _fd: int
    _writable: bool
    _registry: Registry
    _layout: Layout
    _visibility: str
    _key: str | None
    _description: str | None
    _identity: tuple[int, int] | None
    _pool_name: str | None
    _file_id: tuple[int, int]
    released: bool
    describe: Callable[[], str]
    _set_visibility: Callable[[str, str | None, str | None], None]
    _check_open: Callable[[], None]
    _require_writable_fd: Callable[[str], None]
    _pread: Callable[[int, int], bytes]
    _write: Callable[[bytes, int], None]

    def publish(self, name: str, timeout: float | None = None) -> None:
        """Make this private allocation visible to the whole context under `name`.

        Waits for the bookkeeping locks it needs at most `timeout` seconds (None: the
        default, `$CLARA_LOCK_TIMEOUT` or 10 s), then raises Timeout naming the holder.
        """
        registry = self._registry
        file_name, what = registry.published(name)  # (checks the name)
        if self._closed:  # (the checks inline, their messages out of line)
            self._check_open()
        visibility = self._visibility
        if visibility == SHARED:
            raise InvalidArgument(f"{self.describe()} is already published")
        if not self._writable:
            self._require_writable_fd("publish")
        if not registry.writable:
            registry.check_writable("publish into")
        pending = self._pending
        if pending is not None and not self._maps and registry.capacity is None:
            # The usual case: the first publish of a fresh segment nobody else has reached
            # (see `reference._defer`), in a context without a capacity: its system calls
            # in one (`making.publish`: the context alive, the reference lock, the header
            # from the lifecycle on, the link), with no frame of its own.
            tail = pending[_LIFECYCLE_AT:]  # (a copy) lifecycle, data state, name
            tail[0] = _PUBLISHED_BYTE
            tail[_NAME_IN_TAIL:] = _packed_names.get(name) or hdr.pack_name(name)
            link = file_name if segment.links_open_files() else None
            try:
                links = making.publish(registry.fd, self._fd, tail, segment.directory_fd(), link)
            except OSError:  # (the calls stopped on the way: made again, by Python)
                links = -1
            if links == 0:
                registry.check_alive()  # destroyed: NotFound, and nothing was done
            # Gone public (as _go_public), whether or not every call was made.
            self._pending = None
            forks.private.pop(id(self), None)
            if links <= 0 or link is None:
                self._publish_rest(links, file_name, what, tail, timeout)
        elif visibility == HANDLED:  # other processes may hold the handle too
            registry.check_alive()
            with self._lifecycle_held(timeout) as lifecycle:
                if lifecycle != hdr.PRIVATE:  # another one published or freed it
                    raise NotFound(f"{self.describe()} was published or freed meanwhile")
                segment.check_removable(self._fd, self.describe())  # (the handle's name)
                self._publish_as(name, file_name, what, timeout)
        else:  # only this reference can reach it
            registry.check_alive()
            self._publish_as(name, file_name, what, timeout)
        # (as _set_visibility: `what` is what describe() makes now)
        self._visibility, self._key, self._description = SHARED, name, what
        self._recycle = None  # published: released references do not free it

    def _publish_rest(
        self, links: int, file_name: str, what: str, tail: bytearray, timeout: float | None
    ) -> None:
        """What publish's one call left to do: all of it again if it stopped on the way
        (`links` -1: each call is idempotent, and now raises its error), and the link
        (unless made)."""
        if links <= 0:
            self._registry.check_alive()
            locks.try_lock(self._fd, locks.REFERENCE_BYTE, False)
            self._write(tail, hdr.LIFECYCLE_AT)
        self._name(file_name, what, timeout)

    def _publish_as(self, name: str, file_name: str, what: str, timeout: float | None) -> None:
        if self._registry.capacity is None:
            self._link_as(name, file_name, what, timeout)
        else:
            size = self._layout.capacity + DATA_OFFSET
            with self._registry.publishing(size, what, timeout):
                self._link_as(name, file_name, what, timeout)
        if self._visibility == HANDLED or self._pool_name is not None:
            self._drop_old_name()

    def _link_as(self, name: str, file_name: str, what: str, timeout: float | None) -> None:
        pending = self._go_public(what)
        if pending is None:
            self._write(hdr.pack_name(name), hdr.NAME_AT)
            self._write(_PUBLISHED, hdr.LIFECYCLE_AT)
        else:  # never seen by anyone: its data state, lifecycle and name in one write
            pending[hdr.LIFECYCLE_AT] = hdr.PUBLISHED
            pending[hdr.NAME_AT :] = hdr.pack_name(name)
            self._write(memoryview(pending)[hdr.LIFECYCLE_AT :], hdr.LIFECYCLE_AT)
        self._name(file_name, what, timeout)

    def _name(self, file_name: str, what: str, timeout: float | None) -> None:
        """Link the name whose header is written, taking over a leftover of an earlier
        context; if it cannot be, its header says private again."""
        try:
            try:
                segment.link(self._fd, file_name, what)
            except AlreadyExists:
                from . import removal  # here: rarely needed, and clara map loads no removal

                # The name may be held by what an earlier context of this name left
                # (its destroy was killed, or could not finish): not ours to keep.
                if not removal.remove_leftover(self._registry, file_name, timeout):
                    raise
                segment.link(self._fd, file_name, what)
        except Exception as exc:  # (not an interrupt: that may come after the link)
            # Not named: whatever stopped it (the name taken, no inode left for a
            # handle's second name ...), its header says private again, else a handle
            # would keep a header its free() does not recognise (and never remove it).
            self._write(hdr.pack_lifecycle(hdr.PRIVATE), hdr.LIFECYCLE_AT)
            self._write(hdr.pack_name(""), hdr.NAME_AT)
            if isinstance(exc, AlreadyExists):
                raise AlreadyExists(f"{what} already exists{_taken_by(file_name)}") from None
            raise

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
        self._materialize(self.describe())
        pid, start = processes.identity(holder_pid)
        origin = segment.read_header(self._fd, self.describe())[0].origin
        updated = origin._replace(owner_pid=pid, owner_start=start)
        self._write(updated.pack(), hdr.ORIGIN_AT)
        handle = os.urandom(6).hex()
        segment.link(self._fd, self._registry.member_file(HANDLE, handle), self.describe())
        self._drop_old_name()
        self._set_visibility(HANDLED, handle)
        self._recycle = None
        return handle

    def release(self, recycle: bool = True) -> None:
        """Drop this reference (unmapping it first); a private allocation is then gone
        (offered to its context's pool for reuse, unless `recycle` is False)."""
        if not recycle and self._visibility == PRIVATE:
            self._recycle = None
            if self._pool_name is not None and not self.released and not self._inherited:
                # Claimed: leave the pool (not for a forked child: its parent's to leave).
                from .pool import leave

                leave(self._registry, self._fd, self._pool_name)
                self._pool_name = None
        self._close()

    close = release

    def free(self, timeout: float | None = None) -> None:
        """Forbid new get()s job-wide and drop this reference.

        References and maps that others already hold stay valid; the memory is freed by
        the kernel when the last of them is gone. When free() returns, the name is free
        (whoever of several freeing it at once gets there first removes it). Waits for
        the locks it needs at most `timeout` seconds (None: the default).
        """
        if self._closed:
            self._check_open()
        if self._visibility != PRIVATE:
            if not self._writable:
                self._require_writable_fd("free")
            registry = self._registry
            if self._visibility == SHARED:
                file_name = registry.published(self._key or "")[0]
                expected = hdr.PUBLISHED
            else:
                file_name = registry.member_file(HANDLE, self._key or "")
                expected = hdr.PRIVATE
            if self._maps:
                self._unmap_all()  # write maps complete before it may be recycled
            directory = segment.directory_fd()
            if registry.capacity is None and (
                self._layout.capacity < POOL_MIN_BYTES or not self._pools()
            ):  # (the usual case: nothing to count, nothing to pool) in one call
                self._recycle = None
                dev, ino = self._identity or self._file_id
                # Nothing mapped, nothing the fork hook may use (`forks.private`), not a
                # parent's open file: then the call closes the fd too, so this is marked
                # closed first (an interrupt after the call must never find it open: its
                # fd number may be another file's by then).
                closing = not self._maps and self._pending is None and self._born == forks.count
                self._closed = closing
                arguments = (self._fd, directory, file_name, expected, dev, ino, _FREED_BYTE)
                try:
                    found = making.free_named(*arguments, closing)
                except BaseException as exc:
                    # The call closes nothing that it fails on; but an exception a signal
                    # handler raises (^C) as it returns comes after it closed the fd, whose
                    # number may be another file's by now: open only if it is still ours.
                    self._closed = closing and not making.denotes(self._fd, dev, ino)
                    raise self._translated(exc)  # noqa: B904 (chained there)
                if found is None or found < 0 or not closing or self._warm or self._warm_read:
                    self._freed_named(found, arguments, closing, timeout)
                return
            lifecycle, dev, ino = self._lock_lifecycle(timeout, file_name, directory)
            locked = True
            try:
                # Names are removed only under this lock, by whoever finds the lifecycle
                # unchanged and the name still denoting this segment: of several
                # freeing it at once exactly one removes it, before any returns, and a
                # name given since to a newer allocation is never touched.
                if lifecycle == expected and (dev, ino) == (self._identity or self._file_id):
                    self._remove_name(file_name, expected, timeout)
            finally:
                if locked:
                    locks.unlock(self._fd, locks.LIFECYCLE_BYTE)
            self._recycle = None
        self._close()  # as release() does: a private one is offered to the pool

    def _freed_named(
        self, found: int | None, arguments: tuple, closing: bool, timeout: float | None
    ) -> None:
        """The rest of free's one call (`making.free_named` with `arguments` and
        `closing`) when it found the lifecycle lock busy (`found` None: waited for, then
        called again), the file cut short (-1), or left the reference to close."""
        if found is None:  # busy: wait for it, bounded; then it is ours at once
            try:
                what = f"the lifecycle lock of {self.describe()}"
                locks.acquire(self._fd, locks.LIFECYCLE_BYTE, True, what, timeout)
                found = making.free_named(*arguments, closing)
            except BaseException as exc:  # (as in free)
                self._closed = closing and not making.denotes(self._fd, *arguments[4:6])
                raise self._translated(exc)  # noqa: B904 (chained there)
        assert found is not None
        if found < 0:  # another process cut the file short (unlocked, not closed)
            self._closed = False
            raise self._cut_short()
        if not closing:
            self._close()
            return
        # Closed by the call: as `_close` ends, the mappings kept for the next map go.
        if (warm := self._warm_read) is not None:
            self._warm_read = None
            warm.release()
        if (warm := self._warm) is not None:
            self._warm = None
            warm.release()

    def _translated(self, exc: BaseException) -> BaseException:
        """`exc` as free raises it: an OSError translated (chained), else itself."""
        if isinstance(exc, OSError):
            error = segment.translate(exc, self.describe())
            error.__cause__ = exc
            return error
        return exc

    def _cut_short(self) -> Corrupt:
        return Corrupt(
            f"{self.describe()} is corrupt (its file was cut short); remove it "
            "with `clara leak-check --fix`"
        )

    def _remove_name(self, file_name: str, lifecycle: int, timeout: float | None) -> None:
        """Under the lifecycle lock (`lifecycle` found under it): move the segment into
        the pool, or remove its name."""
        if self._registry.capacity is None:  # no published bytes to count
            self._retire_or_unlink(file_name, lifecycle)
            return
        size = DATA_OFFSET + self._layout.capacity
        counted = self._visibility == SHARED  # only published bytes count toward a capacity
        with self._registry.unpublishing(size if counted else 0, timeout):
            self._retire_or_unlink(file_name, lifecycle)

    def _pools(self) -> bool:
        """Whether a free offers the segment to the pool. Smaller ones are never pooled;
        nor one a forked child inherited: its parent holds it through the same open
        file, so the child's "no other reference" (its exclusive reference lock) proves
        nothing."""
        return self._layout.capacity >= POOL_MIN_BYTES and not self._inherited

    def _retire_or_unlink(self, file_name: str, lifecycle: int) -> None:
        if self._pools():
            warm = self._take_warm()
            if self._recycles(file_name, warm):
                return
        self._write(_FREED, hdr.LIFECYCLE_AT)
        try:
            segment.unlink(file_name, self.describe())
        except BaseException:  # the name stays (EPERM: another user's file in a sticky
            # directory): it must not denote a freed segment, nobody could get or free it
            if segment.names_file(file_name, self._file_id):  # (else: interrupted after)
                self._write(hdr.pack_lifecycle(lifecycle), hdr.LIFECYCLE_AT)
            raise

    def _recycles(self, file_name: str | None, warm: Region | None) -> bool:
        """Offer the segment to the pool (taking over `warm`); False if it was not taken."""
        from .pool import retire  # (loaded on first use: the copies never need it)

        try:
            return retire(self._registry, self._fd, self._layout.capacity, file_name, warm)
        except (ClaraError, OSError):  # recycling is an optimisation only
            return False

    @contextmanager
    def _lifecycle_held(self, timeout: float | None = None) -> Iterator[int]:
        """Hold the segment's lifecycle lock; yields the lifecycle as it is now."""
        lifecycle = self._lock_lifecycle(timeout)[0]
        try:
            yield lifecycle
        finally:
            locks.unlock(self._fd, locks.LIFECYCLE_BYTE)

    def _lock_lifecycle(
        self, timeout: float | None, file_name: str | None = None, directory: int = -1
    ) -> tuple[int, int, int]:
        """Take the segment's lifecycle lock (the caller unlocks it): the lifecycle now,
        and the (st_dev, st_ino) that `file_name` denotes now ((-1, -1): none) in the
        shared-memory `directory` (-1: segment.directory_fd())."""
        fd = self._fd
        if directory < 0:
            directory = segment.directory_fd()
        try:
            found = making.lock_lifecycle(fd, directory, file_name)
            if found is None:  # busy: wait for it, bounded; then it is ours at once
                what = f"the lifecycle lock of {self.describe()}"
                locks.acquire(fd, locks.LIFECYCLE_BYTE, True, what, timeout)
                found = making.lock_lifecycle(fd, directory, file_name)
        except OSError as exc:  # (unlocked by the call)
            raise segment.translate(exc, self.describe()) from exc
        assert found is not None
        if found[0] < 0:  # another process cut the file short
            locks.unlock(fd, locks.LIFECYCLE_BYTE)
            raise self._cut_short()
        return found

    def _drop_old_name(self) -> None:
        """After a new name was linked: remove the handle or pool name it had before
        (a handle under the lifecycle lock, held by the caller)."""
        if self._visibility == HANDLED:
            segment.remove_name(self._registry.member_file(HANDLE, self._key or ""), self._file_id)
        if self._pool_name is not None:
            from .pool import leave

            leave(self._registry, self._fd, self._pool_name)
            self._pool_name = None

    def _recycler(self, pool_name: str | None) -> Callable[[int, Region | None], None]:
        """At the close of a private allocation: offer it to the pool, else remove the
        pool name it was claimed under (if any). (Allocation asks only when there may be
        something to do: a capacity the pool takes, or a pool name.)"""
        registry, capacity = self._registry, self._layout.capacity

        def recycle(fd: int, warm: Region | None) -> None:
            from .pool import leave, retire

            try:
                pooled = retire(registry, fd, capacity, pool_name, warm)
            except (ClaraError, OSError):  # recycling is an optimisation only
                pooled = False
            if not pooled and pool_name is not None:
                leave(registry, fd, pool_name)

        return recycle


def _taken_by(file_name: str) -> str:
    """'' if the name is taken by one of ours, else who took it (a planted name)."""
    found = segment.stat_named(file_name)
    if found is None or (found.st_uid == os.geteuid() and stat.S_ISREG(found.st_mode)):
        return "; choose another name or free it first"
    kind = trust.file_type(found.st_mode)
    return f" as {kind} of {trust.user_name(found.st_uid)}, not made by clara; choose another name"
