"""Element types, shapes and byte sizes, without importing numpy.

Clara's eleven primitive types (short and long spellings) plus bool, complex64 and
complex128. Every element type has a stable one-byte code stored in segment headers.
"""

from __future__ import annotations

from .errors import InvalidArgument
from .records import Record

MAX_DIMS = 8
MAX_NBYTES = 2**62  # far beyond any machine; keeps every size arithmetic inside int64


class ElementType(Record):
    """One element type: header code, long name (numpy's), short name, size in bytes."""

    code: int
    name: str
    short: str
    itemsize: int

    def __str__(self) -> str:
        return self.name

    @property
    def numpy(self):  # -> numpy.dtype; numpy is imported only when a caller needs it
        """The numpy dtype (native byte order)."""
        found = _NUMPY.get(self.code)
        if found is None:
            import numpy

            found = _NUMPY[self.code] = numpy.dtype(self.name)
        return found


_NUMPY: dict[int, object] = {}  # code -> numpy.dtype, made once (dtypes are immutable)


_TYPES = (
    ElementType(1, "uint8", "u8", 1),
    ElementType(2, "uint16", "u16", 2),
    ElementType(3, "uint32", "u32", 4),
    ElementType(4, "uint64", "u64", 8),
    ElementType(5, "int8", "i8", 1),
    ElementType(6, "int16", "i16", 2),
    ElementType(7, "int32", "i32", 4),
    ElementType(8, "int64", "i64", 8),
    ElementType(9, "float16", "f16", 2),
    ElementType(10, "float32", "f32", 4),
    ElementType(11, "float64", "f64", 8),
    ElementType(12, "bool", "bool", 1),
    ElementType(13, "complex64", "c64", 8),
    ElementType(14, "complex128", "c128", 16),
)
BY_CODE = {t.code: t for t in _TYPES}
_BY_SPELLING = {s: t for t in _TYPES for s in (t.name, t.short)}
CLARA_PRIMITIVES = tuple(t.name for t in _TYPES[:11])
ALL_SPELLINGS = tuple(sorted(_BY_SPELLING))
UINT8 = _BY_SPELLING["uint8"]


def element_type(value: object) -> ElementType:
    """Resolve 'f32', 'float32', numpy.float32 or numpy.dtype('float32') to an ElementType."""
    if isinstance(value, ElementType):
        return value
    spelling = value if isinstance(value, str) else _numpy_name(value)
    found = _BY_SPELLING.get(spelling.strip().lower()) if spelling else None
    if found is None:
        raise InvalidArgument(
            f"unknown element type {value!r}: use one of {', '.join(t.name for t in _TYPES)}"
            " (or u8..u64, i8..i64, f16, f32, f64, c64, c128)"
        )
    return found


def _numpy_name(value: object) -> str | None:
    """numpy's name for a dtype or scalar type, native byte order only."""
    byteorder = getattr(value, "byteorder", "=")
    if byteorder not in ("=", "|", "<" if _little_endian() else ">"):
        return None
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    name = getattr(value, "__name__", None)
    if name == "bool_":
        return "bool"
    return name if isinstance(name, str) else None


def _little_endian() -> bool:
    import sys

    return sys.byteorder == "little"


def static_shape(value: object) -> tuple[int, ...]:
    """Validate a fully known shape: 1-8 dimensions, each a positive integer."""
    dims = _dims(value)
    if any(d < 1 for d in dims):
        raise InvalidArgument(
            f"invalid shape {list(dims)}: every dimension must be a positive integer"
            " (dynamic dimensions -1/0 belong to pipeline variables, not allocations)"
        )
    return dims


def declared_shape(value: object) -> tuple[int, ...]:
    """Validate a declared shape where -1 or 0 marks a dynamic dimension."""
    dims = _dims(value)
    if any(d < -1 for d in dims):
        raise InvalidArgument(
            f"invalid shape {list(dims)}: dimensions are positive integers, or -1/0 for dynamic"
        )
    return dims


def _dims(value: object) -> tuple[int, ...]:
    if isinstance(value, (int, str)) or not hasattr(value, "__iter__"):
        value = (value,)
    try:
        dims = tuple(_integer(d) for d in value)  # type: ignore[union-attr]
    except TypeError:
        raise InvalidArgument(f"invalid shape {value!r}: use a list of integers") from None
    if not 1 <= len(dims) <= MAX_DIMS:
        raise InvalidArgument(
            f"invalid shape {list(dims)}: use 1 to {MAX_DIMS} dimensions, not {len(dims)}"
        )
    return dims


def _integer(value: object) -> int:
    if type(value) is int:  # (the usual case)
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise TypeError from None
    import operator  # (not loaded at start-up: a `clara map` copy parses no shape)

    return operator.index(value)  # type: ignore[arg-type]


def shapes_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same number of dimensions, each equal or dynamic (-1/0) on either side."""
    return len(a) == len(b) and all(x == y or x <= 0 or y <= 0 for x, y in zip(a, b, strict=False))


def nbytes_of(etype: ElementType, shape: tuple[int, ...]) -> int:
    """Size in bytes of an array; refuses sizes no machine could hold."""
    total = etype.itemsize
    for dim in shape:  # (math.prod, without loading math)
        total *= dim
    if total > MAX_NBYTES:
        raise InvalidArgument(
            f"shape {list(shape)} of {etype.name} needs {total} bytes, more than any machine has"
        )
    return total


def parse_size(text: str | int) -> int:
    """Parse a byte count such as 4096, '4K', '64M', '1G', '1.5G' or '2TiB' (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        import re  # here: re costs every start-up of `clara` ~3 ms (clara_cli.fastpath)

        match = re.fullmatch(_SIZE, str(text).strip(), re.IGNORECASE)
        if match is None:
            raise InvalidArgument(
                f"invalid size {text!r}: use a byte count like 4096, 4K, 64M or 1G"
            )
        number, unit = match.groups()
        scale = _UNITS[(unit or "").upper()]
        whole = int(number) * scale if "." not in number else float(number) * scale
        value = int(whole) if whole == int(whole) else -1
    if value < 1:
        raise InvalidArgument(f"invalid size {text!r}: a size must be a whole number of bytes >= 1")
    if value > MAX_NBYTES:
        raise InvalidArgument(f"invalid size {text!r}: more than any machine has")
    return value


def format_size(nbytes: int) -> str:
    """A byte count for people (binary units): 512 B, 8.0 KiB, 256.0 MiB."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{nbytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_SIZE = r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?"  # case-insensitive
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
