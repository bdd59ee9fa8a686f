"""Damaged, truncated or foreign segments are Corrupt, never a crash."""

import os

import pytest

from clara_core import Context, Corrupt, names
from clara_core.names import shm_dir
from clara_core.shm import header


@pytest.fixture
def published(namespace):
    ctx = Context.create("job")
    alloc = ctx.create(dtype="f32", shape=(16,))
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
