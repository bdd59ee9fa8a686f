"""Space: on a real, small tmpfs (64 MiB, `small_shm_dir`), requests beyond free space fail
at create with exit 7 and leave nothing; what was made is fully backed (no SIGBUS); the
recycling pool stays within its cap and never costs a create that would fit without it.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from clara_core import Context, OutOfSpace, pool
from tests.cli.clirun import clara
from tests.helpers import Child, run_python

from .figures import Area
from .harness import SAFETY, deadline

MIB = 1 << 20
TMPFS = 64 * MIB


def _listing(directory: str) -> set[str]:
    return set(os.listdir(directory))


def _free(directory: str) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.parametrize(
    "args",
    [
        ("create", "allocation", "big", "-c", "job", "--size", "65M"),
        ("create", "allocation", "-c", "job", "--size", "100M"),
        ("create", "allocation", "big", "-c", "job", "--dtype", "f64", "--shape", "4096,4096"),
        ("create", "allocation", "big", "-c", "job", "--size", "1T"),
    ],
    ids=["published", "private", "typed", "huge"],
)
def test_a_request_beyond_free_space_exits_7_and_leaves_nothing(
    args: tuple[str, ...], small_shm_dir: str, area: Area
) -> None:
    with Context.create("job"):
        before = _listing(small_shm_dir)
        free = _free(small_shm_dir)
        result = clara(*args)
        err = result.stderr.decode()
        area.trials += 1
        area.failures += result.returncode != 7
        assert (result.returncode, len(err.splitlines())) == (7, 1), err
        assert "Traceback" not in err
        assert _listing(small_shm_dir) == before
        assert _free(small_shm_dir) == free
        Context.destroy("job")


def test_filling_the_file_system_through_clara(small_shm_dir: str, area: Area) -> None:
    """8 MiB allocations until exit 7: every one made can be written whole, the failed
    one left nothing, and freeing one makes room for exactly one more."""
    clara("create", "context", "job")
    made = []
    try:
        while len(made) < 20:
            before = _listing(small_shm_dir)
            result = clara("create", "allocation", f"a{len(made)}", "-c", "job", "--size", "8M")
            if result.returncode != 0:
                assert result.returncode == 7, result.stderr.decode()
                assert _listing(small_shm_dir) == before
                break
            made.append(f"a{len(made)}")
        area.trials += len(made) + 1
        assert 4 <= len(made) < 8, made
        payload = b"\x5a" * (8 * MIB)
        for name in made:  # reserved at create: writing all of it cannot SIGBUS
            wrote = clara("map", name, "-c", "job", "--write", "--in", "-", input=payload)
            assert wrote.returncode == 0, wrote.stderr.decode()
        assert clara("free", made[0], "-c", "job").returncode == 0
        again = clara("create", "allocation", "again", "-c", "job", "--size", "8M")
        assert again.returncode == 0, again.stderr.decode()
        assert clara("create", "allocation", "more", "-c", "job", "--size", "8M").returncode == 7
    finally:
        clara("destroy", "context", "job")
    assert _listing(small_shm_dir) == set()


def test_capacity_of_a_context_exits_7_and_leaves_nothing(small_shm_dir: str) -> None:
    clara("create", "context", "job", "--capacity", "16M")
    try:
        assert clara("create", "allocation", "a", "-c", "job", "--size", "12M").returncode == 0
        before = _listing(small_shm_dir)
        result = clara("create", "allocation", "b", "-c", "job", "--size", "8M")
        assert result.returncode == 7, result.stderr.decode()
        assert _listing(small_shm_dir) == before
    finally:
        clara("destroy", "context", "job")


def _pooled_bytes(ctx: Context) -> int:
    return sum(capacity for capacity, _ in pool.pooled(ctx._registry))


def _fill(ctx: Context, size: int, cap: int) -> list:
    """Private allocations of `size` until OutOfSpace; the pool stays within `cap`."""
    made = []
    with deadline(SAFETY, "filling"):
        while True:
            try:
                made.append(ctx.create(size))
            except OutOfSpace:
                return made
            assert _pooled_bytes(ctx) <= cap


def test_the_pool_stays_within_its_cap_and_gives_its_memory_back(
    small_shm_dir: str, area: Area
) -> None:
    """Fill, free everything into the pool, fill again: the pool never holds more than
    pool_bytes, and the second fill fits exactly as many as the first."""
    ctx = Context.create("job", pool_bytes="16M")
    try:
        first = _fill(ctx, 4 * MIB, 16 * MIB)
        for alloc in first:
            alloc.release()
            assert _pooled_bytes(ctx) <= 16 * MIB
        pooled = _pooled_bytes(ctx)
        second = _fill(ctx, 4 * MIB, 16 * MIB)
        area.trials += len(first) + len(second)
        area.set(
            "pool fill", f"{len(first)} then {len(second)} x 4 MiB, {pooled // MIB} MiB pooled"
        )
        assert pooled == 16 * MIB
        assert len(second) == len(first)
        for alloc in second:
            alloc.free()
        big = ctx.create(TMPFS - 8 * MIB)  # fits only if the whole pool goes
        big.release()
        assert _pooled_bytes(ctx) <= 16 * MIB
    finally:
        ctx.destroy()
    assert _listing(small_shm_dir) == set()


def test_another_contexts_pool_gives_its_memory_back(small_shm_dir: str, area: Area) -> None:
    """Context A's pool (left by a process that has exited) holds memory; a create in
    context B that fits only without it succeeds, by evicting A's pool."""
    made = run_python(
        """
        from clara_core import Context
        a = Context.create("a", pool_bytes="32M")
        for alloc in [a.create(8 << 20) for _ in range(4)]:
            alloc.release()
        print(sum(c for c, _ in __import__("clara_core").pool.pooled(a._registry)))
        """
    )
    assert made.returncode == 0, made.stderr
    assert int(made.stdout) == 32 * MIB
    b = Context.create("b")
    try:
        area.trials += 1
        big = b.create(TMPFS - 16 * MIB)  # fits only once a's pool is gone
        big.release()
    finally:
        b.destroy()
        Context.destroy("a")
    assert _listing(small_shm_dir) == set()


