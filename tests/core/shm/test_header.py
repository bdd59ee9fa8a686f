"""Damaged, truncated or foreign segments are Corrupt, never a crash."""

import os
import struct

import numpy as np
import pytest

from clara_core import Context, Corrupt, names
from clara_core.dtypes import element_type
from clara_core.names import shm_dir
from clara_core.shm import header


@pytest.fixture
def published(namespace):
    ctx = Context.create("job")
    alloc = ctx.create(dtype="f32", shape=(16,))
    with alloc.map("w") as array:  # written: what is read back is data, not never-written
        array[:] = 1.5
    alloc.publish("data")
    alloc.release()
    yield ctx, os.path.join(shm_dir(), names.allocation_file("job", "a", "data"))
    ctx.destroy()


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("offset", "data", "why"),
    [
        (0, b"XLARAFIO", "no clara header"),
        (8, b"\x09\x00", "format version 9"),
        (10, b"\x07", "unknown kind"),
        (16, b"\x09", "unknown lifecycle"),
        (24, b"\x09", "data state"),
        (64, b"\xee", "unknown element type"),
        (65, b"\x09", "9 dimensions"),
        (72, b"\x00\x00\x00\x01", "shape"),
        (72 + 64, b"\xff\xff", "does not make"),
        (256, b"\x00", "a name is missing"),
        (257, b"/", "unreadable context name"),
    ],
)
def test_a_damaged_header_is_corrupt(published, offset, data, why):
    ctx, path = published
    patch(path, offset, data)
    with pytest.raises(Corrupt, match=why):
        ctx.get("data")


def test_a_truncated_segment_is_corrupt(published):
    ctx, path = published
    os.truncate(path, header.DATA_OFFSET + 10)
    with pytest.raises(Corrupt, match="do not fit"):
        ctx.get("data")
    os.truncate(path, 100)
    with pytest.raises(Corrupt, match="too short"):
        ctx.get("data")


@pytest.mark.parametrize("wait", [False, True])
def test_a_segment_cut_short_after_get_is_corrupt_at_map(published, wait):
    """Cut short between get and map: the map says so (never a SIGBUS), whether it took
    the map lock at once or had to wait for a writer first."""
    ctx, path = published
    ref = ctx.get("data")
    writer = ctx.get("data").map("w") if wait else None
    os.truncate(path, header.DATA_OFFSET + 8)
    with pytest.raises(Corrupt, match="cut short"):
        ref.map("r", timeout=5 if wait else None)
    if writer is not None:
        writer.unmap()
    ref.release()


def test_a_foreign_file_under_our_name_is_corrupt(namespace):
    path = os.path.join(shm_dir(), names.context_file("job"))
    with open(path, "wb") as f:
        f.write(b"\x00" * 4096)
    try:
        with pytest.raises(Corrupt, match="context 'job' is corrupt"):
            Context.open("job")
        assert Context.list() == []
    finally:
        os.unlink(path)


def test_a_context_segment_in_place_of_an_allocation_is_corrupt(published):
    ctx, path = published
    with open(os.path.join(shm_dir(), names.context_file("job")), "rb") as f:
        context_bytes = f.read()
    with open(path, "wb") as f:
        f.write(context_bytes)
    with pytest.raises(Corrupt, match="not an allocation"):
        ctx.get("data")


# The layout block, by hand from the documented format (not from clara's own structs):
# at 64 element type code (u8), at 65 ndim (u8), at 72 eight dimensions (i64), then
# nbytes, capacity and data offset (u64) at 136, 144 and 152.
F32 = 10
LAYOUT = struct.Struct("<BB6x8qQQQ")
GOOD = dict(code=F32, ndim=2, dims=(4, 4, 0, 0, 0, 0, 0, 0), nbytes=64, capacity=64, offset=4096)


def layout_block(**changes) -> bytes:
    f = {**GOOD, **changes}
    dims = tuple(f["dims"]) + (0,) * (8 - len(f["dims"]))
    return LAYOUT.pack(f["code"], f["ndim"], *dims, f["nbytes"], f["capacity"], f["offset"])


