"""Contention workers, one per process: `python contention_worker.py ROLE CONTEXT ARGS...`.

    random CONTEXT SEED OPS   OPS random operations (create + write + publish, get +
                              read, get + rewrite, get + free, maps held across
                              operations), then one JSON document: what it published
                              and freed (to reconcile the registry with), how each kind
                              of operation ended, every inconsistency it saw
    churn CONTEXT ME CYCLES   recycle one big segment under two names, as fast as it can:
                              create (claims the one just freed) + write + publish + free
    watch CONTEXT STOPFILE    get and check both names until STOPFILE exists; prints
                              "<checked reads> <bad reads>"

Every allocation carries, as uint64 words: MAGIC, its unique id, a generation, the hash
of the name it is published under, then a fill derived from (name, id, generation).
A reader that checks all of it can tell a torn write (fill of another generation), an
allocation under the wrong name, or an empty one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sys
import time
import zlib

import numpy as np

from clara_core import AlreadyExists, Busy, Context, Incomplete, NotFound, Timeout

MAGIC = 0xC1A2A0F10
NAMES = [f"n{i}" for i in range(10)]  # few names: publishers collide, frees race
HEAD = 4  # words before the fill
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def name_hash(name: str) -> int:
    """A stable hash of a (case-insensitive) name."""
    return zlib.crc32(name.lower().encode())


def fill(words: np.ndarray, name: str, uid: int, generation: int) -> None:
    """Write the whole pattern of (name, uid, generation), fill first, head last."""
    seed = np.uint64((name_hash(name) * 1_000_003 + uid * 7919 + generation) % 2**63)
    body = words[HEAD:]
    body[...] = np.arange(body.size, dtype=np.uint64)
    body += seed
    body *= MULTIPLIER
    words[:HEAD] = [MAGIC, uid, generation, name_hash(name)]


def check(words: np.ndarray, name: str) -> tuple[int, str]:
    """(uid, '') if `words` hold a complete pattern for `name`, else (uid, what is wrong)."""
    head = [int(w) for w in words[:HEAD]]
    if head[0] != MAGIC:
        return head[1], f"no pattern (head {head})"
    if head[3] != name_hash(name):
        return head[1], f"pattern of another name (hash {head[3]:x}, id {head[1]})"
    expected = np.empty_like(words)
    fill(expected, name, head[1], head[2])
    if not np.array_equal(expected, words):
        return head[1], f"torn data (id {head[1]}, generation {head[2]})"
    return head[1], ""


class Worker:
    """The random operations of one process, and what came of them."""

    def __init__(self, context: str, seed: int) -> None:
        self.ctx = Context.open(context)
        self.rng = random.Random(seed)
        self.pid = os.getpid()
        self.next_uid = 0
        self.held: list[tuple[object, object]] = []  # (allocation, mapping) read maps kept
        self.published: list[tuple[str, int]] = []
        self.freed: list[tuple[str, int]] = []
        self.outcomes: dict[str, int] = {}
        self.problems: list[str] = []
        self.reads = 0

    def count(self, what: str) -> None:
        """Count one outcome."""
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def size(self) -> int:
        """Words of a new allocation: mostly small, sometimes >= 1 MiB (recycled)."""
        if self.rng.random() < 0.15:
            return self.rng.randrange(1 << 17, 1 << 18)
        return self.rng.randrange(HEAD + 1, 4096)

    def create(self) -> None:
        """Create, write completely, publish under a random name."""
        name = self.rng.choice(NAMES)
        self.next_uid += 1
        uid = self.pid << 20 | self.next_uid
        alloc = self.ctx.create(dtype="u64", shape=(self.size(),))
        with alloc.map("w") as words:
            fill(words, name, uid, 0)
        try:
            alloc.publish(name)
        except AlreadyExists:
            self.count("publish: taken")
        else:
            self.published.append((name, uid))
            self.count("publish")
        alloc.release()

    def read(self, keep: bool) -> None:
        """Get a name and check what it holds; maybe keep the read map for a while."""
        name = self.rng.choice(NAMES)
        try:
            alloc = self.ctx.get(name)
        except NotFound:
            self.count("get: not found")
            return
        try:
            mapping = alloc.map("r")
        except Busy:
            self.count("read: busy")
            alloc.release()
            return
        except Incomplete as exc:
            self.problems.append(f"read {name}: {exc}")
            alloc.release()
            return
        self.reads += 1
        self.verify(mapping.array, name)
        self.count("read")
        if keep and len(self.held) < 3:
            self.held.append((alloc, mapping))
            return
        mapping.unmap()
        alloc.release()

    def verify(self, words: np.ndarray, name: str) -> int:
        """Check a mapped allocation got under `name`; records any problem."""
        uid, problem = check(words, name)
        if problem:
            self.problems.append(f"{name}: {problem}")
        return uid

    def rewrite(self) -> None:
        """Get a name and write a new generation of its pattern."""
        name = self.rng.choice(NAMES)
        try:
            alloc = self.ctx.get(name)
        except NotFound:
            self.count("get: not found")
            return
        with alloc:
            try:
                mapping = alloc.map("w")
            except Busy:
                self.count("write: busy")
                return
            words = mapping.array
            uid, problem = check(words, name)
            if problem:
                self.problems.append(f"before rewrite of {name}: {problem}")
            fill(words, name, uid, int(words[2]) + 1)
            del words
            mapping.unmap()
            self.count("write")

    def free(self) -> None:
        """Get a name, note which allocation it is, free it."""
        name = self.rng.choice(NAMES)
        try:
            alloc = self.ctx.get(name)
        except NotFound:
            self.count("get: not found")
            return
        try:
            mapping = alloc.map("r", timeout=5)
        except (Timeout, Busy):
            self.count("free: busy")
            alloc.release()
            return
        uid = self.verify(mapping.array, name)
        mapping.unmap()
        alloc.free()
        self.freed.append((name, uid))
        self.count("free")

    def let_go(self) -> None:
        """Unmap and release one of the read maps kept."""
        if self.held:
            alloc, mapping = self.held.pop(self.rng.randrange(len(self.held)))
            mapping.unmap()
            alloc.release()
            self.count("unmap")

    def step(self) -> None:
        """One random operation."""
        roll = self.rng.random()
        if roll < 0.25:
            self.create()
        elif roll < 0.50:
            self.read(keep=self.rng.random() < 0.3)
        elif roll < 0.65:
            self.rewrite()
        elif roll < 0.85:
            self.free()
        else:
            self.let_go()

    def finish(self) -> None:
        """Let go of everything still held."""
        while self.held:
            self.let_go()


def churn(context: str, me: int, cycles: int) -> None:
    """Publish, free and recycle big allocations under two names, alternately."""
    ctx = Context.open(context)
    for i in range(cycles):
        name = NAMES[(i + me) % 2]
        alloc = ctx.create(dtype="u64", shape=(1 << 17,))  # 1 MiB: recycled
        with alloc.map("w") as words:
            fill(words, name, me, i)
        try:
            alloc.publish(name)
        except AlreadyExists:
            alloc.release()
            continue
        alloc.release()
        with contextlib.suppress(NotFound):
            ctx.get(name).free()


def watch(context: str, stop: str) -> None:
    """Get the two churned names until `stop` exists, checking every byte each time."""
    ctx = Context.open(context)
    checked = bad = 0
    for i in itertools.count():
        if i % 16 == 0 and os.path.exists(stop):
            break
        name = NAMES[i % 2]
        try:
            alloc = ctx.get(name)
        except NotFound:
            continue
        with alloc:
            try:
                mapping = alloc.map("r")
            except Busy:
                continue
            checked += 1
            bad += bool(check(mapping.array, name)[1])
            mapping.unmap()
    print(checked, bad, flush=True)


def main() -> None:
    """Run the role given on the command line."""
    role = sys.argv.pop(1)
    if role == "churn":
        churn(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
        return
    if role == "watch":
        watch(sys.argv[1], sys.argv[2])
        return
    context, seed, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    worker = Worker(context, seed)
    print("ready", flush=True)
    sys.stdin.readline()  # go: every worker starts at once
    started = time.monotonic()
    for _ in range(ops):
        worker.step()
    worker.finish()
    elapsed = time.monotonic() - started
    account = {
        "pid": worker.pid,
        "ops": ops,
        "seconds": elapsed,
        "reads": worker.reads,
        "published": worker.published,
        "freed": worker.freed,
        "outcomes": worker.outcomes,
        "problems": worker.problems,
    }
    print(json.dumps(account), flush=True)


if __name__ == "__main__":
    main()
