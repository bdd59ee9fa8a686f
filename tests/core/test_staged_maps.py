"""The first write map of a small fresh private allocation is staged in this process's
memory and written to the file at unmap (clara_core/shm/staging.py). Whatever it is
held in, it must behave as a map of the shared memory: the data reaches the file, views
that outlive it read zeros and reach nothing, and a forked child, another program given
its path, or a copy through the fd sees the same bytes as the views."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from clara_core import Context
from clara_core.shm import header as hdr
from clara_core.shm import staging
from tests.helpers import run_python


@pytest.fixture
def ctx():
    context = Context.create("job")
    yield context
    Context.destroy("job")


def _file_data(path: str, count: int) -> list[int]:
    """The first `count` data bytes of the file at `path`, read by another process."""
    result = run_python(
        f"""
        import os
        fd = os.open({path!r}, os.O_RDONLY)
        print(list(os.pread(fd, {count}, {hdr.DATA_OFFSET})))
        """
    )
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)


def test_a_small_fresh_write_map_is_staged_and_its_unmap_writes_the_file(ctx):
    alloc = ctx.create(dtype="u8", shape=(8,))
    mapping = alloc.map("w")
    assert type(mapping._region) is staging.Staged  # (the case under test here)
    mapping.array[:] = range(1, 9)
    mapping.unmap()
    assert os.pread(alloc._fd, 8, hdr.DATA_OFFSET) == bytes(range(1, 9))
    with alloc.map("r") as array:
        assert array.tolist() == list(range(1, 9))
    alloc.release()


def test_a_view_alive_after_the_unmap_reads_zeros_and_reaches_nothing(ctx):
    alloc = ctx.create(dtype="u8", shape=(8,))
    with alloc.map("w") as kept:
        kept[:] = 5
    assert kept.tolist() == [0] * 8  # cut off
    kept[:] = 7  # written to nothing
    with alloc.map("r") as array:
        assert array.tolist() == [5] * 8
    alloc.publish("data")
    result = run_python(
        """
        from clara_core import Context
        with Context.open("job").get("data").map("r") as array:
            print(array.tolist())
        """
    )
    assert (result.returncode, result.stdout) == (0, f"{[5] * 8}\n"), result.stderr
    alloc.free()


def test_memory_a_dead_view_wrote_after_its_unmap_is_zeros_again_for_the_next(ctx):
    """A staged range is kept for the next staged map of its length when its views die;
    a view may have written to it after the unmap: the next map must still see zeros."""
    first = ctx.create(dtype="u8", shape=(4096,))
    with first.map("w") as stale:
        stale[:] = 1
    stale[:] = 9  # after the unmap: into the staged memory, not the file
    del stale  # the range is kept
    first.release()
    second = ctx.create(dtype="u8", shape=(4096,))
    with second.map("w") as array:
        assert not array.any()
    second.release()


def test_a_child_forked_by_the_mapping_thread_writes_into_its_parents_segment(ctx):
    """A fork from the thread that made the staged map attaches it (that thread is inside
    os.fork: nothing of it writes meanwhile): parent and child share its pages, as a
    mapped file's (fork workers filling slices of their parent's array)."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    array = mapping.array
    array[0] = 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            array[1] = 2  # through the map it inherited
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert array.tolist() == [1, 2, 0, 0]
    array[2] = 3
    mapping.unmap()
    with alloc.map("r") as read:
        assert read.tolist() == [1, 2, 3, 0]
    alloc.release()


