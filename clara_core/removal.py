"""Removing names without ever removing the wrong file: destroy's and reclaim's part.

Names are reused: an allocation's name once it is freed and published again, a
context's once it is destroyed and created again. So a name checked a moment ago may
denote another file now, and removing by name what was checked by descriptor is a race
that loses live data. The protocol every remover follows (`free`, `publish` of a handle,
`destroy`, `leak-check --fix`):

    a published, handle or context name is removed only by a process that holds the
    exclusive lifecycle lock of the file it denotes (LIFECYCLE_BYTE of an allocation,
    registry.LIFECYCLE_BYTE of a context) and has checked, under that lock, that the
    name still denotes that very file (same device and inode).

Since every remover takes that lock, nobody can remove the name and give it to another
file between the check and the unlink; creating a name (link(2)) fails while it exists.
Pooled names are never reused (random tokens) and leave the pool only under the
exclusive reference lock or with a destroy.

Why not rename to a private tombstone and check there? If the file found there is not
the one checked, it must be put back, and someone may have taken the name meanwhile:
the file is then lost. Why not a namespace-wide lock file? Anyone can create it first,
with any owner, and hold it forever. The lifecycle lock lives on the file itself, which
only users allowed to open it can lock at all.
"""

from __future__ import annotations

import os
import resource
import stat
import time

from . import warm_segments
from .errors import ClaraError, NotFound, Timeout
from .names import POOLED, context_file, member_file, same_name
from .registry import LIFECYCLE_BYTE as CONTEXT_LIFECYCLE_BYTE
from .registry import POOL_BYTE, POOL_WAIT, Registry
from .shm import ledger, listing, locks, processes, segment
from .shm.header import KIND_ALLOCATION
from .shm.processes import FileId
from .shm.trust import Writers, header_trusted, ours_refusal, removable_refusal


def destroy_context(name: str, timeout: float | None = None) -> int:
    """Remove a context's name, then every member of it we may remove; returns how many
    members went. Waits for locks at most `timeout` seconds in all (None: the default).

    Members of other users stay (in the sticky shared-memory directory only their owner,
    or root, can remove them; root removes those the context admits): they are then
    orphans, which their owners' leak-check reclaims. So no file of anyone else can stop
    a user from destroying their own context.
    """
    what = f"context '{name}'"
    own = context_file(name)
    warm_segments.forget(own)
    deadline = time.monotonic() + (locks.default_wait() if timeout is None else timeout)
    opened = segment.open_segment(own, what, removable_refusal, header=False)
    try:
        locks.acquire(
            opened.fd,
            CONTEXT_LIFECYCLE_BYTE,
            True,
            f"the lifecycle lock of {what}",
            _left(deadline),
        )
        found = opened.stat
        if not segment.names_file(own, (found.st_dev, found.st_ino)):
            raise NotFound(f"{what} does not exist (destroyed meanwhile)")
        # Listed and unlinked under the pool lock (held until the fd closes): a free
        # moving a segment into the pool meanwhile either named it before we list, or
        # finds the context destroyed (pool.retire). Waited for as briefly as every pool
        # user does, and never failed for (others who may read the context can hold it).
        locks.lock(opened.fd, POOL_BYTE, True, min(POOL_WAIT, _left(deadline)))
        # Listed while the name is still ours: no newer context of that name can exist
        # yet, so every member listed is ours or an orphan of an older one.
        members = [(entry.name, entry.inode()) for entry in listing.scan(own + ".")]
        segment.unlink(own, what)
    finally:
        os.close(opened.fd)
    writers = Writers.of(found)
    return sum(
        _remove_member(file_name, inode, writers, deadline, name) for file_name, inode in members
    )


def _remove_member(
    file_name: str, inode: int, writers: Writers, deadline: float, context: str
) -> bool:
    """Remove one member listed by destroy, if it is still that file and ours to remove.

    A pool name whose segment another context claimed (a warm pool's, see `warm_pool`)
    stays while that claimer holds it: it is the only name the claimer can publish the
    segment from (a file without a name can never be linked again). The claimer removes
    it when it publishes or lets go (`pool.leave`); leak-check, if the claimer dies.
    """
    me = os.geteuid()
    try:
        found = segment.stat_named(file_name)
    except ClaraError:
        return False
    if found is None or found.st_ino != inode:
        return False  # gone, or a newer file under that name
    if found.st_uid != me and not (me == 0 and writers.admits(found)):
        return False  # another user's: theirs to remove
    try:
        opened = segment.open_segment(file_name, file_name, removable_refusal, header=False)
    except ClaraError:  # gone, or not a regular file: leak-check reports it
        return False
    try:
        file_id = (opened.stat.st_dev, opened.stat.st_ino)
        if opened.stat.st_ino != inode:
            return False
        try:
            what = f"the lifecycle lock of {file_name}"
            locks.acquire(opened.fd, locks.LIFECYCLE_BYTE, True, what, _left(deadline))
        except Timeout:
            return False  # held too long: left as an orphan for leak-check
        if f".{POOLED}." in file_name and _claimed_by_other(opened.fd, context):
            return False
        return segment.remove_name(file_name, file_id)
    finally:
        os.close(opened.fd)


