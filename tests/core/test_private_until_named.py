"""A fresh private allocation keeps its locks and data state in memory while it has no name
(no other process can reach it); everything must be in the file, and every lock held,
before the file gets a name or a forked child shares it."""

from __future__ import annotations

import gc
import os
import sys
import textwrap
import weakref

import numpy as np
import pytest

from clara_core import Busy, Context, Incomplete, InvalidArgument, NeverWritten, Timeout
from clara_core.names import shm_dir
from clara_core.shm import locks
from tests.helpers import run_python


@pytest.fixture
def ctx():
    context = Context.create("job")
    yield context
    Context.destroy("job")


def _map_elsewhere(how: str) -> str:
    """In another process: `how` gives a reference; map it for reading; what happened."""
    result = run_python(
        f"""
        from clara_core import Context, ClaraError
        ctx = Context.open("job")
        try:
            with {how}.map("r") as array:
                print("read", array.tolist())
        except ClaraError as exc:
            print(type(exc).__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_publishing_while_still_writing_keeps_readers_out(ctx):
    alloc = ctx.create(dtype="u8", shape=(4,))
    mapping = alloc.map("w")
    mapping.array[:] = [1, 2, 3, 4]
    alloc.publish("data")  # still mapped for writing: its write lock comes with the name
    assert _map_elsewhere('ctx.get("data")') == "Busy"
    mapping.unmap()
    assert _map_elsewhere('ctx.get("data")') == "read [1, 2, 3, 4]"
    alloc.release()


def test_a_handle_given_while_writing_keeps_readers_out(ctx):
    alloc = ctx.create(dtype="u8", shape=(2,))
    mapping = alloc.map("w")
    mapping.array[:] = [7, 8]
    handle = alloc.make_handle()
    assert _map_elsewhere(f'ctx.open_handle("{handle}")') == "Busy"
    mapping.unmap()
    assert _map_elsewhere(f'ctx.open_handle("{handle}")') == "read [7, 8]"
    alloc.free()


def test_the_data_state_reaches_the_file_at_publish(ctx):
    """Written (complete), failed mid-write (incomplete) or never written (empty) before
    publish: readers elsewhere see what the creator saw."""
    written = ctx.create(dtype="u8", shape=(3,))
    failed = ctx.create(dtype="u8", shape=(3,))
    empty = ctx.create(dtype="u8", shape=(3,))
    with written.map("w") as array:
        array[:] = 5
    with pytest.raises(RuntimeError), failed.map("w") as array:
        array[:] = 6
        raise RuntimeError("operator bug")
    assert [a.state for a in (written, failed, empty)] == ["complete", "incomplete", "empty"]
    with pytest.raises(Incomplete):
        failed.map("r")
    with pytest.raises(NeverWritten):
        empty.map("r")
    for alloc, name in ((written, "written"), (failed, "failed"), (empty, "empty")):
        alloc.publish(name)
    assert _map_elsewhere('ctx.get("written")') == "read [5, 5, 5]"
    assert _map_elsewhere('ctx.get("failed")') == "Incomplete"
    assert _map_elsewhere('ctx.get("empty")') == "NeverWritten"
    for alloc in (written, failed, empty):
        alloc.release()


def test_a_published_creator_is_a_counted_reference(ctx):
    alloc = ctx.create(4096)
    alloc.publish("data")
    fd = os.open(alloc.path, os.O_RDONLY | os.O_CLOEXEC)  # another open file, holding nothing
    try:
        assert locks.held_by_others(fd, locks.REFERENCE_BYTE)
    finally:
        os.close(fd)
    alloc.release()


def test_a_child_forked_to_fill_a_private_allocation_writes_what_its_parent_publishes(ctx):
    alloc = ctx.create(dtype="i32", shape=(8,))
    pid = os.fork()
    if pid == 0:  # the child: fills the allocation it shares, never returns into pytest
        code = 1
        try:
            with alloc.map("w") as array:
                array[:] = np.arange(8) * 3
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert alloc.state == "complete"
    alloc.publish("filled")
    assert _map_elsewhere('ctx.get("filled")') == f"read {list(range(0, 24, 3))}"
    alloc.release()


def test_a_forked_childs_private_write_map_names_the_child_as_its_writer(ctx):
    # The parent's write map of a fresh allocation first: the data states such a map
    # writes are kept per process (header.own_write_states), and must not be its parent's.
    first = ctx.create(dtype="i32", shape=(8,))
    with first.map("w") as array:
        array[:] = 1
    del array
    pid = os.fork()
    if pid == 0:  # the child: dies mid-write of its own fresh allocation, published
        code = 1
        try:
            mine = ctx.create(dtype="i32", shape=(8,))
            mapping = mine.map("w")
            mapping.array[:] = 2
            mine.publish("half")
            code = 0
        finally:
            os._exit(code)  # (no unmap: the map lock goes with the process)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with pytest.raises(Incomplete, match=rf"its writer \(pid {pid}\) died"):
        ctx.get("half").map("r")
    ctx.get("half").free()
    first.release()


def test_a_forked_child_leaves_what_it_inherited_to_its_parent(ctx, namespace):
    """A child shares its parent's open files, and so their locks. When it lets go of what
    it inherited (a release, the finalizers of a normal exit) it must not mark its
    parent's unfinished write complete, drop its lock, or put a private allocation its
    parent still uses into the pool."""
    result = run_python(
        """
        import os, sys
        from clara_core import Context
        from clara_core.names import shm_dir
        ctx = Context.open("job")
        alloc = ctx.create(dtype="u8", shape=(4,))
        alloc.publish("data")
        mapping = alloc.map("w")
        mapping.array[:2] = [1, 2]  # half written
        big = ctx.create(2 << 20)  # big enough for the pool
        pid = os.fork()
        if pid == 0:
            big.release()
            sys.exit(0)  # a normal exit: finalizers close what it inherited
        os.waitpid(pid, 0)
        pooled = [n for n in os.listdir(shm_dir()) if n.startswith(sys.argv[1] + ".job.p.")]
        print(ctx.get("data").state, pooled)
        mapping.unmap()
        alloc.free()
        big.release(recycle=False)
        """,
        namespace,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "writing []\n", "")


def _seen_through(path: str) -> str:
    """In another process: the data state, and the locks others hold, of the file at `path`."""
    result = run_python(
        f"""
        import os
        from clara_core.shm import header, locks
        fd = os.open({path!r}, os.O_RDONLY)
        state = header.read_data_state(os.pread(fd, header.DATA_END, 0)).state
        print(header.DATA_STATES[state], locks.held_by_others(fd, locks.REFERENCE_BYTE),
              locks.held_by_others(fd, locks.MAP_BYTE, exclusive_only=True))
        """
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_private_allocations_path_shows_other_programs_the_true_state(ctx):
    """`path` (and Mapping.path) hands the file to other programs: they must see the data
    state and the locks its creator kept in memory while nobody else could reach it."""
    written = ctx.create(dtype="u8", shape=(4,))
    with written.map("w") as array:
        array[:] = 9
    assert _seen_through(written.path) == "complete True False"
    writing = ctx.create(dtype="u8", shape=(4,))
    mapping = writing.map("w")
    assert _seen_through(mapping.path) == "writing True True"
    mapping.unmap()
    assert _seen_through(writing.path) == "complete True False"
    for alloc in (written, writing):
        alloc.release()


def test_a_fork_in_another_thread_never_loses_a_private_maps_lock_or_state(ctx):
    """A fork brings every private allocation's deferred locks and data state to its file
    (in the forking thread, see clara_core/forks.py). Another thread mapping or unmapping
    one of them at that moment (mmap lets the GIL go) must not end with the file saying
    'empty' under its write map, nor with a map lock nobody holds a map for."""
    result = run_python(
        """
        import os, sys, threading
        from clara_core import Context
        from clara_core.shm import locks
        sys.setswitchinterval(1e-6)  # switch threads as often as CPython can
        ctx = Context.open("job")
        wrong, done = [], threading.Event()

        def write_fresh_allocations():
            while not done.is_set():
                alloc = ctx.create(dtype="u8", shape=(500_000,))  # (too small to pool)
                mapping = alloc.map("w")  # populated: mmap takes a while, GIL let go
                if alloc.state != "writing":
                    wrong.append(f"mapped for writing, but {alloc.state}")
                mapping.unmap()
                if alloc.state != "complete":
                    wrong.append(f"unmapped, but {alloc.state}")
                fd = os.open(alloc.path, os.O_RDONLY)
                if not locks.try_lock(fd, locks.MAP_BYTE, False):
                    wrong.append("unmapped, but still locked")
                os.close(fd)
                alloc.release()

        writer = threading.Thread(target=write_fresh_allocations)
        writer.start()
        for _ in range(150):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        done.set()
        writer.join(30)
        assert not writer.is_alive(), 'the writer hung'
        print(sorted(set(wrong)))
        """
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "[]\n")


def test_a_private_allocation_dropped_unreleased_is_released_at_once(ctx):
    """While its locks wait in memory it is listed for the fork hook (forks.private): that
    list must not keep it alive, or an allocation dropped without release() would keep
    its file open (and its memory out of the pool) until the process ends."""
    gc_was_on = gc.isenabled()
    gc.disable()  # released by its last reference going, not by a collection
    try:
        alloc = ctx.create(4096)
        with alloc.map("w") as array:
            array[...] = 7
        del array
        fd, dropped = alloc._fd, weakref.ref(alloc)
        assert os.fstat(fd).st_nlink == 0  # nameless: its locks still wait in memory
        del alloc
        assert dropped() is None
        with pytest.raises(OSError):
            os.fstat(fd)  # closed with it (or already another file's: then not nameless)
    finally:
        if gc_was_on:
            gc.enable()


def test_a_fork_never_writes_a_closed_allocations_state_into_the_file_now_on_its_fd(ctx):
    """The fork hook works on the private allocations of every thread, by their fds. If
    another thread releases one the hook has listed (its fd closed) and gets a published
    allocation, which takes the same fd number, the hook must not then write the first
    one's deferred data state ('empty') into the second's file: that one, complete, read
    as never written by every process. The forking thread is stopped at the hook's step
    for the first allocation (sys.setprofile) until the other thread is done, or for at
    most 2 s (with the fix, that thread waits for the hook instead)."""
    result = run_python(
        """
        import os, sys, threading
        from clara_core import Context
        from clara_core.shm import header as hdr

        ctx = Context.open("job")
        made = ctx.create(dtype="u8", shape=(64,))
        with made.map("w") as array:
            array[:] = 5
        made.publish("q")
        made.release()
        private = ctx.create(dtype="u8", shape=(64,))
        close_now, closed, got = threading.Event(), threading.Event(), []

        def closer():
            close_now.wait()
            private.release()
            got.append(ctx.get("q"))  # (the lowest free fd: the one just closed)
            closed.set()

        def profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "_materialize":
                if frame.f_locals.get("self") is private:
                    sys.setprofile(None)
                    close_now.set()
                    closed.wait(2)

        thread = threading.Thread(target=closer)
        thread.start()
        fd = private._fd
        sys.setprofile(profile)
        pid = os.fork()
        sys.setprofile(None)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        thread.join(30)
        assert not thread.is_alive(), 'the closer hung'
        other = got[0]
        state = hdr.read_data_state(os.pread(other._fd, hdr.DATA_END, 0)).state
        with ctx.get("q").map("r") as array:
            print(fd == other._fd, state == hdr.COMPLETE, array.tolist() == [5] * 64)
        other.release()
        ctx.get("q").free()
        """
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "True True True\n")


def test_a_fork_hook_and_a_finalizer_under_memorys_lock_never_wait_for_each_other(ctx):
    """A close waits while the fork hook runs (forks._hook), and a finalizer may close a
    reference anywhere: in a thread inside memory's _lending section (an unmap), whose
    close then waits for the hook, while a finalizer run inside the hook releases a map
    and so waits for _lending. The hook takes _lending first: then neither waits for
    the other. Both threads are stopped where it counts (sys.setprofile); a join
    timeout turns a hang into a failure (rev6's hook_deadlock2.py)."""
    result = run_python(
        """
        import os, sys, threading, time
        from clara_core import Context

        ctx = Context.open("job")
        go = threading.Event()
        first = ctx.create(dtype="u8", shape=(64,))  # the reference the hook holds
        keep = {}

        def releasing():  # inside an unmap (under _lending), a finalizer closes `victim`
            keep["victim"] = [ctx.create(dtype="u8", shape=(64,))]
            other = ctx.create(dtype="u8", shape=(64,))
            mapping = other.map("w")
            mapping.array[:] = 1
            calls = ("write_staged", "pwrite", "munmap")

            def profile(frame, event, arg):
                if event == "c_call" and getattr(arg, "__name__", "") in calls:
                    sys.setprofile(None)
                    go.set()
                    time.sleep(0.5)  # (the fork hook starts meanwhile)
                    keep["victim"].clear()

            sys.setprofile(profile)
            mapping.unmap()
            sys.setprofile(None)
            other.release()

        def forking():  # inside the hook, a finalizer releases a read map
            mapped = ctx.create(dtype="u8", shape=(64,))
            reading = mapped.map("r", allow_incomplete=True)
            reading.array  # noqa: B018 (mapped now)
            keep["mapped"] = [mapped, reading]
            del mapped, reading

            def profile(frame, event, arg):
                if event == "call" and frame.f_code.co_name == "_materialize":
                    sys.setprofile(None)
                    keep["mapped"].clear()

            go.wait()
            sys.setprofile(profile)
            pid = os.fork()
            sys.setprofile(None)
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        threads = [threading.Thread(target=f, daemon=True) for f in (releasing, forking)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        if any(thread.is_alive() for thread in threads):
            print("deadlock", flush=True)
            os._exit(3)
        first.release()
        print("no deadlock")
        """
    )
    assert (result.returncode, result.stdout) == (0, "no deadlock\n"), result.stderr


def _a_later_file_survives(script: str) -> None:
    """Run `script` in a fresh interpreter: it interrupts clara (^C: an exception a
    profile or trace function raises) and then opens `mine`, which takes the lowest free
    fd number; once the dead Allocation is collected, `mine` must still be open (EBADF if
    its finalizer closed the number a second time)."""
    result = run_python(
        "import gc, os, sys\nfrom clara_core import Context\n"
        + textwrap.dedent(script)
        + 'gc.collect()\nos.write(mine, b"x")\nprint("mine")\n'
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "mine\n")


def test_an_interrupted_create_never_closes_a_later_file(ctx):
    """^C (an exception a signal handler raises; here a trace function's, at the call of
    `_defer`) after create made the Allocation but before it returned it: the fd is closed
    once. Create's cleanup closed it, then the Allocation's finalizer closed the number
    again, whatever file had taken it since (here the caller's own). (A large one: a small
    one is made in one call, see the next test.)"""
    _a_later_file_survives(
        """
        def trace(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "_defer":
                sys.settrace(None)
                raise KeyboardInterrupt
            return None

        ctx = Context.open("job")
        sys.settrace(trace)
        try:
            ctx.create(dtype="u8", shape=(64 << 10,))
        except KeyboardInterrupt as exc:
            sys.settrace(None)
            mine = os.open("/dev/null", os.O_WRONLY)  # takes the number just freed
            del exc
        """
    )


@pytest.mark.parametrize("where", ["created", "returned"])
def test_an_interrupted_small_create_never_closes_a_later_file(ctx, where):
    """The same for a small one, made in one call (making.create_private, C or its twin):
    ^C as that call returns (`created`), or as members.new_allocation returns it
    (`returned`), loses the Allocation, whose finalizer closes its fd once."""
    _a_later_file_survives(
        f"""
        def profile(frame, event, arg):
            called = frame.f_code.co_name
            if event.startswith("c_"):
                called = getattr(arg, "__name__", "")
            if {where!r} == "created" and event in ("c_return", "return") and called.endswith(
                "create_private"
            ):
                sys.setprofile(None)
                raise KeyboardInterrupt
            if {where!r} == "returned" and event == "return" and called == "new_allocation":
                sys.setprofile(None)
                raise KeyboardInterrupt
            return None

        ctx = Context.open("job")
        sys.setprofile(profile)
        try:
            ctx.create(dtype="u8", shape=(64,))
        except KeyboardInterrupt as exc:
            sys.setprofile(None)
            mine = os.open("/dev/null", os.O_WRONLY)  # takes the number just freed
            del exc
        """
    )


def test_an_interrupted_free_never_closes_a_later_file(ctx):
    """^C as free's one call (making.free_named, C or its twin) returns, having closed the
    fd: the reference stays closed, and its finalizer does not close the number again,
    whatever file has it by then (here the caller's own). (brk7's P2D-1.)"""
    _a_later_file_survives(
        """
        def profile(frame, event, arg):
            called = frame.f_code.co_name
            if event.startswith("c_"):
                called = getattr(arg, "__name__", "")
            if event in ("c_return", "return") and called.endswith("free_named"):
                sys.setprofile(None)
                raise KeyboardInterrupt
            return None

        ctx = Context.open("job")
        alloc = ctx.create(dtype="u8", shape=(64,))
        alloc.publish("freed")
        sys.setprofile(profile)
        try:
            alloc.free()
        except KeyboardInterrupt:
            sys.setprofile(None)
        mine = os.open("/dev/null", os.O_WRONLY)  # takes the number just freed
        assert alloc.released
        assert "freed" not in ctx.names()
        del alloc
        """
    )


def _segments_open_here() -> list[str]:
    """The shared-memory files this process has open (a nameless one shows as '#inode')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # (listdir's own fd, closed meanwhile)
            continue
        if target.startswith(shm_dir() + "/") and target != shm_dir():
            found.append(target)
    return found


def _interrupted_at(returning: str, action) -> None:
    """Run `action` with an exception a signal handler raises (^C) right after the first
    call of `returning` (a C function, or a Python one of that name; a twin's name is
    that of the C function with an underscore before it) returns."""

    def profile(frame, event, arg):
        called = getattr(arg, "__name__", "") if event == "c_return" else frame.f_code.co_name
        if event in ("c_return", "return") and called in (returning, f"_{returning}"):
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        with pytest.raises(KeyboardInterrupt):
            action()
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("returning", ["id", "pop"])
def test_a_release_interrupted_closes_the_file_all_the_same(ctx, returning):
    """^C in release once the reference is marked closed (as it forgets the fork hook's
    record of a fresh one): its fd stayed open for good, and with it the segment's memory
    and reference lock (its finalizer closes nothing once it is marked closed)."""
    before = _segments_open_here()
    alloc = ctx.create(dtype="u8", shape=(64,))
    _interrupted_at(returning, alloc.release)
    assert alloc.released
    assert _segments_open_here() == before


@pytest.mark.parametrize("returning", ["fstat", "fstatvfs", "posix_fallocate", "pwrite"])
def test_a_large_create_interrupted_while_it_reserves_leaves_nothing(ctx, returning):
    """^C as a large create reserves its memory (posix_fallocate writes every page: about
    a second per GB here, a time to lose patience in): the nameless segment stayed open
    and reserved until the process ended, nobody's, that no leak-check could see."""
    before = _segments_open_here()
    _interrupted_at(returning, lambda: ctx.create(8 << 20))
    gc.collect()
    assert _segments_open_here() == before


def test_a_publish_retried_after_an_interrupt_after_its_link_keeps_it_published():
    """(A context with a capacity: publish's Python path.) ^C right after segment.link
    linked the name: the allocation is published; the retry found the name taken, took it
    for someone else's, wrote the header private and nameless and raised AlreadyExists:
    nobody could get the allocation any more, nor free it, until destroy. The retry now
    finds the name taken by this very segment, and is done. (The one call's case: below.)"""
    counted = Context.create("counted", capacity="1M")
    try:
        alloc = counted.create(dtype="u8", shape=(4,))
        with alloc.map("w") as array:
            array[:] = [5, 6, 7, 8]
        _interrupted_at("link_open_file", lambda: alloc.publish("data"))
        assert counted.names() == ["data"]
        alloc.publish("data")
        alloc.release()
        with counted.get("data") as reader, reader.map("r") as seen:
            assert seen.tolist() == [5, 6, 7, 8]
        counted.get("data").free()
        assert counted.names() == []
    finally:
        counted.close()
        Context.destroy("counted")


def test_a_publish_interrupted_after_its_link_is_published_and_stays_so(ctx):
    """^C as publish's one call (making.publish, C or its twin) returns, the name linked:
    the reference knows it is published. It stayed private, its header pending (its locks
    not taken): its next write map took no lock while a reader of the published name had
    it mapped (both at once), and its retry found the name taken (see above)."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    with alloc.map("w") as array:
        array[:] = [1, 2, 3, 4]
    _interrupted_at("publish", lambda: alloc.publish("data"))  # (making's, not the method's)
    with ctx.get("data") as reader, reader.map("r") as seen:
        assert seen.tolist() == [1, 2, 3, 4]
        with pytest.raises((Busy, Timeout)):
            alloc.map("w", timeout=0.05)
    with pytest.raises(InvalidArgument, match="already published"):
        alloc.publish("data")
    alloc.release()
    assert _map_elsewhere('ctx.get("data")') == "read [1, 2, 3, 4]"
    ctx.get("data").free()
    assert ctx.names() == []


@pytest.mark.parametrize("returning", ["link_open_file", "_drop_old_name"])
def test_a_handle_given_as_a_make_handle_is_interrupted_is_the_one_its_retry_returns(
    ctx, namespace, returning
):
    """^C right after make_handle linked the handle's name (as the link returns, or as the
    next step does): the allocation has that handle, and the retry returns it. It made a
    second one, and the first name stayed, over a segment its reference no longer knew,
    until leak-check found this process dead (a long-lived one: never)."""
    alloc = ctx.create(dtype="u8", shape=(4,))
    _interrupted_at(returning, alloc.make_handle)
    handle = alloc.make_handle()
    handles = [n for n in os.listdir(shm_dir()) if n.startswith(f"{namespace}.") and ".h." in n]
    assert [n.rsplit(".", 1)[1] for n in handles] == [handle]
    ctx.open_handle(handle).publish("data")
    alloc.release()
    ctx.get("data").free()
    assert [n for n in os.listdir(shm_dir()) if n.startswith(f"{namespace}.job.")] == []
