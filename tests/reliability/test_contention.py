"""Contention: 8 processes doing random create/publish/get/map/unmap/free on one context.

Writers fill a pattern derived from (name, id, generation) and readers check every byte
of it: no reader may see torn data, an empty allocation or another name's. At the end
the registry is reconciled with what each process says it published and freed: nothing
lost, nothing duplicated or resurrected. An overall deadline catches deadlocks, and
destroying the context must leave nothing.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from clara_core import Context, OutOfSpace
from tests.cli.clirun import clara
from tests.helpers import Child

from .contention_worker import check
from .figures import Area
from .harness import SAFETY, deadline, our_files

WORKERS = 8
OPS = 400  # per worker
WORKER = Path(__file__).with_name("contention_worker.py")
OVERALL = 240.0  # seconds: the deadlock safety net for the whole run


def _start(seed: int) -> subprocess.Popen:
    """A worker process, started and waiting for 'go' on its stdin."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), "random", "busy", str(seed), str(OPS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_workers() -> tuple[list[dict], float]:
    """Run every worker to its end; returns their accounts and the wall time."""
    workers = [_start(seed) for seed in range(WORKERS)]
    try:
        with deadline(SAFETY, "workers getting ready"):
            for worker in workers:
                assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        started = time.monotonic()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        end = started + OVERALL
        outputs = []
        for worker in workers:
            try:
                out, err = worker.communicate(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"deadlock: a worker still runs after {OVERALL:g} s") from None
            assert worker.returncode == 0, err
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        return outputs, time.monotonic() - started
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            worker.wait()


def _registry(ctx: Context) -> tuple[dict[int, list[str]], list[str]]:
    """What the context holds now: allocation id -> names it is published under, and
    any pattern problem seen while reading them."""
    found: dict[int, list[str]] = collections.defaultdict(list)
    problems = []
    for name in ctx.names():
        with ctx.get(name) as alloc, alloc.map("r") as words:
            uid, problem = check(words, name)
        if problem:
            problems.append(f"at the end, {name}: {problem}")
        found[uid].append(name.lower())
    return found, problems


def test_eight_processes_on_one_context(area: Area) -> None:
    """No lost or duplicated entry, no deadlock, complete data only, nothing left."""
    ctx = Context.create("busy", capacity="1G", pool_bytes="16M")
    try:
        accounts, wall = _run_workers()
        published = [(name.lower(), uid) for a in accounts for name, uid in a["published"]]
        freed = {uid for a in accounts for _name, uid in a["freed"]}
        problems = [p for a in accounts for p in a["problems"]]
        uids = collections.Counter(uid for _name, uid in published)
        twice = [uid for uid, n in uids.items() if n > 1]
        expected = {uid: name for name, uid in published if uid not in freed}
        found, end_problems = _registry(ctx)
        problems += end_problems
        duplicated = {uid: names for uid, names in found.items() if len(names) > 1}
        lost = {uid: expected[uid] for uid in expected.keys() - found.keys()}
        resurrected = {uid: found[uid] for uid in found.keys() - expected.keys()}
        renamed = {
            uid: (expected[uid], found[uid])
            for uid in expected.keys() & found.keys()
            if found[uid] != [expected[uid]]
        }
        outcomes = collections.Counter()
        for a in accounts:
            outcomes.update(a["outcomes"])
        total = sum(a["ops"] for a in accounts)
        area.trials += total
        area.failures += len(problems) + len(lost) + len(duplicated) + len(resurrected) + len(twice)
        area.set("processes", WORKERS)
        area.set("ops/s", f"{total / wall:.0f}")
        area.set("checked reads", sum(a["reads"] for a in accounts))
        area.set("published", outcomes["publish"])
        area.set("freed", outcomes["free"])
        area.set("busy", outcomes["read: busy"] + outcomes["write: busy"] + outcomes["free: busy"])
        area.set("lost", len(lost))
        area.set("duplicated", len(duplicated) + len(twice))
        area.set("torn or misdirected reads", len(problems))
        assert not problems, problems[:10]
        assert not lost, f"published, never freed, gone: {lost}"
        assert not duplicated and not twice, (duplicated, twice)
        assert not resurrected, f"freed (or never published) yet present: {resurrected}"
        assert not renamed, renamed
        assert sorted(n for names in found.values() for n in names) == sorted(expected.values())
    finally:
        Context.destroy("busy")
    assert our_files() == set()


CHURNERS, WATCHERS, CYCLES = 2, 3, 1000


def test_a_name_never_hands_out_a_recycled_segment_published_under_another(
    area: Area, tmp_path: Path
) -> None:
    """Readers get two names while two processes free, recycle and republish big segments
    under them: a get that opened a name just before its segment was recycled and
    published under the other name must not return it."""
    Context.create("busy", pool_bytes="16M").close()
    stop = tmp_path / "stop"
    run = [sys.executable, str(WORKER)]
    churners = [subprocess.Popen([*run, "churn", "busy", str(me), str(CYCLES)]) for me in range(2)]
    watchers = [
        subprocess.Popen([*run, "watch", "busy", str(stop)], stdout=subprocess.PIPE, text=True)
        for _ in range(WATCHERS)
    ]
    try:
        for churner in churners:
            assert churner.wait(OVERALL) == 0
        stop.touch()
        counts = [tuple(map(int, w.communicate(timeout=SAFETY)[0].split())) for w in watchers]
    finally:
        stop.touch()
        for process in churners + watchers:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        Context.destroy("busy")
    checked, bad = sum(c for c, _ in counts), sum(b for _, b in counts)
    area.trials += CHURNERS * CYCLES
    area.failures += bad
    area.set("recycle-race reads", f"{checked} ({bad} of another name)")
    assert checked > 0
    assert bad == 0, f"{bad} of {checked} gets returned a segment published under another name"
    assert our_files() == set()


