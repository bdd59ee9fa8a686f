"""Threads sharing one reference: whatever they interleave, a view never reaches memory
that is no longer its map's (no crash, no other file's pages): it reads the data or,
once cut off, zeros; and once the reference is released, nothing of it stays mapped.
Threads with references of their own: an exception in one never leaves them waiting."""

from __future__ import annotations

import json
import os
import select
import sys
import textwrap
import threading

import pytest

from clara_core import Context, OutOfSpace, pool
from clara_core.names import shm_dir
from tests.helpers import run_python

# A script of threads on one reference `ref` to NBYTES bytes of 7 published as "data"
# (switch interval 1 us: any may stop anywhere): the test's `reader` and `unmapper`, one
# thread each, and a second `reader` if READERS is 2; a reader adds what it reads to
# `sums`, and whichever thread makes a given number of rounds (sys.argv[1]) sets `done`
# for the others. It prints the sums read, and how many mappings of the segment are
# left once `ref` is released.
_THREADS = """
import gc, json, os, sys, threading, traceback
from clara_core import ClaraError, Context


def failed(hook):  # an exception in a thread fails the script (not a silent thread end)
    traceback.print_exception(hook.exc_value)
    os._exit(3)


threading.excepthook = failed
sys.setswitchinterval(1e-6)
ctx = Context.create("job")
try:
    made = ctx.create(dtype="u8", shape=(NBYTES,))
    writing = made.map("w")
    writing.write_from(b"\\x07" * NBYTES)
    writing.unmap()
    made.publish("data")
    made.release()
    ref = ctx.get("data")
    rounds, done, sums, current = range(int(sys.argv[1])), threading.Event(), set(), {}
THREADS
    threads = [threading.Thread(target=f) for f in [reader] * READERS + [unmapper]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    current.clear()
    ref.release()
    gc.collect()  # (the threads' last views)
    mapped = sum(".job.a.data" in line for line in open("/proc/self/maps"))
    print(json.dumps({"sums": sorted(sums), "mapped": mapped}))
finally:
    Context.destroy("job")
"""


