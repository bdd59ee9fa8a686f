"""Memory is reserved at creation: a full file system is OutOfSpace then, never a SIGBUS."""

import os

import pytest

from clara_core import Context, OutOfSpace, names


def test_a_request_larger_than_free_shared_memory_is_out_of_space(small_shm_dir):
    # Less than the file system's total size, more than what is free: refused before the
    # kernel would fill the free space page by page (on a RAM-sized /dev/shm that wakes
    # the out-of-memory killer). On a private 64 MiB tmpfs, half full: nobody else frees
    # or takes space while the test sizes its requests.
    ctx = Context.create("job", pool_bytes=0)
    half = ctx.create("32M")
    try:
        stats = os.statvfs(small_shm_dir)
        free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
        assert 0 < free < total
        for size in (free + (total - free) // 2 + 1, total + 1):
            # (a new allocation is private until published: its messages say so)
            private = r"^private allocation in context 'job' of \d+ bytes: not enough shared"
            with pytest.raises(OutOfSpace, match=private):
                ctx.create(size)
        with pytest.raises(OutOfSpace):
            ctx.create(dtype="f64", shape=(free // 8 + 1, 2))
        assert os.statvfs(small_shm_dir).f_bavail * stats.f_frsize == free
        assert sorted(os.listdir(small_shm_dir)) == [names.context_file("job")]
    finally:
        half.release()
        ctx.destroy()


def test_reserved_memory_is_really_reserved(small_shm_dir):
    ctx = Context.create("job")
    try:
        before = os.statvfs(small_shm_dir).f_bfree
        alloc = ctx.create("16M")
        stats = os.statvfs(small_shm_dir)
        assert (before - stats.f_bfree) * stats.f_frsize >= 16 << 20  # before any write
        alloc.release()
    finally:
        ctx.destroy()


def test_filling_a_small_file_system_fails_cleanly_at_create(small_shm_dir):
    ctx = Context.create("job", pool_bytes=0)
    made = []
    try:
        with pytest.raises(OutOfSpace):
            for _ in range(100):
                made.append(ctx.create("8M"))
        assert 4 <= len(made) < 8  # 64 MiB file system
        with made[0].map("w") as array:  # what was made is fully backed: no SIGBUS
            array[:] = 1
        assert os.listdir(small_shm_dir) == [names.context_file("job")]
    finally:
        for alloc in made:
            alloc.release()
        ctx.destroy()
