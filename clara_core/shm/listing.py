"""The shared-memory directory listed: for tooling and repairs only (dump, leak-check,
destroy, the pool's eviction, a quota recount), never for a create, get, publish or free.

Each listing reads an open of the directory of its own, made through the kept descriptor
(`segment.directory_fd`): that descriptor's read position is shared with every thread
and with every child forked since, so a listing going on there made another one skip
names (destroy then left members behind) or repeat them.
"""

from __future__ import annotations

import os
import stat

from ..errors import ClaraError
from ..names import shm_dir
from ..records import Record
from .segment import directory_fd, open_segment, translate

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from .header import Header
    from .trust import Refusal


class Entry(Record):
    """A name listed by `scan` (the parts of os.DirEntry its callers use)."""

    name: str
    ino: int
    directory: int  # the kept descriptor of the directory it was listed in

    def inode(self) -> int:
        """Its inode number, as listed."""
        return self.ino

    def stat(self, *, follow_symlinks: bool = False) -> os.stat_result:
        """stat of the name now (OSError if it is gone)."""
        return os.stat(self.name, dir_fd=self.directory, follow_symlinks=follow_symlinks)

    def header(self, refusal: Refusal) -> Header | None:
        """The header of its file, or None if it is gone, refused (`refusal`), or not valid."""
        try:
            found = self.stat(follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(found.st_mode) or refusal(found) is not None:
            return None  # cheap: no open for what we would refuse anyway
        try:
            opened = open_segment(self.name, self.name, refusal, read_only=True)
        except ClaraError:  # gone meanwhile, refused, or corrupt (leak-check reports it)
            return None
        os.close(opened.fd)
        return opened.header


def scan(prefix: str) -> list[Entry]:
    """Entries of the shared-memory directory whose names start with `prefix`, by name."""
    directory = directory_fd()
    try:
        own = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        try:
            with os.scandir(own) as entries:
                found = [
                    Entry(entry.name, entry.inode(), directory)
                    for entry in entries
                    if entry.name.startswith(prefix)
                ]
        finally:
            os.close(own)
    except OSError as exc:
        raise translate(exc, f"shared-memory directory {shm_dir()}") from exc
    return sorted(found)
