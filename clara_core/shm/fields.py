"""The fields of the objects made on every map: memory.Region's and mapping.Mapping's.

Each is the base class of its object, which adds the methods: the C extension's
(clara_core/shm/c/fields.c) where it is built, which makes and frees one for about a
third of what a Python class's __init__ and dealloc cost, else these twins, the same
fields as slots.
"""

from __future__ import annotations

from .native import calls

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any


class _RegionFields:
    """memory.Region's fields: RegionFields(address, length, writable)."""

    __slots__ = ("__weakref__", "_fd", "_holder", "address", "length", "writable")

    def __init__(self, address: int, length: int, writable: bool) -> None:
        self.address = address
        self.length = length
        self.writable = writable
        self._holder: Any = None
        self._fd = -1


class _MappingFields:
    """mapping.Mapping's fields: MappingFields(allocation, maps, region, layout), `maps`
    being allocation._maps."""

    __slots__ = ("__weakref__", "_array", "_maps", "_region", "_written", "allocation", "layout")

    def __init__(self, allocation: Any, maps: list, region: Any, layout: Any) -> None:
        self.allocation = allocation
        self._maps = maps
        self._region = region
        self.layout = layout
        self._array: Any = None
        self._written = False


if calls is not None:
    RegionFields: type = calls.RegionFields
    MappingFields: type = calls.MappingFields
else:
    RegionFields, MappingFields = _RegionFields, _MappingFields
