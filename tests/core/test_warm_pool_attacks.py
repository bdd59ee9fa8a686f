"""Attacks on warm pools and recycling: interleavings of real processes that once lost
memory or hid it, each pinned down by real locks (never by timing)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from clara_core import Context, leaks, removal
from clara_core.names import shm_dir
from clara_core.registry import POOL_BYTE
from clara_core.shm import locks
from tests.cli.clirun import data
from tests.helpers import Child, run_python, sleeping_in
from tests.reliability.harness import as_other_user, require_root

MIB = 1 << 20

# A job of `context` (using warm pool `warm`, if given) publishes 2 MiB, then frees it
# when told: the free moves it into the pool, waiting as long as it takes for the pool
# lock (a real wait, patched long so that the test decides when it ends).
FREER = """
import sys
from clara_core import Context, registry
registry.POOL_WAIT = 60
context, warm = sys.argv[1], sys.argv[2] or None
ctx = Context.create(context, warm_pool=warm) if warm else Context.open(context)
alloc = ctx.create(2 << 20)
alloc.publish("v")
print("published", flush=True)
sys.stdin.readline()
alloc.free()
print("freed", flush=True)
ctx.close()
"""


def names(namespace: str) -> list[str]:
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace + "."))


def _hold_pool_lock(context: str, namespace: str) -> int:
    fd = os.open(os.path.join(shm_dir(), f"{namespace}.{context}"), os.O_RDWR | os.O_CLOEXEC)
    assert locks.try_lock(fd, POOL_BYTE, True)
    return fd


@pytest.mark.parametrize("pool_of", ["warm pool", "own context"])
def test_a_free_into_a_pool_whose_context_is_destroyed_meanwhile_leaves_no_orphan(
    namespace, pool_of
):
    """A free waits for the pool lock to move its segment into the pool (the warm
    pool's, or its own context's); meanwhile that context is destroyed. The segment
    used to be renamed into the destroyed context's pool all the same: an orphan that
    only leak-check --fix removed (or a later destroy of a context of that name)."""
    Context.create("warm", pool_bytes="64M").close()
    if pool_of == "warm pool":
        freer, destroyed = Child(FREER, "job", "warm"), "warm"
    else:
        Context.create("job", pool_bytes="64M").close()
        freer, destroyed = Child(FREER, "job", ""), "job"
    held = -1
    try:
        freer.expect("published")
        held = _hold_pool_lock(destroyed, namespace)
        freer.send("")
        sleeping_in(freer.pid, ("hrtimer_nanosleep",))  # in retire, for the pool lock
        destroyer = Child(
            """
            import sys
            from clara_core import Context
            print("destroying", flush=True)
            Context.destroy(sys.argv[1])
            print("destroyed", flush=True)
            """,
            destroyed,
        )
        destroyer.expect("destroying")
        if destroyed == "warm":  # nothing else holds it up: it ends (its pool wait is short)
            destroyer.expect("destroyed")
        else:  # it waits for the lifecycle lock of the segment being freed
            sleeping_in(destroyer.pid, ("hrtimer_nanosleep",))
        os.close(held)
        held = -1
        freer.expect("freed")
        code, _, err = destroyer.finish()
        assert code == 0, err
    finally:
        if held >= 0:
            os.close(held)
        freer.kill()
    survivor = "job" if destroyed == "warm" else "warm"
    assert names(namespace) == [f"{namespace}.{survivor}"]  # nothing of the destroyed one
    assert leaks.check().clean
    Context.destroy(survivor)


def test_dump_shows_a_segment_claimed_from_the_warm_pool(namespace):
    """A segment a job claimed from the warm pool keeps the warm pool's name (and slot)
    until published, under its claimer's header: `clara dump` of the warm pool took
    that header for a leftover of an earlier context of its name and hid it, so 2 MiB
    in the warm pool's name, in use, showed nowhere (leak-check reported it live)."""
    warm = Context.create("warm", pool_bytes="64M")
    job = Context.create("job", warm_pool="warm")
    job.create(2 * MIB).release()  # fresh, then retired into the warm pool
    claimer = Child(
        """
        from clara_core import Context
        ctx = Context.create("job-2", warm_pool="warm")
        alloc = ctx.create(dtype="float32", shape=(2 << 18,))  # claims it
        mapping = alloc.map("w")
        print("claimed", flush=True)
        input()
        """
    )
    try:
        claimer.expect("claimed")
        shown = data("--json", "dump", "warm")
        (row,) = shown["allocations"]
        assert (row["kind"], row["dtype"], row["state"]) == ("pooled", "float32", "writing")
        assert [m["pid"] for m in row["mapped_by"]] == [claimer.pid]
        assert shown["context"]["pooled_bytes"] == row["size"] == 4096 + 2 * MIB
    finally:
        claimer.kill()  # it dies holding it: the pool's again, for the next claim
    (row,) = data("--json", "dump", "warm")["allocations"]
    assert (row["kind"], row["mapped_by"]) == ("pooled", [])
    assert leaks.check().clean
    job.destroy()
    Context.destroy("job-2")
    warm.destroy()


