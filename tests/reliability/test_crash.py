"""Crash matrix: kill -9 at each point of an allocation's life, many trials per point.

After every kill: no lock is held (a new writer maps at once, the dead process's context
still takes publishes and recycles), no reader hangs, torn data reads as incomplete, and
leak-check --fix brings the namespace's files back to exactly what they were before.
Every trial runs its checks and records a failure instead of stopping, so the figures
show how many of the trials went wrong; the test fails if any did.
"""

from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from clara_core import Context, Incomplete, NotFound, inspect, leaks, names
from clara_core.names import shm_dir
from clara_core.shm import header
from tests.cli.clirun import clara
from tests.helpers import Child

from .figures import Area
from .harness import LEFT_LOCK, SAFETY, deadline, kill9, our_files
from .trials import CLI_EVERY, TRIALS, Trials, reclaim

SIZE = 256 << 10  # bytes of the allocation written and torn

# The dying process: makes its own context (bound to itself), reaches `point`, says
# "ready" and waits for its kill -9; at "write" it keeps rewriting the data meanwhile.
CHILD = """
import os, sys, time
from clara_core import Context

point, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context.create(name, owner_pid=os.getpid(), capacity="64M", pool_bytes="4M")
ctx.create(1 << 20).release()  # into the pool: the pool lock was taken
keep = []
if point == "create":
    keep.append(ctx.create(4096))  # private: the kernel frees it with us
    handed = ctx.create(8192)
    handed.make_handle()  # reachable by handle: orphaned once we are dead
    keep.append(handed)
else:
    x = ctx.create(size)
    m = x.map("w")
    m.buffer[:] = b"\\x01" * size
    m.unmap()
    x.publish("x")  # the capacity lock was taken
    keep.append(x)
if point == "read":
    reader = ctx.get("x")
    keep.append(reader)
    keep.append(reader.map("r"))
if point == "write":
    writer = ctx.get("x")
    buffer = writer.map("w").buffer
    chunk = 4096
    print("ready", flush=True)
    generation = 2
    while True:  # rewrite the data chunk by chunk until killed mid-copy
        fill = bytes([generation % 256]) * chunk
        for offset in range(0, size, chunk):
            buffer[offset : offset + chunk] = fill
        generation += 1
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def bystander() -> Context:
    """A context of the test, with published data, that every reclaim must leave alone."""
    ctx = Context.create("keep")
    data = ctx.create(4096)
    with data.map("w") as array:
        array[:] = 42
    data.publish("data")
    data.release()
    yield ctx
    Context.destroy("keep")


def _check_bystander(ctx: Context) -> None:
    with ctx.get("data") as data, data.map("r") as array:
        assert (array == 42).all(), "the bystander's data changed"


def _probe(ctx: Context) -> None:
    """The dead process's context still publishes (capacity lock) and recycles (pool lock)."""
    probe = ctx.create(4096)
    probe.publish("probe")
    probe.release()
    recycled = ctx.create(1 << 20)
    recycled.release()


def _read_all(ctx: Context, key: str = "x", allow_incomplete: bool = False) -> bytes:
    with ctx.get(key) as x:
        mapping = x.map("r", allow_incomplete=allow_incomplete)
        try:
            return bytes(mapping.buffer)
        finally:
            mapping.unmap()


@pytest.mark.parametrize("point", ["create", "publish", "read", "write"])
def test_kill_9_of_a_process_using_the_library(point: str, area: Area, bystander: Context):
    """The library's own process dies: after create, after publish, holding a read map,
    holding a write map in the middle of a copy."""
    before = our_files()
    torn = 0
    rng = random.Random(point)

    def trial(i: int) -> None:
        nonlocal torn
        name = f"{point}{i}"
        child = Child(CHILD, point, name, str(SIZE))
        with deadline(SAFETY, "the child getting ready"):
            child.expect("ready")
        if point == "write":
            time.sleep(rng.uniform(0, 0.01))  # land anywhere in the copy loop
        assert kill9(child.process) == -9
        child.close()
        with Context.open(name) as ctx:
            if point != "create":
                with ctx.get("x") as x:
                    expected = "incomplete" if point == "write" else "complete"
                    assert x.state == expected
                if point == "write":
                    with pytest.raises(Incomplete):
                        _read_all(ctx)
                    data = _read_all(ctx, allow_incomplete=True)
                    torn += len(set(data)) > 1
                    if i % CLI_EVERY == 0:  # a reader that would wait forever does not
                        read = clara(
                            "map", "x", "-c", name, "--read", "--timeout", "inf", "--out", "-"
                        )
                        assert read.returncode == 6, read.stderr.decode()
                else:
                    assert _read_all(ctx) == b"\x01" * SIZE
                with ctx.get("x") as x:
                    mapping = x.map("w", timeout=LEFT_LOCK)  # Timeout if a lock were left
                    mapping.buffer[:] = b"\x02" * SIZE
                    mapping.unmap()
                assert _read_all(ctx) == b"\x02" * SIZE
            _probe(ctx)
        report = leaks.check()
        mine = {f.segment.file_name: f.status for f in report.findings if f.segment.context == name}
        assert mine and set(mine.values()) <= {"owner-dead", "orphaned"}, mine
        reclaim(i)
        assert our_files() == before
        _check_bystander(bystander)

    Trials(area, point, before).run(trial, TRIALS)
    if point == "write":
        area.set("write kills that tore the data", f"{torn}/{TRIALS}")


