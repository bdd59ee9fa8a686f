"""Taking an allocation's names away: release a reference, free the allocation.

Under the name protocol (lifecycle.py): a name is removed only by whoever holds the
lifecycle lock and finds the lifecycle unchanged and the name still denoting this
segment. A freed or released private segment is offered to the context's pool; published
bytes leave the context's ledger.
"""

from __future__ import annotations

from . import forks
from .errors import ClaraError
from .lifecycle import PRIVATE, SHARED, Lifecycle
from .names import HANDLE
from .registry import POOL_MIN_BYTES
from .shm import header as hdr
from .shm import locks, making, segment
from .shm.header import DATA_OFFSET
from .shm.native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .shm.memory import Region

_FREED, _FREED_BYTE = hdr.pack_lifecycle(hdr.FREED), hdr.FREED


class Freeing(Lifecycle):
    """How an Allocation loses names and references (mixed into it)."""

    __slots__ = ()  # (the Allocation's)

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

    def _usual_free_ended(self, done: OSError | int | None, timeout: float | None) -> None:
        """The rest of a usual free whose one call (free_usual) did not finish it: `done`
        is its error (raised, translated), or what it found: the lifecycle lock busy
        (None) or the file cut short (-1), then as free's own call below goes on."""
        if isinstance(done, OSError):
            raise self._translated(done)
        dev, ino = self._identity or self._file_id
        name = self._registry.published(self._key or "")[0]
        arguments = (self._fd, segment.directory_fd(), name, hdr.PUBLISHED, dev, ino)
        self._freed_named(done, (*arguments, _FREED_BYTE), True, timeout)

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


if calls is not None:  # its usual case in one C call, with no frame (shm/c/usual_methods.c)
    Freeing.free = calls.UsualMethod(calls.USUAL_FREE, Freeing.free, Freeing._usual_free_ended)
