"""How a large map brings its pages in, seen by a real `strace` of a real process.

A fresh allocation's pages were reserved by fallocate and not yet cleared: its first
write map populates them for writing (MADV_POPULATE_WRITE), which on tmpfs costs ~30%
less than MAP_POPULATE's read faults (P12, cold create + fill). Pages already written
are mapped with MAP_POPULATE (the kernel maps them 16 at a time: ~2x faster there).
The same holds for a premap (what an operator's driver does while it waits): a write
premap of pages nobody has written yet populates them for writing.
"""

from __future__ import annotations

import sys

from tests.helpers import strace_lines

NBYTES = 4 << 20  # above the size from which maps are populated
MARKER = "/clara-populate-step "
DRIVER = f"""
import os
from clara_core import Context

def mark(label):
    os.access({MARKER!r} + label, os.F_OK)

ctx = Context.create("pop")
try:
    alloc = ctx.create({NBYTES})
    mark("fresh")
    with alloc.map("w") as array:
        array[...] = 7
    mark("published")
    alloc.publish("vol")
    alloc.release()
    with ctx.get("vol") as ref, ref.map("w") as array:
        array[-1] = 8
    mark("read")
    with ctx.get("vol") as ref, ref.map("r") as array:
        assert array[0] == 7 and array[-1] == 8 and int(array.sum()) == 7 * {NBYTES} + 1
    mark("end")
finally:
    ctx.destroy()
"""


def _steps(tmp_path: object) -> dict[str, list[str]]:
    """The mmap and madvise calls of each step of DRIVER, as strace shows them."""
    lines = strace_lines(
        tmp_path, ["-e", "trace=mmap,madvise,access"], [sys.executable, "-c", DRIVER]
    )
    steps: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if MARKER in line:
            current = steps.setdefault(line.split(MARKER)[1].split('"')[0], [])
        elif current is not None and ("mmap(" in line or "madvise(" in line):
            current.append(line.strip())
    return steps


def _of_segment(calls: list[str]) -> list[str]:
    """The calls that map the segment (its length: data and header page) or advise on
    it; not the zero pages that replace a live view's range at unmap (MAP_PRIVATE)."""
    length = f", {NBYTES + 4096}, "
    return [call for call in calls if length in call and "MAP_PRIVATE" not in call]


def _prot_and_flags(mmap_call: str) -> tuple[str, set[str]]:
    """The protection and the set of flags of one strace line of an mmap call."""
    arguments = mmap_call.split("mmap(", 1)[1].split(", ")
    return arguments[2], set(arguments[3].split("|"))


def test_a_fresh_allocation_is_populated_for_writing_a_written_one_by_mapping(
    tmp_path: object,
) -> None:
    steps = _steps(tmp_path)
    fresh = _of_segment(steps["fresh"])
    assert len(fresh) == 2, steps["fresh"]
    # (MAP_FIXED too in the pure-Python path: over its reservation, see memory_calls.map_at)
    assert "MAP_SHARED" in fresh[0] and "MAP_POPULATE" not in fresh[0], fresh
    assert "MADV_POPULATE_WRITE" in fresh[1], fresh
    for step in ("published", "read"):  # its pages are written now
        calls = _of_segment(steps[step])
        assert any("MAP_SHARED|" in call and "MAP_POPULATE" in call for call in calls), steps[step]
        assert not any("MADV_POPULATE" in call for call in calls), steps[step]


PREMAP_DRIVER = f"""
import os
from clara_core import Context

def mark(label):
    os.access({MARKER!r} + label, os.F_OK)

ctx = Context.create("prem")
try:
    for name in ("vol", "other"):  # as `clara run` makes static outputs: published, never
        made = ctx.create({NBYTES})  # mapped (pages reserved by fallocate, not cleared)
        made.publish(name)
        made.release()
    ref, other = ctx.get("vol"), ctx.get("other", read_only=True)
    mark("fresh-write")
    ref.premap("w")  # its producer's driver, while it waits
    mark("fresh-read")
    other.premap("r")  # a reader's
    mark("write")
    with ref.map("w") as array:
        array[...] = 7
    del array
    ref.release()
    ref = ctx.get("vol")
    mark("written")
    ref.premap("w")
    mark("end")
    ref.release()
    other.release()
finally:
    ctx.destroy()
"""


def test_a_premapped_write_map_of_pages_never_written_populates_them_for_writing(
    tmp_path: object,
) -> None:
    """An operator's driver premaps its outputs while it waits (Driver, premap): pages
    that nobody has written yet (the last one still a hole to SEEK_DATA) are populated
    for writing; written ones, and every read map, with MAP_POPULATE."""
    lines = strace_lines(
        tmp_path,
        ["-e", "trace=mmap,madvise,access"],
        [sys.executable, "-c", PREMAP_DRIVER],
    )
    steps: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if MARKER in line:
            current = steps.setdefault(line.split(MARKER)[1].split('"')[0], [])
        elif current is not None and ("mmap(" in line or "madvise(" in line):
            current.append(line.strip())
    # (MAP_FIXED too in the pure-Python path: over its reservation, see memory_calls.map_at)
    read = _of_segment(steps["fresh-read"])
    assert len(read) == 1 and _prot_and_flags(read[0])[0] == "PROT_READ", read
    assert {"MAP_SHARED", "MAP_POPULATE"} <= _prot_and_flags(read[0])[1], read
    fresh = _of_segment(steps["fresh-write"])
    assert "MAP_SHARED" in _prot_and_flags(fresh[0])[1], fresh
    assert "MAP_POPULATE" not in _prot_and_flags(fresh[0])[1], fresh
    assert "MADV_POPULATE_WRITE" in fresh[1], fresh
    written = _of_segment(steps["written"])
    assert len(written) == 1, written
    assert {"MAP_SHARED", "MAP_POPULATE"} <= _prot_and_flags(written[0])[1], written
