"""mmap(2), munmap(2) and the holder of a mapping through ctypes: memory.py's pure-Python
twins of the C extension's `map_at`, `munmap` (clara_core/shm/c/access.c), `holder` and
`cut_off` (holder.c), which run where it is not built or CLARA_PURE_PYTHON=1, with the
same results and errors (OSError with the errno); tests run both on the same ranges.

`lib()` also serves memory.py whatever is built: the mremap of a detach and the madvise
of a fresh map have no C twin. ctypes is imported on first use.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

MAP_FIXED = 0x10  # Linux, every architecture
_HOLDER_TYPES = 16  # holder types made once per length, for this many lengths
# The mmap module's, set by lib() (a copy through the file maps nothing).
PRIVATE_ZEROS = _ZEROS_FIXED = 0
_libc: Any = None
_MAP_FAILED = -1  # (void *) -1 as ctypes returns it; set with libc
# Bound once by lib(): these run a few times per map and unmap.
_mmap: Any = None
_munmap: Any = None
_c_char: Any = None
# The ctypes array type of a holder, by length (a few lengths): a dict lookup costs a
# third of `c_char * n`, which builds a key for ctypes' own cache of the same types.
_holder_types: dict[int, type] = {}


def lib() -> Any:
    """libc with the signatures we call (ctypes is imported on first use)."""
    global _libc, _MAP_FAILED, _mmap, _munmap, _c_char, PRIVATE_ZEROS, _ZEROS_FIXED
    if _libc is None:
        import ctypes
        import mmap

        PRIVATE_ZEROS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        _ZEROS_FIXED = PRIVATE_ZEROS | MAP_FIXED

        _MAP_FAILED = ctypes.c_void_p(-1).value
        libc = ctypes.CDLL(None, use_errno=True)
        pointer, size, number = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        libc.mmap.restype = pointer
        libc.mmap.argtypes = [pointer, size, number, number, number, ctypes.c_long]
        libc.mremap.restype = pointer
        libc.mremap.argtypes = [pointer, size, size, number, pointer]
        libc.munmap.restype = number
        libc.munmap.argtypes = [pointer, size]
        libc.madvise.restype = number
        libc.madvise.argtypes = [pointer, size, number]
        _mmap, _munmap, _c_char = libc.mmap, libc.munmap, ctypes.c_char
        _libc = libc
    return _libc


def failed(result: int | None) -> bool:
    """Whether `result`, an address from libc's mmap or mremap, is MAP_FAILED."""
    return result is None or result == _MAP_FAILED


def check(result: int | None, what: str) -> int:
    """`result` of libc's mmap or mremap, or OSError with the errno if it failed."""
    if failed(result):
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


class _Unmapper:
    """Hung on a cut-off holder (the pure-Python one): when the holder, i.e. the last
    view, dies, unmaps the zero pages that replaced the shared ones, or keeps them in
    `spare` (up to `keep`) for the next map of their length (cheaper than
    weakref.finalize). Inert until `armed`: one that an exception (^C) parts from its
    holder before the range is the holder's dies without touching it."""

    __slots__ = ("address", "armed", "keep", "length", "munmap", "spare")

    def __init__(self, address: int, length: int, spare: list[int] | None, keep: int) -> None:
        self.armed = False
        self.address = address
        self.length = length
        self.munmap = _munmap  # still at hand if this dies at interpreter exit
        self.spare = spare
        self.keep = keep

    def __del__(self) -> None:
        if not getattr(self, "armed", False):  # (its __init__ may not even have run)
            return
        spare = self.spare
        if spare is not None and len(spare) < self.keep:
            spare.append(self.address)
        else:
            self.munmap(self.address, self.length)


