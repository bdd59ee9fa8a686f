"""An allocation's names over its life, and the lock they are changed under.

The name protocol (see removal.py): a name is linked or removed only by a process holding
the segment's lifecycle lock, after checking under that lock that the lifecycle is what it
expects and that the name still denotes this segment. The lock and the visibility states
are here; giving names (publish, handles) is in publishing.py, taking them away (release,
free) in freeing.py, both mixed into Allocation.
"""

from __future__ import annotations

from .errors import Corrupt
from .reference import Reference
from .shm import locks, making, segment

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .registry import Registry
    from .shm.header import Layout

PRIVATE = "private"  # anonymous, known to this process only
HANDLED = "handle"  # private, but reachable by handle from other processes
SHARED = "published"


class Lifecycle(Reference):
    """The naming half of an Allocation (mixed into it), its base: the lifecycle lock.
    `publishing.Publishing` gives names, `freeing.Freeing` takes them away."""

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

    def _cut_short(self) -> Corrupt:
        return Corrupt(
            f"{self.describe()} is corrupt (its file was cut short); remove it "
            "with `clara leak-check --fix`"
        )
