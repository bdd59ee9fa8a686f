"""The self-describing header at the start of every segment, and its strict validation.

Page 0 of every segment is a header; an allocation's data starts at DATA_OFFSET (4096),
so external tools can open it with e.g. ``numpy.memmap(path, dtype, 'r', DATA_OFFSET, shape)``.
The header is made of blocks at fixed offsets, each changed by one role only, so that no
writer ever rewrites a field another role owns:

    offset  block        written by                     fields
         0  identity     creation                       magic, format version, kind
        16  lifecycle    publish / free / pool          private, published, freed, pooled
        24  data state   the write-map holder           empty/writing/complete, writer, generation
        64  layout       creation, set_type, recycling  element type, ndim, shape, nbytes,
                                                        capacity, data offset
       160  origin       creation, make_handle          created (ns), creator, owner/holder
                                                        (allocations) the context's created (ns)
       208  settings     context creation               mode, capacity (bytes), pool cap
       256  context      creation                       the context's name
       512  name         creation (context), publish    the object's own name

Anything that does not validate (a flipped byte, a truncated file, a foreign file) is
reported as Corrupt, never trusted: every size used to map memory is checked against the
file's real size first.
"""

from __future__ import annotations

import os
from _struct import Struct  # struct's C half (the module struct only re-exports it)

from ..dtypes import BY_CODE, MAX_DIMS, ElementType
from ..errors import Corrupt
from ..names import validate_name
from ..records import Record

MAGIC = b"CLARAFIO"
FORMAT_VERSION = 1
HEADER_SIZE = 768
DATA_OFFSET = 4096

KIND_CONTEXT = 1
KIND_ALLOCATION = 2

PRIVATE, PUBLISHED, FREED, POOLED = 0, 1, 2, 3
LIFECYCLES = ("private", "published", "freed", "pooled")

EMPTY, WRITING, COMPLETE = 0, 1, 2
DATA_STATES = ("empty", "writing", "complete")

_IDENTITY = Struct("<8sHB")  # at 0
_LIFECYCLE = Struct("<B")  # at 16
_DATA = Struct("<B3xiQQ")  # at 24: state, writer pid, writer start, generation
_LAYOUT = Struct(f"<BB6x{MAX_DIMS}qQQQ")  # at 64: dtype, ndim, shape, nbytes, cap, off
_ORIGIN = Struct("<QiQiQQ")  # at 160: created ns, creator pid+start, owner pid+start,
# and (allocations) the created ns of the context they were made in
_SETTINGS = Struct("<IQQ")  # at 208: mode, capacity, pool cap
_NAME = Struct("<B255s")  # at 256 (context) and 512 (own name)
_WHOLE = Struct("<8sHB5x B7x B3xiQQ16x BB6x8qQQQ QiQiQQ8x IQQ28x B255s B255s")
assert _WHOLE.size == HEADER_SIZE

IDENTITY_AT, LIFECYCLE_AT, DATA_AT, LAYOUT_AT = 0, 16, 24, 64
DATA_END = DATA_AT + _DATA.size
LAYOUT_END = LAYOUT_AT + _LAYOUT.size
ORIGIN_AT, SETTINGS_AT, CONTEXT_AT, NAME_AT = 160, 208, 256, 512


class Layout(Record):
    """Element type and shape of an allocation, and where its bytes live."""

    etype: ElementType
    shape: tuple[int, ...]
    nbytes: int
    capacity: int  # bytes reserved for data; >= nbytes (a recycled segment may be larger)

    def pack(self) -> bytes:
        padded = self.shape + (0,) * (MAX_DIMS - len(self.shape))
        return _LAYOUT.pack(
            self.etype.code, len(self.shape), *padded, self.nbytes, self.capacity, DATA_OFFSET
        )


class Origin(Record):
    """Who made a segment and when, and the process it is bound to (0 if none)."""

    created_ns: int
    creator_pid: int
    creator_start: int
    owner_pid: int = 0
    owner_start: int = 0
    # Allocations: the created_ns of the context they were made in, which tells them
    # from the leftovers of an earlier context of the same name (0 in a context).
    context_created_ns: int = 0

    def pack(self) -> bytes:
        return _ORIGIN.pack(*self)