# The dying process at a random instant: random operations of every kind on its context
# (big ones recycled through the pool), killed wherever it happens to be.
RANDOM_CHILD = """
import os, random, sys
from clara_core import AlreadyExists, Busy, Context, Incomplete, NotFound

name, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
ctx = Context.create(name, owner_pid=os.getpid(), capacity="64M", pool_bytes="8M")
held = []
print("ready", flush=True)

def write(alloc):
    mapping = alloc.map("w")
    size = len(mapping.buffer)
    fill = bytes([rng.randrange(1, 256)]) * size
    for offset in range(0, size, 65536):
        mapping.buffer[offset : offset + 65536] = fill[offset : offset + 65536]
    mapping.unmap()

while True:
    roll, key = rng.random(), rng.choice("abcd")
    try:
        if roll < 0.3:
            size = rng.choice([4096, 65536, 1 << 20, 3 << 19])
            alloc = ctx.create(size)
            write(alloc)
            alloc.publish(key) if rng.random() < 0.8 else alloc.make_handle()
            held.append(alloc)
        elif roll < 0.5:
            alloc = ctx.get(key)
            held.append((alloc, alloc.map("r")))
        elif roll < 0.7:
            with ctx.get(key) as alloc:
                write(alloc)
        elif roll < 0.85:
            ctx.get(key).free()
        elif held:
            item = held.pop(rng.randrange(len(held)))
            if isinstance(item, tuple):
                item[1].unmap()
                item = item[0]
            item.release()
    except (AlreadyExists, Busy, Incomplete, NotFound):
        pass
"""


def test_kill_9_at_a_random_instant(area: Area, bystander: Context) -> None:
    """Random operations of every kind, killed anywhere: data marked complete is whole, no
    lock is left, and leak-check --fix leaves exactly what was there before."""
    before = our_files()
    rng = random.Random("anywhere")
    seen = {"complete": 0, "incomplete": 0, "pooled": 0, "handles": 0}

    def trial(i: int) -> None:
        name = f"any{i}"
        child = Child(RANDOM_CHILD, name, str(i))
        with deadline(SAFETY, "the child getting ready"):
            child.expect("ready")
        time.sleep(rng.uniform(0.0, 0.25))
        assert kill9(child.process) == -9
        child.close()
        with Context.open(name) as ctx:
            for key in ctx.names():
                with ctx.get(key) as alloc:
                    state = alloc.state
                    assert state in ("complete", "incomplete"), (key, state)
                    seen[state] += 1
                    if state == "complete":
                        data = _read_all(ctx, key)
                        assert len(set(data)) == 1 and data[0], f"{key} complete but torn"
                    mapping = alloc.map("w", timeout=LEFT_LOCK)  # Timeout if a lock were left
                    mapping.unmap()
            seen["pooled"] += sum(".p." in f for f in our_files() if f".{name}." in f)
            seen["handles"] += sum(".h." in f for f in our_files() if f".{name}." in f)
            _probe(ctx)
        reclaim(i)
        assert our_files() == before
        _check_bystander(bystander)

    try:
        Trials(area, "random instant", before).run(trial, TRIALS)
    finally:
        area.set("left by random kills", ", ".join(f"{n} {k}" for k, n in seen.items()))


def test_what_a_kill_in_the_narrowest_windows_leaves(area: Area) -> None:
    """Two windows of microseconds that the random kills above hit only now and then,
    reproduced as the files they leave: free() killed between marking the segment freed
    and removing its name, and publish() of a recycled segment killed between linking
    its new name and removing its pool name."""
    ctx = Context.create("job", pool_bytes="16M")
    try:
        x = ctx.create(4096)
        x.publish("x")
        x.release()
        path = os.path.join(shm_dir(), names.allocation_file("job", "a", "x"))
        with open(path, "r+b") as f:  # what free() has done when it is killed
            f.seek(header.LIFECYCLE_AT)
            f.write(header.pack_lifecycle(header.FREED))
        assert ctx.names() == []
        [finding] = [f for f in leaks.check().findings if f.segment.name == "x"]
        assert finding.status == "orphaned", finding
        leaks.reclaim()
        again = ctx.create(4096)
        again.publish("x")  # the name is usable again
        again.release()

        y = ctx.create(2 << 20)
        with y.map("w") as array:
            array[:] = 7
        y.publish("y")
        y.release()
        pool_name = names.member_file(ctx.file_name, names.POOLED, f"{2 << 20:x}-deadbeef0000")
        os.link(  # what publish() of a recycled segment has done when it is killed
            os.path.join(shm_dir(), names.allocation_file("job", "a", "y")),
            os.path.join(shm_dir(), pool_name),
        )
        other = ctx.create(2 << 20)  # must not be handed y
        with other.map("w") as array:
            array[:] = 1
        other.release()
        with ctx.get("y") as y_again, y_again.map("r") as array:
            assert (array == 7).all(), "a create recycled a published allocation"
        leaks.reclaim()
        assert pool_name not in our_files()
        assert ctx.names() == ["x", "y"]
        area.trials += 2
    finally:
        ctx.destroy()


