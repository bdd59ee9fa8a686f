"""A child made by fork() shares its parent's open files, and so their locks: what it does
with the references it inherited must never finish, unlock or recycle what its parent
still holds (README, Life-cycle). Real forks, real processes reading from outside."""

from __future__ import annotations

import textwrap

from tests.helpers import run_python

# A parent that has written half of a published allocation forks; `child` runs in the
# child (then it exits through sys.exit, finalizers and all); the parent then says what
# another process sees, and finishes its own write.
_PARENT = """
import os, sys
from clara_core import Context, ClaraError
from clara_core.names import shm_dir
from tests.helpers import run_python

def elsewhere(name):
    reader = run_python(
        "from clara_core import Context, ClaraError\\n"
        "ctx = Context.open('job')\\n"
        "try:\\n"
        f"    print(ctx.get('{name}').map('r').array.tolist())\\n"
        "except ClaraError as exc:\\n"
        "    print(type(exc).__name__)\\n"
    )
    return reader.stdout.strip() or reader.stderr

ctx = Context.create("job")
alloc = ctx.create(dtype="u8", shape=(4,))
alloc.publish("data")
mapping = alloc.map("w")
mapping.array[:2] = [1, 2]  # half written
pid = os.fork()
if pid == 0:
    try:
%s
    except Exception as exc:
        print("child:", type(exc).__name__, exc, flush=True)
        raise
    sys.exit(0)
os.waitpid(pid, 0)
print(alloc.state, elsewhere("data"))
mapping.array[2:] = [3, 4]
mapping.unmap()
print(alloc.state, elsewhere("data"))
alloc.free()
Context.destroy("job")
"""


def _run(child: str) -> str:
    body = textwrap.indent(textwrap.dedent(child).strip(), " " * 8)
    result = run_python(_PARENT % body)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_childs_explicit_unmap_of_its_parents_map_leaves_the_parents_write_alone():
    """Mapping.unmap(), Allocation.unmap(), and a `with` block left by sys.exit in the
    child: the parent's half-written data stays *writing*, its lock held."""
    out = _run(
        """
        mapping.unmap()
        assert not mapping.mapped
        alloc.unmap()
        alloc.release()
        """
    )
    assert out == "writing Busy\ncomplete [1, 2, 3, 4]\n"


def test_a_with_block_the_child_leaves_does_not_end_its_parents_map():
    out = _run(
        """
        with mapping:  # the parent's map: its __exit__ runs in the child too
            sys.exit(0)
        """
    )
    assert out == "writing Busy\ncomplete [1, 2, 3, 4]\n"


def test_a_child_may_not_map_against_its_parents_lock():
    """Its own map would take its parent's lock (one open file): Busy, which says why."""
    out = _run(
        """
        mapping.unmap()
        try:
            alloc.map("w")
        except ClaraError as exc:
            print("child:", type(exc).__name__, "forked from" in str(exc), flush=True)
        """
    )
    assert out == "child: Busy True\nwriting Busy\ncomplete [1, 2, 3, 4]\n"


def test_a_childs_own_write_map_is_incomplete_when_an_uncaught_exception_ends_it():
    """The "fork to fill" case: a child writes through its own map of a reference it
    inherited (its parent holds none) and dies of an uncaught exception: the data is
    left incomplete, as a writer that dies leaves it; a child that ends normally
    finishes its map (complete)."""
    program = """
        import os, sys
        from clara_core import Context

        ctx = Context.create("job")
        alloc = ctx.create(dtype="u8", shape=(4,))
        with alloc.map("w") as array:
            array[:] = 1
        del array
        alloc.publish("data")
        pid = os.fork()
        if pid == 0:
            held = alloc.map("w")  # the child's own map
            held.array[:2] = 9
            ENDING
        os.waitpid(pid, 0)
        print(ctx.get("data").state, flush=True)
        alloc.free()
        Context.destroy("job")
        """
    for ending, state in (
        ("raise RuntimeError('mid-write')", "incomplete"),
        ("sys.exit(0)", "complete"),
    ):
        result = run_python(program.replace("ENDING", ending))
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{state}\n", (ending, result.stderr)


def test_a_childs_free_of_what_its_parent_writes_removes_the_name_only(namespace):
    """free() is job-wide (the name goes, as when any process frees it), but the segment
    its parent still writes is neither marked complete nor put into the pool."""
    result = run_python(
        """
        import os, sys
        from clara_core import Context
        from clara_core.names import shm_dir
        ctx = Context.create("job")
        big = ctx.create(2 << 20)  # big enough for the pool
        big.publish("big")
        mapping = big.map("w")
        pid = os.fork()
        if pid == 0:
            big.free()
            sys.exit(0)
        os.waitpid(pid, 0)
        names = sorted(n.split(".", 2)[2] for n in os.listdir(shm_dir())
                       if n.startswith(sys.argv[1] + ".job."))
        print(big.state, names)
        mapping.array[:] = 7
        mapping.unmap()
        big.release()
        Context.destroy("job")
        """,
        namespace,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "writing []\n"


def test_a_forked_child_keeps_none_of_its_parents_warm_segments(small_shm_dir):
    """A process keeps what it put into the pool mapped ("warm") for its next create. A
    child forked later has copies of those (the same open files): they must go at the
    fork, else they keep that memory after the parent lets it go (here: a destroy) for
    as long as the child lives."""
    result = run_python(
        """
        import os, sys
        from clara_core import Context

        def used_mib():
            found = os.statvfs(sys.argv[1])
            return (found.f_blocks - found.f_bfree) * found.f_frsize >> 20

        before = used_mib()
        ctx = Context.create("job")
        alloc = ctx.create(3 << 20)
        alloc.map("w").unmap()
        alloc.release()  # into the pool, still mapped by this process for its next create
        read, write = os.pipe()
        ready_read, ready = os.pipe()
        child = os.fork()
        if child == 0:  # a worker that lives on
            os.close(write)
            os.write(ready, b"!")  # (after the fork hooks)
            os.read(read, 1)
            os._exit(0)
        os.close(read)
        os.read(ready_read, 1)
        ctx.close()
        Context.destroy("job")
        print(used_mib() - before)
        os.close(write)
        os.waitpid(child, 0)
        """,
        small_shm_dir,
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "0\n")
