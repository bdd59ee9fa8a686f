"""Variable: a declared shared-memory input or output of an operator (Clara's Fast I/O entry).

    static   declared shape all > 0  -> pre-allocated by `clara run`; shape frozen
    dynamic  some dim -1/0, or string -> update_shape(full shape) -> allocate() -> map()

Inputs are read-only (their reference refuses write maps with ReadOnly); outputs are
read/write. Inside a job, the first use of an input's data, shape or allocation waits
until its producer has completed it (`readiness`): `clara run` may start a reader early.
A variable lives in the job's context under its allocation name
(``<producer>--<output>``), so two operators may both call an output ``result``.
`declared.open_declared()` is what `clara map NAME` uses inside an operator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..allocation import Allocation
from ..context import Context
from ..dtypes import ElementType, element_type, format_size, static_shape
from ..errors import AlreadyExists, ClaraError, InvalidArgument, NotFound, ReadOnly
from .environment import Declared
from .readiness import wait_for_producer

TYPE_CHECKING = False  # as typing's, without importing typing (an operator's start-up)
if TYPE_CHECKING:
    from typing import Any

    import numpy

READ_ONLY = "read-only"
READ_WRITE = "read-write"


class Variable:
    """One declared shared-memory input or output, seen from inside its operator."""

    def __init__(self, context: Context, port: Declared, operator: str = "") -> None:
        if port.allocation is None or port.shape is None or port.element_type is None:
            raise InvalidArgument(f"'{port.name}' is on disk, not a shared-memory variable")
        self.context = context
        self.port = port
        self.operator = operator
        self._shape: tuple[int, ...] = port.shape
        self._allocation: Allocation | None = None
        self._mapping = None
        self._ready = not self.is_input or port.source is None

    # -- what it is (Clara: Name, Shape, Element Type, Size in Bytes, Dynamic Indices, ...) --

    @property
    def name(self) -> str:
        """The declared name."""
        return self.port.name or ""

    @property
    def allocation_name(self) -> str:
        """Its published name in the job's context."""
        return self.port.allocation or ""

    @property
    def is_input(self) -> bool:
        """Whether this is one of the operator's inputs."""
        return self.port.direction == "input"

    @property
    def element_type(self) -> ElementType:
        """Element type of the data."""
        return element_type(self.port.element_type)

    @property
    def dtype(self) -> numpy.dtype:
        """Element type as a numpy dtype."""
        return self.element_type.numpy

    @property
    def declared_shape(self) -> tuple[int, ...]:
        """The shape as declared in the pipeline (-1/0: dynamic)."""
        return self.port.shape or ()

    @property
    def shape(self) -> tuple[int, ...]:
        """The current shape: the allocation's once allocated, else declared plus updates."""
        allocation = self._find()
        return allocation.shape if allocation is not None else self._shape

    @property
    def nbytes(self) -> int | None:
        """Size in bytes, or None while a dynamic dimension is still unknown."""
        shape = self.shape
        if any(d <= 0 for d in shape):
            return None
        size = self.element_type.itemsize
        for d in shape:
            size *= d
        return size

    @property
    def dynamic_indices(self) -> tuple[int, ...]:
        """Indices of the dimensions declared dynamic (-1 or 0)."""
        return tuple(i for i, d in enumerate(self.declared_shape) if d <= 0)

    @property
    def is_dynamic(self) -> bool:
        """Whether its size is set at run time (a dynamic dimension, or a string)."""
        return bool(self.dynamic_indices)

    @property
    def is_string(self) -> bool:
        """Whether it was declared as a string (dynamic UTF-8 bytes)."""
        return self.port.type == "string"

    @property
    def access(self) -> str:
        """'read-only' for inputs, 'read-write' for outputs."""
        return READ_ONLY if self.is_input else READ_WRITE

    @property
    def is_allocated(self) -> bool:
        """Whether its memory exists (always, for static variables inside `clara run`)."""
        return self._find() is not None

    def describe(self) -> str:
        """How messages name this variable."""
        where = f" of operator '{self.operator}'" if self.operator else ""
        return f"{self.port.direction} '{self.name}'{where}"

    def _repr_fields(self) -> tuple[tuple[int, ...], str, int | None]:
        """(shape, state, nbytes) for the reprs, which must never raise (nor wait)."""
        try:
            allocation = self._find(wait=False)
            if allocation is None:
                return self._shape, "unallocated", self.nbytes
            return allocation.shape, allocation.state, allocation.nbytes
        except (ClaraError, OSError) as exc:  # e.g. its context was closed meanwhile
            return self._shape, f"unreadable: {exc}", None

    def __repr__(self) -> str:
        shape, state, nbytes = self._repr_fields()
        size = "" if nbytes is None else f" {format_size(nbytes)}"
        return (
            f"<Variable {self.describe()} {self.element_type.name}{list(shape)}{size} "
            f"{self.access} {state}>"
        )

    def __rich_repr__(self) -> Iterator[Any]:
        """Fields for rich's pretty printer (rich itself is never imported here)."""
        shape, state, nbytes = self._repr_fields()
        yield self.name
        yield "operator", self.operator, ""
        yield "direction", self.port.direction
        yield "dtype", self.element_type.name
        yield "shape", shape
        yield "declared_shape", self.declared_shape
        yield "nbytes", nbytes
        yield "state", state

    # -- sizing (Clara: Update Shape, Allocate) -----------------------------------------

    def update_shape(self, shape: object) -> None:
        """Set the dynamic dimensions: give the full shape; fixed dimensions must not change."""
        self._require_output("change the shape of")
        if not self.is_dynamic:
            raise InvalidArgument(
                f"{self.describe()} is static {list(self.declared_shape)}: it is pre-allocated "
                "and its shape cannot change"
            )
        if self.is_allocated:
            raise InvalidArgument(
                f"{self.describe()} is already allocated with shape {list(self.shape)}"
            )
        dims = static_shape(shape)
        declared = self.declared_shape
        if len(dims) != len(declared):
            raise InvalidArgument(
                f"{self.describe()} has {len(declared)} dimensions {list(declared)}; "
                f"got {len(dims)}: {list(dims)}"
            )
        for index, (new, old) in enumerate(zip(dims, declared, strict=False)):
            if old > 0 and new != old:
                raise InvalidArgument(
                    f"dimension {index} of {self.describe()} is fixed at {old} "
                    f"(declared {list(declared)}); got {list(dims)}"
                )
        self._shape = dims

    def allocate(self) -> None:
        """Back a dynamic output with memory once every dimension is known."""
        self._require_output("allocate")
        if not self.is_dynamic:
            raise InvalidArgument(
                f"{self.describe()} is static: `clara run` pre-allocated it; map it instead"
            )
        if self.is_allocated:
            raise AlreadyExists(f"{self.describe()} is already allocated")
        if any(d <= 0 for d in self._shape):
            raise InvalidArgument(
                f"{self.describe()} still has dynamic dimensions {list(self._shape)}: "
                "call update_shape() with the full shape first"
            )
        allocation = self.context.create(dtype=self.element_type, shape=self._shape)
        try:
            allocation.publish(self.allocation_name)
        except AlreadyExists:
            allocation.release()
            raise AlreadyExists(f"{self.describe()} is already allocated") from None
        except BaseException:
            allocation.release()
            raise
        self._allocation = allocation

    @property
    def allocation(self) -> Allocation:
        """The underlying allocation reference (read-only for inputs); NotFound if none."""
        allocation = self._find()
        if allocation is None:
            hint = "update_shape() and allocate() it first" if not self.is_input else ""
            raise NotFound(f"{self.describe()} is not allocated yet{'; ' if hint else ''}{hint}")
        return allocation

    # -- data (Clara: Map, Unmap) -------------------------------------------------------

    def map(self, mode: str | None = None, timeout: float | None = None) -> numpy.ndarray:
        """Map and return a numpy view: inputs read ('r'), outputs write ('w') by default."""
        if self._mapping is not None and self._mapping.mapped:
            raise InvalidArgument(f"{self.describe()} is already mapped; unmap() it first")
        mode = mode or ("r" if self.is_input else "w")
        if self.is_input and mode.lower() in ("w", "write"):
            raise ReadOnly(f"{self.describe()} is read-only: inputs cannot be mapped for writing")
        self._mapping = self.allocation.map(mode, timeout=timeout)
        return self._mapping.array

    def premap(self) -> None:
        """Prepare its map (read for inputs, write for outputs) ahead, if it is allocated:
        the page tables are filled now, while nothing else is to be done (the driver does it
        while the operator waits for its inputs), and the map after the wait is instant."""
        allocation = self._find(wait=False)
        if allocation is not None:
            allocation.premap("r" if self.is_input else "w")

    def unmap(self, complete: bool = True) -> None:
        """End the map (a write map marks the data complete, or incomplete if not `complete`)."""
        mapping, self._mapping = self._mapping, None
        if mapping is not None and mapping.mapped:
            mapping.unmap(complete=complete)

    @contextlib.contextmanager
    def mapped(self, mode: str | None = None, timeout: float | None = None) -> Iterator:
        """``with var.mapped() as array:`` maps, then unmaps (incomplete if the block raises)."""
        array = self.map(mode, timeout)
        try:
            yield array
        except BaseException:
            self.unmap(complete=False)
            raise
        self.unmap()

    def read(self) -> numpy.ndarray:
        """A copy of the data."""
        import numpy

        with self.mapped("r") as array:
            return numpy.array(array)

    def write(self, data: object) -> None:
        """Copy `data` in, sizing and allocating a dynamic output from its shape if needed."""
        import numpy

        array = numpy.asarray(data)
        self._require_output("write")
        if self.is_dynamic and not self.is_allocated:
            self.update_shape(array.shape)
            self.allocate()
        if tuple(array.shape) != self.shape:
            raise InvalidArgument(
                f"{self.describe()} has shape {list(self.shape)}; the data has {list(array.shape)}"
            )
        if not numpy.can_cast(array.dtype, self.dtype, "same_kind"):
            raise InvalidArgument(
                f"{self.describe()} holds {self.element_type.name}; cannot store {array.dtype}"
            )
        with self.mapped("w") as out:
            numpy.copyto(out, array, casting="same_kind")

    def read_text(self) -> str:
        """The data decoded as UTF-8 (for `string` variables)."""
        with self.mapped("r") as array:
            return array.tobytes().decode("utf-8")

    def write_text(self, text: str) -> None:
        """Store `text` as UTF-8 (for `string` variables: sizes and allocates it)."""
        import numpy

        raw = text.encode("utf-8")
        if not raw:
            raise InvalidArgument(
                f"{self.describe()}: an empty string cannot be stored (Clara sizes must be >= 1)"
            )
        self.write(numpy.frombuffer(raw, dtype=numpy.uint8))

    def release(self) -> None:
        """Unmap and drop this process's reference (the variable itself stays)."""
        self.unmap()
        allocation, self._allocation = self._allocation, None
        if allocation is not None:
            allocation.release()

    # -- helpers ------------------------------------------------------------------------

    def wait_ready(self) -> None:
        """An input: return once its producer has completed it, inside a job (UpstreamFailed
        if it failed). Outputs, and inputs outside a job, never wait."""
        if not self._ready:
            wait_for_producer(self.context, self.port.source or "", self.describe())
            self._ready = True

    def _find(self, wait: bool = True) -> Allocation | None:
        if self._allocation is not None and not self._allocation.released:
            return self._allocation
        if wait:
            self.wait_ready()
        try:  # inputs are never writable (Clara's rule): the kernel enforces it
            allocation = self.context.get(self.allocation_name, read_only=self.is_input)
        except NotFound:
            return None
        self._allocation = allocation
        return allocation

    def _require_output(self, action: str) -> None:
        if self.is_input:
            raise ReadOnly(f"cannot {action} {self.describe()}: inputs are read-only")
