"""The data formats of `clara map --in/--out`: raw bytes, .npy and numpy's text form.

Raw needs no numpy. For npy only the header goes through numpy: the data itself is
streamed like raw bytes. Everything about the input is checked against the allocation
before the allocation is mapped, so bad input never touches it.
"""

from __future__ import annotations

import io
import os

from clara_core.dtypes import ElementType
from clara_core.errors import InvalidArgument

from .transfer import (
    LongInput,
    Progress,
    ShortInput,
    drain,
    file_error,
    fill,
    fill_from,
    plain_fd,
    regular_size,
)

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from clara_core import Allocation, Mapping

    from .transfer import Advance

FORMATS = ("raw", "npy", "txt")
NPY_MAGIC = b"\x93NUMPY"  # how every .npy file starts
TEXT_FORMATS = {"i": "%d", "u": "%d", "b": "%d"}
FLOAT_DIGITS = {2: 5, 4: 9, 8: 17}  # significant digits that round-trip each float size


class Incoming:
    """An input read up to its data: what it claims to hold, and the rest of the stream."""

    __slots__ = (
        "array",
        "dtype",
        "format",
        "fortran",
        "nbytes",
        "npy_as_raw",
        "path",
        "shape",
        "stream",
    )

    def __init__(self, stream: BinaryIO, path: str, format: str) -> None:
        self.stream = stream
        self.path = path
        self.format = format
        self.nbytes: int | None = None  # bytes of data left to read (None: a pipe, unknown)
        self.dtype: Any = None  # numpy dtype from an npy header
        self.shape: tuple[int, ...] | None = None  # from an npy header
        self.fortran = False  # npy data in Fortran order (copied through numpy)
        self.array: Any = None  # txt: the parsed values
        self.npy_as_raw = False  # raw: a file that starts as an .npy does (--format forgotten?)

    @property
    def where(self) -> str:
        """How messages name the input."""
        return "standard input" if self.path == "-" else self.path


def read_head(stream: BinaryIO, path: str, fmt: str) -> Incoming:
    """Read what comes before the data: nothing for raw and txt, the header of an npy."""
    incoming = Incoming(stream, path, fmt)
    if fmt == "npy":
        _read_npy_header(incoming)
    elif fmt == "raw":
        incoming.nbytes = regular_size(stream)
        if incoming.nbytes is not None and incoming.nbytes >= len(NPY_MAGIC):
            incoming.npy_as_raw = _starts_as_npy(stream)
    return incoming


def _starts_as_npy(stream: BinaryIO) -> bool:
    """Whether a regular file's data starts with .npy's magic string (pread: the stream
    does not move)."""
    try:
        return os.pread(stream.fileno(), len(NPY_MAGIC), stream.tell()) == NPY_MAGIC
    except OSError:
        return False


def npy_hint(incoming: Incoming) -> str:
    """'' or, for raw input that is an .npy file, what the user probably meant."""
    if not incoming.npy_as_raw:
        return ""
    return f"{incoming.where} is an .npy file, read as raw bytes: give --format npy"


def _read_npy_header(incoming: Incoming) -> None:
    import numpy
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(incoming.stream)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = reader(incoming.stream)
    except OSError as exc:
        raise file_error(exc, incoming.path, "read") from exc
    except ValueError as exc:
        raise InvalidArgument(f"{incoming.where} is not a valid .npy file ({exc})") from None
    if dtype.hasobject:
        raise InvalidArgument(f"{incoming.where} holds Python objects, not numbers")
    if dtype.kind not in "biufc":  # text, bytes, dates, records: no element type of ours
        raise InvalidArgument(f"{incoming.where} holds {dtype.str} values, not numbers")
    if not dtype.isnative:  # (not "unknown element type dtype('>f4')": it is known)
        native = dtype.newbyteorder("=")
        raise InvalidArgument(
            f"{incoming.where} holds {native.name} values in the other byte order "
            f"({dtype.str}); convert it to this machine's first, e.g. with numpy "
            f"a.astype('{native.str}')"
        )
    incoming.dtype, incoming.shape = dtype, tuple(shape)
    incoming.fortran = fortran and len(shape) > 1
    incoming.nbytes = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    left = regular_size(incoming.stream)
    if left is not None and left != incoming.nbytes:
        raise InvalidArgument(
            f"{incoming.where} is truncated or padded: its header promises {incoming.nbytes} "
            f"bytes of data, it holds {left}"
        )


