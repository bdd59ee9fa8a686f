"""A context's members as they are made and opened.

A new private allocation is a recycled segment claimed from the context's pool, or a fresh
anonymous one whose memory is reserved at once. A reference to a published or handed-over
allocation is opened by the one safe open (shm/segment.open_segment) and then proven to be
the segment the name denotes, made by this incarnation of the context and still alive.
"""

from __future__ import annotations

import os
import time

from . import forks
from .allocation import SHARED, Allocation
from .dtypes import UINT8, element_type, nbytes_of, parse_size, static_shape
from .errors import Corrupt, InvalidArgument, NotFound, OutOfSpace
from .lifecycle import PRIVATE
from .names import same_name, shm_dir_setting
from .registry import POOL_MIN_BYTES, POOL_WAIT
from .shm import directory, locks, making, processes, segment
from .shm import header as hdr
from .shm.header import DATA_OFFSET, Layout
from .shm.native import calls
from .shm.segment import STAT_ONLY_REFUSAL, WITH_HEADER

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from .context import Context
    from .registry import Registry

PAGE = 4096
# The largest capacity made in one call (and never pooled): its file is written whole.
_SMALL = min(making.WHOLE_WRITE_MAX - DATA_OFFSET, POOL_MIN_BYTES - 1)


def layout_for(size: int | str | None, dtype: object, shape: object) -> Layout:
    """The layout of a new allocation of `size` bytes, or of `dtype` elements in `shape`."""
    # The usual create(size) or create(size, dtype="..."): looked up. Only exact ints and
    # strings are keys (4096.0 == 4096, True == 1, but they are not valid alike).
    global _last_sized
    last_size, last_dtype, layout = _last_sized
    if size is last_size and dtype is last_dtype and shape is None:  # the same objects
        return layout  # as the last create's (a loop's): no key to build and hash
    if shape is None and type(size) in _EXACT and (dtype is None or type(dtype) is str):
        key = (type(size), size, dtype)
        layout = _sized.get(key)
        if layout is None:
            layout = _layout_for(size, dtype, shape)
            if len(_sized) >= _SIZED_MAX:
                _sized.clear()
            _sized[key] = layout
        _last_sized = (size, dtype, layout)
        return layout
    return _layout_for(size, dtype, shape)


_EXACT = (int, str)
_sized: dict[tuple[type, int | str, str | None], Layout] = {}
_SIZED_MAX = 256
_last_sized: tuple[object, object, Layout] = (object(), None, Layout(UINT8, (0,), 0, 0))


