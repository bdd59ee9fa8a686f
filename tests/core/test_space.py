"""Memory is reserved at creation: a full file system is OutOfSpace then, never a SIGBUS."""

import os

import pytest

from clara_core import Context, OutOfSpace, names
from clara_core.names import shm_dir


def test_a_request_larger_than_free_shared_memory_is_out_of_space(namespace):
    free = os.statvfs(shm_dir()).f_bavail * os.statvfs(shm_dir()).f_frsize
    ctx = Context.create("job")
    try:
        with pytest.raises(OutOfSpace, match="not enough shared memory"):
            ctx.create(free + (1 << 30))
        with pytest.raises(OutOfSpace):
            ctx.create(dtype="f64", shape=(free // 8 + 1, 2))
        assert sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace)) == [
            names.context_file("job")
        ]
    finally:
        ctx.destroy()


def test_reserved_memory_is_really_reserved(namespace):
    ctx = Context.create("job")
    before = os.statvfs(shm_dir()).f_bfree
    alloc = ctx.create("64M")
    used = (before - os.statvfs(shm_dir()).f_bfree) * os.statvfs(shm_dir()).f_frsize
    assert used >= 64 << 20  # allocated before the first write, not on touch
    alloc.release()
    ctx.destroy()
