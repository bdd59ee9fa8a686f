"""Kernel-to-kernel copies between a mapped allocation and a file or pipe."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from clara_core import Context, InvalidArgument

NBYTES = 3 << 20  # more than one pipe buffer, not a multiple of a page


@pytest.fixture
def ctx():
    context = Context.create("copies")
    yield context
    Context.destroy("copies")


def pattern(nbytes: int) -> bytes:
    return (np.arange(nbytes, dtype=np.uint64) * 2654435761 % 251).astype(np.uint8).tobytes()


def test_copy_from_a_file_starts_at_its_position(ctx, tmp_path):
    data = pattern(NBYTES)
    source = tmp_path / "in.raw"
    source.write_bytes(b"skip" + data)
    alloc = ctx.create(NBYTES)
    with open(source, "rb", buffering=0) as stream:
        stream.seek(4)
        mapping = alloc.map("w", populate=False)
        copied = []
        assert mapping.copy_from(stream.fileno(), copied.append) == NBYTES
        mapping.unmap()
        assert sum(copied) == NBYTES
        assert stream.read() == b""  # the file's position moved past what was copied
    with alloc.map("r") as array:
        assert array.tobytes() == data
    alloc.release()


def test_copy_from_a_longer_file_leaves_its_position_after_what_it_copied(ctx, tmp_path):
    """A file is copied in rounds of a pipe's size (1 MiB): the last round takes only what
    the allocation still holds, so the bytes beyond it are still there to be read (the
    CLI reads one to refuse an input longer than the allocation)."""
    nbytes = NBYTES - 1000  # (not a whole number of rounds)
    data = pattern(nbytes)
    source = tmp_path / "in.raw"
    source.write_bytes(data + b"tail")
    alloc = ctx.create(nbytes)
    with open(source, "rb", buffering=0) as stream:
        mapping = alloc.map("w", populate=False)
        assert mapping.copy_from(stream.fileno()) == nbytes
        mapping.unmap()
        assert stream.read() == b"tail"
    with alloc.map("r") as array:
        assert array.tobytes() == data
    alloc.release()


def test_copy_from_a_pipe(ctx):
    data = pattern(NBYTES)
    alloc = ctx.create(NBYTES)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as out:
            out.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        mapping = alloc.map("w", populate=False)
        assert mapping.copy_from(read_end) == NBYTES
        mapping.unmap()
    finally:
        feeder.join()
        os.close(read_end)
    with alloc.map("r") as array:
        assert array.tobytes() == data
    alloc.release()


def test_copy_from_a_short_file_says_how_much_it_copied(ctx, tmp_path):
    source = tmp_path / "short.raw"
    source.write_bytes(b"\x07" * 1000)
    alloc = ctx.create(NBYTES)
    with open(source, "rb", buffering=0) as stream:
        mapping = alloc.map("w", populate=False)
        assert mapping.copy_from(stream.fileno()) == 1000
        mapping.unmap(complete=False)
    alloc.release()


def test_copy_from_needs_a_write_map(ctx, tmp_path):
    source = tmp_path / "in.raw"
    source.write_bytes(bytes(NBYTES))
    alloc = ctx.create(NBYTES)
    read_map = alloc.map("r", allow_incomplete=True)
    with open(source, "rb", buffering=0) as stream, pytest.raises(InvalidArgument):
        read_map.copy_from(stream.fileno())
    read_map.unmap()
    alloc.release()


def test_copy_to_a_file_copies_the_data(ctx, tmp_path):
    data = pattern(NBYTES)
    alloc = ctx.create(NBYTES)
    with alloc.map("w") as array:
        array[:] = np.frombuffer(data, np.uint8)
    target = tmp_path / "out.raw"
    mapping = alloc.map("r", populate=False)
    with open(target, "wb", buffering=0) as out:
        mapping.copy_to(out.fileno())
    mapping.unmap()
    assert target.read_bytes() == data
    alloc.release()


def mapped_here(file_id: tuple[int, int]) -> int:
    """How many ranges of this process's address space map the file `file_id`."""
    inode = str(file_id[1])
    with open("/proc/self/maps") as maps:
        return sum(line.split()[4] == inode for line in maps)


def test_a_map_without_populate_maps_no_page_until_a_view_is_taken(ctx, tmp_path):
    """The copies (`clara map --in/--out`) move data through the fd: their map maps
    nothing, so it needs neither the mmap nor ctypes. A view maps the pages then."""
    data = pattern(NBYTES)
    source = tmp_path / "in.raw"
    source.write_bytes(data)
    alloc = ctx.create(NBYTES)
    with open(source, "rb", buffering=0) as stream:
        mapping = alloc.map("w", populate=False)
        assert mapped_here(alloc.file_id) == 0
        assert mapping.copy_from(stream.fileno()) == NBYTES
        assert mapped_here(alloc.file_id) == 0
        mapping.unmap()
    assert mapped_here(alloc.file_id) == 0  # and nothing is left mapped (warm) after it
    mapping = alloc.map("r", populate=False)
    assert mapped_here(alloc.file_id) == 0
    assert bytes(mapping.buffer) == data  # the first view maps it
    assert mapped_here(alloc.file_id) == 1
    mapping.unmap()
    with pytest.raises(InvalidArgument, match="no longer mapped"):
        mapping.buffer  # noqa: B018
    alloc.release()


def test_a_view_of_a_map_without_populate_writes_the_segment(ctx):
    alloc = ctx.create(dtype="u8", shape=(NBYTES,))
    mapping = alloc.map("w", populate=False)
    mapping.array[:] = np.frombuffer(pattern(NBYTES), np.uint8)
    mapping.unmap()
    with alloc.map("r", populate=False) as array:
        assert array.tobytes() == pattern(NBYTES)
    alloc.release()


NO_DESCRIPTOR_LEFT = """
import os, resource
from clara_core import Context

data = bytes(range(256)) * ({nbytes} // 256)
with open({source!r}, "wb") as out:
    out.write(data)
ctx = Context.create("nofds")
try:
    alloc = ctx.create({nbytes})
    with open({source!r}, "rb", buffering=0) as stream:
        mapping = alloc.map("w", populate=False)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, limits[1]))
        spare = []
        try:
            try:
                while True:
                    spare.append(os.dup(0))
            except OSError:
                pass
            try:
                os.pipe()
            except OSError:
                print("no descriptor left")
            copied = mapping.copy_from(stream.fileno())
        finally:
            for fd in spare:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        mapping.unmap()
    with alloc.map("r") as array:
        assert copied == {nbytes} and array.tobytes() == data, copied
    alloc.release()
finally:
    Context.destroy("nofds")
print("copied")
"""


def test_copy_from_a_file_needs_no_descriptor_of_its_own(tmp_path):
    """A process with no descriptor left still copies a file in (its pipe would need two):
    as sendfile does, through no descriptor of its own."""
    import subprocess
    import sys

    script = NO_DESCRIPTOR_LEFT.format(nbytes=NBYTES, source=str(tmp_path / "in.raw"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.stdout.decode().split() == ["no", "descriptor", "left", "copied"], done.stderr