def _sums_read(nbytes: int, threads: str, rounds: int, readers: int = 1) -> set[int]:
    """Run the `threads` (their code) on `nbytes`; the sums the readers read."""
    code = _THREADS.replace("NBYTES", str(nbytes)).replace("READERS", str(readers))
    code = code.replace("THREADS", textwrap.indent(textwrap.dedent(threads), " " * 4))
    done = run_python(code, str(rounds), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # (-11: SIGSEGV)
    result = json.loads(done.stdout)
    assert result["mapped"] == 0  # released: nothing of it is mapped any more
    return set(result["sums"])


def test_a_view_taken_while_another_thread_unmaps_never_reaches_unmapped_memory() -> None:
    """One thread maps, takes a view and reads it; the other unmaps the same reference
    as fast as it can, at any point of the map and of the view's making."""
    threads = """
        def reader():
            for _ in rounds:
                try:
                    view = ref.map("r").array
                except ClaraError:  # (the other's unmap came first)
                    continue
                sums.add(int(view[:16].sum()))
                del view
            done.set()

        def unmapper():
            while not done.is_set():
                ref.unmap()
    """
    sums = _sums_read(65536, threads, 60000)
    assert 16 * 7 in sums and sums <= {0, 16 * 7}  # the data, or zeros once cut off


def test_a_view_read_while_another_thread_unmaps_a_large_map_never_faults() -> None:
    """One thread maps 4 MiB (whose unmap moves the pages away from live views, to keep
    them warm), hands the view over and unmaps; the other reads whichever view is
    current: the move must never leave its range unmapped, even for an instant."""
    threads = """
        def unmapper():
            for _ in rounds:
                current["view"] = ref.map("r").array
                ref.unmap()  # cuts the view off, its pages moved away (kept warm)
            done.set()

        def reader():
            while not done.is_set():
                view = current.get("view")
                if view is not None:
                    sums.add(int(view[::65536].sum()))  # 64 bytes, one per 64 KiB
    """
    # Each byte read is the data (7) or, cut off, zero: sums of 64 such bytes.
    sums = _sums_read(4 << 20, threads, 3000)
    assert max(sums) > 0 and sums <= {7 * n for n in range(65)}


def test_two_threads_mapping_while_a_third_unmaps_never_share_a_warm_mapping() -> None:
    """Two threads map 4 MiB (kept warm at unmap for the next map) and read their view;
    a third unmaps them all: the warm mapping goes to one map only. (Both took it: two
    maps of one address, and the unmap of one unmapped the pages under the other's
    view, moved away and cut off by then: SIGSEGV. And a mapping kept for the next map
    could be dropped by another thread, two unmaps both keeping theirs or a map clearing
    the slot another unmap had just filled: mapped until the process ended.)"""
    threads = """
        def reader():
            for _ in rounds:
                if done.is_set():
                    break
                try:
                    view = ref.map("r").array
                except ClaraError:  # (Busy: the other reader's map came between)
                    continue
                sums.add(int(view[::65536].sum()))
                del view
            done.set()

        def unmapper():
            while not done.is_set():
                ref.unmap()
    """
    sums = _sums_read(4 << 20, threads, 6000, readers=2)
    assert 7 * 64 in sums and sums <= {7 * n for n in range(65)}


# The main thread makes views of a map of `a`, one after another, while a SIGALRM handler
# raises Tick at 10 kHz (as ^C raises KeyboardInterrupt: wherever the main thread is); another
# thread maps and unmaps `b` through a reference of its own sys.argv[1] times. It prints
# whether that thread is still alive (waiting forever) and whether any tick came.
_TICKS = """
import os, signal, sys, threading, traceback
from clara_core import ClaraError, Context


class Tick(Exception):
    pass


armed = [False]


def tick(*_):  # as ^C raises KeyboardInterrupt: wherever the main thread is
    if armed[0]:
        armed[0] = False
        raise Tick


def failed(hook):  # an exception in the other thread fails the script
    traceback.print_exception(hook.exc_value)
    os._exit(3)


threading.excepthook = failed
ctx = Context.create("job")
try:
    for name in ("a", "b"):
        made = ctx.create(dtype="u8", shape=(4 << 20,))
        with made.map("w") as array:
            array[0] = 1
        made.publish(name)
        made.release()

    def other():
        with ctx.get("b") as ref:
            for _ in range(int(sys.argv[1])):
                with ref.map("r") as array:
                    int(array[0])

    thread = threading.Thread(target=other)
    thread.start()
    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 1e-4, 1e-4)
    ticks = 0
    with ctx.get("a") as ref:
        held = ref.map("r")  # its views come and go: each holder made under memory's lock
        while thread.is_alive() and ticks < 100000:
            try:
                armed[0] = True
                int(held.array[0])
                armed[0] = False
            except Tick:
                ticks += 1
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        armed[0] = False
        held.unmap()
    thread.join(60)
    print(thread.is_alive(), ticks > 0)
finally:
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    armed[0] = False
    if not thread.is_alive():
        Context.destroy("job")
    else:
        os._exit(4)  # (the other thread holds nothing: it waits for the lock forever)
"""


def test_an_exception_raised_by_a_signal_handler_leaves_no_lock_held_for_other_threads() -> None:
    """Memory's lock (a view made, a map unmapped) taken by a bound acquire call before
    a `try`: an exception from a signal handler right after the call returned left it
    held for good, and the other thread waited forever at its next view or unmap (4 of 4
    runs of 30000 rounds); one that interrupts the wait for it must leave it untaken."""
    done = run_python(_TICKS, "30000", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # (4: the other thread still waits)
    assert done.stdout.split() == ["False", "True"]


def _inside_while_another_thread_acts(stop_at: str, first, second) -> None:
    """Run `first` in a thread that stops (profile) as a function `stop_at` returns, until
    `second`, run in another thread meanwhile, is done (or 3 s have passed)."""
    inside, done = threading.Event(), threading.Event()

    def profile(frame, event, arg):
        if event == "return" and frame.f_code.co_name == stop_at:
            sys.setprofile(None)
            inside.set()
            done.wait(3)

    def stopping():
        sys.setprofile(profile)
        try:
            first()
        finally:
            sys.setprofile(None)

    def acting():
        inside.wait(3)
        try:
            second()
        finally:
            done.set()

    threads = [threading.Thread(target=stopping), threading.Thread(target=acting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_threads_sharing_a_context_never_publish_past_its_capacity() -> None:
    """The quota lock is an OFD lock on the context's file, which threads of one Context
    share: a thread publishing while another held it (its count read, not yet written)
    did not wait, and both wrote their count over the same old one: three allocations
    published in a context room for two, the count one short (and another process could
    then count meanwhile too, the lock let go by the first thread done)."""
    ctx = Context.create("job", capacity=2 * 8192)  # two 4 KiB allocations
    outcome = {}

    def publish(name):
        made = ctx.create(4096)
        try:
            made.publish(name)
            outcome[name] = "published"
        except OutOfSpace:
            outcome[name] = "OutOfSpace"
        made.release()

    try:
        _inside_while_another_thread_acts(
            "_published", lambda: publish("a"), lambda: (publish("b"), publish("c"))
        )
        assert sorted(outcome.values()) == ["OutOfSpace", "published", "published"]
        assert ctx._registry._published() == 2 * 8192
    finally:
        ctx.close()
        Context.destroy("job")


def test_threads_sharing_a_context_never_take_one_pool_slot_for_two_segments(namespace) -> None:
    """The pool lock, the same way: a thread retiring a segment while another held it
    (a free slot found, not yet written) took that same slot; the other then wrote its
    own over it: a pooled segment without a slot, which no create could claim."""
    ctx = Context.create("job", pool_bytes="64M")
    first, second = ctx.create(2 << 20), ctx.create(2 << 20)
    try:
        _inside_while_another_thread_acts("_free_slot", first.release, second.release)
        files = sorted(n for n in os.listdir(shm_dir()) if n.startswith(f"{namespace}.job.p."))
        assert sorted(name for _, name in pool.pooled(ctx._registry)) == files
    finally:
        ctx.close()
        Context.destroy("job")


def test_a_child_forked_while_another_thread_holds_a_context_lock_can_take_it() -> None:
    """That lock of the process, held by a thread at a fork, is not the child's to wait
    for (the thread is not in the child): the child publishes into the context once the
    parent's thread has let go of the quota lock, not never (its copy of the process's
    lock stayed held for good: a Timeout)."""
    ctx = Context.create("job", capacity=4 * 8192)
    forked = []

    def publish(name):
        made = ctx.create(4096)
        made.publish(name)
        made.release()

    def fork():
        pid = os.fork()
        if pid == 0:
            try:
                publish("child")
            except BaseException:
                os._exit(1)
            os._exit(0)
        forked.append(pid)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CLARA_LOCK_TIMEOUT", "20")  # (the parent's thread lets go first)
            _inside_while_another_thread_acts("_published", lambda: publish("a"), fork)
        assert os.waitpid(forked[0], 0)[1] == 0
        assert sorted(ctx.names()) == ["a", "child"]
    finally:
        ctx.close()
        Context.destroy("job")


def test_a_forked_child_and_its_parent_exclude_each_other_at_a_context_lock() -> None:
    """A forked child shared its parent's open file of the context, and so its OFD locks:
    a child publishing while its parent held the quota lock (its count read) went in at
    once, as a thread did (three allocations in room for two, counted as one). The child
    has an open file of its own: it waits, as any other process does. (The parent, inside,
    gives the child a second to come in too; it never may.)"""
    ctx = Context.create("job", capacity=2 * 8192)
    go_r, go_w = os.pipe()
    inside_r, inside_w = os.pipe()

    def when_inside(then):
        def profile(frame, event, arg):
            if event == "return" and frame.f_code.co_name == "_published":
                sys.setprofile(None)
                then()

        return profile

    def publish(name, profile):
        made = ctx.create(4096)
        sys.setprofile(profile)
        try:
            made.publish(name)
        finally:
            sys.setprofile(None)
            made.release()

    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.read(go_r, 1)
                publish("child", when_inside(lambda: os.write(inside_w, b"i")))
            except BaseException:
                os._exit(1)
            os._exit(0)
        both_inside = []

        def let_the_child_try():
            os.write(go_w, b"g")
            both_inside.append(bool(select.select([inside_r], [], [], 1.0)[0]))

        publish("parent", when_inside(let_the_child_try))
        assert os.waitpid(pid, 0)[1] == 0
        assert both_inside == [False]
        assert sorted(ctx.names()) == ["child", "parent"]
        assert ctx._registry._published() == 2 * 8192
    finally:
        for fd in (go_r, go_w, inside_r, inside_w):
            os.close(fd)
        ctx.close()
        Context.destroy("job")


def test_a_finalizer_or_handler_inside_a_context_lock_never_waits_for_its_own_thread() -> None:
    """The lock of the process under the quota and pool locks, held by a thread, is not
    waited for by that very thread: a finalizer (the collector runs them wherever a thread
    allocates, a released allocation's goes to the pool) or a signal handler inside its
    section would wait for its own frame. Inside the pool lock it does without the pool
    at once (it waited the pool's wait each time: 3 s -> 50 s for
    test_pool.py's finalizer test); inside the quota lock its publish or free is Busy
    (it waited for the lock's timeout, then Timeout)."""
    script = """
    import faulthandler, os
    os.environ["CLARA_LOCK_TIMEOUT"] = "600"
    faulthandler.dump_traceback_later(30, exit=True)  # a wait for its own frame: exit 1
    from clara_core import Busy, Context, registry

    registry.POOL_WAIT = 600.0
    ctx = Context.create("job", capacity=8 << 20)
    reg = ctx._registry
    with reg.pool_locked() as outer, reg.pool_locked() as inner:
        print("pool", outer, inner)
    with reg.publishing(8192, "an allocation"):
        try:
            with reg.unpublishing(8192):
                print("quota entered")
        except Busy:
            print("quota Busy")
    ctx.close()
    Context.destroy("job")
    """
    result = run_python(script, timeout=60)
    assert (result.returncode, result.stdout) == (0, "pool True False\nquota Busy\n"), (
        result.stderr[-2000:]
    )
