"""The fields of the objects made on every get and map: allocation.Allocation's,
memory.Region's and mapping.Mapping's.

Each is the base class of its object, which adds the methods: the C extension's
(clara_core/shm/c/fields.c) where it is built, which makes and frees one for a third to
a half of what a Python class's __init__ and dealloc cost, else these twins, the same
fields as slots.
"""

from __future__ import annotations

from .native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any


class _AllocationFields:
    """allocation.Allocation's fields: AllocationFields(context, registry, fd, writable,
    layout, created_ns, identity, visibility, key, pool_name, description, born), then
    those of a reference not yet closed, with no maps, nothing kept, nothing pending."""

    __slots__ = (
        "__weakref__",
        "_born",
        "_closed",
        "_completed",
        "_created_ns",
        "_description",
        "_fd",
        "_identity",
        "_key",
        "_layout",
        "_maps",
        "_parents",
        "_pending",
        "_pool_name",
        "_recycle",
        "_registry",
        "_seen",
        "_undone",
        "_visibility",
        "_warm",
        "_warm_read",
        "_writable",
        "context",
    )

    def __new__(
        cls,
        context: Any,
        registry: Any,
        fd: int,
        writable: bool,
        layout: Any,
        created_ns: int,
        identity: tuple[int, int] | None,
        visibility: str,
        key: str | None,
        pool_name: str | None,
        description: str | None,
        born: int,
        /,
    ) -> Any:
        self = object.__new__(cls)
        self.context, self._registry, self._fd, self._writable = context, registry, fd, writable
        self._layout, self._created_ns, self._identity = layout, created_ns, identity
        self._visibility, self._key, self._pool_name = visibility, key, pool_name
        self._description, self._born, self._seen = description, born, born
        self._closed = False
        self._parents = self._warm = self._warm_read = self._pending = self._recycle = None
        self._maps = []
        self._completed = self._undone = b""
        return self

    def __del__(self) -> None:
        """`_close()` unless it was closed (released, freed) already."""
        try:
            closed = self._closed
        except AttributeError:  # never made
            return
        if not closed:
            self._close()  # type: ignore[attr-defined]


class _RegionFields:
    """memory.Region's fields: RegionFields(address, length, writable)."""

    __slots__ = ("__weakref__", "_fd", "_holder", "address", "length", "writable")

    def __init__(self, address: int, length: int, writable: bool, /) -> None:
        self.address = address
        self.length = length
        self.writable = writable
        self._holder: Any = None
        self._fd = -1


class _MappingFields:
    """mapping.Mapping's fields: MappingFields(allocation, maps, region, layout), `maps`
    being allocation._maps."""

    __slots__ = ("__weakref__", "_array", "_maps", "_region", "_written", "allocation", "layout")

    def __init__(self, allocation: Any, maps: list, region: Any, layout: Any, /) -> None:
        self.allocation = allocation
        self._maps = maps
        self._region = region
        self.layout = layout
        self._array: Any = None
        self._written = False

    # The C type's methods do the usual case themselves (shm/c/mapped.c), the rest by these.
    def __enter__(self) -> Any:
        return self._view()  # type: ignore[attr-defined]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._exit(exc_type, exc, tb)  # type: ignore[attr-defined]


if calls is not None:
    AllocationFields: type = calls.AllocationFields
    RegionFields: type = calls.RegionFields
    MappingFields: type = calls.MappingFields
else:
    AllocationFields = _AllocationFields
    RegionFields, MappingFields = _RegionFields, _MappingFields
