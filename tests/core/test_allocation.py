"""Allocations: life-cycle, typed maps, reader/writer exclusion across real processes."""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import math
import os
import resource
import signal
import subprocess
import sys
import weakref

import numpy as np
import pytest

from clara_core import (
    AlreadyExists,
    Busy,
    Context,
    Incomplete,
    InvalidArgument,
    NotFound,
    ReadOnly,
    Timeout,
    names,
)
from clara_core.dtypes import element_type
from clara_core.names import shm_dir
from clara_core.shm import memory
from clara_core.shm.header import DATA_OFFSET, FREED, LAYOUT_AT, LIFECYCLE_AT, Layout
from tests.helpers import Child, run_python, sleeping_in


@pytest.fixture
def ctx():
    context = Context.create("job")
    yield context
    Context.destroy("job")


def shm_files(namespace):
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace + "."))


def test_create_by_size_or_by_type_and_shape(ctx):
    raw = ctx.create(1000)
    assert (raw.element_type.name, raw.shape, raw.nbytes) == ("uint8", (1000,), 1000)
    typed = ctx.create(dtype="f32", shape=(2, 3, 4))
    assert (typed.dtype, typed.shape, typed.nbytes) == (np.dtype("float32"), (2, 3, 4), 96)
    sized = ctx.create("4K", dtype="u16")
    assert sized.shape == (2048,)
    for bad in [dict(size=3, dtype="u16"), dict(size=4, shape=(4,)), dict(), dict(shape=(0,))]:
        with pytest.raises(InvalidArgument):
            ctx.create(**bad)