# A job in a process of group sys.argv[2] (the same user, as `sg GROUP` runs it): a
# context of mode 640 using the warm pool, one 2 MiB allocation filled with the byte
# sys.argv[3], published, and its inode and group printed; freed into the warm pool.
GROUP_JOB = """
import os, sys
from clara_core import Context
ctx = Context.create(sys.argv[1], mode=0o640, warm_pool="warm")
alloc = ctx.create(2 << 20)
with alloc.map("w") as array:
    array[:] = int(sys.argv[3])
alloc.publish("secret")
found = os.fstat(alloc._fd)
print(found.st_ino, found.st_gid, flush=True)
alloc.free()
ctx.destroy()
"""


def test_a_claim_never_gives_a_segment_of_another_group_to_a_context_its_group_reads(
    namespace,
):
    """The same user runs jobs under two of its groups (sg, newgrp) on one warm pool of
    mode 640. A segment keeps the group of the process that made it: a job of group 0
    used to claim the segment a job of group 1000 had freed, so what it published was
    readable by every member of group 1000."""
    require_root()
    Context.create("warm", mode=0o640, pool_bytes="64M").close()

    def job(name: str, group: int, fill: int) -> tuple[int, int]:
        as_group = ["setpriv", f"--regid={group}", "--clear-groups"]
        done = subprocess.run(
            [*as_group, sys.executable, "-c", GROUP_JOB, name, str(group), str(fill)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        inode, gid = done.stdout.split()
        return int(inode), int(gid)

    try:
        theirs, gid = job("job-1", 1000, 1)
        assert gid == 1000 and list(pooled_inodes(namespace).values()) == [theirs]
        ours, gid = job("job-2", 0, 2)
        assert gid == 0 and ours != theirs  # a fresh segment: theirs stays in the pool
        assert sorted(pooled_inodes(namespace).values()) == sorted([ours, theirs])
        again, gid = job("job-3", 1000, 3)
        assert (again, gid) == (theirs, 1000)  # a job of its own group still reuses it
    finally:
        Context.destroy("warm")


def pooled_inodes(namespace: str) -> dict[str, int]:
    prefix = f"{namespace}.warm.p."
    return {
        f: os.stat(os.path.join(shm_dir(), f)).st_ino
        for f in os.listdir(shm_dir())
        if f.startswith(prefix)
    }


# A job claims 2 MiB from the warm pool (a segment an earlier job freed), then, when told,
# fills and publishes it and reads it back through a new reference.
CLAIMER = """
import sys
from clara_core import Context
ctx = Context.create("job", warm_pool="warm")
alloc = ctx.create(2 << 20)
print("claimed", alloc._pool_name, flush=True)
sys.stdin.readline()
with alloc.map("w") as array:
    array[:] = 7
alloc.publish("v")
with ctx.get("v").map("r") as array:
    print("published", int(array.sum()) == 7 * (2 << 20), flush=True)
alloc.free()
ctx.destroy()
"""


def pooled_one(namespace: str) -> str:
    """Fill the warm pool with one 2 MiB segment; returns its pool name."""
    job = Context.create("job-0", warm_pool="warm")
    job.create(2 * MIB).release()
    job.destroy()
    (name,) = pooled_inodes(namespace)
    return name


def test_a_job_publishes_what_it_claimed_from_a_warm_pool_destroyed_meanwhile(namespace):
    """`clara destroy context WARM` while a job holds a segment it claimed from it: the
    destroy removed its pool name, the only name it had, and a file without a name can
    never be linked again: the job's publish failed ("does not exist")."""
    Context.create("warm", pool_bytes="64M").close()
    pool_name = pooled_one(namespace)
    claimer = Child(CLAIMER)
    try:
        assert claimer.expect("claimed").split()[1] == pool_name
        Context.destroy("warm")  # leaves the claimed name to its claimer
        claimer.send("")
        assert claimer.expect("published").split()[1] == "True"
        code, _, err = claimer.finish()
        assert code == 0, err
    finally:
        claimer.kill()
    assert names(namespace) == []  # publishing took the pool name away


def test_a_job_killed_holding_a_claim_from_a_destroyed_warm_pool_leaves_a_fixable_orphan(
    namespace,
):
    Context.create("warm", pool_bytes="64M").close()
    pool_name = pooled_one(namespace)
    claimer = Child(CLAIMER)
    try:
        claimer.expect("claimed")
        Context.destroy("warm")
    finally:
        claimer.kill()
    assert names(namespace) == sorted([pool_name, f"{namespace}.job"])
    report = leaks.check()
    assert {f.segment.file_name: f.status for f in report.leaks} == {pool_name: "orphaned"}
    leaks.reclaim()
    Context.destroy("job")
    assert names(namespace) == []


def test_a_claim_that_a_destroy_of_its_warm_pool_overtakes_makes_a_fresh_segment(namespace):
    """The destroy removes the pool name between the claim and the header rewrite (both
    wait here for the lifecycle lock this test holds, then race): the claimer must not
    keep a segment it could never publish."""
    Context.create("warm", pool_bytes="64M").close()
    pool_name = pooled_one(namespace)
    held = os.open(os.path.join(shm_dir(), pool_name), os.O_RDWR | os.O_CLOEXEC)
    assert locks.try_lock(held, locks.LIFECYCLE_BYTE, True)
    claimer = destroyer = None
    try:
        claimer = Child(CLAIMER)
        sleeping_in(claimer.pid, ("hrtimer_nanosleep",))  # claimed: waits to rewrite it
        destroyer = Child("from clara_core import Context; Context.destroy('warm')")
        sleeping_in(destroyer.pid, ("hrtimer_nanosleep",))  # listed: waits to remove it
        os.close(held)
        held = -1
        claimer.expect("claimed")
        claimer.send("")
        assert claimer.expect("published").split()[1] == "True"
        for process in (claimer, destroyer):
            code, _, err = process.finish()
            assert code == 0, err
    finally:
        if held >= 0:
            os.close(held)
        for process in (claimer, destroyer):
            if process is not None:
                process.kill()
    assert names(namespace) == []


def test_another_user_holding_a_pooled_segments_lifecycle_lock_costs_a_job_nothing(
    namespace, monkeypatch
):
    """In a warm pool of mode 644 every user may open its segments and hold a read lock
    on any byte, the lifecycle byte a claim takes to rewrite the header included: the job
    must then make a fresh segment, never fail or wait long (CLARA_LOCK_TIMEOUT is 60 s
    here, so a claim that waited on it as on other locks would fail the test)."""
    require_root()
    monkeypatch.setenv("CLARA_LOCK_TIMEOUT", "60")
    Context.create("warm", mode=0o644, pool_bytes="64M").close()
    job = Context.create("job-0", mode=0o644, warm_pool="warm")
    job.create(2 * MIB).release()
    job.destroy()
    ((pool_name, pooled),) = pooled_inodes(namespace).items()
    holder = subprocess.Popen(
        [*as_other_user(), sys.executable, "-c", HOLD_READ_LOCK, pool_name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        done = run_python(
            """
            import os
            from clara_core import Context
            ctx = Context.create("job", mode=0o644, warm_pool="warm")
            alloc = ctx.create(2 << 20)
            print(os.fstat(alloc._fd).st_ino, alloc._pool_name)
            alloc.release()
            ctx.destroy()
            """
        )
        assert done.returncode == 0, done.stderr
        inode, claimed_from = done.stdout.split()
        assert int(inode) != pooled and claimed_from == "None"  # fresh: the pooled one stays
        assert pooled_inodes(namespace)[pool_name] == pooled
    finally:
        holder.communicate("\n", timeout=30)
        Context.destroy("warm")


# As another user: open a pooled segment read-only and hold a read lock on its lifecycle
# byte until a line comes in.
HOLD_READ_LOCK = """
import os, sys
from clara_core.names import shm_dir
from clara_core.shm import locks
fd = os.open(os.path.join(shm_dir(), sys.argv[1]), os.O_RDONLY)
assert locks.try_lock(fd, locks.LIFECYCLE_BYTE, False)
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_destroy_of_the_warm_pool_while_a_claimer_is_publishing_leaves_it_the_name(namespace):
    """Publish marks the header published before it links the new name: a destroy of the
    warm pool in between took the header for no claim and removed the pool name, the
    segment's only name, and the publish then failed ('does not exist')."""
    publish_while_destroyed(namespace, lambda: Context.destroy("warm"))


def publish_while_destroyed(namespace: str, destroy_warm: Callable[[], object]) -> None:
    """A claimer's publish is held between marking the header published and linking the
    name by a leftover under that name (an earlier context 'job' whose destroy could not
    finish), whose lifecycle lock this test holds; meanwhile `destroy_warm()`."""
    Context.create("warm", pool_bytes="64M").close()
    pool_name = pooled_one(namespace)
    earlier = Context.create("job")
    left = earlier.create(4096)
    left.publish("v")
    leftover = os.open(os.path.join(shm_dir(), f"{namespace}.job.a.v"), os.O_RDWR | os.O_CLOEXEC)
    try:
        assert locks.try_lock(leftover, locks.LIFECYCLE_BYTE, True)
        Context.destroy("job", timeout=0.2)  # cannot remove v: a leftover of it
        left.release()
        earlier.close()
        claimer = Child(CLAIMER)
        assert claimer.expect("claimed").split()[1] == pool_name
        claimer.send("")
        sleeping_in(claimer.pid, ("hrtimer_nanosleep",))  # publishing: waits for the leftover
        destroy_warm()
    finally:
        os.close(leftover)
    try:
        assert claimer.expect("published").split()[1] == "True"
        code, _, err = claimer.finish()
        assert code == 0, err
    finally:
        claimer.kill()
    assert names(namespace) == []


def test_a_reclaim_of_a_warm_pool_sees_what_entered_its_pool_since_its_scan(namespace):
    """leak-check --fix removes an owner-dead warm pool with every member its scan listed;
    a job freeing into that pool in between named a segment the removal did not know,
    and left it an orphan of the removed pool. The removal holds the pool lock (nothing
    enters meanwhile), and refuses when the ledger names a segment it was not given."""
    made = run_python(
        "import os; from clara_core import Context; "
        "Context.create('warm', owner_pid=os.getpid(), pool_bytes='64M')"
    )
    assert made.returncode == 0, made.stderr
    scanned = leaks.check().findings
    assert [(f.segment.kind, f.status) for f in scanned] == [("context", "owner-dead")]
    group = [(f.segment.file_name, f.segment.file_id, True) for f in scanned]
    job = Context.create("job", warm_pool="warm")
    job.create(2 * MIB).release()  # retired into the owner-dead warm pool
    assert removal.remove_unused(group) == "a segment entered a pool while being checked"
    held = _hold_pool_lock("warm", namespace)
    try:
        kept = leaks.reclaim().kept
        assert {why for _, why in kept} == {f"the pool of {namespace}.warm is in use; rerun --fix"}
    finally:
        os.close(held)
    pooled = set(pooled_inodes(namespace))
    removed = {f.segment.file_name for f in leaks.reclaim().removed}
    assert len(pooled) == 1 and removed == {f"{namespace}.warm", *pooled}
    job.destroy()
    assert names(namespace) == []
