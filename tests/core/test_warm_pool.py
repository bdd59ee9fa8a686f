"""Warm pools: a job context claims from and frees into a longer-lived context's pool.

Real processes, real shared memory: each job runs in a process of its own, as `clara run`
jobs do, so what is reused is proven by the kernel's facts (inodes), never by timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from clara_core import (
    Context,
    InvalidArgument,
    NotFound,
    OutOfSpace,
    PermissionDenied,
    leaks,
    pool,
)
from clara_core.names import shm_dir
from clara_core.shm import header as hdr
from tests.helpers import Child, run_python
from tests.reliability.harness import OTHER_UID, as_other_user, require_root

MIB = 1 << 20

# One job: a context using the warm pool, an allocation filled with a byte and published
# (then freed, so it goes back to the pool), the inode and what a reader saw first.
JOB = """
import os, sys
from clara_core import ClaraError, Context
ctx = Context.create(sys.argv[1], owner_pid=os.getpid(), warm_pool="warm")
alloc = ctx.create(int(sys.argv[2]))
try:
    alloc.map("r").unmap()
    first = "readable"
except ClaraError as exc:
    first = type(exc).__name__
with alloc.map("w") as array:
    array[:] = int(sys.argv[3])
alloc.publish("v")
print(alloc._file_id[1], alloc.state, first)
alloc.free()
ctx.destroy()
"""


def job(name: str, nbytes: int = 4 * MIB, fill: int = 7) -> tuple[int, str, str]:
    done = run_python(JOB, name, str(nbytes), str(fill))
    assert done.returncode == 0, done.stderr
    inode, state, first = done.stdout.split()
    return int(inode), state, first


def pooled_inodes(namespace: str, context: str = "warm") -> dict[str, int]:
    prefix = f"{namespace}.{context}.p."
    return {
        f: os.stat(os.path.join(shm_dir(), f)).st_ino
        for f in os.listdir(shm_dir())
        if f.startswith(prefix)
    }


@pytest.fixture
def warm(namespace):
    context = Context.create("warm", pool_bytes="64M")
    yield context
    Context.destroy("warm")


def test_a_second_job_reuses_the_first_jobs_pages_and_sees_them_unwritten(warm, namespace):
    inode, state, first = job("job-1", fill=7)
    assert (state, first) == ("complete", "NeverWritten")
    assert list(pooled_inodes(namespace).values()) == [inode]  # the job's segment, kept
    again, _, first = job("job-2", fill=9)
    assert again == inode  # the same pages
    # The first job's bytes are never shown as data: a claimed allocation is unwritten.
    assert first == "NeverWritten"
    assert list(pooled_inodes(namespace).values()) == [inode]
    assert Context.list() == ["warm"]
    report = leaks.check()
    assert report.clean
    assert [f.status for f in report.findings if f.segment.kind == "pooled"] == ["pooled"]


def header_of(file_name: str) -> hdr.Header:
    path = os.path.join(shm_dir(), file_name)
    with open(path, "rb") as f:
        return hdr.parse(f.read(hdr.HEADER_SIZE), os.stat(path).st_size, file_name)


def the_pool(warm: Context, namespace: str, pooled_name: str | None = None) -> str:
    """What the warm pool holds, for a failing assertion's message: its files, its ledger,
    this process's warm segments, and who holds `pooled_name` (a claim takes only a
    segment nobody else references)."""
    from clara_core import warm_segments
    from clara_core.shm import locks, processes

    seen = [f"pool files {pooled_inodes(namespace)}", f"ledger {_slots(warm)}"]
    seen.append(f"warm here {dict((k, len(v)) for k, v in warm_segments._warm.items())}")
    if pooled_name is not None:
        path = os.path.join(shm_dir(), pooled_name)
        if os.path.exists(path):
            found = os.stat(path)
            holders = processes.lock_holders((found.st_dev, found.st_ino), locks.REFERENCE_BYTE)
            seen.append(f"{pooled_name} referenced by {holders}")
            seen.append(f"opened by {processes.openers({(found.st_dev, found.st_ino)})}")
        else:
            seen.append(f"{pooled_name} gone")
    return "; ".join(seen)


def test_a_claimed_segment_is_a_fresh_member_of_the_job_context(warm, namespace):
    job_inode, _, _ = job("job-1")
    pooled_files = pooled_inodes(namespace)
    assert list(pooled_files.values()) == [job_inode], the_pool(warm, namespace)
    ((pooled_name, inode),) = pooled_files.items()
    # In the pool it is the warm pool's: its context, its incarnation, nobody's data.
    pooled = header_of(pooled_name)
    assert (pooled.context, pooled.lifecycle, pooled.data.state) == ("warm", hdr.POOLED, hdr.EMPTY)
    assert pooled.origin.context_created_ns == warm._registry.incarnation
    ctx = Context.create("job-2", warm_pool="warm")
    try:
        alloc = ctx.create(dtype="float32", shape=(MIB,))
        alloc.publish("v")
        published = f"{namespace}.job-2.a.v"
        claimed = os.stat(os.path.join(shm_dir(), published)).st_ino
        assert claimed == inode, the_pool(warm, namespace, pooled_name)
        assert pooled_inodes(namespace) == {}  # published: it left the warm pool
        member = header_of(published)
        assert (member.context, member.name, member.lifecycle) == ("job-2", "v", hdr.PUBLISHED)
        assert member.origin.context_created_ns == ctx._registry.incarnation
        assert member.data.state == hdr.EMPTY
        done = run_python(  # another process opens it like any member of job-2
            """
            from clara_core import Context
            a = Context.open("job-2").get("v")
            print(a.state, a.element_type.name, *a.shape)
            """
        )
        assert done.stdout.split() == ["empty", "float32", str(MIB)], done.stderr
        alloc.release()
    finally:
        ctx.destroy()


def test_two_jobs_at_once_on_one_warm_pool_never_share_a_segment(warm, namespace):
    """Two processes, each creating, filling with its own byte, checking and freeing
    in a loop: a segment one of them holds is never handed to the other."""
    code = """
    import os, sys
    from clara_core import Context, warm_segments
    me = int(sys.argv[1])
    warm_segments.WARM_PER_CONTEXT = 0  # every claim goes through the shared ledger and its proof
    ctx = Context.create(f"job-{me}", owner_pid=os.getpid(), warm_pool="warm")
    inodes = set()
    for round in range(40):
        alloc = ctx.create((2 + round % 2) << 20)
        with alloc.map("w") as array:
            array[:] = me
        alloc.publish(f"v{round}")
        inodes.add(alloc._file_id[1])
        again = ctx.get(f"v{round}")
        with again.map("r") as array:
            assert (array == me).all(), "another job wrote into our segment"
        again.release()
        alloc.free()
    ctx.destroy()
    print(len(inodes))
    """
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(me)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in (1, 2)
    ]
    for process in jobs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert int(out) < 40  # it did reuse pages (40 fresh segments otherwise)
    assert Context.list() == ["warm"]
    files = pooled_inodes(namespace)
    assert 1 <= len(files) <= 4  # what the two let go of, each slot naming a real file
    assert sorted(f"{namespace}.warm.p.{s.suffix}" for s in _slots(warm)) == sorted(files)
    assert leaks.check().clean


def _slots(context: Context) -> list:
    return [
        cap_name for cap_name in pool.ledger.read(context._registry.fd).slots if cap_name.capacity
    ]


def test_a_job_killed_while_holding_a_claimed_segment_leaves_it_in_the_pool(warm, namespace):
    inode, _, _ = job("job-1")
    holder = Child(
        """
        import os, sys
        from clara_core import Context
        ctx = Context.create("job-2", owner_pid=os.getpid(), warm_pool="warm")
        alloc = ctx.create(4 << 20)
        print("claimed", alloc._file_id[1], flush=True)
        sys.stdin.readline()
        """
    )
    try:
        assert holder.expect("claimed").split()[1] == str(inode)
        # Claimed, not published: it keeps its pool name, held by the job's reference.
        assert list(pooled_inodes(namespace).values()) == [inode]
        statuses = {f.segment.file_name: f.status for f in leaks.check().findings}
        assert statuses[next(iter(pooled_inodes(namespace)))] == "live"
        assert pool.claim(Context.create("job-3", warm_pool="warm")._registry, 4 * MIB) is None
    finally:
        holder.kill()
    report = leaks.check()
    found = {f.segment.file_name: f for f in report.findings}
    assert found[next(iter(pooled_inodes(namespace)))].status == "pooled"
    assert {f.segment.context for f in report.leaks} == {"job-2"}  # its context: owner-dead
    again, _, first = job("job-4")
    assert (again, first) == (inode, "NeverWritten")  # the next job takes it back
    Context.destroy("job-2")
    Context.destroy("job-3")


def test_destroy_empties_the_warm_pool_and_a_job_using_it_then_frees_normally(warm, namespace):
    job("job-1")
    ctx = Context.create("job-2", warm_pool="warm")
    alloc = ctx.create(4 * MIB)  # claimed from the pool
    alloc.publish("v")
    Context.destroy("warm")
    assert pooled_inodes(namespace) == {}
    ctx.get("v").free()
    alloc.release()
    assert pooled_inodes(namespace) == {}  # no pool names of a destroyed context
    ctx.destroy()
    assert sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace)) == []
    Context.create("warm")  # for the fixture's destroy


def test_what_may_be_a_warm_pool(warm, namespace):
    with pytest.raises(NotFound):
        Context.create("job", warm_pool="missing")
    with pytest.raises(InvalidArgument, match="its own warm pool"):
        Context.create("warm", warm_pool="warm")
    with pytest.raises(InvalidArgument, match="same"):
        Context.create("job", mode=0o640, warm_pool="warm")
    Context.create("shared", mode=0o660).close()
    with pytest.raises(InvalidArgument, match="no other user write"):
        Context.create("job", mode=0o660, warm_pool="shared")
    Context.create("nopool", pool_bytes=0).close()
    with pytest.raises(InvalidArgument, match="no pool"):
        Context.create("job", warm_pool="nopool")
    assert sorted(Context.list()) == ["nopool", "shared", "warm"]  # nothing half-created
    Context.destroy("shared")
    Context.destroy("nopool")


def test_another_users_warm_pool_is_refused(namespace):
    require_root()
    made = subprocess.run(
        [
            *as_other_user(),
            sys.executable,
            "-c",
            "from clara_core import Context; Context.create('theirs', pool_bytes='64M')",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert made.returncode == 0, made.stderr
    try:
        with pytest.raises(PermissionDenied):
            Context.create("job", warm_pool="theirs")
        assert Context.list() == []  # ours: none, theirs is not listed as ours
    finally:
        subprocess.run(
            [
                *as_other_user(),
                sys.executable,
                "-c",
                "from clara_core import Context; Context.destroy('theirs')",
            ],
            check=True,
            env=dict(os.environ),
        )


def test_a_file_planted_under_a_warm_pool_name_is_never_claimed(warm, namespace):
    """Another user puts a file of the right size under the name of a pool slot (after
    its segment went): the next job makes a fresh segment and never touches it."""
    require_root()
    job("job-1")
    ((pooled_name, _),) = pooled_inodes(namespace).items()
    path = os.path.join(shm_dir(), pooled_name)
    os.unlink(path)  # evicted, say; its slot stays in the ledger until a claim meets it
    size = 4096 + 4 * MIB
    planted = subprocess.run(
        [
            *as_other_user(),
            sys.executable,
            "-c",
            f"import os; fd = os.open({path!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600); "
            f"os.ftruncate(fd, {size})",
        ],
        capture_output=True,
        text=True,
    )
    assert planted.returncode == 0, planted.stderr
    try:
        before = os.stat(path)
        fresh, _, first = job("job-2")
        assert fresh != before.st_ino and first == "NeverWritten"
        after = os.stat(path)
        assert (after.st_ino, after.st_uid, after.st_size) == (before.st_ino, OTHER_UID, size)
        statuses = {f.segment.file_name: f.status for f in leaks.check().findings}
        assert statuses[pooled_name] == "foreign"
        # The job's own segment went back to the pool under a new name.
        assert [i for n, i in pooled_inodes(namespace).items() if n != pooled_name] == [fresh]
    finally:
        subprocess.run([*as_other_user(), "rm", "-f", path], check=True)


def test_a_full_file_system_empties_the_warm_pool_and_retries(small_shm_dir):
    warm = Context.create("warm", pool_bytes="48M")
    try:
        job("job-1", nbytes=32 * MIB)
        assert [cap for cap, _ in pool.pooled(warm._registry)] == [32 * MIB]
        ctx = Context.create("job-2", warm_pool="warm")
        big = ctx.create(40 * MIB)  # too big to claim; fits only once the pool is emptied
        assert pool.pooled(warm._registry) == []
        with pytest.raises(OutOfSpace):
            ctx.create(40 * MIB)
        big.release()
        ctx.destroy()
    finally:
        warm.destroy()
    assert os.listdir(small_shm_dir) == []
