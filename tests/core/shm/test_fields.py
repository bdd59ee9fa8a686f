"""The twins of the per-get and per-map objects' fields (clara_core/shm/fields.py): the C
extension's AllocationFields, RegionFields and MappingFields and the pure-Python classes
make objects with the same fields, as bases of allocation.Allocation, memory.Region and
mapping.Mapping; they are freed when the last reference goes, or by the garbage collector
when they are part of a cycle; an Allocation's is closed at its death unless released.

The C side is skipped where the extension is not built (CI requires it: test_native).
"""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any, ClassVar

import pytest

from clara_core import Context
from clara_core.mapping import Mapping
from clara_core.shm import fields, memory
from clara_core.shm.native import calls

TWINS = [pytest.param((fields._RegionFields, fields._MappingFields), id="python")]
ALLOCATIONS = [pytest.param(fields._AllocationFields, id="python")]
if calls is not None:
    TWINS.append(pytest.param((calls.RegionFields, calls.MappingFields), id="c"))
    ALLOCATIONS.append(pytest.param(calls.AllocationFields, id="c"))
GIVEN = ("ctx", "registry", 7, True, "layout", 123, (1, 2), "shared", "key", None, "what", 3)
NAMES = ["context", "_registry", "_fd", "_writable", "_layout", "_created_ns", "_identity"]
NAMES += ["_visibility", "_key", "_pool_name", "_description", "_born"]


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


class _Closes:
    """What an Allocation's finalizer calls: `_close`, counted (and raising if asked)."""

    __slots__ = ()
    closed: list[int]
    fails = False

    def _close(self) -> None:
        self.closed.append(self._fd)  # type: ignore[attr-defined]
        self._closed = True
        if self.fails:
            raise RuntimeError("failed to close")


@pytest.mark.parametrize("twin", ALLOCATIONS)
def test_both_allocation_twins_make_the_same_fields(twin: type) -> None:
    class AllocationLike(_Closes, twin):  # type: ignore[misc,valid-type]
        __slots__ = ()
        closed: ClassVar[list[int]] = []

    made, other = AllocationLike(*GIVEN), AllocationLike(*GIVEN)
    with pytest.raises(AttributeError):  # no attribute dict: the fields only
        made.other = 1
    assert [getattr(made, name) for name in NAMES] == list(GIVEN)
    assert (made._seen, made._closed, made._parents, made._pending) == (3, False, None, None)
    assert (made._completed, made._undone, made._recycle) == (b"", b"", None)
    assert (made._warm, made._warm_read, made._maps) == (None, None, [])
    assert made._maps is not other._maps  # (a list of its own)
    made._closed = True  # released: nothing more to do at its death
    del made
    assert AllocationLike.closed == []
    del other  # not released: closed at its death
    assert AllocationLike.closed == [7]
    with pytest.raises(TypeError):  # (a field short)
        AllocationLike(*GIVEN[:-1])


@pytest.mark.parametrize("twin", ALLOCATIONS)
def test_an_allocation_is_closed_at_its_death_unless_released(twin: type) -> None:
    class AllocationLike(_Closes, twin):  # type: ignore[misc,valid-type]
        __slots__ = ()
        closed: ClassVar[list[int]] = []

    AllocationLike(*GIVEN)  # dies at once
    assert AllocationLike.closed == [7]
    cycle = AllocationLike(*GIVEN)
    cycle._maps.append(cycle)
    del cycle
    gc.collect()
    assert AllocationLike.closed == [7, 7]
    released = AllocationLike(*GIVEN)
    released._closed = True
    del released
    assert AllocationLike.closed == [7, 7]


@pytest.mark.parametrize("twin", ALLOCATIONS)
def test_a_failed_close_at_death_is_reported_not_raised(
    twin: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    class AllocationLike(_Closes, twin):  # type: ignore[misc,valid-type]
        __slots__ = ()
        closed: ClassVar[list[int]] = []
        fails = True

    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook: reported.append(hook.exc_value))
    try:
        raise KeyError("being handled")
    except KeyError:
        AllocationLike(*GIVEN)
        assert isinstance(sys.exc_info()[1], KeyError)  # (the one being handled stays)
    assert AllocationLike.closed == [7]
    assert [type(exc) for exc in reported] == [RuntimeError]


@pytest.mark.parametrize("made", TWINS)
@pytest.mark.parametrize("allocation_fields", ALLOCATIONS)
def test_keywords_are_refused_by_both_twins(made: tuple, allocation_fields: type) -> None:
    region_fields, mapping_fields = made
    with pytest.raises(TypeError, match="keyword"):
        allocation_fields(*GIVEN[:-1], born=3)
    with pytest.raises(TypeError, match="keyword"):
        region_fields(4096, 65536, writable=True)
    with pytest.raises(TypeError, match="keyword"):
        mapping_fields(None, [], None, layout=None)


def test_a_map_is_made_of_the_fields_in_use(namespace: str) -> None:
    ctx = Context.create("fields")
    try:
        made = ctx.create(4096)
        mapping = made.map("w")
        assert isinstance(mapping, fields.MappingFields) and isinstance(mapping, Mapping)
        assert isinstance(mapping._region, fields.RegionFields)
        assert isinstance(mapping._region, memory.Region)
        assert isinstance(made, fields.AllocationFields)
        expected = calls is not None
        assert (fields.RegionFields is not fields._RegionFields) == expected
        mapping.array[:] = 3
        mapping.unmap()
        assert not mapping.mapped
        made.release()
    finally:
        Context.destroy("fields")