def _claimed_by_other(fd: int, context: str) -> bool:
    """Under its lifecycle lock (which a claimer takes to rewrite the header): whether a
    pooled segment is claimed by a context other than `context` and still referenced
    (its lifecycle private, or already published while its claimer links the name)."""
    if locks.try_lock(fd, locks.REFERENCE_BYTE, exclusive=True):
        return False  # nobody holds it: a claimer that died leaves it to the destroy
    try:
        header, _ = segment.read_header(fd, "pooled segment")
    except ClaraError:
        return False
    return not same_name(header.context, context)


def remove_leftover(context: Registry, file_name: str, timeout: float | None = None) -> bool:
    """Finish the destroy of an earlier context of this name: remove its member
    `file_name` if it is one (made in another incarnation, see `Registry.made_here`).

    Returns whether it went. As destroy would have, it removes the name even if old
    references to it are still held (they stay valid). Only on the word of a header no
    other user can have written (`trust.header_trusted`), under the member's lifecycle
    lock, and only if the name still denotes the file checked.
    """
    what = f"leftover {file_name}"
    try:
        opened = segment.open_segment(file_name, what, context.writers.refusal)
    except ClaraError:  # gone, or not a segment the context admits
        return False
    try:
        header, found = opened.header, opened.stat
        if (
            header is None
            or header.kind != KIND_ALLOCATION
            or context.made_here(header)
            or not header_trusted(found.st_uid, stat.S_IMODE(found.st_mode))
        ):
            return False
        wait = locks.default_wait() if timeout is None else timeout
        if not locks.lock(opened.fd, locks.LIFECYCLE_BYTE, True, wait):
            return False
        return segment.remove_name(file_name, (found.st_dev, found.st_ino))
    finally:
        os.close(opened.fd)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def remove_unused(files: list[tuple[str, FileId, bool]]) -> str:
    """Remove every file of `files` ((file name, file id, is a context)), or none.

    Returns '' when they are gone, else why none was removed: a file is not the one
    checked any more, is referenced or mapped by a live process, or someone is freeing
    or destroying it. Holds every file's exclusive reference and lifecycle locks while
    it checks /proc and the names, so nothing can start using them meanwhile; and a
    context's pool lock, so that nothing enters its pool unseen (as in destroy).
    """
    _enough_descriptors(len(files))
    fds: list[int] = []
    try:
        held = []
        pools: list[tuple[int, str]] = []  # (fd, file name) of each context held
        locked: set[FileId] = set()  # one file may have two names (a publish killed midway)
        for file_name, file_id, is_context in files:
            if file_id in locked:  # our own locks would refuse a second open of it
                held.append((file_name, file_id))
                continue
            try:
                opened = segment.open_segment(file_name, file_name, ours_refusal, header=False)
            except NotFound:
                continue
            except ClaraError as exc:
                return str(exc)
            fds.append(opened.fd)
            if (opened.stat.st_dev, opened.stat.st_ino) != file_id:
                return f"{file_name} changed while being checked"
            if not locks.try_lock(opened.fd, locks.REFERENCE_BYTE, exclusive=True):
                return f"{file_name} is referenced by a live process"
            byte = CONTEXT_LIFECYCLE_BYTE if is_context else locks.LIFECYCLE_BYTE
            if not locks.try_lock(opened.fd, byte, exclusive=True):
                return f"{file_name} is being freed or destroyed"
            if is_context:
                if not locks.try_lock(opened.fd, POOL_BYTE, exclusive=True):
                    return f"the pool of {file_name} is in use"
                pools.append((opened.fd, file_name))
            held.append((file_name, file_id))
            locked.add(file_id)
        still_mapped = processes.mappers({file_id for _, file_id in held})
        if still_mapped:
            holders = ", ".join(str(m) for ms in still_mapped.values() for m in ms)
            return f"mapped by {holders}"
        if not all(segment.names_file(file_name, file_id) for file_name, file_id in held):
            return "a name changed while being checked"
        names = {file_name for file_name, _ in held}
        if any(_pooled_since(fd, file_name, names) for fd, file_name in pools):
            return "a segment entered a pool while being checked"
        for file_name, file_id in held:
            segment.remove_name(file_name, file_id)
        return ""
    finally:
        for fd in fds:
            os.close(fd)


def _pooled_since(fd: int, context_file: str, names: set[str]) -> bool:
    """Under the context's pool lock: whether its ledger names a segment of ours that is
    not among `names` (retired into its pool since they were listed)."""
    me = os.geteuid()
    for slot in ledger.read(fd).slots:
        name = member_file(context_file, POOLED, slot.suffix)
        if slot.capacity and name not in names:
            found = segment.stat_named(name)
            if found is not None and found.st_uid == me and stat.S_ISREG(found.st_mode):
                return True
    return False


def _enough_descriptors(count: int) -> None:
    """Raise the soft limit on open files if a group needs more than it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), hard))
