"""The twins of the per-map objects' fields (clara_core/shm/fields.py): the C extension's
RegionFields and MappingFields and the pure-Python classes make objects with the same
fields, as bases of memory.Region and mapping.Mapping; the C ones are freed when the last
reference goes, or by the garbage collector when they are part of a cycle.

The C side is skipped where the extension is not built (CI requires it: test_native).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from clara_core import Context
from clara_core.mapping import Mapping
from clara_core.shm import fields, memory
from clara_core.shm.native import calls

TWINS = [pytest.param((fields._RegionFields, fields._MappingFields), id="python")]
if calls is not None:
    TWINS.append(pytest.param((calls.RegionFields, calls.MappingFields), id="c"))


def _subclasses(twins: Any) -> tuple[type, type]:
    """Subclasses of both twins as Region and Mapping are made: methods, no slots."""
    region_fields, mapping_fields = twins

    class RegionLike(region_fields):  # type: ignore[misc,valid-type]
        __slots__ = ()

        def twice(self) -> int:
            return 2 * self.length

    class MappingLike(mapping_fields):  # type: ignore[misc,valid-type]
        __slots__ = ()

    return RegionLike, MappingLike


@pytest.mark.parametrize("twins", TWINS)
def test_both_twins_make_the_same_fields(twins: Any) -> None:
    region_type, mapping_type = _subclasses(twins)
    region = region_type(4096, 65536, True)
    assert (region.address, region.length, region.writable) == (4096, 65536, True)
    assert (region._holder, region._fd, region.twice()) == (None, -1, 131072)
    region.address, region._fd = 0, 7  # (a release and a deferred map store them)
    assert (region.address, region._fd) == (0, 7)
    owner, maps, layout = object(), [region], ("a layout",)
    mapping = mapping_type(owner, maps, region, layout)
    assert mapping.allocation is owner and mapping._maps is maps and mapping.layout is layout
    assert mapping._region is region
    assert (mapping._array, mapping._written) == (None, False)
    mapping._written = True
    assert mapping._written is True
    with pytest.raises(AttributeError):  # no attribute dict: the fields only
        region.other = 1
    del region.address
    with pytest.raises(AttributeError):
        region.address  # noqa: B018 (the read is the test)
    with pytest.raises(TypeError):  # (a field short)
        mapping_type(owner, maps, region)


@pytest.mark.parametrize("twins", TWINS)
def test_an_object_dies_with_its_last_reference_or_its_cycle(twins: Any) -> None:
    region_type, mapping_type = _subclasses(twins)
    region = region_type(4096, 65536, False)
    gone = weakref.ref(region)
    del region
    assert gone() is None  # (at once: no collection needed)
    maps: list[Any] = []
    region = region_type(4096, 65536, False)
    mapping = mapping_type(None, maps, region, None)
    maps.append(mapping)  # a cycle through its fields
    watched = weakref.ref(mapping), weakref.ref(region)
    del mapping, region, maps
    gc.collect()
    assert [ref() for ref in watched] == [None, None]


@pytest.mark.skipif(calls is None, reason="the C extension is not built here")
def test_keywords_are_refused_by_the_c_twins() -> None:
    with pytest.raises(TypeError, match="keyword"):
        calls.RegionFields(4096, 65536, writable=True)
    with pytest.raises(TypeError, match="keyword"):
        calls.MappingFields(None, [], None, layout=None)


def test_a_map_is_made_of_the_fields_in_use(namespace: str) -> None:
    ctx = Context.create("fields")
    try:
        made = ctx.create(4096)
        mapping = made.map("w")
        assert isinstance(mapping, fields.MappingFields) and isinstance(mapping, Mapping)
        assert isinstance(mapping._region, fields.RegionFields)
        assert isinstance(mapping._region, memory.Region)
        expected = calls is not None
        assert (fields.RegionFields is not fields._RegionFields) == expected
        mapping.array[:] = 3
        mapping.unmap()
        assert not mapping.mapped
        made.release()
    finally:
        Context.destroy("fields")
