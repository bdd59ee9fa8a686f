"""Giving an allocation names: publish it, or hand it over by handle.

Under the name protocol (lifecycle.py): the header says published (or private, for a
handle) before the name is linked, and a name that cannot be linked leaves the header
private again. Published bytes are counted in the context's ledger, if it has a capacity.
"""

from __future__ import annotations

import os
import stat

from . import forks
from .errors import AlreadyExists, InvalidArgument, NotFound
from .lazy import contextmanager
from .lifecycle import HANDLED, SHARED, Lifecycle
from .names import HANDLE
from .shm import header as hdr
from .shm import locks, making, processes, segment, trust
from .shm.header import DATA_OFFSET
from .shm.native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .shm.trust import Writers

_PUBLISHED = hdr.pack_lifecycle(hdr.PUBLISHED)
_NAME_IN_TAIL = hdr.NAME_AT - hdr.LIFECYCLE_AT  # where the name is in what publish writes
_LIFECYCLE_AT, _PUBLISHED_BYTE = hdr.LIFECYCLE_AT, hdr.PUBLISHED
_packed_names = hdr.packed_names  # (a name packed before: no frame, see hdr.pack_name)


class Publishing(Lifecycle):
    """How an Allocation gains names (mixed into it)."""

    __slots__ = ()  # (the Allocation's)

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
            except BaseException:  # ^C as it returns: if it linked the name, it is public
                if link is not None and segment.names_file(link, self._file_id):
                    self._pending = None  # (its locks taken, its header written)
                    forks.private.pop(id(self), None)
                    self._visibility, self._key, self._description = SHARED, name, what
                    self._recycle = None
                raise
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
            if isinstance(exc, AlreadyExists) and segment.names_file(file_name, self._file_id):
                return  # named so already: a publish cut short after its link (^C), retried
            # Not named: whatever stopped it (the name taken, no inode left for a
            # handle's second name ...), its header says private again, else a handle
            # would keep a header its free() does not recognise (and never remove it).
            self._write(hdr.pack_lifecycle(hdr.PRIVATE), hdr.LIFECYCLE_AT)
            self._write(hdr.pack_name(""), hdr.NAME_AT)
            if isinstance(exc, AlreadyExists):
                taken = _taken_by(file_name, self._registry.writers)
                raise AlreadyExists(f"{what} already exists{taken}") from None
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
        file_name = self._registry.member_file(HANDLE, handle)
        try:
            segment.link(self._fd, file_name, self.describe())
            self._drop_old_name()
            self._set_visibility(HANDLED, handle)
        except BaseException:  # (^C as the link returns, or after: once the name is linked
            # the allocation has that handle, which a retry returns; else a retry made a
            # second one, and the first stayed until leak-check found this process dead)
            if self._visibility != HANDLED and segment.names_file(file_name, self._file_id):
                self._set_visibility(HANDLED, handle)
                self._recycle = None
            raise
        self._recycle = None
        return handle

    @contextmanager
    def _lifecycle_held(self, timeout: float | None = None) -> Iterator[int]:
        """Hold the segment's lifecycle lock; yields the lifecycle as it is now."""
        lifecycle = self._lock_lifecycle(timeout)[0]
        try:
            yield lifecycle
        finally:
            locks.unlock(self._fd, locks.LIFECYCLE_BYTE)

    def _drop_old_name(self) -> None:
        """After a new name was linked: remove the handle or pool name it had before
        (a handle under the lifecycle lock, held by the caller)."""
        if self._visibility == HANDLED:
            segment.remove_name(self._registry.member_file(HANDLE, self._key or ""), self._file_id)
        if self._pool_name is not None:
            from .pool import leave

            leave(self._registry, self._fd, self._pool_name)
            self._pool_name = None


def _taken_by(file_name: str, writers: Writers) -> str:
    """What to do about the name taken: free it, if one of the context's `writers` took
    it (in a context others may write, not only this user); else who took it (planted)."""
    found = segment.stat_named(file_name)
    if found is None or (
        stat.S_ISREG(found.st_mode) and (found.st_uid == os.geteuid() or writers.admits(found))
    ):
        return "; choose another name or free it first"
    kind = trust.file_type(found.st_mode)
    return f" as {kind} of {trust.user_name(found.st_uid)}, not made by clara; choose another name"


if calls is not None:  # its usual case in one C call, with no frame (shm/c/usual_methods.c)
    Publishing.publish = calls.UsualMethod(calls.USUAL_PUBLISH, Publishing.publish, None)
