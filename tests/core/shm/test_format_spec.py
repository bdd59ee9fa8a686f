"""The Python core against docs/segment-format.md: every offset, constant and name rule.

The tables of the specification are parsed (tests/spec.py) and checked against what
clara_core really writes, so the document cannot drift from the code (the C library is
checked against the same tables in tests/native/test_spec.py).
"""

from __future__ import annotations

import os
import struct

import pytest

from clara_core import Context, Corrupt, names
from clara_core.dtypes import BY_CODE, MAX_DIMS
from clara_core.names import shm_dir
from clara_core.pipeline.readiness import READY_BASE
from clara_core.pool import MIN_BYTES
from clara_core.registry import POOL_BYTE, QUOTA_BYTE
from clara_core.shm import header as hdr
from clara_core.shm import locks
from clara_core.shm.header import DataState, Header, Layout, Origin, Settings
from tests import spec


def test_the_fields_cover_the_header_exactly_once():
    fields = spec.header_fields()
    position = 0
    for field in fields:
        assert field.offset == position, f"gap or overlap before {field}"
        assert field.size == spec.type_size(field.type, field.size)
        position += field.size
    assert position == hdr.HEADER_SIZE


# Distinct, non-zero values for every field, so a field read at a wrong offset shows.
_ALLOCATION = Header(
    kind=hdr.KIND_ALLOCATION,
    lifecycle=hdr.PUBLISHED,
    data=DataState(hdr.COMPLETE, 0x1234_5678, 0x0102_0304_0506_0708, 0x1112_1314_1516_1718),
    layout=Layout(BY_CODE[10], (3, 5, 7), 3 * 5 * 7 * 4, 8192),
    origin=Origin(
        0x2122_2324_2526_2728, 0x3132_3334, 0x4142_4344_4546_4748, 99, 0x5152, 0x5354_5556
    ),
    settings=Settings(0o640, 0x6162_6364_6566_6768, 0x7172_7374_7576_7778),
    context="Ctx-1",
    name="Vol_2",
)
_EXPECTED = {
    "identity.magic": b"CLARAFIO",
    "identity.version": 1,
    "identity.kind": 2,
    "lifecycle.lifecycle": 1,
    "data.state": 2,
    "data.writer_pid": 0x1234_5678,
    "data.writer_start": 0x0102_0304_0506_0708,
    "data.generation": 0x1112_1314_1516_1718,
    "layout.element_type": 10,
    "layout.ndim": 3,
    "layout.shape": (3, 5, 7, 0, 0, 0, 0, 0),
    "layout.nbytes": 420,
    "layout.capacity": 8192,
    "layout.data_offset": 4096,
    "origin.created_ns": 0x2122_2324_2526_2728,
    "origin.creator_pid": 0x3132_3334,
    "origin.creator_start": 0x4142_4344_4546_4748,
    "origin.owner_pid": 99,
    "origin.owner_start": 0x5152,
    "origin.context_created_ns": 0x5354_5556,
    "settings.mode": 0o640,
    "settings.capacity": 0x6162_6364_6566_6768,
    "settings.pool_cap": 0x7172_7374_7576_7778,
    "context.length": 5,
    "context.name": b"Ctx-1" + bytes(250),
    "name.length": 5,
    "name.name": b"Vol_2" + bytes(250),
}


def test_each_field_is_where_the_specification_says():
    raw = _ALLOCATION.pack()
    seen = set()
    for field in spec.header_fields():
        value = spec.read_field(raw, field)
        if field.type == "reserved":
            assert value == bytes(field.size), f"reserved bytes at {field.offset} are not zero"
        else:
            assert value == _EXPECTED[field.name], field.name
            seen.add(field.name)
    assert seen == set(_EXPECTED)


def test_the_block_offsets_of_the_code_match():
    offsets: dict[str, int] = {}
    for field in spec.header_fields():
        if field.name:
            offsets.setdefault(field.name.split(".")[0], field.offset)
    assert offsets["identity"] == hdr.IDENTITY_AT
    assert offsets["lifecycle"] == hdr.LIFECYCLE_AT
    assert offsets["data"] == hdr.DATA_AT
    assert offsets["layout"] == hdr.LAYOUT_AT
    assert offsets["origin"] == hdr.ORIGIN_AT
    assert offsets["context"] == hdr.CONTEXT_AT
    assert offsets["name"] == hdr.NAME_AT


def test_a_header_built_from_the_specification_alone_parses():
    """A third implementation writing only what the table says is understood."""
    raw = bytearray(hdr.HEADER_SIZE)
    for field in spec.header_fields():
        if field.name:
            spec.write_field(raw, field, _EXPECTED[field.name])
    parsed = hdr.parse(bytes(raw), hdr.DATA_OFFSET + 8192, "spec")
    assert parsed == _ALLOCATION


