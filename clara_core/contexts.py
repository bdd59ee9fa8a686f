"""The contexts of a namespace: making a context's own segment, and listing them.

context.py is the handle on one context (its members, its warm pool, closing it); this
module is what only `clara create context` and listings need, so the copies of shell
pipelines, which open a context and never make one, do not load it (start-up).
"""

from __future__ import annotations

import os
import stat
import time

from .dtypes import parse_size
from .errors import AlreadyExists, InvalidArgument
from .names import context_file, namespace, parse_file_name
from .shm import header as hdr
from .shm import making, processes, segment, trust
from .shm.header import DataState, Header, Origin, Settings

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import Context
    from .shm.access import FileStat

PAGE = 4096


def make(
    name: str,
    capacity: int | str | None,
    mode: int,
    owner_pid: int | None,
    pool_bytes: int | str | None,
    build: Callable[[int, bool, Header, FileStat | os.stat_result], Context],
) -> Context:
    """Make and link the segment of context `name` (checked name, checked `mode`), and
    return `build(fd, writable, header, stat)` of it; on any failure nothing is linked
    and the fd is closed. AlreadyExists says who holds the name if it is not ours."""
    quota = 0 if capacity is None else parse_size(capacity)
    if pool_bytes is None:
        from .pool import default_cap  # (not loaded by the copies: start-up)

        pool_cap = default_cap()
    else:
        pool_cap = 0 if pool_bytes in (0, "0") else parse_size(pool_bytes)
    owner = (0, 0)
    if owner_pid is not None:
        owner = processes.identity(_check_pid(owner_pid))
        if not owner[1]:
            raise InvalidArgument(f"owner pid {owner_pid} is not a running process")
    what = f"context '{name}'"
    header = Header(
        kind=hdr.KIND_CONTEXT,
        lifecycle=hdr.PUBLISHED,
        data=DataState(hdr.EMPTY),
        layout=None,
        origin=Origin(time.time_ns(), *processes.identity(), *owner),
        settings=Settings(mode, quota, pool_cap),
        context=name,
        name=name,
    )
    from .shm import ledger

    page = header.pack() + bytes(ledger.LEDGER_AT - hdr.HEADER_SIZE) + ledger.initial()
    fd = making.create_anonymous(PAGE, mode, what, page)[0]
    try:
        segment.link(fd, context_file(name), what)
        return build(fd, True, header, os.fstat(fd))
    except AlreadyExists:
        os.close(fd)
        raise AlreadyExists(f"{what} already exists{_squatter(name)}") from None
    except BaseException:
        os.close(fd)
        raise


def names() -> list[str]:
    """Names of the contexts of this namespace that this user can open."""
    from .shm import listing

    ns = namespace()
    refusal = trust.owner_refusal()
    found = []
    for entry in listing.scan(ns + "."):
        parsed = parse_file_name(entry.name, ns)
        if parsed is None or parsed[1] is not None:
            continue
        header = entry.header(refusal)
        if header is not None and header.kind == hdr.KIND_CONTEXT:
            found.append(header.name)
    return sorted(found, key=str.lower)


def _squatter(name: str) -> str:
    """How an AlreadyExists names what holds a context's name, if not one of ours."""
    found = segment.stat_named(context_file(name))
    if found is None or (found.st_uid in (os.geteuid(), 0) and stat.S_ISREG(found.st_mode)):
        return "; open it, or destroy it first"
    return (
        f" as {trust.file_type(found.st_mode)} of {trust.user_name(found.st_uid)}, who "
        "took the name first: choose another name (or have that user remove it)"
    )


def _check_pid(pid: object) -> int:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InvalidArgument(f"invalid pid {pid!r}: use a positive process id")
    return pid