@pytest.mark.parametrize(
    ("changes", "shape"),
    [
        ({}, (4, 4)),
        ({"ndim": 1, "dims": (16,)}, (16,)),
        ({"ndim": 3, "dims": (4, 4, 1)}, (4, 4, 1)),
        ({"ndim": 8, "dims": (2, 2, 2, 2, 1, 1, 1, 1)}, (2, 2, 2, 2, 1, 1, 1, 1)),
        ({"code": 1, "ndim": 1, "dims": (64,)}, (64,)),  # u8
        ({"capacity": 4096}, (4, 4)),  # a recycled segment may hold more than its data
    ],
)
def test_a_hand_built_valid_layout_is_accepted(published, changes, shape):
    ctx, path = published
    patch(path, 64, layout_block(**changes))
    with ctx.get("data") as ref, ref.map("r") as array:
        assert array.shape == shape
        assert array.dtype == (np.uint8 if changes.get("code") == 1 else np.float32)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"code": 0}, "unknown element type code 0"),
        ({"code": 15}, "unknown element type code 15"),
        ({"ndim": 0}, "0 dimensions"),
        ({"ndim": 9}, "9 dimensions"),
        ({"dims": (4, 0)}, r"shape \[4, 0,"),
        ({"dims": (4, -4)}, r"shape \[4, -4,"),
        # dimensions past ndim must be zero: a 2-D (4, 4) with a stray third dimension
        ({"dims": (4, 4, 1)}, r"shape \[4, 4, 1, 0,"),
        ({"ndim": 1, "dims": (16, 5)}, r"shape \[16, 5, 0,"),
        ({"dims": (4, 4, 0, 0, 0, 0, 0, 7)}, r"shape \[4, 4, 0, 0, 0, 0, 0, 7\]"),
        ({"dims": (4, 8)}, r"shape \[4, 8\] of float32 does not make 64 bytes"),
        ({"dims": (2**31, 2**31)}, "does not make 64 bytes"),
        ({"nbytes": 128, "dims": (4, 8)}, "128 bytes of data do not fit"),  # capacity 64
        ({"capacity": 2**40}, "64 bytes of data do not fit in a file of 8192 bytes"),
        ({"offset": 0}, "do not fit"),
    ],
)
def test_a_hand_built_invalid_layout_is_corrupt(published, changes, why):
    ctx, path = published
    patch(path, 64, layout_block(**changes))
    with pytest.raises(Corrupt, match=why) as refused:
        ctx.get("data").map("r")
    assert type(refused.value) is Corrupt
    assert "data" in str(refused.value) and "leak-check --fix" in str(refused.value)


def test_a_new_allocations_header_is_what_its_header_record_packs():
    # pack_new_allocation reuses the last header it made but for created_ns: every field
    # that differs from one call to the next must still come out as Header.pack() puts it.
    def expected(layout, origin, context):
        return header.Header(
            header.KIND_ALLOCATION,
            header.PRIVATE,
            header.DataState(header.EMPTY),
            layout,
            header.Origin(*origin),
            header.Settings(0, 0, 0),
            context,
            "",
        ).pack()

    small = header.Layout(element_type("u8"), (4096,), 4096, 4096)
    typed = header.Layout(element_type("f32"), (3, 5), 60, 4096)
    calls = [
        (small, (1, 10, 100, 0, 0, 7), "a"),
        (small, (2**64 - 1, 10, 100, 0, 0, 7), "a"),  # only created_ns differs
        (small, (3, 11, 101, 0, 0, 7), "a"),  # another process (a forked child)
        (small, (4, 11, 101, 0, 0, 8), "a"),  # another incarnation of the context
        (small, (5, 11, 101, 0, 0, 8), "b"),  # another context
        (typed, (6, 11, 101, 0, 0, 8), "b"),  # another layout
        (small, (7, 10, 100, 0, 0, 7), "a"),  # back to the first
    ]
    for layout, origin, context in calls:
        made = header.pack_new_allocation(layout, origin, context)
        assert made == expected(layout, origin, context)
        made[0] = 0  # the caller's own copy: the next header is not changed by it
    assert header.pack_new_allocation(small, (1, 10, 100, 0, 0, 7), "a") == expected(
        small, (1, 10, 100, 0, 0, 7), "a"
    )


def test_own_write_states_are_those_of_the_identity_given() -> None:
    """own_write_states keeps its results per data-state block found, for the identity
    they were made for: another identity gets its own (the writer named is the one
    asked for, never the last caller's)."""
    pending = bytearray(header.HEADER_SIZE)  # a fresh segment's data state: never written
    for identity in ((101, 7), (202, 9), (101, 7)):
        found, (writing, completed) = header.own_write_states(pending, identity)
        assert found == header.NEVER_WRITTEN
        for block, state in ((writing, header.WRITING), (completed, header.COMPLETE)):
            at = bytearray(pending)
            at[header.DATA_AT : header.DATA_END] = block
            read = header.read_data_state(at)
            assert (read.state, read.writer_pid, read.writer_start) == (state, *identity)