def test_the_constants():
    constants = spec.constants()
    assert constants["MAGIC"] == hdr.MAGIC.decode()
    assert int(constants["VERSION"]) == hdr.FORMAT_VERSION
    assert int(constants["HEADER_SIZE"]) == hdr.HEADER_SIZE
    assert int(constants["DATA_OFFSET"]) == hdr.DATA_OFFSET
    assert int(constants["MAX_DIMS"]) == MAX_DIMS
    assert int(constants["KIND_CONTEXT"]) == hdr.KIND_CONTEXT
    assert int(constants["KIND_ALLOCATION"]) == hdr.KIND_ALLOCATION
    for index, state in enumerate(hdr.LIFECYCLES):
        assert int(constants[f"LIFECYCLE_{state.upper()}"]) == index
    for index, state in enumerate(hdr.DATA_STATES):
        assert int(constants[f"DATA_{state.upper()}"]) == index
    assert int(constants["LOCK_REFERENCE"]) == locks.REFERENCE_BYTE
    assert int(constants["LOCK_MAP"]) == locks.MAP_BYTE
    assert int(constants["LOCK_LIFECYCLE"]) == locks.LIFECYCLE_BYTE
    assert int(constants["LOCK_QUOTA"]) == QUOTA_BYTE
    assert int(constants["LOCK_POOL"]) == POOL_BYTE
    assert int(constants["POOL_MIN_BYTES"]) == MIN_BYTES
    assert int(constants["LOCK_READY_BASE"]) == READY_BASE


def test_the_element_types():
    table = spec.element_types()
    assert {row.code for row in table} == set(BY_CODE)
    for row in table:
        etype = BY_CODE[row.code]
        assert (etype.name, etype.short, etype.itemsize) == (row.name, row.short, row.size)


def test_the_file_names(monkeypatch):
    monkeypatch.setenv("CLARA_NAMESPACE", "clara")
    limits = spec.token_limits()
    assert limits == {"context": names._CONTEXT_TOKEN_CHARS, "member": names._NAME_TOKEN_CHARS}
    examples = spec.name_examples()
    assert any("~" in e.file_name for e in examples)  # the hashing is exercised
    for example in examples:
        if example.kind:
            assert names.allocation_file(example.context, example.kind, example.name) == (
                example.file_name
            )
        else:
            assert names.context_file(example.context) == example.file_name


def test_segments_the_core_writes_read_back_through_the_table():
    """Real segments on disk: a context and a published allocation, read by the table."""
    ctx = Context.create("Spec-Ctx", capacity="1M", mode=0o640, owner_pid=os.getpid())
    try:
        alloc = ctx.create(dtype="i16", shape=(2, 3))
        with alloc.map("w") as array:
            array[...] = [[1, 2, 3], [4, 5, 6]]
        alloc.publish("Spec-Vol")
        path = os.path.join(shm_dir(), names.allocation_file("Spec-Ctx", "a", "Spec-Vol"))
        with open(path, "rb") as f:
            raw = f.read()
        fields = {f.name: spec.read_field(raw, f) for f in spec.header_fields() if f.name}
        assert fields["identity.kind"] == 2
        assert fields["lifecycle.lifecycle"] == 1
        assert fields["data.state"] == 2
        assert fields["data.writer_pid"] == os.getpid()
        assert fields["data.generation"] == 1
        assert fields["layout.element_type"] == 6
        assert fields["layout.shape"][:3] == (2, 3, 0)
        assert fields["layout.nbytes"] == 12
        assert fields["layout.capacity"] == len(raw) - 4096 == 4096
        assert fields["name.name"][: fields["name.length"]] == b"Spec-Vol"
        assert fields["context.name"][: fields["context.length"]] == b"Spec-Ctx"
        assert struct.unpack_from("<6h", raw, 4096) == (1, 2, 3, 4, 5, 6)
        alloc.release()
        with open(os.path.join(shm_dir(), names.context_file("Spec-Ctx")), "rb") as f:
            raw = f.read()
        fields = {f.name: spec.read_field(raw, f) for f in spec.header_fields() if f.name}
        assert len(raw) == 4096
        assert fields["identity.kind"] == 1
        assert fields["settings.mode"] == 0o640
        assert fields["settings.capacity"] == 1 << 20
        assert fields["origin.owner_pid"] == os.getpid()
        assert fields["name.name"][: fields["name.length"]] == b"Spec-Ctx"
    finally:
        ctx.destroy()


@pytest.mark.parametrize("code", [0, 15, 255])
def test_codes_outside_the_table_are_corrupt(code):
    raw = bytearray(_ALLOCATION.pack())
    raw[64] = code
    with pytest.raises(Corrupt, match="element type"):
        hdr.parse(bytes(raw), hdr.DATA_OFFSET + 8192, "spec")