# A process of ours in the middle of freeing x: it holds x's lifecycle lock.
_FREEING = """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 2, 1, 0))
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["member-busy", "killed"])
def test_a_destroy_that_did_not_finish_leaves_nothing_to_the_next_context(
    how: str, area: Area
) -> None:
    """destroy() removes the context's name first, then its members: killed in between,
    or meeting a member whose lock is held past its timeout, it leaves members behind.
    The next context of that name (the next run of the job) must not take them as its
    own: not list them, not hand them to get(), not count them toward its capacity, not
    refuse to publish their names; leak-check calls them orphaned and --fix removes them."""
    ctx = Context.create("job", capacity="1M")
    x = ctx.create(dtype="u8", shape=(4096,))
    with x.map("w") as array:
        array[:] = 7
    x.publish("x")
    x.release()
    x_path = os.path.join(shm_dir(), names.allocation_file("job", "a", "x"))
    ctx.close()
    if how == "killed":  # what destroy() has done when it is killed
        os.unlink(os.path.join(shm_dir(), names.context_file("job")))
    else:
        holder = Child(_FREEING, x_path)
        try:
            holder.expect("held")
            Context.destroy("job", timeout=0.5)
        finally:
            holder.kill()
    assert os.path.exists(x_path), "nothing was left: the test reproduces nothing"
    again = Context.create("job", capacity="1M")
    try:
        assert again.names() == []
        assert inspect.context_members("job")[1] == []  # what clara dump job lists
        with pytest.raises(NotFound):
            again.get("x")
        [left] = [f for f in leaks.check().findings if f.segment.name == "x"]
        assert left.status == "orphaned", left
        x = again.create(dtype="u8", shape=(4096,))
        with x.map("w") as array:
            array[:] = 1
        x.publish("x")  # its name is free again
        x.release()
        with again.get("x") as mine, mine.map("r") as array:
            assert (array == 1).all()
        leaks.reclaim()
        big = again.create((1 << 20) - 4096 - 8192)  # fits only if the old x is not counted
        big.publish("big")
        big.release()
        assert again.names() == ["big", "x"]
        area.trials += 1
    finally:
        again.destroy()


def test_a_context_held_open_across_its_destroy_never_reaches_the_next_one(area: Area) -> None:
    """A process still holding the context object of a job destroyed and started again
    (same name) must not read nor write the new job's allocations through it."""
    old = Context.create("job")
    again = None
    try:
        Context.destroy("job")
        again = Context.create("job")
        x = again.create(dtype="u8", shape=(4096,))
        with x.map("w") as array:
            array[:] = 2
        x.publish("x")
        x.release()
        with pytest.raises(NotFound):
            old.get("x")
        assert old.names() == []
        area.trials += 1
    finally:
        old.close()
        if again is not None:
            again.destroy()


def test_a_segment_left_with_two_names_is_reclaimed_with_its_dead_context() -> None:
    """publish() of a recycled segment killed between linking its new name and removing
    its pool name leaves one file under two names; when its context's owner is dead,
    leak-check --fix removes the context and both names (a random kill found that the
    reclaimer's own lock on the first name refused the second)."""
    owner = subprocess.Popen(["sleep", "60"])
    try:
        ctx = Context.create("job", owner_pid=owner.pid, pool_bytes="16M")
    finally:
        owner.kill()
        owner.wait(SAFETY)
    try:
        x = ctx.create(1 << 20)
        x.publish("x")
        x.release()
        published = os.path.join(shm_dir(), names.allocation_file("job", "a", "x"))
        pooled = os.path.join(shm_dir(), names.allocation_file("job", "p", "100000-0123456789ab"))
        os.link(published, pooled)  # what the killed publish leaves
        kinds = sorted(f.status for f in leaks.check().findings if f.segment.context == "job")
        assert kinds == ["owner-dead"] * 3, kinds
        report = leaks.reclaim()
        assert report.kept == [], report.kept
        assert report.after.clean
        assert not os.path.exists(published) and not os.path.exists(pooled)
        assert not Context.exists("job")
    finally:
        ctx.close()