def length(incoming: Incoming) -> int:
    """The bytes of raw data left in `incoming`. A pipe's length is known only at its
    end, so its data is read whole into memory first (and read from there), up to what
    intake.room allows."""
    if incoming.nbytes is None:
        from .intake import read_whole

        data = read_whole(incoming.stream, incoming.path, incoming.where)
        incoming.stream, incoming.nbytes = io.BytesIO(data), len(data)
    return incoming.nbytes


def load_text(incoming: Incoming, etype: ElementType) -> tuple[int, ...]:
    """Parse text data as `etype` (1-D, or 2-D for several numbers a line); its shape."""
    _load_text(incoming, etype, None)
    return tuple(incoming.array.shape)


def write_into(
    allocation: Allocation,
    incoming: Incoming,
    timeout: float | None = None,
    discarded: bool = False,
) -> None:
    """Check `incoming` against the allocation, map it for writing and copy the data in.

    Bad input is refused before anything is mapped; a copy that fails half-way (a pipe
    ending early) leaves the data incomplete, as a writer that dies does. `discarded`:
    the caller drops the allocation if this fails (`clara create allocation --in`), and
    the message says that nothing was created rather than that it is left incomplete.
    """
    what = allocation.describe()
    check(incoming, allocation.element_type, allocation.shape, what)
    # Data that streams from a file or pipe is copied by the kernel, never through the
    # map's pages: they need not be mapped in first.
    streamed = incoming.array is None and not incoming.fortran
    direct = streamed and plain_fd(incoming.stream) is not None
    mapping = allocation.map("w", timeout=timeout, populate=not direct)
    complete = False
    try:
        # The layout may have changed since the reference was taken: check again.
        check(incoming, mapping.etype, mapping.shape, what)
        _fill(mapping, incoming, what, discarded)
        complete = True
    finally:
        mapping.unmap(complete=complete)


def _fill(mapping: Mapping, incoming: Incoming, what: str, discarded: bool) -> None:
    try:
        if incoming.array is not None or incoming.fortran:
            fill_loaded(incoming, mapping)
            return
        with Progress(f"writing {mapping.allocation.name}", mapping.nbytes) as advance:
            fill_from(mapping, incoming.stream, incoming.path, advance)
    except ShortInput as short:
        outcome = "nothing was created" if discarded else f"{what} is left incomplete"
        raise InvalidArgument(
            f"{incoming.where} ended after {short.got} of {short.wanted} bytes; {outcome}"
        ) from None
    except LongInput:
        outcome = "nothing was created" if discarded else "it is left incomplete"
        raise InvalidArgument(
            f"{incoming.where} holds more than the {mapping.nbytes} bytes of {what}; {outcome}"
        ) from None


def check(incoming: Incoming, etype: ElementType, shape: tuple[int, ...], what: str) -> None:
    """Refuse input whose size, element type or shape differs from the allocation's."""
    nbytes = etype.itemsize
    for dim in shape:
        nbytes *= dim
    described = f"{what} ({etype.name}[{','.join(map(str, shape))}], {nbytes} bytes)"
    if incoming.format == "raw":
        if incoming.nbytes is not None and incoming.nbytes != nbytes:
            hint = npy_hint(incoming)
            raise InvalidArgument(
                f"{incoming.where} holds {incoming.nbytes} bytes, not the {nbytes} of {described}"
                + (f" ({hint})" if hint else "")
            )
        return
    if incoming.format == "txt":
        _load_text(incoming, etype, shape)
        got_dtype, got_shape = etype.numpy, incoming.array.shape
    else:
        got_dtype, got_shape = incoming.dtype, incoming.shape
    if got_dtype != etype.numpy:
        raise InvalidArgument(f"{incoming.where} holds {got_dtype.str} values, not {described}")
    if tuple(got_shape) != tuple(shape):
        raise InvalidArgument(
            f"{incoming.where} has shape {','.join(map(str, got_shape))}, not that of {described}"
        )


