"""docs/segment-format.md as data: its tables, parsed, for the tests of every implementation.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers; cells are
stripped of surrounding backquotes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import NamedTuple

SPEC = Path(__file__).resolve().parent.parent / "docs" / "segment-format.md"

# Little-endian, no alignment: what each type of the field table means.
_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i32": "i", "i64": "q"}


class Field(NamedTuple):
    offset: int
    size: int
    type: str  # u8 ... i64, i64[8], bytes, reserved
    name: str  # block.field, '' for reserved bytes


class ElementTypeRow(NamedTuple):
    code: int
    name: str
    short: str
    size: int


class NameExample(NamedTuple):
    context: str
    kind: str
    name: str
    file_name: str


def table(marker: str) -> list[list[str]]:
    """The rows (header and separator excluded) of the table between the markers."""
    text = SPEC.read_text()
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert match, f"no table '{marker}' in {SPEC}"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows[2:]]


def header_fields() -> list[Field]:
    """The header's fields and reserved ranges, in offset order."""
    return [Field(int(r[0]), int(r[1]), r[2], r[3]) for r in table("header-fields")]


def type_size(kind: str, declared: int) -> int:
    """Size in bytes of a field type (bytes and reserved: as declared)."""
    array = re.fullmatch(r"(\w+)\[(\d+)\]", kind)
    if array:
        return struct.calcsize("<" + _FORMATS[array.group(1)]) * int(array.group(2))
    if kind in ("bytes", "reserved"):
        return declared
    return struct.calcsize("<" + _FORMATS[kind])


def _format(field: Field) -> str | None:
    array = re.fullmatch(r"(\w+)\[(\d+)\]", field.type)
    if array:
        return f"<{array.group(2)}{_FORMATS[array.group(1)]}"
    return None if field.type in ("bytes", "reserved") else "<" + _FORMATS[field.type]


def read_field(raw: bytes, field: Field):
    """A field's value: an int, a tuple for arrays, bytes for bytes and reserved."""
    fmt = _format(field)
    if fmt is None:
        return bytes(raw[field.offset : field.offset + field.size])
    values = struct.unpack_from(fmt, raw, field.offset)
    return values if "[" in field.type else values[0]


def write_field(raw: bytearray, field: Field, value) -> None:
    """Store a field's value as the table says."""
    fmt = _format(field)
    if fmt is None:
        raw[field.offset : field.offset + field.size] = value
    else:
        struct.pack_into(fmt, raw, field.offset, *(value if "[" in field.type else (value,)))


def constants() -> dict[str, str]:
    """NAME -> value (as text) of the constants table."""
    return {row[0]: row[1] for row in table("constants")}


def element_types() -> list[ElementTypeRow]:
    """The element type table."""
    return [ElementTypeRow(int(r[0]), r[1], r[2], int(r[3])) for r in table("element-types")]


def token_limits() -> dict[str, int]:
    """Token limit of each part of a file name."""
    return {row[0]: int(row[1]) for row in table("token-limits")}


def name_examples() -> list[NameExample]:
    """(context, kind, name) -> file name examples, namespace 'clara'."""
    return [NameExample(*row) for row in table("name-examples")]
