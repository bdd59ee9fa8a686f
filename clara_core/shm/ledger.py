"""A context's ledger: the bytes published in it and its recycling pool, kept in the
context's own segment so that no create, publish or free has to list the directory.

The ledger lives in the context segment's header page, after the header, at LEDGER_AT:

    offset  size  field
      1024     8  magic "CLARALDG" (absent: the ledger must be counted again)
      1032     8  published bytes: sizes of the segments published in the context
                  (kept for contexts with a capacity; changed under the quota lock)
      1040     8  reserved (0)
      1048   512  SLOTS pool slots of 16 bytes: capacity (0: free slot), token; the
                  slot's segment is named <context file>.p.<capacity hex>-<token hex>
                  (slots change under the pool lock)

Crash safety: every change is ordered so that a process killed half-way leaves the
ledger counting *more* than there is, never less (a publish counts before it links, a
free uncounts after it unlinks; a pool slot is written before its name exists and
cleared after it is gone). An overcount wastes capacity but never lets a context exceed
it; slots whose segment is gone are dropped by the next claim that meets them and when
the pool looks full, and `leak-check --fix` counts every ledger again.
"""

from __future__ import annotations

import os
import struct

from ..records import Record

LEDGER_AT = 1024
MAGIC = b"CLARALDG"
SLOTS = 32
_TOTALS = struct.Struct("<8sQQ")
_SLOT = struct.Struct("<QQ")
SLOTS_AT = LEDGER_AT + _TOTALS.size
SIZE = _TOTALS.size + SLOTS * _SLOT.size


class Slot(Record):
    """One pooled segment: its capacity in bytes and the token in its file name."""

    capacity: int
    token: int

    @property
    def suffix(self) -> str:
        """The member part of its file name (`<capacity hex>-<token hex>`)."""
        return f"{self.capacity:x}-{self.token:012x}"


class Ledger(Record):
    """The ledger as read from a context's segment."""

    valid: bool  # False: never written (or wiped): count it again before trusting it
    published: int
    slots: tuple[Slot, ...]  # SLOTS entries; capacity 0 marks a free one

    @property
    def pooled(self) -> int:
        """Bytes of capacity in the pool."""
        return sum(slot.capacity for slot in self.slots)


def initial() -> bytes:
    """The ledger of a new context: nothing published, an empty pool."""
    return _TOTALS.pack(MAGIC, 0, 0) + bytes(SLOTS * _SLOT.size)


def read(fd: int) -> Ledger:
    """Read the ledger of the context segment open at `fd`."""
    raw = os.pread(fd, SIZE, LEDGER_AT)
    if len(raw) < SIZE:
        return Ledger(False, 0, (Slot(0, 0),) * SLOTS)
    magic, published, _reserved = _TOTALS.unpack_from(raw)
    slots = tuple(
        Slot(*_SLOT.unpack_from(raw, _TOTALS.size + i * _SLOT.size)) for i in range(SLOTS)
    )
    return Ledger(magic == MAGIC, published, slots)


def write_published(fd: int, published: int) -> None:
    """Store the published bytes (and mark the ledger valid)."""
    os.pwrite(fd, MAGIC + struct.pack("<Q", max(0, published)), LEDGER_AT)


def write_slot(fd: int, index: int, slot: Slot) -> None:
    """Store one pool slot (Slot(0, 0) frees it)."""
    os.pwrite(fd, _SLOT.pack(*slot), SLOTS_AT + index * _SLOT.size)


def parse_suffix(suffix: str) -> Slot | None:
    """The slot a pool member's name suffix stands for, or None if it is not one."""
    capacity, _, token = suffix.partition("-")
    try:
        return Slot(int(capacity, 16), int(token, 16))
    except ValueError:
        return None