class Settings(Record):
    """A context's settings: mode of its segments, capacity and pool cap (0: none)."""

    mode: int
    capacity: int
    pool_cap: int

    def pack(self) -> bytes:
        return _SETTINGS.pack(self.mode, self.capacity, self.pool_cap)


class DataState(Record):
    """Whether the data is complete, and who wrote it last."""

    state: int
    writer_pid: int = 0
    writer_start: int = 0
    generation: int = 0

    def pack(self) -> bytes:
        return _DATA.pack(self.state, self.writer_pid, self.writer_start, self.generation)


class Header(Record):
    """A parsed, validated segment header."""

    kind: int
    lifecycle: int
    data: DataState
    layout: Layout | None  # None for contexts
    origin: Origin
    settings: Settings  # meaningful for contexts only
    context: str
    name: str

    def pack(self) -> bytes:
        """The whole header as bytes (for a new segment)."""
        layout = self.layout
        if layout is None:
            layout_fields: tuple = (0, 0, *(0,) * MAX_DIMS, 0, 0, 0)
        else:
            dims = layout.shape + (0,) * (MAX_DIMS - len(layout.shape))
            layout_fields = (layout.etype.code, len(layout.shape), *dims, layout.nbytes)
            layout_fields += (layout.capacity, DATA_OFFSET)
        context, name = self.context.encode("ascii"), self.name.encode("ascii")
        return _WHOLE.pack(
            MAGIC,
            FORMAT_VERSION,
            self.kind,
            self.lifecycle,
            *self.data,
            *layout_fields,
            *self.origin,
            *self.settings,
            len(context),
            context,
            len(name),
            name,
        )


def pack_new_allocation(layout: Layout, origin: tuple[int, ...], context: str) -> bytearray:
    """The whole header of a new allocation: private, never written, nameless, made by
    `origin` (an Origin's six fields) in `context`. What Header(...).pack() gives, without
    building the named tuples. A bytearray, the caller's own: a new allocation keeps it
    as its pending header (reference._defer)."""
    header = bytearray(allocation_template(layout, origin[1:], context))
    # created_ns alone, as _ORIGIN packs it (a struct pack of all six costs ~1 us of P2)
    header[ORIGIN_AT : ORIGIN_AT + 8] = origin[0].to_bytes(8, "little")
    return header


def allocation_template(layout: Layout, maker: tuple[int, ...], context: str) -> bytes:
    """A new allocation's header (see `pack_new_allocation`) but for its created_ns (0),
    made by `maker` (its origin's five other fields) in `context`. All but created_ns is
    the same for every create of a layout in a context by one process: packed once."""
    global _last_template
    last_layout, last_context, last_maker, template = _last_template
    # The same layout object as the last create's (members caches them): no key to hash.
    if last_layout is not layout or last_context != context or last_maker != maker:
        key = (layout, context)
        blank = _templates.get(key)
        if blank is None:
            blank = _pack_new_allocation(layout, (0,) * len(Origin._fields), context)
            if len(_templates) >= _PARSED_MAX:
                _templates.clear()
            _templates[key] = blank
        made = bytearray(blank)
        _ORIGIN.pack_into(made, ORIGIN_AT, 0, *maker)
        template = bytes(made)
        _last_template = (layout, context, maker, template)
    return template


_templates: dict[tuple[Layout, str], bytes] = {}  # (layout, context) -> header, no origin
# The last header made, but for its created_ns: (layout, context, the origin's other
# fields, header).
_last_template: tuple[Layout | None, str, tuple[int, ...], bytes] = (None, "", (), b"")


def _pack_new_allocation(layout: Layout, origin: tuple[int, ...], context: str) -> bytes:
    shape = layout.shape
    context_name = context.encode("ascii")
    return _WHOLE.pack(
        MAGIC,
        FORMAT_VERSION,
        KIND_ALLOCATION,
        PRIVATE,
        EMPTY,
        0,
        0,
        0,
        layout.etype.code,
        len(shape),
        *shape,
        *_NO_DIMS[len(shape) :],
        layout.nbytes,
        layout.capacity,
        DATA_OFFSET,
        *origin,
        0,
        0,
        0,
        len(context_name),
        context_name,
        0,
        b"",
    )


_NO_DIMS = (0,) * MAX_DIMS