def _load_text(incoming: Incoming, etype: ElementType, shape: tuple[int, ...] | None) -> None:
    if incoming.array is not None:
        return
    if shape is not None and len(shape) > 2:
        raise InvalidArgument("--format txt holds 1-D or 2-D data; use npy or raw for more")
    import warnings

    import numpy

    from .intake import BoundedReader, NotText, text_limit

    count = None
    if shape is not None:
        count = 1
        for dim in shape:
            count *= dim
        count += shape[1] if len(shape) == 2 else 1  # (a row too many is told by its shape)
    limit, too_long = text_limit(count, etype.itemsize, incoming.where)
    bounded = BoundedReader(incoming.stream, limit, too_long)
    text = io.TextIOWrapper(io.BufferedReader(bounded), encoding="utf-8")
    try:
        ndmin = 1 if shape is None else len(shape)
        with warnings.catch_warnings():  # empty input: our one-line error, not numpy's warning
            warnings.simplefilter("ignore", UserWarning)
            incoming.array = numpy.loadtxt(text, dtype=etype.numpy, ndmin=ndmin)
    except OSError as exc:
        if exc is too_long:
            raise
        raise file_error(exc, incoming.path, "read") from exc
    except NotText:
        raise InvalidArgument(
            f"{incoming.where} is not numbers as text (it holds a NUL byte)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        if exc is too_long:
            raise
        why = str(exc).split("; use `usecols`")[0]  # (numpy's advice is for its own API)
        raise InvalidArgument(f"{incoming.where} is not numbers as text ({why})") from None
    finally:
        text.detach()
    if not incoming.array.size:
        raise InvalidArgument(f"{incoming.where} holds no numbers")


def text_check(shape: tuple[int, ...]) -> None:
    """Refuse --format txt for data of more than two dimensions."""
    if len(shape) > 2:
        raise InvalidArgument("--format txt holds 1-D or 2-D data; use npy or raw for more")


def fill_loaded(incoming: Incoming, mapping: Mapping) -> None:
    """Copy data that numpy holds (txt, or Fortran-ordered npy) into the mapped allocation,
    through its file (a segment cut short meanwhile is an error, not a SIGBUS)."""
    import numpy

    if incoming.fortran:
        staged = numpy.empty(incoming.shape[::-1], incoming.dtype)
        fill(memoryview(staged).cast("B"), incoming.stream, incoming.path, lambda _n: None)
        values = staged.T
    else:
        values = incoming.array
    mapping.write_from(numpy.ascontiguousarray(values, dtype=mapping.etype.numpy))


def copy_out(mapping: Mapping) -> Any:
    """The mapped data as a new numpy array, copied through the file (see fill_loaded)."""
    import numpy

    array = numpy.empty(mapping.shape, mapping.etype.numpy)
    mapping.read_into(array)
    return array


def write_npy_header(stream: BinaryIO, path: str, etype: ElementType, shape: tuple) -> None:
    """The .npy header for C-ordered data of this element type and shape."""
    from numpy.lib import format as npy

    header = {"descr": npy.dtype_to_descr(etype.numpy), "fortran_order": False, "shape": shape}
    try:
        npy.write_array_header_1_0(stream, header)
    except OSError as exc:
        raise file_error(exc, path, "write") from exc


def write_text(stream: BinaryIO, path: str, array: Any, advance: Advance) -> None:
    """numpy's text form of a 1-D or 2-D array, with digits enough to read it back exactly."""
    import numpy

    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "c":
        size //= 2
    fmt = TEXT_FORMATS.get(kind, f"%.{FLOAT_DIGITS.get(size, 17)}g")
    text = io.StringIO()
    numpy.savetxt(text, array, fmt=fmt)
    data = text.getvalue().encode()
    drain(memoryview(data), stream, path, advance)
