"""Recycling: freed segments go to the context's pool and come back for fitting creates."""

from __future__ import annotations

import os
import sys

import pytest

from clara_core import Context, NotFound, OutOfSpace, leaks, pool
from clara_core.names import shm_dir
from tests.helpers import run_python

MIB = 1 << 20


def pool_files(namespace):
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace) and ".p." in f)


def inode_of(alloc) -> int:
    return alloc._file_id[1]


@pytest.fixture
def ctx():
    context = Context.create("job", pool_bytes="64M")
    yield context
    Context.destroy("job")


def test_a_freed_allocation_is_recycled_for_a_fitting_create(ctx, namespace):
    first = ctx.create(4 * MIB)
    with first.map("w") as array:
        array[:] = 7
    first.publish("data")
    inode = inode_of(first)
    first.free()
    (pooled_name,) = pool_files(namespace)
    again = ctx.create(dtype="f32", shape=(MIB,))  # the same 4 MiB
    assert inode_of(again) == inode
    assert (again.state, again.shape, again.nbytes) == ("empty", (MIB,), 4 * MIB)
    with pytest.raises(NotFound):
        ctx.get("data")
    # While claimed it keeps its pool name, held by our reference: no one else takes it,
    # and should we die it is simply back in the pool.
    assert pool_files(namespace) == [pooled_name]
    assert pool.claim(ctx._registry, 4 * MIB) is None
    again.release()
    assert pool_files(namespace) == [pooled_name]
    third = ctx.create(3 * MIB)
    assert inode_of(third) == inode
    third.publish("third")
    assert pool_files(namespace) == []
    assert ctx.names() == ["third"]
    third.release()


def test_sizes_that_do_not_fit_are_not_recycled(ctx, namespace):
    big = ctx.create(8 * MIB)
    big.release()
    small = ctx.create(2 * MIB)  # 8 MiB is more than twice 2 MiB: not reused
    assert len(pool_files(namespace)) == 1
    small.release()
    tiny = ctx.create(1000)  # below the threshold: never pooled
    tiny.release()
    assert len(pool_files(namespace)) == 2


def test_a_segment_someone_still_references_is_never_pooled(ctx, namespace):
    alloc = ctx.create(2 * MIB)
    alloc.map("w").unmap()
    alloc.publish("data")
    reader = ctx.get("data")
    mapping = reader.map("r")
    alloc.free()
    assert pool_files(namespace) == []  # freed for good: the reader still holds it
    assert mapping.array.shape == (2 * MIB,)
    other = ctx.create(2 * MIB)
    assert inode_of(other) != inode_of(reader)
    reader.release()
    other.release()


def test_the_pool_is_capped(namespace):
    ctx = Context.create("small", pool_bytes="3M")
    try:
        allocations = [ctx.create(2 * MIB) for _ in range(2)]
        for alloc in allocations:
            alloc.release()
        assert [cap for cap, _ in pool.pooled(ctx._registry)] == [2 * MIB]
        disabled = Context.create("none", pool_bytes=0)
        disabled.create(2 * MIB).release()
        assert pool.pooled(disabled._registry) == []
        disabled.destroy()
    finally:
        ctx.destroy()


