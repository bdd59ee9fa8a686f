"""The first write map of a small fresh private allocation is staged in this process's
memory and written to the file at unmap (clara_core/shm/staging.py). Whatever it is
held in, it must behave as a map of the shared memory: the data reaches the file, views
that outlive it read zeros and reach nothing, and a forked child, another program given
its path, or a copy through the fd sees the same bytes as the views."""

from __future__ import annotations

import os

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


def test_a_child_forked_while_staged_leaves_the_data_to_its_parent(ctx):
    """A fork (maybe from another thread, while this one writes) leaves a staged map
    staged: the file says *writing* until the parent's unmap writes the data; the child's
    copy of the map is not a map of the segment, and its unmap writes nothing back."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    array = mapping.array
    array[:] = 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            state = hdr.read_data_state(os.pread(alloc._fd, hdr.DATA_END, 0)).state
            array[:] = 9  # (a child must not write through its parent's map: README)
            mapping.unmap()  # the parent's map, left to it
            alloc.release()
            code = 0 if state == hdr.WRITING else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
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
