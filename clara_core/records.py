"""Typed records: `class Slot(Record): capacity: int` makes a named tuple, exactly as
`typing.NamedTuple` does, without importing `typing` or `collections` at run time.

Importing typing and building each NamedTuple (it re-checks every annotation, compiling
each from its string) costs about 5 ms of every `clara` start-up; `collections` (with
itertools, keyword, operator and reprlib) about 2 ms more, and `namedtuple` compiles a
`__new__` for every record. `clara map --in/--out` is a shell pipeline's copy, measured
against `cat`: so a record is built here from the same parts (a tuple subclass, C field
getters, a `__new__` whose parameters are the fields). Each `__new__` is a copy of a
template written below for its number of fields, renamed: compiling one at import cost
~100 us a number of fields, ~0.5 ms of the copy's start-up. Type checkers see
`typing.NamedTuple`.
"""

from __future__ import annotations

import _collections  # the C half of collections: its field getter, without the rest
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # What the class body may not redefine: the named tuple's own machinery.
    _PROHIBITED = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults"}
        | {"_make", "_replace", "_asdict", "_source"}
    )
    _SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})
    _tuple_new = tuple.__new__
    _NEW_GLOBALS = {"_tuple_new": _tuple_new, "__builtins__": {}}
    # `__new__` for 0, 1, 2 ... fields, its parameters renamed for each record (below).
    # Written out, not compiled at import (~100 us each, at every start-up of `clara`).
    _new_by_arity: dict[int, object] = dict(
        enumerate(
            (
                lambda _cls: _tuple_new(_cls, ()),
                lambda _cls, _0: _tuple_new(_cls, (_0,)),
                lambda _cls, _0, _1: _tuple_new(_cls, (_0, _1)),
                lambda _cls, _0, _1, _2: _tuple_new(_cls, (_0, _1, _2)),
                lambda _cls, _0, _1, _2, _3: _tuple_new(_cls, (_0, _1, _2, _3)),
                lambda _cls, _0, _1, _2, _3, _4: _tuple_new(_cls, (_0, _1, _2, _3, _4)),
                lambda _cls, _0, _1, _2, _3, _4, _5: _tuple_new(_cls, (_0, _1, _2, _3, _4, _5)),
                lambda _cls, _0, _1, _2, _3, _4, _5, _6: _tuple_new(
                    _cls, (_0, _1, _2, _3, _4, _5, _6)
                ),
                lambda _cls, _0, _1, _2, _3, _4, _5, _6, _7: _tuple_new(
                    _cls, (_0, _1, _2, _3, _4, _5, _6, _7)
                ),
                lambda _cls, _0, _1, _2, _3, _4, _5, _6, _7, _8: _tuple_new(
                    _cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8)
                ),
                lambda _cls, _0, _1, _2, _3, _4, _5, _6, _7, _8, _9: _tuple_new(
                    _cls, (_0, _1, _2, _3, _4, _5, _6, _7, _8, _9)
                ),
            )
        )
    )

    def _new_for(name: str, fields: tuple[str, ...], defaults: tuple) -> object:
        """`__new__(_cls, FIELD, ...)` as namedtuple makes it: parameters named after the
        fields (keywords work, errors name them), from the template for as many fields
        (compiled here, once, beyond the ones written out)."""
        template = _new_by_arity.get(len(fields))
        if template is None:
            params = ", ".join(f"_{index}" for index in range(len(fields)))
            template = eval(f"lambda _cls, {params}: _tuple_new(_cls, ({params}))", _NEW_GLOBALS)
            _new_by_arity[len(fields)] = template
        names = {"co_varnames": ("_cls", *fields), "co_name": "__new__"}
        if hasattr(template.__code__, "co_qualname"):  # Python 3.11 on; 3.10 has none
            names["co_qualname"] = f"{name}.__new__"
        new = type(template)(
            template.__code__.replace(**names), _NEW_GLOBALS, "__new__", defaults or None
        )
        new.__qualname__ = f"{name}.__new__"
        new.__doc__ = f"Create new instance of {name}({', '.join(fields)})"
        return new

    class _Machinery(tuple):
        """What every record shares: namedtuple's methods, written once for all of them."""

        __slots__ = ()
        _fields = ()  # (each record sets its own)

        @classmethod
        def _make(cls, iterable: object) -> tuple:
            result = tuple.__new__(cls, iterable)
            if len(result) != len(cls._fields):
                raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
            return result

        def _replace(self, /, **changes: object) -> tuple:
            result = self._make(map(changes.pop, self._fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return result

        def __repr__(self) -> str:
            fields = ", ".join(
                f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True)
            )
            return f"{type(self).__name__}({fields})"

        def _asdict(self) -> dict:
            return dict(zip(self._fields, self, strict=True))

        def __getnewargs__(self) -> tuple:
            return tuple(self)

    class _RecordType(type):
        """Turns a class body into the named tuple it describes, as typing.NamedTuple does."""

        def __new__(cls, name: str, bases: tuple, body: dict) -> type:
            if not bases:  # Record itself
                return super().__new__(cls, name, bases, body)
            annotations = body.get("__annotations__", {})
            fields = tuple(map(sys.intern, annotations))
            defaults = []
            for field in fields:
                if field.startswith("_"):  # (as namedtuple: `_cls` and its kin are taken)
                    raise ValueError(f"{name}: field names cannot start with '_': {field}")
                if field in body:
                    defaults.append(body[field])
                elif defaults:
                    raise TypeError(f"{name}: field {field} without a default follows one with")
            namespace = {
                "__doc__": f"{name}({', '.join(fields)})",
                "__slots__": (),
                "_fields": fields,
                "_field_defaults": dict(
                    zip(fields[len(fields) - len(defaults) :], defaults, strict=True)
                ),
                "__new__": _new_for(name, fields, tuple(defaults)),
                "__match_args__": fields,
            }
            for index, field in enumerate(fields):
                namespace[field] = _collections._tuplegetter(
                    index, f"Alias for field number {index}"
                )
            record = type(name, (_Machinery,), namespace)
            record.__module__ = body["__module__"]
            record.__annotations__ = dict(annotations)
            for key, value in body.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"cannot overwrite named tuple attribute {key}")
                if key not in _SPECIAL and key not in fields:
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """Base of a typed named tuple: annotated fields, optional defaults, methods."""
