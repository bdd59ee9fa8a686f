"""clara_core.records.Record builds the same named tuples as typing.NamedTuple."""

from __future__ import annotations

import builtins
import pickle
from typing import NamedTuple, get_type_hints

import pytest

from clara_core.records import Record


class Slot(Record):
    """A record with a method and a default."""

    capacity: int
    token: str = "t"

    def label(self) -> str:
        return f"{self.capacity}-{self.token}"


class TypedSlot(NamedTuple):
    """A record with a method and a default."""

    capacity: int
    token: str = "t"

    def label(self) -> str:
        return f"{self.capacity}-{self.token}"


def test_a_record_is_the_named_tuple_typing_would_build() -> None:
    ours, theirs = Slot(4096), TypedSlot(4096)
    assert isinstance(ours, tuple)
    assert ours == theirs == (4096, "t")
    assert repr(ours) == repr(theirs).replace("TypedSlot", "Slot")
    assert Slot._fields == TypedSlot._fields == ("capacity", "token")
    assert Slot._field_defaults == TypedSlot._field_defaults == {"token": "t"}
    assert get_type_hints(Slot) == get_type_hints(TypedSlot) == {"capacity": int, "token": str}
    assert Slot.__doc__ == TypedSlot.__doc__
    assert (Slot.__module__, Slot.__qualname__) == (__name__, "Slot")
    assert ours.label() == theirs.label() == "4096-t"
    assert ours._replace(token="u") == (4096, "u")
    assert ours._asdict() == {"capacity": 4096, "token": "t"}
    assert Slot._make([1, "x"]).label() == "1-x"
    assert Slot(capacity=2, token="y") == (2, "y")
    assert pickle.loads(pickle.dumps(ours)) == ours
    assert type(pickle.loads(pickle.dumps(ours))) is Slot
    with pytest.raises(AttributeError):
        ours.capacity = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        Slot()  # type: ignore[call-arg]


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        class Bad(Record):
            first: int = 0
            second: int


def test_the_tuple_machinery_cannot_be_overwritten() -> None:
    with pytest.raises(AttributeError, match="_replace"):

        class Bad(Record):
            value: int

            def _replace(self) -> None: ...


def test_a_field_named_like_the_machinery_is_refused() -> None:
    """As typing.NamedTuple: `_cls`, `_fields` ... would clash with the tuple's own names."""
    with pytest.raises(ValueError, match="_cls"):

        class Bad(Record):
            _cls: int

    with pytest.raises(ValueError, match="cannot start with"):

        class Typed(NamedTuple):
            _cls: int


def test_records_of_as_many_fields_keep_their_own_names_and_defaults() -> None:
    """The `__new__` of records with as many fields is compiled once, then renamed."""

    class Point(Record):
        x: int
        y: int = 7

    class Span(Record):
        start: int = 1
        stop: int = 2

    assert Point(y=3, x=4) == (4, 3) and Point(5) == (5, 7)
    assert Span() == (1, 2) and Span(stop=9) == (1, 9)
    assert Point(x=1, y=2)._asdict() == {"x": 1, "y": 2}
    with pytest.raises(TypeError, match=r"Span\.__new__.*'x'"):
        Span(start=1, x=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'x'"):
        Point(y=1)  # type: ignore[call-arg]


def test_records_are_built_without_compiling_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `__new__` up to 10 fields copies a template written in records.py: compiling
    one at import costs ~100 us of every `clara` start-up. Beyond, one is compiled."""

    def no_eval(*args: object) -> None:
        raise AssertionError(f"compiled at import: {args[0]!r}")

    monkeypatch.setattr(builtins, "eval", no_eval)
    for count in range(11):
        fields = [f"f{index}" for index in range(count)]
        record = _record_of(fields)
        assert record(*range(count)) == tuple(range(count))
        assert record(**dict(zip(fields, range(count), strict=True))) == tuple(range(count))
        assert record._fields == tuple(fields)
    monkeypatch.undo()
    fields = [f"f{index}" for index in range(12)]
    wide = _record_of(fields)
    assert wide(*range(12)) == tuple(range(12)) and wide(*range(12)).f11 == 11
    with pytest.raises(TypeError, match="'f11'"):
        wide(*range(11))


def _record_of(fields: list[str]) -> type:
    """A Record class with `fields` (all ints), made as a class statement makes it."""
    return type(Record)(
        "Made", (Record,), {"__module__": __name__, "__annotations__": dict.fromkeys(fields, "int")}
    )