def _fork_and_wait(child: Callable[[], None]) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_fork_from_the_mapping_thread_shares_the_map_after_another_threads_fork(ctx):
    """Another thread's fork leaves the staged map staged and makes the allocation public;
    a later fork from the thread that made the map still attaches it, so that the child's
    writes through the views it inherited reach the parent (fork workers started after a
    helper thread forked once): they were silently the child's own."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    array = mapping.array
    array[0] = 1
    elsewhere = threading.Thread(target=_fork_and_wait, args=(lambda: None,))
    elsewhere.start()
    elsewhere.join()

    def write() -> None:
        array[1] = 2  # through the map it inherited

    _fork_and_wait(write)
    assert array.tolist() == [1, 2, 0, 0]
    mapping.unmap()
    with alloc.map("r") as read:
        assert read.tolist() == [1, 2, 0, 0]
    alloc.release()


def test_a_fork_from_another_thread_while_a_map_is_staged_leaves_it_to_share_later(ctx):
    """Another thread forks while this one is in the middle of its map (the staged
    memory made, not yet among the reference's maps: the fork cannot see it); this
    thread's own fork later must still share the map with its child."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    staging_now, forked = threading.Event(), threading.Event()

    def fork_elsewhere() -> None:
        staging_now.wait(10)
        _fork_and_wait(lambda: None)
        forked.set()

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "return" and frame.f_code.co_name == "take":  # (Staged.take)
            sys.setprofile(None)
            staging_now.set()
            forked.wait(10)

    elsewhere = threading.Thread(target=fork_elsewhere)
    elsewhere.start()
    sys.setprofile(profile)
    try:
        mapping = alloc.map("w")
    finally:
        sys.setprofile(None)
        staging_now.set()
        elsewhere.join()
    assert forked.is_set()
    array = mapping.array
    array[0] = 1

    def write() -> None:
        array[1] = 2  # through the map it inherited

    _fork_and_wait(write)
    assert array.tolist() == [1, 2, 0, 0]
    mapping.unmap()
    alloc.release()


def test_a_fork_from_another_thread_leaves_its_staged_map_to_the_parent(ctx):
    """A fork from another thread (which may come while this one writes the views) leaves
    the staged map staged: the file says *writing* until the parent's unmap writes the
    data; the child's copy of the map is not the segment, and writes nothing back."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    array = mapping.array
    array[:] = 1
    forked: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                state = hdr.read_data_state(os.pread(alloc._fd, hdr.DATA_END, 0)).state
                array[:] = 9  # (not shared: the parent's data stays its own)
                mapping.unmap()  # the parent's map, left to it
                alloc.release()
                code = 0 if state == hdr.WRITING else 2
            finally:
                os._exit(code)
        forked.append(pid)

    thread = threading.Thread(target=fork)
    thread.start()
    thread.join()
    _, status = os.waitpid(forked[0], 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert os.pread(alloc._fd, 4, hdr.DATA_OFFSET) == bytes(4)  # the child wrote nothing
    assert alloc.state == "writing"
    array[2] = 3
    mapping.unmap()
    assert alloc.state == "complete"
    assert os.pread(alloc._fd, 4, hdr.DATA_OFFSET) == bytes([1, 1, 3, 1])
    alloc.publish("data")  # (public since the fork: published as any other)
    result = run_python(
        """
        from clara_core import Context
        with Context.open("job").get("data").map("r") as array:
            print(array.tolist())
        """
    )
    assert (result.returncode, result.stdout) == (0, "[1, 1, 3, 1]\n"), result.stderr
    alloc.free()


def test_the_path_asked_after_a_fork_still_shows_the_views_bytes(ctx):
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    mapping.array[:] = 5
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert _file_data(mapping.path, 4) == [5, 5, 5, 5]  # attached now, fork or not
    mapping.array[0] = 6
    assert _file_data(mapping.path, 4) == [6, 5, 5, 5]
    mapping.unmap()
    alloc.release()


def test_another_program_given_the_path_sees_what_the_views_hold(ctx):
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    mapping.array[:] = 4
    path = mapping.path
    assert _file_data(path, 4) == [4, 4, 4, 4]  # written before the path was given
    mapping.array[:2] = 6  # and from then on, through the shared memory itself
    assert _file_data(path, 4) == [6, 6, 4, 4]
    mapping.unmap()
    alloc.release()


def test_copies_through_the_fd_meet_what_the_views_hold(ctx, tmp_path):
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    mapping.array[:] = 3
    target = tmp_path / "copy"
    with open(target, "wb") as out:
        mapping.copy_to(out.fileno())
    assert target.read_bytes() == bytes([3] * 4)
    mapping.write_from(bytes([8, 8, 8, 8]))  # through the fd: the views see it too
    assert mapping.array.tolist() == [8, 8, 8, 8]
    mapping.array[3] = 1
    mapping.unmap()  # must not write back what the views held before
    with alloc.map("r") as array:
        assert array.tolist() == [8, 8, 8, 1]
    alloc.release()


def test_a_write_that_fails_leaves_what_it_wrote_incomplete(ctx):
    alloc = ctx.create(dtype="i32", shape=(4,))
    with pytest.raises(RuntimeError), alloc.map("w") as array:
        array[:2] = 6
        raise RuntimeError("operator bug")
    assert alloc.state == "incomplete"
    with alloc.map("r", allow_incomplete=True) as read:
        assert read.tolist() == [6, 6, 0, 0]
    alloc.release()


def test_larger_and_rewritten_ones_are_mapped_not_staged(ctx):
    big = ctx.create(staging.STAGED_BELOW)
    mapping = big.map("w")
    assert type(mapping._region) is not staging.Staged
    mapping.unmap()
    big.release()
    small = ctx.create(dtype="u8", shape=(4,))
    small.map("w").unmap()
    mapping = small.map("w")  # written once already: not zeros any more
    assert type(mapping._region) is not staging.Staged
    mapping.array[:] = np.arange(4)
    mapping.unmap()
    small.release()


def test_an_exception_right_after_the_attach_leaves_a_map_of_the_file(ctx):
    """A signal handler's exception (^C) raised as the attach's call returns: the region
    maps the file by then, and must be taken for what it is (a map of the file, never a
    private range to keep for the next staged map, which would zero this file's data)."""
    alloc = ctx.create(dtype="u8", shape=(4096,))
    mapping = alloc.map("w")
    mapping.array[:] = 7

    def interrupt(frame: object, event: str, arg: object) -> None:
        name = getattr(arg, "__name__", "") if event == "c_return" else frame.f_code.co_name
        if event in ("c_return", "return") and name in ("attach_staged", "_attach_staged"):
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            alloc.path  # noqa: B018 (attaches the staged map, as publish would)
    finally:
        sys.setprofile(None)
    assert type(mapping._region) is not staging.Staged
    mapping.array[0] = 8  # through the file now
    mapping.unmap()
    alloc.publish("first")
    other = ctx.create(dtype="u8", shape=(4096,))
    with other.map("w") as array:
        assert not array.any()
        array[:] = 9
    other.release()
    result = run_python(
        """
        from clara_core import Context
        with Context.open("job").get("first").map("r") as array:
            print(sorted(set(array.tolist())), array[0])
        """
    )
    assert (result.returncode, result.stdout) == (0, "[7, 8] 8\n"), result.stderr
    alloc.free()


def test_a_larger_staged_map_cut_off_holds_no_memory_while_its_views_live(ctx):
    """Views outliving the unmap of a staged map longer than the ranges kept for reuse:
    private zeros are mapped over it (as any cut-off), not written with zeros, so none of
    its pages stays in memory for as long as they live."""
    alloc = ctx.create(dtype="u8", shape=(128 << 10,))
    with alloc.map("w") as kept:
        kept[:] = 1
    start = kept.__array_interface__["data"][0] - hdr.DATA_OFFSET
    assert _resident_pages(start + hdr.DATA_OFFSET, 128 << 10) == 0  # (before any read:
    assert not kept.any()  # a read of private zeros maps the kernel's zero page)
    alloc.release()


def _resident_pages(start: int, length: int) -> int:
    """How many pages of [start, start + length) are in memory (/proc/self/pagemap: bit
    63 of each page's entry; mappings next to it may merge with it, so not smaps)."""
    pages = length // 4096
    with open("/proc/self/pagemap", "rb") as pagemap:
        entries = os.pread(pagemap.fileno(), 8 * pages, start // 4096 * 8)
    present = (int.from_bytes(entries[i : i + 8], "little") >> 63 for i in range(0, pages * 8, 8))
    return sum(present)