def test_a_late_free_never_removes_a_newer_allocation_of_the_same_name(area: Area) -> None:
    """Two references to x; one frees it, x is published again, the other frees its
    (old) x: the new x stays, and a big one is not moved into the pool either."""
    ctx = Context.create("busy", pool_bytes="16M")
    try:
        for size in (4096, 2 << 20):  # freed for good, and recycled through the pool
            old = ctx.create(size)
            old.publish("x")
            first, second = ctx.get("x"), ctx.get("x")
            old.release()
            first.free()
            new = ctx.create(size)
            mapping = new.map("w")
            mapping.buffer[:8] = b"newer x!"
            mapping.unmap()
            new.publish("x")
            second.free()  # frees the old x, which is already freed
            area.trials += 1
            with ctx.get("x") as again:
                mapping = again.map("r")
                assert bytes(mapping.buffer[:8]) == b"newer x!"
                mapping.unmap()
            new.free()
        assert ctx.names() == []
    finally:
        Context.destroy("busy")


PUBLISHER = """
import os, sys, time
from clara_core import Context, NotFound
handle, name, go = sys.argv[1:4]
alloc = Context.open("busy").open_handle(handle)
print("opened", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    alloc.publish(name)
    print("published", flush=True)
except NotFound:
    print("not found", flush=True)
"""


def test_one_handle_published_by_many_processes_at_once(area: Area, tmp_path: Path) -> None:
    """8 processes open one handle, then all publish it under their own name at once:
    exactly one wins, the others are told it is gone; it is published under one name."""
    ctx = Context.create("busy")
    go = tmp_path / "go"
    try:
        alloc = ctx.create(4096)
        handle = alloc.make_handle()
        alloc.release()
        publishers = [Child(PUBLISHER, handle, f"name{i}", str(go)) for i in range(WORKERS)]
        with deadline(SAFETY, "publishers opening the handle"):
            for publisher in publishers:
                publisher.expect("opened")
        go.touch()
        said = sorted(p.finish(SAFETY)[1].strip() for p in publishers)
        area.trials += WORKERS
        assert said == ["not found"] * (WORKERS - 1) + ["published"], said
        assert len(ctx.names()) == 1
        fails = clara("publish", handle, "again", "-c", "busy")
        assert fails.returncode == 3, fails.stderr.decode()
    finally:
        Context.destroy("busy")


PUBLISHERS = 6
QUOTA_ROUNDS = 20
SEGMENT = 8192  # a 4 KiB allocation: its header page and its data
FITTING = 3  # new segments the capacity holds in each round
FILLER = 500  # published before: each capacity check adds up their sizes, a wide window


def _publish_at_once(context: str, round_number: int) -> list[str]:
    """PUBLISHERS forked processes publish into `context` at the same moment; their outcomes.

    Each opens the context itself (a lock of its own), creates its allocation, says it is
    ready, and publishes when the pipe it waits on is closed, all of them together.
    """
    go_read, go_write = os.pipe()
    out_read, out_write = os.pipe()
    children = []
    for number in range(PUBLISHERS):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            outcome = "bug"
            try:
                os.close(go_write)
                alloc = Context.open(context).create(4096)
                os.write(out_write, b"r")
                os.read(go_read, 1)  # returns when the test closes the pipe: all go
                try:
                    alloc.publish(f"r{round_number}p{number}")
                    outcome = "published"
                except OutOfSpace:
                    outcome = "full"
            except BaseException as exc:
                outcome = f"bug: {exc!r}"[:200]
            finally:
                os.write(out_write, outcome.encode() + b"\n")
                os._exit(0)
        children.append(pid)
    os.close(go_read)
    with deadline(SAFETY, "publishers getting ready"):
        ready = b""
        while len(ready) < PUBLISHERS:
            ready += os.read(out_read, PUBLISHERS - len(ready))
    os.close(go_write)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(out_write)
    with os.fdopen(out_read) as results:
        return results.read().split()


def test_concurrent_publishers_never_exceed_the_capacity(area: Area) -> None:
    """The capacity check and the publish are one step: 6 at once, 3 fit, 3 are refused
    (with the check under a shared lock, most rounds publish 4 to 6)."""
    ctx = Context.create("quota", capacity=(FILLER + FITTING) * SEGMENT + SEGMENT // 2)
    try:
        for number in range(FILLER):
            ctx.create(4096).publish(f"filler{number}")
        for round_number in range(QUOTA_ROUNDS):
            outcomes = _publish_at_once("quota", round_number)
            published = [n for n in ctx.names() if n.startswith(f"r{round_number}p")]
            area.trials += 1
            area.failures += len(published) != FITTING
            assert sorted(outcomes) == ["full"] * (PUBLISHERS - FITTING) + ["published"] * FITTING
            assert len(published) == FITTING, f"round {round_number}: {published} published"
            for name in published:
                ctx.get(name).free()
    finally:
        Context.destroy("quota")
