"""Attacks on the hot paths (issue 14): each test is a break found by attacking them, kept
so that it stays fixed. Real segments, real processes (forked or spawned), no mocks."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

from clara_core import Busy, Context, Corrupt, Incomplete, InvalidArgument
from clara_core.names import shm_dir
from clara_core.shm import segment
from clara_core.shm.header import DATA_AT
from tests.cli.clirun import ok
from tests.helpers import Child

from .figures import Area

GENERATION_AT = DATA_AT + 16  # the data-state block: state, pad, pid, start, generation


@pytest.fixture
def ctx():
    context = Context.create("job")
    yield context
    Context.destroy("job")


def _ours(namespace: str) -> list[str]:
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace + "."))


def test_a_mapping_unmapped_stays_unmapped_when_its_memory_is_reused(ctx, area: Area) -> None:
    """A write map kept warm is reused by the next map: the first Mapping must not take
    that map for its own (its unmap used to end the new map, mark half-written data
    complete and let other processes in while it was still being written)."""
    alloc = ctx.create(dtype="uint8", shape=(8192,))
    alloc.publish("a")
    first = alloc.map("w")
    first.unmap()
    second = alloc.map("w")
    area.trials += 1
    assert not first.mapped and second.mapped
    first.unmap()  # a second unmap of the first map: a no-op
    with pytest.raises(InvalidArgument, match="no longer mapped"):
        first.array  # noqa: B018 (the property raises)
    assert second.mapped and alloc.state == "writing"
    reader = Child(
        """
        from clara_core import Busy, Context
        try:
            Context.open("job").get("a").map("r")
            print("mapped")
        except Busy:
            print("busy")
        """
    )
    assert reader.expect("") == "busy"
    reader.finish()
    second.array[:] = 7
    second.unmap()
    assert alloc.state == "complete"
    with alloc.map("r") as data:
        assert int(data.min()) == 7
    alloc.free()


@pytest.mark.parametrize("populate", [True, False])
def test_a_failed_mmap_leaves_no_map_lock_held(ctx, area: Area, populate: bool) -> None:
    """mmap can fail (here: no address space left under RLIMIT_AS); the map lock that
    map() took before it must be given back, or every other process stays Busy for as
    long as the failed reference lives. A map made with populate=False maps its pages
    when its first view is taken (`with ... as data` does): when that fails, the map is
    undone all the same, and the data state it had marked *writing* is put back."""
    alloc = ctx.create(dtype="uint8", shape=(64 << 20,))
    alloc.publish("big")
    with alloc.map("w", populate=False) as data:
        data[0] = 1
    child = Child(
        """
        import resource, sys
        from clara_core import Context, OutOfSpace
        big = Context.open("job").get("big")
        with open("/proc/self/status") as f:
            size = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) << 10
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + (16 << 20), hard))
        try:
            with big.map("w", populate=POPULATE) as data:
                outcome = "mapped"
        except OutOfSpace:
            outcome = "failed"
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        print(outcome, flush=True)
        sys.stdin.readline()  # keeps its reference open meanwhile
        """.replace("POPULATE", str(populate))
    )
    try:
        assert child.expect("") == "failed"
        area.trials += 1
        try:
            with alloc.map("r", populate=False) as data:
                assert data[0] == 1
        except Busy as exc:
            pytest.fail(f"a failed map kept its lock: {exc}")
        assert alloc.state == "complete"
    finally:
        child.send("done")
        child.finish()
    alloc.free()


def test_a_failed_first_view_of_a_fresh_allocation_leaves_it_never_written(ctx) -> None:
    """The same for an allocation not yet published (its data state is kept in memory
    until it is named): the failed write map leaves it *empty*, and usable."""
    child = Child(
        """
        import resource
        from clara_core import Context, OutOfSpace
        alloc = Context.open("job").create(dtype="uint8", shape=(64 << 20,))
        with open("/proc/self/status") as f:
            size = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) << 10
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + (16 << 20), hard))
        try:
            with alloc.map("w", populate=False) as data:
                outcome = "mapped"
        except OutOfSpace:
            outcome = "failed"
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        after = alloc.state
        with alloc.map("w", populate=False) as data:
            data[0] = 1
        print(outcome, after, alloc.state, flush=True)
        alloc.free()
        """
    )
    assert child.expect("") == "failed empty complete"
    child.finish()


def test_a_failed_first_view_after_a_copy_through_the_file_leaves_the_data_incomplete(
    ctx,
) -> None:
    """A map made with populate=False may be written through its file before any view
    (copy_from, write_from): if its first view then cannot be mapped, the data it found
    complete is partly other bytes now, so it is *incomplete*, never 'complete' again."""
    alloc = ctx.create(dtype="uint8", shape=(64 << 20,))
    with alloc.map("w") as data:
        data[:] = 1
    alloc.publish("big")
    child = Child(
        """
        import os, resource
        from clara_core import Context, OutOfSpace
        big = Context.open("job").get("big")
        mapping = big.map("w", populate=False)
        read, write = os.pipe()
        os.write(write, bytes([7]) * 4096)
        os.close(write)
        copied = mapping.copy_from(read)
        with open("/proc/self/status") as f:
            size = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) << 10
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + (16 << 20), hard))
        try:
            mapping.array
            outcome = "mapped"
        except OutOfSpace:
            outcome = "failed"
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        print(copied, outcome, big.state, flush=True)
        """
    )
    assert child.expect("") == "4096 failed incomplete"
    child.finish()
    with pytest.raises(Incomplete):
        alloc.map("r")
    alloc.free()


def test_a_listing_is_whole_while_a_forked_child_lists_too(namespace: str, area: Area) -> None:
    """The kept directory descriptor is shared with children forked since (and with
    threads): scanning through it made destroy (and leak-check, dump, the pool's
    eviction) miss every member while another process was in the middle of a listing."""
    segment.directory_fd()  # kept before the fork, as in any process that used clara
    ctx = Context.create("job")
    for name in ("a", "b", "c"):
        ctx.create(size=4096).publish(name)
    assert len(_ours(namespace)) == 4
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: part-way through a listing (its first entry read)
        try:
            listing = os.scandir(segment.directory_fd())
            next(listing)
            os.write(ready_write, b"x")
            os.read(go_read, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"x"
        area.trials += 1
        removed = Context.destroy("job")
        left = _ours(namespace)
    finally:
        os.write(go_write, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_read, ready_write, go_read, go_write):
            os.close(fd)
    assert left == [], f"destroy missed {left} (removed {removed})"


@pytest.mark.parametrize("how", [("--in", "-"), ("--", "true")])
def test_the_largest_generation_wraps_instead_of_a_traceback(
    ctx, namespace: str, how: tuple[str, str], area: Area
) -> None:
    """The generation is a u64 in a header others may write (or a long life may fill):
    the write map that increments its largest value got struct.error, a traceback of
    `clara map --write` (fast path and click path alike). It wraps to 0, as in C."""
    alloc = ctx.create(dtype="uint8", shape=(16,))
    alloc.publish("g")
    fd = os.open(segment.path_of(f"{namespace}.job.a.g"), os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<Q", (1 << 64) - 1), GENERATION_AT)
        area.trials += 1
        ok("map", "g", "-c", "job", "--write", *how, input=bytes(range(16)))
        assert alloc.state == "complete"
        (generation,) = struct.unpack("<Q", os.pread(fd, 8, GENERATION_AT))
    finally:
        os.close(fd)
    assert generation == 0
    alloc.free()


def test_a_segment_cut_to_nothing_after_get_is_corrupt_at_free(
    ctx, namespace: str, area: Area
) -> None:
    """Another process of the user empties the segment between get and free: free read
    the lifecycle byte as `pread(...)[0]`, an IndexError (a traceback), not Corrupt."""
    ctx.create(size=4096).publish("t")
    held = ctx.get("t")
    subprocess.run(["truncate", "-s", "0", segment.path_of(f"{namespace}.job.a.t")], check=True)
    area.trials += 1
    with pytest.raises(Corrupt, match="cut short"):
        held.free()
    held.release()