def pack_name(name: str) -> bytes:
    """A name block (length byte + up to 255 ASCII bytes). Names packed before are
    looked up: every publish packs one (a struct pack costs ~1 us there, cold)."""
    packed = packed_names.get(name)
    if packed is None:
        raw = name.encode("ascii")
        packed = _NAME.pack(len(raw), raw)
        if len(packed_names) >= _PARSED_MAX:
            packed_names.clear()
        packed_names[name] = packed
    return packed


packed_names: dict[str, bytes] = {}  # name -> its name block (read by publish)


def pack_lifecycle(lifecycle: int) -> bytes:
    """The lifecycle block."""
    return _LIFECYCLE.pack(lifecycle)


def read_data_state(buffer) -> DataState:
    """The data-state block from a segment's first bytes (checked under the map lock)."""
    state, pid, start, generation = _DATA.unpack_from(buffer, DATA_AT)
    if state >= len(DATA_STATES):
        raise Corrupt(f"data state {state} is not one of {DATA_STATES}")
    return DataState(state, pid, start, generation)


def write_map_states(buffer, pid: int, start: int) -> tuple[bytes, bytes]:
    """The data-state blocks a write map by process (pid, start) writes, from a segment's
    first bytes as read under the map lock: *writing* now (generation unchanged), and
    *complete* at its unmap (generation + 1, modulo 2**64 as C's uint64_t counts)."""
    state, _, _, generation = _DATA.unpack_from(buffer, DATA_AT)
    if state >= len(DATA_STATES):
        raise Corrupt(f"data state {state} is not one of {DATA_STATES}")
    writing = _DATA.pack(WRITING, pid, start, generation)
    return writing, _DATA.pack(COMPLETE, pid, start, (generation + 1) & _U64_MAX)


_U64_MAX = (1 << 64) - 1


def own_write_states(
    pending: bytearray, identity: tuple[int, int]
) -> tuple[bytes, tuple[bytes, bytes]]:
    """(the data-state block found, write_map_states) of a write map by this process
    (`identity`) of a header only it has (a private allocation's, kept in memory). Kept
    per block found: the same few in every such map of a process (a fresh one's, the
    usual, is compared, not copied and hashed), for one identity (this process's: a
    forked child makes its own; another identity given starts them afresh)."""
    global _own_identity
    if identity is not _own_identity and identity != _own_identity:  # (is: the usual)
        _own_states.clear()
        _own_identity = identity
    fresh = pending.startswith(NEVER_WRITTEN, DATA_AT)
    found = NEVER_WRITTEN if fresh else bytes(pending[DATA_AT:DATA_END])
    states = _own_states.get(found)
    if states is None:
        if len(_own_states) >= _PARSED_MAX:
            _own_states.clear()
        states = _own_states[found] = write_map_states(pending, *identity)
    return found, states


NEVER_WRITTEN = _DATA.pack(EMPTY, 0, 0, 0)  # the data-state block of a fresh segment
_own_states: dict[bytes, tuple[bytes, bytes]] = {}
_own_identity: tuple[int, int] = (0, 0)  # whose write map states _own_states holds
os.register_at_fork(after_in_child=_own_states.clear)


def _corrupt(where: str, why: str) -> Corrupt:
    return Corrupt(f"{where} is corrupt ({why}); remove it with `clara leak-check --fix`")


_parsed: dict[tuple[bytes, int], Header] = {}  # (header bytes, file size) -> its Header
_PARSED_MAX = 1024
# The last header parsed, as (bytes, file size, Header): a get of the segment got last
# (the usual loop) compares 768 bytes (~20 ns) instead of hashing them (~200 ns).
_last: tuple[bytes, int, Header | None] = (b"", -1, None)


def parse(raw: bytes, file_size: int, where: str) -> Header:
    """Validate and parse a header read from a file of `file_size` bytes.

    `where` names the segment in error messages. Raises Corrupt on anything inconsistent.
    Every call validates what it is given, but the same bytes (and file size) give the
    same verdict: a header seen before is looked up, not validated field by field again.
    """
    global _last
    last_raw, last_size, found = _last  # (one read: another thread may replace it)
    if file_size == last_size and raw == last_raw and found is not None:
        return found
    key = (raw if type(raw) is bytes else bytes(raw), file_size)
    found = _parsed.get(key)
    if found is None:
        found = _parse(raw, file_size, where)
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[key] = found
    _last = (key[0], file_size, found)
    return found