def test_publish_in_one_process_read_in_another(ctx):
    vol = ctx.create(dtype="f64", shape=(50, 40))
    with vol.map("w") as array:
        array[...] = np.arange(2000).reshape(50, 40) * 0.5
    vol.publish("Volume")
    vol.release()
    result = run_python(
        """
        import numpy as np
        from clara_core import Context
        alloc = Context.open("job").get("VOLUME")
        with alloc.map("r") as array:
            print(array.dtype, array.shape, float(array.sum()), alloc.name)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "float64",
        "(50,",
        "40)",
        str(float(np.arange(2000).sum() * 0.5)),
        "Volume",
    ]


def test_second_publish_of_a_taken_name_is_refused_and_changes_nothing(ctx, namespace):
    first = ctx.create(8)
    first.publish("x")
    second = ctx.create(8)
    with pytest.raises(AlreadyExists, match="allocation 'X' in context 'job' already exists"):
        second.publish("X")
    assert not second.is_published
    second.publish("y")  # still private and usable
    assert ctx.names() == ["x", "y"]
    with pytest.raises(InvalidArgument, match="already published"):
        first.publish("z")
    with pytest.raises(InvalidArgument, match="invalid allocation name"):
        ctx.create(8).publish("no/slash")


def test_get_of_a_missing_name_is_not_found(ctx):
    with pytest.raises(NotFound, match="allocation 'ghost' in context 'job' does not exist"):
        ctx.get("ghost")


def test_read_map_refuses_writes(ctx):
    alloc = ctx.create(dtype="i32", shape=(4,))
    alloc.map("w").unmap()  # written (with zeros): reading it is allowed
    with alloc.map("r") as array:
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
        with pytest.raises(ValueError):
            array.flags.writeable = True
    mapping = alloc.map("r")
    assert mapping.buffer.readonly  # the pages are mapped PROT_READ
    with pytest.raises(TypeError):
        mapping.buffer[0:1] = b"\x01"
    mapping.unmap()
    alloc.release()


def _write_through(array: np.ndarray) -> int:
    """In a forked child, write 0xFF over `array`'s memory by address, behind numpy's back.

    Returns the signal that ended the child, 0 if the write went through. This tests the
    kernel's page protection, not the read-only flag Python puts on the view.
    """
    address, size = array.__array_interface__["data"][0], array.nbytes
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            faulthandler.disable()  # pytest's, inherited: let SIGSEGV kill quietly
            signal.signal(signal.SIGSEGV, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            ctypes.memmove(address, b"\xff" * size, size)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


@pytest.mark.parametrize("how", ["creator", "get", "read-only get", "after a write map"])
def test_the_kernel_refuses_writes_through_a_read_map(ctx, how):
    alloc = ctx.create(dtype="i32", shape=(1024,))
    with alloc.map("w") as array:
        array[:] = np.arange(1024)
    alloc.publish("data")
    ref = {
        "creator": alloc,
        "get": ctx.get("data"),  # opened read-write: only the map's protection stops it
        "read-only get": ctx.get("data", read_only=True),
        "after a write map": ctx.get("data"),
    }[how]
    if how == "after a write map":
        with ref.map("w"):  # the reference may keep this mapping for reuse
            pass
    with ref.map("r") as array:
        assert _write_through(array) == signal.SIGSEGV
        assert array.tolist() == list(range(1024))
    with ctx.get("data") as other, other.map("r") as array:
        assert array.tolist() == list(range(1024))
    if ref is not alloc:
        ref.release()
    alloc.release()


def test_writes_through_a_write_map_reach_the_segment(ctx):
    """The control of the test above: the same child write works through a write map."""
    alloc = ctx.create(dtype="u8", shape=(64,))
    alloc.publish("data")
    with alloc.map("w") as array:
        assert _write_through(array) == 0
    with ctx.get("data") as other, other.map("r") as array:
        assert array.tolist() == [0xFF] * 64
    alloc.release()


def test_two_writers_second_gets_busy_naming_the_holder(ctx):
    alloc = ctx.create(64)
    alloc.publish("data")
    child = Child(
        """
        import time
        from clara_core import Context
        m = Context.open("job").get("data").map("w")
        print("mapped", flush=True)
        time.sleep(60)
        """
    )
    try:
        child.expect("mapped")
        with pytest.raises(
            Busy, match=rf"mapped by pid {child.pid} \(python[0-9.]* -c .*\) for writ"
        ):
            alloc.map("w")
        with pytest.raises(Busy):
            ctx.get("data").map("r")  # no dirty read either
    finally:
        child.kill()
    alloc.release()


def test_readers_share_and_exclude_a_writer(ctx):
    alloc = ctx.create(64)
    alloc.map("w").unmap()
    alloc.publish("data")
    other = ctx.get("data")
    with alloc.map("r"), other.map("r"), pytest.raises(Busy):  # many readers, no writer
        ctx.get("data").map("w", timeout=0)
    with ctx.get("data").map("w"):
        pass  # free again
    other.release()
    alloc.release()


@pytest.mark.parametrize(
    ("timeout", "wait"),
    [("30", "hrtimer_nanosleep"), ("math.inf", "fcntl_setlk")],
    ids=["bounded", "endless"],
)
def test_a_waiting_map_gets_the_lock_when_the_writer_lets_go(ctx, timeout, wait):
    """The reader is seen waiting in the kernel before the writer finishes: never a dirty read."""
    alloc = ctx.create(dtype="u32", shape=(1000,))
    alloc.publish("data")
    child = Child(
        f"""
        import math
        from clara_core import Context
        ref = Context.open("job").get("data")
        print("mapping", flush=True)
        with ref.map("r", timeout={timeout}) as array:
            print("read", sorted(set(array.tolist())), flush=True)
        """
    )
    try:
        with alloc.map("w") as array:
            array[:500] = 7  # half written when the reader comes
            child.expect("mapping")
            sleeping_in(child.pid, (wait,))
            array[500:] = 7
        assert child.expect("read") == "read [7]"
        assert child.finish()[0] == 0
    finally:
        child.kill()
    alloc.release()


@pytest.mark.parametrize("change", ["layout", "failed write"])
def test_a_waiting_reader_checks_under_the_lock_what_it_prepared_before_it_slept(ctx, change):
    """A read map that waits makes its result from the header as it is before it sleeps;
    woken, it must still find, under the lock, the layout and data state as they are now:
    a layout rewritten meanwhile is the one it gets, a failed write is Incomplete."""
    alloc = ctx.create(dtype="u32", shape=(1000,))
    with alloc.map("w") as array:
        array[:] = 7
    alloc.publish("data")
    child = Child(
        """
        import math
        from clara_core import Context, Incomplete
        ref = Context.open("job").get("data")
        print("mapping", flush=True)
        try:
            with ref.map("r", timeout=math.inf) as array:
                print("read", array.dtype, array.shape, int(array.view("u4")[0]), flush=True)
        except Incomplete:
            print("read incomplete", flush=True)
        """
    )
    try:
        mapping = alloc.map("w")
        child.expect("mapping")
        sleeping_in(child.pid, ("fcntl_setlk",))  # its guess is made: the old layout
        if change == "layout":  # as a retype would, while the lock is held
            layout = Layout(element_type("f32"), (500,), 2000, alloc.capacity)
            fd = os.open(alloc.path, os.O_WRONLY)
            try:
                os.pwrite(fd, layout.pack(), LAYOUT_AT)
            finally:
                os.close(fd)
        mapping.unmap(complete=change != "failed write")
        expected = "read float32 (500,) 7" if change == "layout" else "read incomplete"
        assert child.expect("read") == expected
        assert child.finish()[0] == 0
    finally:
        child.kill()
    alloc.release()


def test_timeout_when_the_holder_never_lets_go(ctx):
    alloc = ctx.create(8)
    alloc.publish("data")
    holder = ctx.get("data")
    with holder.map("w"):
        with pytest.raises(Timeout, match=r"stayed mapped by pid .* for 0\.2 s"):
            alloc.map("r", timeout=0.2)
        for bad in (-1, math.nan):
            with pytest.raises(InvalidArgument, match="timeout"):
                alloc.map("r", timeout=bad)
    with alloc.map("r", timeout=math.inf):
        pass
    holder.release()
    alloc.release()


def test_map_modes(ctx):
    alloc = ctx.create(8)
    alloc.map("w").unmap()
    with pytest.raises(InvalidArgument, match="map mode"):
        alloc.map("rw")
    # a reference may hold several read maps, but no write map beside them
    with alloc.map("read"), alloc.map("r"), pytest.raises(Busy, match="by this reference"):
        alloc.map("write")
    alloc.release()


def test_a_failed_write_block_leaves_the_data_incomplete(ctx):
    alloc = ctx.create(dtype="f32", shape=(10,))
    alloc.publish("data")
    assert alloc.state == "empty"
    with pytest.raises(RuntimeError), alloc.map("w") as array:
        array[:5] = 1
        raise RuntimeError("operator bug")
    assert alloc.state == "incomplete"
    reader = ctx.get("data")
    with pytest.raises(Incomplete, match="allocation 'data' in context 'job' is incomplete"):
        reader.map("r")
    with reader.map("r", allow_incomplete=True) as array:
        assert array[:5].tolist() == [1] * 5
    with alloc.map("w") as array:
        array[:] = 2
    assert alloc.state == "complete"
    with reader.map("r") as array:
        assert array.tolist() == [2] * 10
    reader.release()
    alloc.release()


def test_views_outliving_their_map_are_cut_off_from_shared_memory(ctx):
    alloc = ctx.create(dtype="i64", shape=(4,))
    alloc.publish("data")
    with alloc.map("w") as written:
        written[:] = 5
    written[:] = 9  # goes nowhere
    with alloc.map("r") as stale:
        assert stale.tolist() == [5] * 4
    assert stale.tolist() == [0] * 4
    with ctx.get("data").map("r") as fresh:
        assert fresh.tolist() == [5] * 4
    alloc.release()


def test_a_view_is_cut_off_when_its_reference_already_keeps_a_mapping(ctx):
    """An unmap whose mapping is not kept for reuse (the reference keeps one already)
    still cuts off the views of it that are alive."""
    alloc = ctx.create(dtype="i32", shape=(8,))
    with alloc.map("w") as array:
        array[:] = 3
    del array
    viewed, unviewed = alloc.map("r"), alloc.map("r")
    view = viewed.array
    unviewed.unmap()  # no view: its mapping is kept for the next map
    viewed.unmap()
    assert view.tolist() == [0] * 8
    with alloc.map("r") as again:
        assert again.tolist() == [3] * 8
    alloc.release()


def test_the_array_of_an_unmapped_mapping_is_refused_even_while_its_view_lives(ctx):
    """`.array` after unmap raises, whether or not an earlier `.array` still lives (that
    one is cut off: zeros, not the data, and never the next map's)."""
    alloc = ctx.create(dtype="u8", shape=(8,))
    with alloc.map("w") as array:
        array[:] = 5
    mapping = alloc.map("r")
    view = mapping.array
    mapping.unmap()
    with pytest.raises(InvalidArgument, match="no longer mapped"):
        mapping.array  # noqa: B018 (the property raises)
    again = alloc.map("r")  # (may reuse the kept mapping: still not the first's)
    with pytest.raises(InvalidArgument, match="no longer mapped"):
        mapping.array  # noqa: B018
    assert view.tolist() == [0] * 8 and again.array.tolist() == [5] * 8
    again.unmap()
    alloc.release()


def test_a_map_that_reuses_a_kept_mapping_is_not_the_earlier_maps(ctx):
    """When an unmapped Mapping's pages are kept and the next map reuses them, that map
    is a new Mapping, and the earlier one stays unmapped (its unmap is a no-op, it lends
    no view): it never takes the new map for its own."""
    alloc = ctx.create(dtype="i32", shape=(8,))
    with alloc.map("w") as array:
        array[:] = 5
    del array
    first = alloc.map("r")
    first.unmap()  # no view: its pages are kept for the next read map
    second = alloc.map("r")
    assert second is not first
    assert second.mapped and not first.mapped
    with pytest.raises(InvalidArgument, match="no longer mapped"):
        first.array  # noqa: B018
    first.unmap()
    assert second.mapped and second.array.tolist() == [5] * 8
    second.unmap()
    alloc.release()


def test_a_dropped_reference_and_its_map_are_released_at_once(ctx):
    """Dropping the last names of a reference and of its map releases both at once, as
    release() would: no lock, descriptor or mapping waits for the cyclic garbage
    collector (which clara's launchers run without, and operators freeze). So nothing of
    the allocation refers back to it from its maps: a streaming loop that drops each
    frame's reference would otherwise pile up descriptors and read locks, and a dropped
    write map would stay *writing*."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    with alloc.map("w") as array:
        array[:] = 1
    del array
    alloc.publish("data")
    alloc.release()
    gc.disable()
    try:
        fds = len(os.listdir("/proc/self/fd"))
        assert int(ctx.get("data").map("r").array.sum()) == 4  # all dropped at once
        with ctx.get("data").map("w"):  # Busy if the read map lived on
            pass
        ctx.get("data").map("w").array[:] = 2  # a write map dropped: finished
        assert ctx.get("data").state == "complete"
        assert len(os.listdir("/proc/self/fd")) == fds
    finally:
        gc.enable()


@pytest.mark.skipif(memory.READ_ONLY_HOLDERS, reason="the C holder has one type")
def test_views_of_many_lengths_in_turn_make_no_class_per_map(ctx):
    """A view's holder has a type of its own per length, for the first lengths met; more
    lengths in turn must not make one class per map: a class is a reference cycle, left
    to the cyclic collector (which clara's launchers run without), and making one costs
    more than the map itself."""
    allocations = [ctx.create(4096 * (index + 1)) for index in range(24)]
    for alloc in allocations:
        with alloc.map("w") as array:
            array[:1] = 1
    del array

    def holder_classes() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, type) and o.__name__ == "Holder")

    gc.disable()
    try:
        counts = []
        for _ in range(3):
            for alloc in allocations:
                with alloc.map("r") as view:
                    assert view[0] == 1
            del view
            counts.append(holder_classes())
        assert counts[0] == counts[1] == counts[2], counts
    finally:
        gc.enable()
    for alloc in allocations:
        alloc.release()


def _mapped_at(address: int) -> str | None:
    """The /proc/self/maps line of the mapping holding `address`, if any."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            low, high = (int(part, 16) for part in line.split()[0].split("-"))
            if low <= address < high:
                return line
    return None


@pytest.mark.parametrize("nbytes", [64 << 10, 4 << 20])  # cut off in place; moved first
def test_a_cut_off_view_reads_zeros_and_gives_its_memory_back_when_it_dies(ctx, nbytes):
    alloc = ctx.create(nbytes)
    with alloc.map("w") as array:
        array[:] = 7
    address = array.__array_interface__["data"][0]
    assert "/dev/shm" not in (_mapped_at(address) or "/dev/shm")  # private zeros now
    assert int(array.max()) == 0
    with alloc.map("r") as again:  # the segment kept its data
        assert int(again.min()) == 7
    del again
    del array
    gc.collect()
    assert _mapped_at(address) is None  # the zero pages went with the last view
    alloc.release()


def test_a_dead_read_view_leaves_a_range_the_next_map_replaces_in_place(ctx):
    """A small read map cut off under a live view: once the view dies its zeros stay
    mapped (anonymous, read-only: no memory) and the next map of that length takes the
    range over, showing that segment's data, not zeros and not the first segment's."""
    nbytes = 13 * 4096 + 1  # a length no other test maps
    first, second = ctx.create(nbytes), ctx.create(nbytes)
    for alloc, value in ((first, 1), (second, 2)):
        with alloc.map("w") as array:
            array[:] = value
    with first.map("r") as view:
        assert int(view.max()) == 1
    address = view.__array_interface__["data"][0]
    assert int(view.max()) == 0  # cut off
    del view
    gc.collect()
    kept = _mapped_at(address)
    assert kept is not None and "/dev/shm" not in kept and kept.split()[1].startswith("r-")
    with second.map("r") as again:
        assert again.__array_interface__["data"][0] == address
        assert int(again.min()) == int(again.max()) == 2
    del again
    with first.map("r") as fresh:  # and the first segment's data is still its own
        assert int(fresh.min()) == int(fresh.max()) == 1
    first.release()
    second.release()


def test_a_view_keeps_its_map_and_reference_alive(ctx):
    alloc = ctx.create(dtype="u8", shape=(3,))
    with alloc.map("w") as array:
        array[:] = 3
    alloc.publish("data")
    alloc.release()
    view = ctx.get("data").map("r").array[1:]  # nobody else holds the reference
    gc.collect()
    assert view.tolist() == [3, 3]
    with pytest.raises(Busy):
        ctx.get("data").map("w")
    del view
    gc.collect()
    with ctx.get("data").map("w"):
        pass


@pytest.mark.parametrize("nbytes", [24, 4 << 20])  # cut off in place; moved first
def test_a_cut_off_view_keeps_nothing_of_its_reference_alive(ctx, nbytes):
    """A view whose map has ended reads zeros and needs nothing of the segment: it must
    not keep its reference (and the reference's other maps and locks) alive. The
    idiomatic `with ref.map("r") as old:` leaves `old` bound after the block."""
    alloc = ctx.create(nbytes)
    with alloc.map("w") as array:
        array[:] = 3
    del array
    alloc.publish("data")
    alloc.release()
    reference = ctx.get("data")
    with reference.map("r") as old:
        assert int(old.min()) == 3
    probe = weakref.ref(reference)
    view = reference.map("r").array  # a second map, its Mapping dropped at once
    del reference, view
    gc.collect()
    assert probe() is None  # released: its read map and lock went with it
    assert int(old.max()) == 0
    with ctx.get("data").map("w"):
        pass


def test_a_private_allocation_released_by_its_creator_is_gone(ctx, namespace):
    alloc = ctx.create("512K")  # below the recycling threshold
    path = alloc.map("w").path  # /proc/<pid>/fd/N while anonymous
    assert os.path.exists(path)
    alloc.release()
    assert not os.path.exists(path)
    assert alloc.released
    with pytest.raises(InvalidArgument, match="released"):
        alloc.map("r")
    assert shm_files(namespace) == [names.context_file("job")]


def test_a_private_allocation_vanishes_with_its_crashed_creator(ctx, namespace):
    child = Child(
        """
        import time
        from clara_core import Context
        a = Context.open("job").create("8M")
        print("made", flush=True)
        time.sleep(60)
        """
    )
    child.expect("made")
    child.kill()
    assert shm_files(namespace) == [names.context_file("job")]


def test_free_forbids_new_gets_while_held_references_stay_valid(ctx, namespace):
    alloc = ctx.create(dtype="i16", shape=(100,))
    with alloc.map("w") as array:
        array[:] = np.arange(100)
    alloc.publish("data")
    child = Child(
        """
        import sys
        from clara_core import Context
        ref = Context.open("job").get("data")
        print("got", flush=True)
        sys.stdin.readline()  # maps only once the test has freed the allocation
        with ref.map("r") as array:
            print("sum", int(array.sum()), flush=True)
        ref.release()
        """
    )
    child.expect("got")
    alloc.free()
    assert alloc.released
    with pytest.raises(NotFound):
        ctx.get("data")
    assert shm_files(namespace) == [names.context_file("job")]
    child.send("map")
    assert child.expect("sum") == f"sum {sum(range(100))}"
    assert child.finish()[0] == 0


def test_set_type_and_dimensions(ctx):
    alloc = ctx.create(4096)
    alloc.map("w").unmap()
    alloc.set_type_and_dimensions("f32", (32, 32))
    assert (alloc.element_type.name, alloc.shape) == ("float32", (32, 32))
    with pytest.raises(InvalidArgument, match="needs 8192 bytes"):
        alloc.set_type_and_dimensions("f64", (32, 32))
    alloc.publish("data")
    other = ctx.get("data")
    assert other.shape == (32, 32)
    with other.map("r"), pytest.raises(Busy):
        alloc.set_type_and_dimensions("u8", (10,))
    alloc.set_type_and_dimensions("u8", (10,))
    with other.map("r") as array:  # a map always uses the current layout
        assert array.shape == (10,)
    other.release()
    alloc.release()


def test_handles_hand_a_private_allocation_to_another_process(ctx, namespace):
    alloc = ctx.create(dtype="u8", shape=(4,))
    with alloc.map("w") as array:
        array[:] = [1, 2, 3, 4]
    handle = alloc.make_handle()
    assert alloc.make_handle() == handle
    alloc.release()  # a handle outlives its creator's reference
    result = run_python(
        f"""
        from clara_core import Context
        a = Context.open("job").open_handle("{handle}")
        a.publish("shared")
        """
    )
    assert result.returncode == 0, result.stderr
    with ctx.get("shared").map("r") as array:
        assert array.tolist() == [1, 2, 3, 4]
    assert shm_files(namespace) == sorted(
        [names.context_file("job"), names.allocation_file("job", "a", "shared")]
    )
    with pytest.raises(NotFound):
        ctx.open_handle(handle)
    with pytest.raises(InvalidArgument, match="handle"):
        ctx.open_handle("../x")


@pytest.mark.parametrize(
    "bad",
    [
        "ABCDEF012345",
        "abcdef01234",
        "abcdef0123456",
        "abcdef01234\n",
        " abcdef01234",
        "abcdef01234g",
        "\uff10" * 12,
        "",
        123456789012,
    ],
)
def test_a_handle_must_be_12_lowercase_hex_digits(ctx, bad):
    with pytest.raises(InvalidArgument, match="12 hex digits"):
        ctx.open_handle(bad)


def test_a_well_formed_unknown_handle_is_not_found(ctx):
    with pytest.raises(NotFound, match="does not exist"):
        ctx.open_handle("0123456789ab")


def test_garbage_collection_releases_a_reference(ctx):
    alloc = ctx.create(8)
    alloc.publish("data")
    ctx.get("data").map("w")  # mapping dropped at once
    gc.collect()
    with alloc.map("w"):
        pass
    alloc.release()


@pytest.mark.parametrize("ending", ["raise RuntimeError('mid-write')", "raise KeyboardInterrupt"])
def test_a_write_map_held_when_an_uncaught_exception_ends_python_is_incomplete(ctx, ending):
    """A writer that dies mid-write leaves the data incomplete (README, "What a crash
    cannot do here"): so does one whose uncaught exception ends the interpreter while it
    holds a write map outside a `with` block (its teardown releases the reference). A
    program that ends normally (or by sys.exit) finishes its maps as release() does."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    with alloc.map("w") as array:
        array[:] = 1
    del array
    alloc.publish("data")
    program = """
        import sys
        from clara_core import Context

        def fill(mapping):
            mapping.array[:2] = 9
            ENDING

        held = Context.open("job").get("data").map("w")
        fill(held)
        """
    for end, state in ((ending, "incomplete"), ("pass", "complete"), ("sys.exit(0)", "complete")):
        result = run_python(program.replace("ENDING", end))
        assert result.returncode in (0, 1, -signal.SIGINT), result.stderr
        assert ctx.get("data").state == state, (end, result.stderr)
        with alloc.map("w") as array:
            array[:] = 1
    run_python(program.replace("ENDING", ending))
    with pytest.raises(Incomplete):
        ctx.get("data").map("r")
    alloc.release()


def test_a_write_map_held_at_the_normal_end_of_an_interactive_session_is_complete(ctx):
    """An interactive prompt keeps the error it showed (sys.last_value) and goes on: a
    session that then ends normally did not crash, and finishes its maps as complete."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    alloc.publish("data")
    session = (
        "from clara_core import Context\n"
        "held = Context.open('job').get('data').map('w')\n"
        "held.array[:] = 7\n"
        "1 / 0\n"
    )
    done = subprocess.run(
        [sys.executable, "-i", "-q"], input=session, capture_output=True, text=True, timeout=60
    )
    assert "ZeroDivisionError" in done.stderr and done.returncode == 0, done.stderr
    assert ctx.get("data").state == "complete"
    with ctx.get("data").map("r") as array:
        assert array.tolist() == [7, 7, 7, 7]
    alloc.free()


def test_context_manager_releases(ctx):
    with ctx.create(8) as alloc:
        alloc.publish("data")
    assert alloc.released
    with ctx.get("data") as again:
        assert again.nbytes == 8


def test_many_references_in_one_process_exclude_each_other(ctx):
    alloc = ctx.create(8)
    alloc.publish("data")
    refs = [ctx.get("data") for _ in range(50)]
    with refs[0].map("w"):
        for ref in refs[1:]:
            with pytest.raises(Busy):
                ref.map("r")
    for ref in refs:
        ref.release()
    alloc.release()


def test_waiting_writer_sees_a_crashed_reader_go(ctx):
    alloc = ctx.create(8)
    alloc.map("w").unmap()
    alloc.publish("data")
    child = Child(
        """
        import time
        from clara_core import Context
        m = Context.open("job").get("data").map("r")
        print("mapped", flush=True)
        time.sleep(60)
        """
    )
    child.expect("mapped")
    os.kill(child.pid, 9)
    with alloc.map("w", timeout=30):  # the kernel dropped the dead reader's lock
        pass
    child.process.wait()
    child.close()
    alloc.release()


def test_busy_names_the_lock_holder_not_an_idle_mapping(ctx):
    alloc = ctx.create(64)
    alloc.publish("data")
    with alloc.map("w"):
        pass  # this reference keeps its (now unlocked) write mapping for reuse
    child = Child(
        """
        import time
        from clara_core import Context
        m = Context.open("job").get("data").map("r")
        print("mapped", flush=True)
        time.sleep(60)
        """
    )
    try:
        child.expect("mapped")
        with pytest.raises(Busy) as caught:
            ctx.get("data").map("w")
        message = str(caught.value)
        assert f"pid {child.pid} (python" in message
        assert message.count("(python") == 1 and "for reading" in message
        assert f"pid {os.getpid()} " not in message
    finally:
        child.kill()
    alloc.release()


def _mappings_of(path: str) -> list[tuple[int, str]]:
    """(start address, permissions) of each mapping of the file at `path` in this process."""
    inode = os.stat(path).st_ino
    with open("/proc/self/maps") as maps:
        fields = [line.split() for line in maps]
    mine = [f for f in fields if len(f) > 5 and int(f[4]) == inode]
    return [(int(f[0].split("-")[0], 16), f[1]) for f in mine]


@pytest.mark.parametrize("mode", ["r", "w"])
def test_premap_prepares_the_next_map_taking_no_lock_and_touching_nothing(ctx, mode):
    """premap(mode) maps the segment now (what an operator does while it waits for its
    inputs) without the map lock and without changing the data state; the next map of
    that mode then takes over that very mapping, and sees what was written meanwhile."""
    alloc = ctx.create(dtype="uint8", shape=(1 << 20,))
    alloc.publish("v")
    assert _mappings_of(alloc.path) == []
    alloc.premap(mode)
    [(address, permissions)] = _mappings_of(alloc.path)
    assert permissions.startswith("rw" if mode == "w" else "r-")
    assert alloc.state == "empty"  # a premapped write map is not *writing*
    writer = ctx.get("v")  # another reference: no lock is held, so its write map goes
    with writer.map("w") as array:
        array[:] = 5
    del array
    writer.release()
    with alloc.map(mode) as array:
        assert array.__array_interface__["data"][0] == address + DATA_OFFSET
        assert int(array.min()) == int(array.max()) == 5
    del array
    alloc.release()
    assert "/dev/shm" not in (_mapped_at(address) or "")  # released with the reference


def test_premap_of_an_input_refuses_a_write_map(ctx):
    alloc = ctx.create(dtype="uint8", shape=(4096,))
    alloc.publish("v")
    reader = ctx.get("v", read_only=True)
    with pytest.raises(ReadOnly):
        reader.premap("w")
    assert _mappings_of(reader.path) == []
    reader.release()
    alloc.release()


def test_allocations_and_mappings_may_be_referred_to_weakly(ctx):
    """Both are public classes with slots: a cache of them keyed weakly must still work."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    refs = weakref.ref(alloc), weakref.ref(mapping)
    assert (refs[0](), refs[1]()) == (alloc, mapping)
    mapping.unmap()
    alloc.release()


def test_a_size_is_checked_as_given_even_right_after_the_same_one(ctx):
    # members.layout_for keeps the last size and dtype given (the same objects: a loop's
    # create): values equal to them but of another type or with a shape are checked anew.
    size = 1
    for _ in range(2):
        ctx.create(size).release()
    with pytest.raises(InvalidArgument, match="invalid size True"):
        ctx.create(True)
    with pytest.raises(InvalidArgument, match="either a size or a shape"):
        ctx.create(size, shape=(1,))
    typed = ctx.create(8, dtype="f32")
    assert (typed.shape, typed.dtype) == ((2,), np.dtype("float32"))
    wider = ctx.create(8, dtype="f64")
    assert (wider.shape, wider.dtype) == ((1,), np.dtype("float64"))
    typed.release()
    wider.release()


def test_a_free_interrupted_after_its_unlink_leaves_the_segment_freed() -> None:
    """(A context with a capacity: free's Python path.) A signal handler's exception
    (^C) right after the unlink succeeded: the name is gone, so the lifecycle stays
    freed; only a name that stays (another user's file, sticky directory) gets its
    lifecycle back (rev7 R6)."""
    ctx = Context.create("counted", capacity="1M")
    try:
        alloc = ctx.create(dtype="u8", shape=(64,))
        alloc.publish("data")

        def profile(frame: object, event: str, arg: object) -> None:
            if event == "c_return" and getattr(arg, "__name__", "") == "unlink":
                sys.setprofile(None)
                raise KeyboardInterrupt

        sys.setprofile(profile)
        try:
            with pytest.raises(KeyboardInterrupt):
                alloc.free()
        finally:
            sys.setprofile(None)
        assert ctx.names() == []
        assert os.pread(alloc._fd, 1, LIFECYCLE_AT)[0] == FREED
        alloc.release()
    finally:
        ctx.close()
        Context.destroy("counted")
