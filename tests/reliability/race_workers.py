"""Worker processes of the race soaks (tests/reliability/test_races.py).

    python -m tests.reliability.race_workers pool SECONDS WORKER
    python -m tests.reliability.race_workers recreate SECONDS
    python -m tests.reliability.race_workers reclaim SECONDS
    python -m tests.reliability.race_workers freers CYCLES

Each prints one JSON line of figures at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from clara_core import Context, NotFound, leaks
from tests.cli.clirun import clara

MIB = 1 << 20


def pool_worker(seconds: float, worker: int) -> dict:
    """Create 2 MiB, fill it with a value of its own, publish it under a unique name;
    later get it back, check every byte, free it. A loss is a name that vanished or
    holds another allocation's bytes."""
    ctx = Context.open("job")
    end = time.monotonic() + seconds
    live: list[tuple[str, int]] = []
    made = lost = 0
    seq = 0
    while time.monotonic() < end or live:
        if time.monotonic() < end:
            seq += 1
            value = worker * 1_000_000 + seq
            alloc = ctx.create(dtype="u32", shape=(MIB // 2,))
            with alloc.map("w") as array:
                array[:] = value
            name = f"w{worker}-{seq}"
            alloc.publish(name)
            alloc.release()
            live.append((name, value))
            made += 1
        if len(live) > 6 or (live and time.monotonic() >= end):
            name, value = live.pop(0)
            try:
                alloc = ctx.get(name)
            except NotFound:
                lost += 1
                continue
            with alloc.map("r") as array:
                if not (array == value).all():
                    lost += 1
            alloc.free()
    return {"made": made, "lost": lost}


def recreate(seconds: float) -> dict:
    """Over and over: a context `job` whose owner has died, destroyed and created again
    bound to this (live) process, with an allocation published in it; a loss is the live
    context or its allocation removed while we run."""
    end = time.monotonic() + seconds
    rounds = lost = 0
    while time.monotonic() < end:
        rounds += 1
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the owner-to-be: lives until the pipe closes
            os.close(write)
            os.read(read, 1)
            os._exit(0)
        os.close(read)
        try:
            dead = Context.create("job", owner_pid=child)
            dead.create(4096).publish("old")
            dead.close()
        finally:
            os.close(write)
            os.waitpid(child, 0)  # now owner-dead: a leak for leak-check --fix
        time.sleep((rounds % 5) * 0.001)
        with contextlib.suppress(NotFound):  # leak-check reclaimed it first: right
            Context.destroy("job")
        ctx = Context.create("job", owner_pid=os.getpid())
        alloc = ctx.create(4096)
        alloc.publish("x")
        for _ in range(3):
            time.sleep(0.002)
            if not _still_there(ctx):
                lost += 1
                break
        alloc.release()
        ctx.close()
        try:
            Context.destroy("job")
        except NotFound:
            lost += 1  # removed while live: only we may destroy it
    return {"rounds": rounds, "lost": lost}


def _still_there(ctx: Context) -> bool:
    try:
        with Context.open("job") as again:
            if again.created != ctx.created or again.owner_pid != ctx.owner_pid:
                return False  # another context of that name: ours was removed
            again.get("x").release()
        return True
    except NotFound:
        return False


def reclaimer(seconds: float) -> dict:
    """leak-check --fix over and over (every 20th through the `clara` command)."""
    end = time.monotonic() + seconds
    runs = removed = 0
    while time.monotonic() < end:
        runs += 1
        if runs % 20 == 0:
            result = clara("leak-check", "--fix", timeout=60)
            assert result.returncode in (0, 1), result.stderr.decode()
        else:
            removed += len(leaks.reclaim().removed)
    return {"runs": runs, "removed": removed}


def freers(cycles: int) -> dict:
    """Two processes hold one allocation and free it at once; the child re-publishes the
    name the moment its free() returns. That must never fail, nor lose the new one."""
    ctx = Context.create("job")
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    child = os.fork()
    if child == 0:
        ctx2 = Context.open("job")
        failures = 0
        for _ in range(cycles):
            os.read(to_child_r, 1)  # published: get it
            alloc = ctx2.get("x")
            again = ctx2.create(4096)  # made beforehand: publishing it is one link(2)
            os.write(to_parent_w, b"g")
            os.read(to_child_r, 1)  # go
            alloc.free()
            try:
                again.publish("x")
            except Exception:  # AlreadyExists: the name was not free
                failures += 1
                again.release()
                os.write(to_parent_w, b"f")
                continue
            os.write(to_parent_w, b"p")
            os.read(to_child_r, 1)  # parent checked it
            again.free()
            os.write(to_parent_w, b"d")
        os.write(to_parent_w, json.dumps(failures).encode().rjust(16))
        os._exit(0)
    republish_failed = lost = 0
    for _ in range(cycles):
        alloc = ctx.create(4096)
        alloc.publish("x")
        os.write(to_child_w, b"p")
        os.read(to_parent_r, 1)
        os.write(to_child_w, b"g")
        alloc.free()
        answer = os.read(to_parent_r, 1)
        if answer == b"f":
            republish_failed += 1
            continue
        try:
            ctx.get("x").release()  # the child's new one must still be there
        except NotFound:
            lost += 1
        os.write(to_child_w, b"c")
        os.read(to_parent_r, 1)
    child_failures = int(os.read(to_parent_r, 16))
    os.waitpid(child, 0)
    ctx.destroy()
    assert child_failures == republish_failed
    return {"cycles": cycles, "republish_failed": republish_failed, "lost": lost}


if __name__ == "__main__":
    kind, amount = sys.argv[1], float(sys.argv[2])
    if kind == "pool":
        figures = pool_worker(amount, int(sys.argv[3]))
    elif kind == "recreate":
        figures = recreate(amount)
    elif kind == "reclaim":
        figures = reclaimer(amount)
    else:
        figures = freers(int(amount))
    print(json.dumps(figures), flush=True)
