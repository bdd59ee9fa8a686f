"""Element types, shapes and sizes."""

import numpy as np
import pytest

from clara_core import InvalidArgument, dtypes


@pytest.mark.parametrize(
    ("spelling", "name", "size", "code"),
    [
        ("u8", "uint8", 1, 1),
        ("uint16", "uint16", 2, 2),
        ("U32", "uint32", 4, 3),
        ("u64", "uint64", 8, 4),
        ("i8", "int8", 1, 5),
        ("int16", "int16", 2, 6),
        ("i32", "int32", 4, 7),
        ("int64", "int64", 8, 8),
        ("f16", "float16", 2, 9),
        ("float32", "float32", 4, 10),
        ("f64", "float64", 8, 11),
        ("bool", "bool", 1, 12),
        ("complex64", "complex64", 8, 13),
        ("c128", "complex128", 16, 14),
    ],
)
def test_every_element_type_and_its_numpy_twin(spelling, name, size, code):
    """Names, sizes and the header code of each (codes are in every segment: never change)."""
    etype = dtypes.element_type(spelling)
    assert (etype.name, etype.itemsize, etype.code) == (name, size, code)
    assert etype.numpy == np.dtype(name)
    assert dtypes.element_type(np.dtype(name)) is etype
    assert dtypes.BY_CODE[etype.code] is etype


def test_numpy_scalar_types_are_accepted():
    assert dtypes.element_type(np.float32).name == "float32"
    assert dtypes.element_type(np.bool_).name == "bool"


def test_clara_primitives_are_its_eleven_numeric_types():
    clara = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")
    clara += ("float16", "float32", "float64")
    assert clara == dtypes.CLARA_PRIMITIVES


@pytest.mark.parametrize("bad", ["float128", "", "str", np.dtype(">f4"), object, 3])
def test_unknown_element_types_are_refused(bad):
    with pytest.raises(InvalidArgument, match="element type"):
        dtypes.element_type(bad)


@pytest.mark.parametrize(
    ("shape", "parsed"),
    [
        ((1,), (1,)),
        ([2, 3], (2, 3)),
        ((1,) * 8, (1,) * 8),
        ("7", (7,)),
        (np.array([4, 5]), (4, 5)),
        ((np.int64(3), 2), (3, 2)),
    ],
)
def test_static_shapes(shape, parsed):
    result = dtypes.static_shape(shape)
    assert result == parsed
    assert all(type(d) is int for d in result)


@pytest.mark.parametrize("bad", [(), (0,), (-1, 2), (1,) * 9, (1.5,), ("x",), (True,)])
def test_bad_static_shapes(bad):
    with pytest.raises(InvalidArgument, match="shape"):
        dtypes.static_shape(bad)


def test_declared_shapes_allow_dynamic_dims():
    assert dtypes.declared_shape([3, -1, 224, 0]) == (3, -1, 224, 0)
    with pytest.raises(InvalidArgument):
        dtypes.declared_shape([-2])


def test_byte_counts_that_overflow_are_refused():
    with pytest.raises(InvalidArgument, match="more than any machine"):
        dtypes.nbytes_of(dtypes.element_type("f64"), (2**31,) * 4)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("4K", 4096),
        ("64M", 64 << 20),
        ("1G", 1 << 30),
        ("1.5k", 1536),
        ("2KiB", 2048),
        ("10b", 10),
        (12, 12),
    ],
)
def test_sizes(text, value):
    assert dtypes.parse_size(text) == value


@pytest.mark.parametrize("bad", ["-1", "1Q", "", "0", "0.5", "K", "1e3", True, 0, "9" * 30])
def test_bad_sizes(bad):
    with pytest.raises(InvalidArgument, match="size"):
        dtypes.parse_size(bad)
