"""A live map of an allocation: zero-copy views of the data while the map lock is held."""

from __future__ import annotations

import fcntl  # (loaded anyway: the locks use it)
import os
import stat
from _weakref import ref as weak_ref  # weakref.ref, without the weakref module (start-up)

from .dtypes import ElementType, format_size
from .errors import Corrupt, InvalidArgument
from .shm import segment
from .shm.fields import MappingFields
from .shm.header import DATA_OFFSET, Layout
from .shm.memory import READ_ONLY_HOLDERS, Region
from .shm.native import calls
from .shm.staging import Staged

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    import numpy

    from .allocation import Allocation

_CHUNK = 64 << 20  # per sendfile call: a progress bar moves, a signal is seen
_PIPE_BYTES = 1 << 20  # (see _wide_pipe; the most /proc/sys/fs/pipe-max-size allows by default)
_numpy_frombuffer: Any = None


def _wide_pipe() -> tuple[int, int] | None:
    """A pipe (read end, write end) that holds _PIPE_BYTES, or None if this process may
    not have one that wide (above /proc/sys/fs/pipe-max-size, its user's pipe quota
    spent) or no pipe at all (no descriptor left): then sendfile, which needs neither.

    A regular file is copied into a segment through it (copy_from), 1 MiB per splice
    into the segment: sendfile and copy_file_range move the bytes through a pipe of
    their own of 64 KiB, one write into the segment (its inode lock, its checks) per
    64 KiB. 256 MiB tmpfs to tmpfs: 43.6 ms of system time instead of 45.6 (31 rounds).
    """
    try:
        out_of_pipe, into_pipe = os.pipe()
    except OSError:  # EMFILE, ENFILE
        return None
    try:
        fcntl.fcntl(into_pipe, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
        os.close(out_of_pipe)
        os.close(into_pipe)
        return None
    return out_of_pipe, into_pipe


def _frombuffer() -> Any:
    """numpy.frombuffer, imported on first use (numpy loads only for those who need it)."""
    global _numpy_frombuffer
    if _numpy_frombuffer is None:
        from numpy import frombuffer

        _numpy_frombuffer = frombuffer
    return _numpy_frombuffer


# The last layout a view was made for: (it, its numpy dtype, element count, shape to
# reshape to or None): most maps view what the map before them viewed.
_last_view: tuple = (None, None, 0, None)


def _view_of(layout: Layout) -> tuple:
    """What a view of `layout` is made with (see _last_view), remembered (also by the C
    __enter__, shm/c/mapped.c, which makes the views of that layout from then on)."""
    global _last_view
    etype, shape, nbytes, _ = layout
    view = (layout, etype.numpy, nbytes // etype.itemsize, shape if len(shape) > 1 else None)
    _last_view = view
    if _view_known is not None:
        _view_known(*view, _numpy_frombuffer or _frombuffer())
    return view  # (not _last_view: another thread may have replaced it since)


_view_known = calls.view_known if calls is not None else None


class Mapping(MappingFields):
    """An allocation mapped for reading (``'r'``) or writing (``'w'``).

    ``with alloc.map('r') as array:`` yields a numpy view and unmaps at the end of the
    block. A write map whose block raises leaves the data marked *incomplete*, exactly as
    a writer that dies does. Views keep the map (and the reference) alive as long as they
    live; views still alive after an explicit unmap are cut off from the shared memory
    (they read zeros), so copy what you want to keep.
    """

    # Made as MappingFields(allocation, allocation._maps, region, layout), in C where it
    # can be (fields.py).
    # (and one may be referred to weakly, as an Allocation may: a public class kept that)
    __slots__ = ()

    allocation: Allocation
    layout: Layout
    _maps: list[Region]  # its reference's maps: this one, while it is mapped
    _region: Region
    _array: weak_ref[Any] | None
    _written: bool  # whether data went in through the fd (copy_from, write_from)

    @property
    def mode(self) -> str:
        """'w' for a write map, 'r' for a read map."""
        return "w" if self._region.writable else "r"

    @property
    def mapped(self) -> bool:
        """Whether this map is still in place."""
        return self._region in self._maps

    @property
    def etype(self) -> ElementType:
        """Element type of the data."""
        return self.layout.etype

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data."""
        return self.layout.shape

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return self.layout.nbytes

    @property
    def offset(self) -> int:
        """Offset of the data in the segment file (for numpy.memmap and friends)."""
        return DATA_OFFSET

    @property
    def path(self) -> str:
        """A path at which other programs can open the segment while this map is held."""
        return self.allocation.path

    @property
    def buffer(self) -> memoryview:
        """The data as a flat byte memoryview (no numpy needed), read-only for a read map."""
        self._check_mapped()
        try:
            view = self._region.lend(self)
        except OSError as exc:  # a map made with populate=False maps its pages now
            raise self._unmappable(exc) from exc
        return view[DATA_OFFSET : DATA_OFFSET + self.layout.nbytes]

    @property
    def array(self) -> numpy.ndarray:
        """A zero-copy numpy view of the data, read-only for a read map (the same view
        while it lives)."""
        array = self._array() if self._array is not None else None
        if array is None:
            array = self._view()
            self._array = weak_ref(array)
        elif self._region not in self._maps:  # unmapped: its view is cut off (zeros)
            self._check_mapped()
        return array

    def _view(self) -> numpy.ndarray:
        """A new zero-copy numpy view of the data (see `array`)."""
        region = self._region
        if region not in self._maps:
            self._check_mapped()
        try:
            holder = region.holder(self)
        except OSError as exc:  # a map made with populate=False maps its pages now
            raise self._unmappable(exc) from exc
        if not region.writable and not READ_ONLY_HOLDERS:
            holder = memoryview(holder).toreadonly()  # numpy then refuses to write
        view = _last_view  # (read once: another thread may replace it)
        if self.layout is not view[0]:  # (Layouts are made once per layout block)
            view = _view_of(self.layout)
        frombuffer = _numpy_frombuffer or _frombuffer()
        array = frombuffer(holder, view[1], view[2], DATA_OFFSET)
        return array if view[3] is None else array.reshape(view[3])

    def copy_to(self, fd: int, advance: Callable[[int], None] | None = None) -> None:
        """Copy the data to the file descriptor `fd`, kernel to kernel (sendfile).

        The bytes never pass through this process: no page of the map is touched, so map
        with ``populate=False``. Works for files, pipes and sockets; `advance` is told
        the bytes copied after each chunk.
        """
        self._through_fd()
        source, offset, left = self.allocation._fd, DATA_OFFSET, self.layout.nbytes
        while left:
            sent = os.sendfile(fd, source, offset, min(left, _CHUNK))
            if sent == 0:
                raise self._cut_short()
            offset += sent
            left -= sent
            if advance is not None:
                advance(sent)

    def copy_from(self, fd: int, advance: Callable[[int], None] | None = None) -> int:
        """Fill the data from `fd` (a file, read from its position on, or a pipe), kernel
        to kernel (splice, sendfile): only for a write map, and no page of the map is
        touched, so map with ``populate=False``.

        Returns the bytes copied, fewer than nbytes if `fd` ended first. An OSError of a
        kernel that cannot copy from this kind of file (EINVAL, ...) comes before any
        byte is written, with the file's position where it was; `advance` is told the
        bytes copied after each chunk.
        """
        self._through_fd()
        if not self._region.writable:
            raise InvalidArgument(f"{self.allocation.describe()} is mapped for reading only")
        target, total, done = self.allocation._fd, self.layout.nbytes, 0
        if stat.S_ISREG(os.fstat(fd).st_mode):
            pipe = _wide_pipe()
            if pipe is not None:
                try:
                    return self._through_pipe(fd, pipe, advance)
                finally:
                    os.close(pipe[0])
                    os.close(pipe[1])
            # sendfile writes at the target's file offset, which nothing else of this
            # open file uses (every other access is positioned: pread, pwrite, mmap).
            os.lseek(target, DATA_OFFSET, os.SEEK_SET)

            def copy(count: int) -> int:
                return os.sendfile(target, fd, None, count)
        else:

            def copy(count: int) -> int:
                return os.splice(fd, target, count, offset_dst=DATA_OFFSET + done)

        while done < total:
            put = copy(min(total - done, _CHUNK))
            if put == 0:
                break
            self._written = True
            done += put
            if advance is not None:
                advance(put)
        return done

    def _through_pipe(
        self, fd: int, pipe: tuple[int, int], advance: Callable[[int], None] | None
    ) -> int:
        """copy_from a regular file through `pipe` (see _wide_pipe): up to its size per
        splice from the file, and as much per splice into the segment."""
        (out_of_pipe, into_pipe), target = pipe, self.allocation._fd
        total, done = self.layout.nbytes, 0
        while done < total:
            held = os.splice(fd, into_pipe, min(total - done, _PIPE_BYTES))
            if held == 0:
                break
            try:
                while held:
                    put = os.splice(out_of_pipe, target, held, offset_dst=DATA_OFFSET + done)
                    self._written = True
                    done += put
                    held -= put
                    if advance is not None:
                        advance(put)
            finally:
                if held:  # (not written: read again by whoever reads the file on)
                    os.lseek(fd, -held, os.SEEK_CUR)
        return done

    def read_into(self, buffer: Any) -> None:
        """Copy the data into `buffer` (nbytes long) through the file, not the map.

        A process that touches a mapped page the file no longer has dies of SIGBUS;
        read(2) instead reports it. So this is the safe copy when the segment may be cut
        short by someone else (contexts other users may write).
        """
        self._through_fd()
        view = memoryview(buffer).cast("B")
        if len(view) != self.layout.nbytes:
            raise InvalidArgument(f"need a buffer of {self.layout.nbytes} bytes, not {len(view)}")
        done = 0
        while done < len(view):
            got = os.preadv(self.allocation._fd, [view[done : done + _CHUNK]], DATA_OFFSET + done)
            if got == 0:
                raise self._cut_short()
            done += got

    def write_from(self, data: Any) -> None:
        """Copy `data` (nbytes long) into the allocation through the file, not the map
        (see read_into). Only for a write map."""
        self._through_fd()
        if not self._region.writable:
            raise InvalidArgument(f"{self.allocation.describe()} is mapped for reading only")
        view = memoryview(data).cast("B")
        if len(view) != self.layout.nbytes:
            raise InvalidArgument(f"need {self.layout.nbytes} bytes of data, not {len(view)}")
        done = 0
        while done < len(view):
            put = os.pwrite(self.allocation._fd, view[done : done + _CHUNK], DATA_OFFSET + done)
            self._written = True
            done += put

    def _cut_short(self) -> Corrupt:
        return Corrupt(
            f"{self.allocation.describe()} was cut short while being copied (another "
            "process truncated its segment)"
        )

    def unmap(self, complete: bool = True) -> None:
        """Unmap; a write map marks the data complete, or incomplete if `complete` is False."""
        if self._region in self._maps:
            self.allocation._unmap(self._region, complete)

    # ``with alloc.map(...) as array``: MappingFields' __enter__ (a view of its own, not
    # kept for `array`: `_view`) and __exit__ (`_exit`), in C where it can be: no frame
    # (shm/c/mapped.c: a staged map is unmapped there, any other by `_unmap`).

    def _exit(self, exc_type: object, exc: object, tb: object) -> None:
        """__exit__: unmap if mapped; the data complete unless the block raised."""
        if (region := self._region) in self._maps:
            self.allocation._unmap(region, exc_type is None)

    def _unmappable(self, exc: OSError) -> Exception:
        """Its pages could not be mapped: the map is undone (no lock stays held, a write
        map's data state is what it was), and this is the error to raise. A write map
        that already wrote through the fd ends as a failed write instead: *incomplete*
        (what it found may have been complete: now it is partly other bytes)."""
        if self._written:
            self.unmap(complete=False)
        else:
            self.allocation._abandon(self._region)
        return segment.translate(exc, self.allocation.describe())

    def _through_fd(self) -> None:
        """Before the data is read or written through the fd: a staged map (see
        shm/staging.py) is attached, so that the views and the file hold the same bytes."""
        self._check_mapped()
        if type(self._region) is Staged:
            self._region.attach()

    def _check_mapped(self) -> None:
        if not self.mapped:
            raise InvalidArgument(f"{self.allocation.describe()} is no longer mapped; map it again")

    def __repr__(self) -> str:
        mode = "write" if self.mode == "w" else "read"
        state = "mapped" if self.mapped else "unmapped"
        return (
            f"<Mapping {mode} {self.allocation.describe()} {self.etype.name}{list(self.shape)} "
            f"{format_size(self.nbytes)} {state}>"
        )

    def __rich_repr__(self) -> Iterator[Any]:
        """Fields for rich's pretty printer (rich itself is never imported here)."""
        yield "mode", "write" if self.mode == "w" else "read"
        yield "allocation", self.allocation.describe()
        yield "dtype", self.etype.name
        yield "shape", self.shape
        yield "nbytes", self.nbytes
        yield "mapped", self.mapped