def map_at(
    at: int, length: int, prot: int, flags: int, fd: int, landed: list[int] | None = None
) -> int:
    """mmap `length` bytes of `fd` over the kept range at `at` (MAP_FIXED), or anywhere
    if there is none (0) or that fails (the range is then forgotten): the address, also
    appended to `landed` (if given) before it is returned.

    An exception a signal handler raises (^C) comes as a call returns: as the mmap
    returns, its address would be lost, and the segment stay mapped for good. So the
    file is only ever mapped over a range whose address is known before: the kept one,
    else a reservation made first (PROT_NONE private zeros: lost that way, it holds no
    memory and no file), which an exception then unmaps. From `landed` the caller
    unmaps it, if it is interrupted as this returns (the C twin is one call: nothing
    runs between its mmap and its return).
    """
    if _mmap is None:
        lib()
    if at:
        try:
            address = _mmap(at, length, prot, flags | MAP_FIXED, fd, 0)
        except BaseException:
            _munmap(at, length)
            raise
        if address is not None and address != _MAP_FAILED:
            if landed is not None:
                landed.append(address)  # (interrupted as it returns: appended already)
            return address
    spot = _mmap(None, length, 0, PRIVATE_ZEROS, -1, 0)
    if spot is None or spot == _MAP_FAILED:
        raise _errno_error("mmap")
    try:
        address = _mmap(spot, length, prot, flags | MAP_FIXED, fd, 0)
    except BaseException:
        _munmap(spot, length)
        raise
    if address is None or address == _MAP_FAILED:
        error = _errno_error("mmap")  # (before munmap: its errno)
        _munmap(spot, length)
        raise error
    if landed is not None:
        landed.append(address)
    return address


def _errno_error(what: str) -> OSError:
    """The OSError of the last failed libc call (its errno)."""
    import ctypes

    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def checked_munmap(address: int, length: int) -> None:
    """munmap, or OSError with the errno."""
    if _munmap is None:
        lib()
    check(None if _munmap(address, length) else 0, "munmap")


def holder(address: int, length: int, writable: bool, owner: object) -> Any:
    """A ctypes array over the mapping (writable, even for a read map: callers make
    read-only views of it), its type made once per length (see `_holder_type`)."""
    if _c_char is None:
        lib()
    kind = _holder_types.get(length)
    if kind is None:
        if len(_holder_types) < _HOLDER_TYPES:
            kind = _holder_types[length] = _holder_type(length)
        else:  # never a class per map: it costs more than the map, and it is a
            kind = _c_char * length  # reference cycle (ctypes keeps this one)
    made = kind.from_address(address)
    made.owner = owner
    return made


def cut_off(holder: Any, prot: int, spare: list[int] | None, keep: int) -> None:
    """Replace a ctypes holder's range by private zeros of protection `prot`; at its
    death, the range is kept in `spare` (up to `keep`), else unmapped (`_Unmapper`)."""

    if _mmap is None:
        lib()
    unmapper = _unmapper_of(holder, "cut_off: this holder is cut off already")
    # (an exception a signal handler raises, ^C, may come as any call returns: the
    # unmapper is hung first, inert, and armed once the range is zeros; a cut_off
    # interrupted before that is made again, see memory.Region._cut_off)
    check(_mmap(unmapper.address, unmapper.length, prot, _ZEROS_FIXED, -1, 0), "mmap")
    unmapper.spare, unmapper.keep, unmapper.armed = spare, keep, True
    holder.owner = None


def disown(holder: Any, spare: list[int] | None, keep: int) -> None:
    """As `cut_off`, for a holder whose range is private memory already (a staged map's:
    shm/staging.py): nothing to map; at its death the range is kept or unmapped."""

    unmapper = _unmapper_of(holder, "disown: this holder owns its range already")
    unmapper.spare, unmapper.keep, unmapper.armed = spare, keep, True
    holder.owner = None


def _unmapper_of(holder: Any, owned: str) -> _Unmapper:
    """The inert unmapper hung on `holder` (by an earlier call cut short, or now);
    ValueError `owned` if it is armed: the holder owns its range already."""
    import ctypes

    unmapper = getattr(holder, "unmapper", None)
    if unmapper is None:
        unmapper = _Unmapper(ctypes.addressof(holder), len(holder), None, 0)
        holder.unmapper = unmapper
    elif unmapper.armed:  # (as C's: its range is not the segment's)
        raise ValueError(owned)
    return unmapper


def _holder_type(length: int) -> type:
    """The type of a holder of `length` bytes: ctypes' array of them, with slots for its
    owner and its unmapper (ctypes still gives it a `__dict__`, but it stays empty and
    unmade: no dict to fill and free with every holder)."""
    array = _c_char * length
    return type(array)("Holder", (array,), {"__slots__": ("owner", "unmapper")})