def _layout_for(size: int | str | None, dtype: object, shape: object) -> Layout:
    etype = UINT8 if dtype is None else element_type(dtype)
    if shape is not None:
        if size is not None:
            raise InvalidArgument("give either a size or a shape, not both")
        dims = static_shape(shape)
        nbytes = nbytes_of(etype, dims)
    elif size is not None:
        nbytes = parse_size(size)
        if nbytes % etype.itemsize:
            raise InvalidArgument(
                f"{nbytes} bytes is not a whole number of {etype.name} ({etype.itemsize} bytes)"
            )
        dims = (nbytes // etype.itemsize,)
    else:
        raise InvalidArgument("give a size in bytes, or an element type and a shape")
    return Layout(etype, dims, nbytes, -(-nbytes // PAGE) * PAGE)  # whole pages


def new_allocation(
    context: Context,
    size: int | str | None = None,
    *,
    dtype: object = None,
    shape: object = None,
) -> Allocation:
    """A new private allocation: `create(size)` bytes, or `create(dtype=, shape=)`.

    Its memory is reserved now (OutOfSpace if it does not fit), and it vanishes
    if this process ends before publishing or handing it over.
    """
    # (Context.create is this function: no frame of its own. A recycled segment from the
    # context's pool, or a fresh one.)
    registry = context._registry
    last_size, last_dtype, layout = _last_sized  # (layout_for's first lines: a loop's create)
    if size is not last_size or dtype is not last_dtype or shape is not None:
        layout = layout_for(size, dtype, shape)
    what = registry.private_what  # (what describe() makes of it, made once)
    capacity = layout.capacity
    if capacity <= _SMALL:  # the usual case: never pooled, made in one call with its object
        known = _template  # (read once: another thread may replace it)
        if layout is not known[0] or registry.name != known[1] or registry.incarnation != known[2]:
            known = _template_for(layout, registry)
        try:
            alloc, uid, made_mode = making.create_private(
                Allocation, segment.directory_fd(), registry.mode, known[3],
                DATA_OFFSET + capacity, context, registry, layout, PRIVATE, what, forks.count,
                forks.private,
            )  # fmt: skip
        except OSError:  # made again to say why (no room: once the pools are emptied)
            return _made_again(context, registry, layout, what)
        # Made by the context's owner, with its mode (the usual case): adopt would change
        # nothing (trust.Writers.new_owner leaves the owner's files alone).
        if uid != registry.uid or made_mode & 0o7777 != registry.mode:
            return _adopted(registry, alloc, uid, made_mode)
        return alloc
    asked = layout
    claimed = None
    if layout.capacity >= POOL_MIN_BYTES:  # (smaller, the usual case: no claim, no pool)
        from .pool import claim

        claimed = claim(registry, layout.capacity)
    fd, pool_name, warm = claimed if claimed is not None else (-1, None, None)
    # (its identity, for the cleanup below; a claimed one's is fstat'ed once it is made)
    made: tuple[int, int] | None = None
    alloc = None
    try:
        if fd >= 0:  # a recycled segment may be larger than asked for
            found = os.fstat(fd)
            made = (found.st_dev, found.st_ino)
            layout = layout._replace(capacity=found.st_size - DATA_OFFSET)
        created_ns = time.time_ns()
        pid, start = processes.identity()
        origin = (created_ns, pid, start, 0, 0, registry.incarnation)
        header = hdr.pack_new_allocation(layout, origin, registry.name)
        if fd >= 0 and not _rewrite_claimed(fd, header, what):
            # Not ours to use after all (it stays in the pool, or is gone): fresh instead.
            if warm is not None:
                warm.release()
                warm = None
            os.close(fd)
            fd, pool_name, layout, made = -1, None, asked, None
            header = hdr.pack_new_allocation(layout, origin, registry.name)
        fresh = fd < 0
        if fresh:
            fd, made = _fresh_segment(registry, layout.capacity, what, header)
        alloc = Allocation(
            context,
            registry,
            fd,
            True,
            layout,
            created_ns,
            made,
            PRIVATE,
            None,
            pool_name,
            what,
            forks.count,
        )
        alloc._recycled_at_release()
        if fresh:  # no name, so no other process can reach it: its locks wait (reference.py)
            alloc._defer(header)
    except BaseException:
        if warm is not None:
            warm.release()
        if fd >= 0:
            _close_once(fd, made, alloc)
        raise
    alloc._warm = warm
    return alloc


def _adopted(registry: Registry, alloc: Allocation, uid: int, made_mode: int) -> Allocation:
    """A new allocation whose file was made with another owner or mode than its context's
    (a set-group-ID directory, a umask): adopted (trust.Writers.new_owner)."""
    new_owner = registry.writers.new_owner  # (before the try: its except says closed)
    try:
        making.adopt(alloc._fd, uid, made_mode, registry.mode, new_owner, registry.private_what)
    except BaseException:  # (adopt closed the file)
        alloc._closed = True
        forks.private.pop(id(alloc), None)
        raise
    return alloc


def _made_again(context: Context, registry: Registry, layout: Layout, what: str) -> Allocation:
    """A small new allocation made step by step (`_fresh_segment`), after its one-call
    create failed: the same calls again, their error translated, the pools emptied to
    make room."""
    created_ns = time.time_ns()
    pid, start = processes.identity()
    origin = (created_ns, pid, start, 0, 0, registry.incarnation)
    header = hdr.pack_new_allocation(layout, origin, registry.name)
    fd, identity = _fresh_segment(registry, layout.capacity, what, header)
    alloc = None
    try:
        alloc = Allocation(
            context, registry, fd, True, layout, created_ns, identity, PRIVATE, None, None,
            what, forks.count,
        )  # fmt: skip
        alloc._defer(header)  # (no name: its locks wait, see reference.py)
    except BaseException:
        _close_once(fd, identity, alloc)
        raise
    return alloc


def _template_for(layout: Layout, registry: Registry) -> tuple[Layout, str, int, bytes]:
    """(layout, context name, incarnation, the header template of a new allocation of
    `layout` in it by this process), kept for the next create."""
    global _template
    pid, start = processes.identity()
    maker = (pid, start, 0, 0, registry.incarnation)
    template = hdr.allocation_template(layout, maker, registry.name)
    _template = (layout, registry.name, registry.incarnation, template)
    return _template


def _forget_template() -> None:
    global _template
    _template = _NO_TEMPLATE  # a forked child is another maker


_NO_TEMPLATE: tuple = (None, "", -1, b"")
# The last create's: (layout, context name, incarnation, template); see `_template_for`.
_template: tuple = _NO_TEMPLATE
os.register_at_fork(after_in_child=_forget_template)

if calls is not None:  # what the usual create, publish and free in one call work with
    calls.set_up_usual(  # (shm/c/usual.c)
        making.create_private, globals(), Allocation, _SMALL, making.publish,
        making.free_named, vars(directory), shm_dir_setting, hdr.packed_names,
        forks.private, PRIVATE, SHARED, hdr.PUBLISHED, hdr.FREED, POOL_MIN_BYTES,
    )  # fmt: skip


def _adopted_made(context: Context, made: tuple[Allocation, int, int]) -> Allocation:
    """The usual create's allocation whose file must be adopted (see _adopted)."""
    return _adopted(context._registry, *made)


# Context.create: its usual case in one C call, with no frame (shm/c/usual_methods.c);
# new_allocation makes every other, and is what runs without the extension.
create = (
    new_allocation
    if calls is None
    else calls.UsualMethod(calls.USUAL_CREATE, new_allocation, _adopted_made)
)


def _close_once(fd: int, identity: tuple[int, int] | None, alloc: Allocation | None) -> None:
    """The cleanup of a create or get cut short (^C: an exception a signal handler raises):
    close `fd` once. An Allocation made of it owns it: marked closed, its finalizer leaves
    it. One made but lost before it was bound (the exception came as its constructor
    returned) closed it as it died: `fd` then no longer denotes the segment `identity`
    (closed, or another file's since), and closing it again would close that file."""
    if alloc is not None:
        alloc._closed = True
    elif identity is not None:
        try:
            found = os.fstat(fd)
        except OSError:
            return
        if (found.st_dev, found.st_ino) != identity:
            return
    os.close(fd)


def _rewrite_claimed(fd: int, header: bytes | bytearray, what: str) -> bool:
    """Write a claimed segment's new header, under its lifecycle lock, which a destroy
    takes to remove its pool name (`removal`): False if that name is gone already (a
    file without a name can never be linked again, nor so be published; after that, the
    destroy sees it claimed and leaves the name to us), or if the lock stays busy for the
    pool's short wait (a reader of a 644 pool can hold it)."""
    if not locks.lock(fd, locks.LIFECYCLE_BYTE, True, POOL_WAIT):
        return False
    try:
        segment.write_at(fd, header, 0, what)
        return os.fstat(fd).st_nlink > 0
    finally:
        locks.unlock(fd, locks.LIFECYCLE_BYTE)


def _fresh_segment(
    registry: Registry, capacity: int, what: str, header: bytes | bytearray
) -> tuple[int, tuple[int, int]]:
    """A new anonymous segment and its identity (see `making.create_anonymous`); when
    /dev/shm is full, empty the pools and retry once.

    It belongs to whoever the context admits (root gives it to the context's owner,
    a group member gives it the context's group).
    """
    owner = registry.writers.new_owner
    size = DATA_OFFSET + capacity
    try:
        return making.create_anonymous(size, registry.mode, what, header, owner)
    except OutOfSpace:
        from .pool import evict

        if not evict():
            raise
    return making.create_anonymous(size, registry.mode, what, header, owner)


# The lock a reference holds (open_member), with its request (segment.open_segment).
_SHARED_REFERENCE = (locks.REFERENCE_BYTE, False, locks.requests(locks.REFERENCE_BYTE)[0])


def open_member(
    context: Context,
    registry: Registry,
    file_name: str,
    what: str,
    visibility: str,
    read_only: bool = False,
    name: str = "",
    timeout: float | None = None,
) -> Allocation:
    """A new reference to the member named `file_name` (published, or a handle).

    NotFound if it is not there, was freed, or was left by an earlier context of this name.
    """
    # Owner, file type and header are checked before the reference lock is waited
    # for (only while a reclaimer or recycler checks the segment, and bounded).
    # (positional, the booleans by name: see open_unpacked. registry.refusal is the
    # context's Writers', a function of the stat alone)
    fd, writable, found, header = segment.open_unpacked(
        file_name,
        what,
        registry.refusal,
        read_only,
        WITH_HEADER,
        _SHARED_REFERENCE,
        timeout,
        STAT_ONLY_REFUSAL,
    )
    try:
        known = _last_member  # (read once: another thread may replace it)
        if (
            header is known[0]
            and registry is known[1]
            and name == known[2]
            and visibility is known[3]
            and found.st_nlink
        ):
            # The same header (parse() gives the same Header object for the same bytes),
            # name and context as the last member that passed every check below, and the
            # file still has a name: the same verdict (a handle's is not: it is a name).
            layout, created_ns, key, description = known[4]
        else:
            layout, created_ns, key, description = _checked_member(
                registry, file_name, what, visibility, name, found, header
            )
        return Allocation(
            context,
            registry,
            fd,
            writable,
            layout,
            created_ns,
            (found.st_dev, found.st_ino),
            visibility,
            key,
            None,  # (no pool name)
            description,
            forks.count,
        )
    except BaseException:
        _close_once(fd, (found.st_dev, found.st_ino), None)  # (the Allocation's, if made)
        raise


# The last published member that passed `_checked_member`: (its Header, registry, name,
# visibility, what open_member makes its Allocation of).
_last_member: tuple = (None, None, None, None, None)


def _checked_member(
    registry: Registry,
    file_name: str,
    what: str,
    visibility: str,
    name: str,
    found: segment.FileStat,
    header: hdr.Header,
) -> tuple[Layout, int, str, str | None]:
    """What open_member makes the reference of, once the header's claims are checked:
    (layout, created_ns, key, description). NotFound if it was freed, or left by an
    earlier context of this name; Corrupt if it is not an allocation."""
    global _last_member
    kind, lifecycle, _, layout, origin, _, _, header_name = header
    created_ns, _, _, _, _, made_in = origin
    expected = hdr.PUBLISHED if visibility == SHARED else hdr.PRIVATE
    if kind != hdr.KIND_ALLOCATION:
        raise Corrupt(f"{what} is corrupt (it is not an allocation)")
    if made_in not in registry.made_in:  # registry.made_here(header), inline
        raise NotFound(f"{what} was left by an earlier context '{registry.name}'")
    if found.st_nlink == 0 or lifecycle != expected:
        raise NotFound(f"{what} was freed")
    # Between our open and our lock, the segment may have been freed, recycled
    # and published again under another name: it must still be the one named.
    if visibility == SHARED:
        if header_name != name and not same_name(header_name, name):
            raise NotFound(f"{what} was freed")
    elif not segment.names_file(file_name, (found.st_dev, found.st_ino)):
        raise NotFound(f"{what} was freed")  # a handle is not in the header
    key = header_name if visibility == SHARED else file_name.rsplit(".", 1)[1]
    assert layout is not None  # an allocation's header has one
    # Named as asked, `what` is what describe() would make: made once.
    description = what if visibility == SHARED and key == name else None
    checked = (layout, created_ns, key, description)
    if visibility == SHARED:
        _last_member = (header, registry, name, visibility, checked)
    return checked
