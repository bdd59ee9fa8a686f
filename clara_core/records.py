"""Typed records: `class Slot(Record): capacity: int` makes a named tuple, exactly as
`typing.NamedTuple` does, without importing `typing` at run time.

Importing typing and building each NamedTuple (it re-checks every annotation, compiling
each from its string) costs about 5 ms of every `clara` start-up: a fifth of what
`clara map --in/--out` spends before its copy. Type checkers see `typing.NamedTuple`.
"""

from __future__ import annotations

from collections import namedtuple

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

    class _RecordType(type):
        """Turns a class body into the named tuple it describes, as typing.NamedTuple does."""

        def __new__(cls, name: str, bases: tuple, body: dict) -> type:
            if not bases:  # Record itself
                return super().__new__(cls, name, bases, body)
            annotations = body.get("__annotations__", {})
            fields = tuple(annotations)
            defaults = []
            for field in fields:
                if field in body:
                    defaults.append(body[field])
                elif defaults:
                    raise TypeError(f"{name}: field {field} without a default follows one with")
            record = namedtuple(name, fields, defaults=defaults, module=body["__module__"])
            record.__annotations__ = dict(annotations)
            for key, value in body.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"cannot overwrite named tuple attribute {key}")
                if key not in _SPECIAL and key not in fields:
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """Base of a typed named tuple: annotated fields, optional defaults, methods."""