def _parse(raw: bytes, file_size: int, where: str) -> Header:
    if len(raw) < HEADER_SIZE or file_size < HEADER_SIZE:
        raise _corrupt(where, f"only {file_size} bytes, too short for a header")
    fields = _WHOLE.unpack_from(raw)
    magic, version, kind, lifecycle, state = fields[:5]
    if magic != MAGIC:
        raise _corrupt(where, "no clara header")
    if version != FORMAT_VERSION:
        raise _corrupt(where, f"format version {version}, this clara reads {FORMAT_VERSION}")
    if kind not in (KIND_CONTEXT, KIND_ALLOCATION):
        raise _corrupt(where, f"unknown kind {kind}")
    if lifecycle >= len(LIFECYCLES):
        raise _corrupt(where, f"unknown lifecycle {lifecycle}")
    if state >= len(DATA_STATES):
        raise _corrupt(where, f"data state {state} is not one of {DATA_STATES}")
    data = DataState(*fields[4:8])
    layout = _layout_of(fields[8:21], file_size, where) if kind == KIND_ALLOCATION else None
    origin = Origin(*fields[21:27])
    settings = Settings(*fields[27:30])
    if settings.mode > 0o777:
        raise _corrupt(where, f"mode {settings.mode:o} is not a permission mode")
    context = _name_of(fields[30], fields[31], where, "context name")
    name = _name_of(fields[32], fields[33], where, "name")
    if not context or (kind == KIND_CONTEXT and not name):
        raise _corrupt(where, "a name is missing")
    return Header(kind, lifecycle, data, layout, origin, settings, context, name)


_layouts: dict[tuple[bytes, int], Layout] = {}  # (layout block, file size) -> its Layout
_last_layout: tuple[bytes, int, Layout | None] = (b"", -1, None)


def parse_layout(raw: bytes, file_size: int, where: str) -> Layout:
    """Validate and parse just the layout block (e.g. of a fresh map, under its lock);
    like parse(), the same bytes and size are validated once, then looked up."""
    global _last_layout
    block = bytes(raw[LAYOUT_AT:LAYOUT_END])
    last_block, last_size, found = _last_layout  # (see parse's _last)
    if file_size == last_size and block == last_block and found is not None:
        return found
    key = (block, file_size)
    found = _layouts.get(key)
    if found is None:
        found = _layout_of(_LAYOUT.unpack_from(raw, LAYOUT_AT), file_size, where)
        if len(_layouts) >= _PARSED_MAX:
            _layouts.clear()
        _layouts[key] = found
    _last_layout = (block, file_size, found)
    return found


def _layout_of(fields: tuple, file_size: int, where: str) -> Layout:
    code, ndim = fields[0], fields[1]
    dims, nbytes, capacity, offset = fields[2 : 2 + MAX_DIMS], *fields[2 + MAX_DIMS :]
    etype = BY_CODE.get(code)
    if etype is None:
        raise _corrupt(where, f"unknown element type code {code}")
    if not 1 <= ndim <= MAX_DIMS:
        raise _corrupt(where, f"{ndim} dimensions")
    shape = dims[:ndim]
    count = 1
    for d in shape:  # a plain loop: this runs on every get() and map()
        if d < 1:
            raise _corrupt(where, f"shape {list(dims)}")
        count *= d
    for d in dims[ndim:]:
        if d:
            raise _corrupt(where, f"shape {list(dims)}")
    if count * etype.itemsize != nbytes:
        raise _corrupt(where, f"shape {list(shape)} of {etype.name} does not make {nbytes} bytes")
    if offset != DATA_OFFSET or not nbytes <= capacity <= file_size - DATA_OFFSET:
        raise _corrupt(where, f"{nbytes} bytes of data do not fit in a file of {file_size} bytes")
    return Layout(etype, shape, nbytes, capacity)


def _name_of(length: int, body: bytes, where: str, what: str) -> str:
    if length == 0:
        return ""
    try:
        return validate_name(body[:length].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(where, f"unreadable {what}") from None