def test_another_process_reuses_the_pool(ctx, namespace):
    alloc = ctx.create(2 * MIB)
    alloc.release()
    (pooled_name,) = pool_files(namespace)
    inode = os.stat(os.path.join(shm_dir(), pooled_name)).st_ino
    result = run_python(
        """
        from clara_core import Context
        a = Context.open("job").create(2 << 20)
        a.publish("made")
        print(a._file_id[1])
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == inode
    assert ctx.names() == ["made"]


def test_pooled_segments_are_reclaimable_not_leaks_and_destroy_empties_the_pool(ctx, namespace):
    ctx.create(2 * MIB).release()
    report = leaks.check()
    assert report.clean
    assert [f.status for f in report.findings if f.segment.kind == "pooled"] == ["pooled"]
    removed = leaks.reclaim().removed
    assert [f.segment.kind for f in removed] == ["pooled"]
    ctx.create(2 * MIB).release()
    Context.destroy("job")
    assert sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace)) == []
    Context.create("job")  # for the fixture's destroy


def test_a_full_file_system_empties_the_pool_and_retries(small_shm_dir):
    ctx = Context.create("job", pool_bytes="48M")
    try:
        ctx.create(32 * MIB).release()
        assert [cap for cap, _ in pool.pooled(ctx._registry)] == [32 * MIB]
        big = ctx.create(40 * MIB)  # fits only once the pool is emptied
        assert pool.pooled(ctx._registry) == []
        with pytest.raises(OutOfSpace):
            ctx.create(40 * MIB)  # nothing left to evict: a clean error
        big.release()
    finally:
        ctx.destroy()
    assert os.listdir(small_shm_dir) == []


def test_threads_with_references_of_their_own_share_the_warm_segments_safely(namespace):
    """Threads of one process, each creating, writing, publishing, getting and freeing
    allocations of its own in one context (the documented rule), share this process's
    warm pooled segments: each is claimed by one thread, and none is claimed while
    another thread drops it (a raw ValueError and an fstat of a closed fd, unguarded)."""
    script = """
    import os, sys, threading, traceback
    from clara_core import ClaraError, Context

    def failed(hook):  # any exception in a thread fails the script
        traceback.print_exception(hook.exc_value)
        os._exit(3)

    threading.excepthook = failed
    sys.setswitchinterval(1e-6)
    ctx = Context.create("job")
    fds = len(os.listdir("/proc/self/fd"))  # (the context's and the directory's open)
    done = []

    def worker(t):
        for i in range(int(sys.argv[1])):
            value = (t * 50 + i) % 250 + 1
            made = ctx.create(dtype="u8", shape=((1 + (i + t) % 3) << 20,))
            with made.map("w") as array:
                array[:8] = array[-8:] = value
            if i % 2:
                made.publish(f"t{t}")
                made.release()
                made = ctx.get(f"t{t}")
            with made.map("r") as array:
                assert int(array[0]) == int(array[-1]) == value
            made.free() if i % 2 else made.release()
            done.append(i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Context.destroy("job")  # (this process's warm segments of it go too)
    print(len(done), len(os.listdir("/proc/self/fd")) - fds)
    """
    result = run_python(script, "1500", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["6000", "0"]  # every round made, no fd left open


def test_a_finalizer_keeping_a_segment_warm_never_waits_for_a_thread_dropping_one(namespace):
    """(rev5) The collector runs finalizers wherever a thread allocates, also while it
    holds memory's lock for a view; a finalizer that kept a segment warm waited for the
    pool's lock, held by a thread dropping its oldest warm segment, which waited for the
    memory lock: both hung for good. A finalizer now never waits (busy: the segment is
    dropped), and the pool's lock is let go before any segment is dropped."""
    script = """
    import faulthandler, gc, sys, threading
    from clara_core import Context

    faulthandler.dump_traceback_later(60, exit=True)  # a hang: its stacks, exit 1
    sys.setswitchinterval(1e-6)
    gc.set_threshold(5, 1, 1)
    ctx = Context.create("job")
    MB = 1 << 20
    kept = ctx.create(MB)
    with kept.map("w") as array:
        array[:] = 1

    def collected():  # views made while cycles of dropped allocations are collected
        for _ in range(600):
            dropped = ctx.create(MB)
            dropped.map("w").unmap()
            cycle = [dropped]
            cycle.append(cycle)
            del dropped, cycle
            with kept.map("r") as view:
                int(view[0])

    def dropping():  # six 8 MiB kept warm: the fifth and sixth drop the oldest
        for _ in range(100):
            made = [ctx.create(8 * MB) for _ in range(6)]
            for allocation in made:
                allocation.map("w").unmap()
            for allocation in made:
                allocation.release()

    threads = [threading.Thread(target=t) for t in (collected, dropping, dropping)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept.release()
    Context.destroy("job")
    print("done")
    """
    result = run_python(script, timeout=120)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr[-3000:]


@pytest.mark.parametrize("naming", ["rename_new", "link_open_file"])
def test_a_free_interrupted_after_it_named_the_pool_entry_leaves_its_slot(ctx, namespace, naming):
    """^C right after a free (`rename_new`: of a published allocation) or a release
    (`link_open_file`: of a private one) named the segment in the pool: the entry is in
    the pool, so its ledger slot stays (it was cleared: a pooled segment nobody could
    claim, outside the pool's cap, until destroy), and a fitting create takes it."""
    first = ctx.create(4 * MIB)
    inode = inode_of(first)
    if naming == "rename_new":
        first.publish("data")
    called = ("c_return", "return")

    def profile(frame, event, arg):
        name = getattr(arg, "__name__", "") if event == "c_return" else frame.f_code.co_name
        if event in called and name == naming:
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        with pytest.raises(KeyboardInterrupt):
            first.free() if naming == "rename_new" else first.release()
    finally:
        sys.setprofile(None)
    first.release()
    assert [name for _, name in pool.pooled(ctx._registry)] == pool_files(namespace)
    again = ctx.create(4 * MIB)
    assert inode_of(again) == inode
    again.release()


def test_a_signal_handlers_create_or_destroy_never_waits_for_its_own_thread(namespace):
    """A signal handler runs in the thread it interrupts, which may be claiming a warm
    segment (holding the warm segments' lock): a create of 1 MiB or more in the handler,
    or a destroy (a SIGTERM handler's cleanup), waited for that lock, held by the very
    frame it interrupted: hung for good. The handler here is called where a signal's
    would run, as the claim's fstat returns, with the lock held."""
    script = """
    import faulthandler, sys
    from clara_core import Context

    faulthandler.dump_traceback_later(60, exit=True)  # a hang: its stacks, exit 1
    ctx, other = Context.create("job"), Context.create("other")
    MB = 1 << 20
    for context in (ctx, other):  # a warm segment each (mapped, then released)
        kept = context.create(MB)
        kept.map("w").unmap()
        kept.release()

    def handler():
        made = ctx.create(MB)
        made.release()
        Context.destroy("other")

    def profile(frame, event, arg):
        if event == "c_return" and arg.__name__ == "fstat" and frame.f_code.co_name == "claim":
            sys.setprofile(None)
            handler()

    sys.setprofile(profile)
    ctx.create(MB).release()
    sys.setprofile(None)
    ctx.close()
    other.close()
    Context.destroy("job")
    print("done")
    """
    result = run_python(script, timeout=120)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr[-3000:]
