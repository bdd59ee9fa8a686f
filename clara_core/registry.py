"""A context as its allocations and its pool see it: its open segment and its rules.

`Context` is what users hold; `Registry` is the narrow part of it that an `Allocation`
and the pool need (the context's file naming, its mode, capacity and pool cap, and the
locks on its segment), so that they depend on this small module and never on `Context`.

Lock bytes on a context's segment (OFD locks, see `shm.locks`):

    QUOTA_BYTE  exclusive while one publish checks the capacity (contexts with one)
    POOL_BYTE   exclusive while the pool's bookkeeping changes
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import NotFound, OutOfSpace, PermissionDenied
from .names import PUBLISHED, member_file
from .shm import locks, segment

QUOTA_BYTE = 2
POOL_BYTE = 3


class Registry:
    """The open segment of a context, and the rules its allocations follow."""

    __slots__ = ("capacity", "fd", "file_name", "mode", "name", "pool_cap", "uid", "writable")

    def __init__(
        self,
        name: str,
        file_name: str,
        fd: int,
        writable: bool,
        uid: int,
        mode: int,
        capacity: int | None,
        pool_cap: int,
    ) -> None:
        self.name = name
        self.file_name = file_name  # fixed: the namespace it was opened in
        self.fd = fd
        self.writable = writable
        self.uid = uid
        self.mode = mode
        self.capacity = capacity
        self.pool_cap = pool_cap

    def member_file(self, kind: str, name: str) -> str:
        """File name of a member (published, handle or pooled) of this context."""
        return member_file(self.file_name, kind, name)

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

    @contextlib.contextmanager
    def publishing(self, nbytes: int, what: str) -> Iterator[None]:
        """Hold the capacity check for one publish (contexts with a capacity only)."""
        assert self.capacity is not None
        locks.lock(self.fd, QUOTA_BYTE, exclusive=self.writable, timeout=None)
        try:
            published = segment.list_names(f"{self.file_name}.{PUBLISHED}.")
            used = segment.total_size(published)
            if used + nbytes > self.capacity:
                raise OutOfSpace(
                    f"{what} does not fit: context '{self.name}' holds {used} of its "
                    f"{self.capacity} bytes; free something first"
                )
            yield
        finally:
            locks.unlock(self.fd, QUOTA_BYTE)

    @contextlib.contextmanager
    def pool_locked(self) -> Iterator[None]:
        """Hold the pool's bookkeeping lock."""
        locks.lock(self.fd, POOL_BYTE, exclusive=self.writable, timeout=None)
        try:
            yield
        finally:
            locks.unlock(self.fd, POOL_BYTE)