HOLDER = """
import sys, time
from clara_core import Context, pool
a = Context.open("a")
for alloc in [a.create(8 << 20) for _ in range(4)]:
    mapping = alloc.map("w")
    mapping.buffer[:] = bytes(8 << 20)
    mapping.unmap()
    alloc.release()  # pooled, and kept warm (still mapped) by this process
print("pooled", sum(c for c, _ in pool.pooled(a._registry)), flush=True)
time.sleep(600)
"""


def test_a_pool_kept_warm_by_a_live_process_gives_its_memory_back(
    small_shm_dir: str, area: Area
) -> None:
    """As above, but the process that pooled the segments still runs: it keeps at most a
    sixteenth of the file system warm (mapped, held for its own next create), so the rest
    of its pool is evicted for another process's create."""
    Context.create("a", pool_bytes="32M").close()
    holder = Child(textwrap.dedent(HOLDER))
    try:
        with deadline(SAFETY, "the holder pooling"):
            assert holder.expect("pooled") == f"pooled {32 * MIB}"
        with Context.create("b") as b:
            area.trials += 1
            big = b.create(TMPFS - 16 * MIB)
            big.release()
    finally:
        holder.kill()
        Context.destroy("b")
        Context.destroy("a")
    assert _listing(small_shm_dir) == set()


RUN = """\
api-version: 0.5.0
name: big
operators:
- name: make
  container: {{command: [{python}, -c, "print('never runs')"]}}
  output: [{{name: x, type: array, element-type: float64, shape: [{rows}, 1024]}}]
- name: use
  container: {{command: [{python}, -c, "print('never runs')"]}}
  input: [{{from: make, name: x, type: array, element-type: float64, shape: [{rows}, 1024]}}]
"""


def test_clara_run_whose_variable_does_not_fit_fails_and_leaves_nothing(
    small_shm_dir: str, tmp_path: Path, area: Area
) -> None:
    """A static output larger than the file system: the job fails cleanly, nothing left."""
    pipeline = tmp_path / "big.yaml"
    pipeline.write_text(RUN.format(python=sys.executable, rows=16 * 1024))  # 128 MiB
    result = clara("--json", "run", str(pipeline))
    err = result.stderr.decode()
    area.trials += 1
    area.failures += result.returncode != 1
    assert result.returncode == 1, err  # README: `clara run` exits 1 when the job fails
    assert "Traceback" not in err
    report = json.loads(result.stdout)
    ops = {op["name"]: op for op in report["operators"]}
    assert report["status"] == "failed"
    # names the operator and the file:line of its command (README: clara run, step 2)
    assert report["reason"].startswith(f"operator 'make' could not start ({pipeline}:"), report[
        "reason"
    ]
    assert "not enough shared memory" in report["reason"]
    assert (ops["make"]["status"], ops["make"]["pid"]) == ("failed", None)  # never ran
    assert ops["use"]["status"] == "skipped"
    assert _listing(small_shm_dir) == set()


def test_a_handle_whose_publish_finds_no_inode_left_stays_a_handle(
    few_inodes_shm_dir: str,
) -> None:
    """Publishing a handle gives its file a second name, which on tmpfs takes an inode:
    with none left, publish fails (out of space) and the handle is as it was: another
    process still opens it, and its free() removes its name (it said 'published' in its
    header before, so free() left the name behind for good)."""
    ctx = Context.create("inodes")
    try:
        alloc = ctx.create(64)
        handle = alloc.make_handle()
        junk = []
        with pytest.raises(OSError):  # every inode taken
            while True:
                path = os.path.join(few_inodes_shm_dir, f"junk-{len(junk)}")
                open(path, "w").close()
                junk.append(path)
        try:
            with pytest.raises(OutOfSpace):
                alloc.publish("data")
        finally:
            for path in junk:
                os.unlink(path)
        assert not alloc.is_published
        opened = run_python(
            f"""
            from clara_core import Context
            print(Context.open("inodes").open_handle("{handle}").state)
            """
        )
        assert (opened.returncode, opened.stdout, opened.stderr) == (0, "empty\n", "")
        alloc.free()
        assert [name for name in _listing(few_inodes_shm_dir) if ".h." in name] == []
    finally:
        ctx.destroy()
