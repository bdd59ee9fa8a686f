"""Crash matrix: kill -9 at each point of an allocation's life, many trials per point.

After every kill: no lock is held (a new writer maps at once, the dead process's context
still takes publishes and recycles), no reader hangs, torn data reads as incomplete, and
leak-check --fix brings the namespace's files back to exactly what they were before.
Every trial runs its checks and records a failure instead of stopping, so the figures
show how many of the trials went wrong; the test fails if any did.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from clara_core import Context, Incomplete, header, leaks, names
from clara_core.names import shm_dir
from tests.cli.clirun import CLARA, clara, shim
from tests.helpers import Child

from .figures import Area
from .harness import SAFETY, deadline, kill9, our_files, running, wait_until

TRIALS = 50  # per point of the core and `clara map -- CMD`
RUN_TRIALS = 50
SIZE = 256 << 10  # bytes of the allocation written and torn
CLI_EVERY = 5  # every 5th core trial reclaims with the `clara` command instead of the API

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


class Trials:
    """Runs the trials of one point, recording each failure instead of stopping."""

    def __init__(self, area: Area, point: str, before: set[str]) -> None:
        self.area = area
        self.point = point
        self.before = before
        self.failures: list[str] = []
        self.count = 0

    def run(self, trial: Callable[[int], None], trials: int) -> None:
        """Run `trial(i)` `trials` times; the test fails at the end if any trial failed."""
        for i in range(trials):
            self.count += 1
            self.area.trials += 1
            try:
                with deadline(4 * SAFETY, f"{self.point} trial {i}"):
                    trial(i)
            except Exception as exc:
                self.area.failures += 1
                self.failures.append(f"trial {i}: {type(exc).__name__}: {exc}")
                if len(self.failures) == 1:
                    self.failures.append(traceback.format_exc())
                self._restore()
        self.area.set(f"{self.point} trials", f"{self.count}")
        assert not self.failures, f"{len(self.failures)} failures at {self.point}:\n" + "\n".join(
            self.failures[:6]
        )

    def _restore(self) -> None:
        """After a failed trial: remove whatever it left, so the next one starts clean."""
        with contextlib.suppress(Exception):
            leaks.reclaim()
        for name in our_files() - self.before:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(shm_dir(), name))


def _reclaim(trial: int) -> None:
    """leak-check --fix through the command (every CLI_EVERY-th trial) or the API."""
    if trial % CLI_EVERY == 0:
        result = clara("leak-check", "--fix", timeout=SAFETY)
        assert result.returncode == 0, result.stderr.decode()
    else:
        report = leaks.reclaim()
        kept = [(f.segment.file_name, f.status, why) for f, why in report.kept]
        assert report.after.clean, kept


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
                    mapping = x.map("w")  # no timeout: Busy if anyone still held a lock
                    mapping.buffer[:] = b"\x02" * SIZE
                    mapping.unmap()
                assert _read_all(ctx) == b"\x02" * SIZE
            _probe(ctx)
        report = leaks.check()
        mine = {f.segment.file_name: f.status for f in report.findings if f.segment.context == name}
        assert mine and set(mine.values()) <= {"owner-dead", "orphaned"}, mine
        _reclaim(i)
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
                    mapping = alloc.map("w")  # no timeout: Busy if a lock were left
                    mapping.unmap()
            seen["pooled"] += sum(".p." in f for f in our_files() if f".{name}." in f)
            seen["handles"] += sum(".h." in f for f in our_files() if f".{name}." in f)
            _probe(ctx)
        _reclaim(i)
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


# `clara map x --write -- CMD`: CMD maps the data itself (no numpy: cheap to start), says
# "ready <its pid>" and rewrites it until killed.
CMD = """
import mmap, os, sys
e = os.environ
offset, nbytes = int(e["CLARA_MAP_OFFSET"]), int(e["CLARA_MAP_NBYTES"])
with open(e["CLARA_MAP_PATH"], "r+b") as f:
    m = mmap.mmap(f.fileno(), offset + nbytes)
print("ready", os.getpid(), flush=True)
generation = 3
while True:
    m[offset : offset + nbytes] = bytes([generation % 256]) * nbytes
    generation += 1
"""


@pytest.fixture
def job() -> Context:
    """A context without owner holding `x` (SIZE bytes, complete), for the CLI points."""
    ctx = Context.create("job")
    x = ctx.create(SIZE)
    x.publish("x")
    x.release()
    _rewrite(ctx)
    yield ctx
    Context.destroy("job")


def _rewrite(ctx: Context) -> None:
    """Write x completely, at once: Busy (a failure) if any lock were still held."""
    with ctx.get("x") as x:
        mapping = x.map("w")
        mapping.buffer[:] = b"\x05" * SIZE
        mapping.unmap()


@pytest.mark.parametrize("victim", ["clara", "CMD"])
def test_kill_9_inside_clara_map_command(victim: str, area: Area, job: Context):
    """`clara map x --write -- CMD`: kill -9 the clara process, or CMD."""
    before = our_files()

    def trial(i: int) -> None:
        command = [*CLARA, "map", "x", "-c", "job", "--write", "--", sys.executable, "-c", CMD]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with deadline(SAFETY, "CMD getting ready"):
                line = process.stdout.readline().decode()
            assert line.startswith("ready"), (line, process.stderr.read())
            cmd_pid = int(line.split()[1])
            if victim == "clara":
                assert kill9(process) == -9
            else:
                os.kill(cmd_pid, signal.SIGKILL)
                assert process.wait(SAFETY) == 128 + 9  # clara reports CMD's death
            # CMD must not go on writing once clara (and its lock) is gone.
            wait_until(lambda: not running(cmd_pid), f"CMD (pid {cmd_pid}) after {victim} died")
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(SAFETY)
            process.stdout.close()
            process.stderr.close()
        if i % CLI_EVERY == 0:
            read = clara("map", "x", "-c", "job", "--read", "--timeout", "inf", "--out", "-")
            assert read.returncode == 6, read.stderr.decode()  # torn: incomplete, no hang
        else:
            with job.get("x") as x, pytest.raises(Incomplete):
                x.map("r", timeout=math.inf)  # waits only if a lock were left: Hang
        _rewrite(job)
        _reclaim(i)
        assert our_files() == before

    Trials(area, f"map -- CMD, kill {victim}", before).run(trial, TRIALS)


WRITER = """
import os, sys
from clara_core.driver import Driver

def execute(driver, payload):
    array = payload.outputs["x"].map("w")
    array[:1000] = 7
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:  # keep writing until killed
        array += 1

Driver(execute=execute).run()
"""

SHELL_WRITER = """\
exec clara map x --write -- python -c '
import os, sys
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getppid()))  # the operator: clara map, exec-ed by this script
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
import time; time.sleep(600)
' "$1"
"""

READER = """
from clara_core.driver import Driver
Driver(execute=lambda driver, payload: payload.inputs["x"].read() is not None).run()
"""

PIPELINE = """\
api-version: 0.5.0
name: crash
operators:
- name: writer
  container: {{command: {command}}}
  output: [{{name: x, type: array, element-type: uint8, shape: [{size}]}}]
- name: reader
  container: {{command: [python, reader.py]}}
  input: [{{from: writer, name: x, type: array, element-type: uint8, shape: [{size}]}}]
"""


def test_kill_9_of_an_operator_inside_clara_run(area: Area, tmp_path: Path):
    """An operator holding its output's write map is killed: the job fails, the runner
    stops and cleans up, nothing is left; operators alternate between the driver API and
    a shell script running `clara map -- CMD`."""
    (tmp_path / "writer.py").write_text(textwrap.dedent(WRITER))
    (tmp_path / "writer.sh").write_text(SHELL_WRITER)
    (tmp_path / "reader.py").write_text(textwrap.dedent(READER))
    before = our_files()
    env = _with_clara_on_path(tmp_path)

    def trial(i: int) -> None:
        ready = tmp_path / f"ready{i}"
        shell = i % 2 == 1
        command = f"[bash, writer.sh, {ready}]" if shell else f"[python, writer.py, {ready}]"
        pipeline = tmp_path / f"crash{i}.yaml"
        pipeline.write_text(PIPELINE.format(command=command, size=SIZE))
        runner = subprocess.Popen(
            [*CLARA, "--json", "run", str(pipeline), "--grace", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            wait_until(lambda: ready.exists() or runner.poll() is not None, "the operator")
            assert ready.exists(), runner.communicate()
            operator_pid = int(ready.read_text())
            os.kill(operator_pid, signal.SIGKILL)
            out, err = runner.communicate(timeout=SAFETY)
        finally:
            with contextlib.suppress(ProcessLookupError):
                runner.kill()
            runner.wait(SAFETY)
        assert runner.returncode == 1, err.decode()
        result = json.loads(out)
        ops = {op["name"]: op for op in result["operators"]}
        assert (ops["writer"]["status"], ops["writer"]["exit_code"]) == ("failed", -9), ops
        assert ops["reader"]["status"] == "skipped", ops
        assert not running(operator_pid)
        assert our_files() == before  # the runner destroyed the job's context
        fixed = clara("leak-check", "--fix", timeout=SAFETY)
        assert fixed.returncode == 0, fixed.stderr.decode()
        assert our_files() == before

    Trials(area, "operator in clara run", before).run(trial, RUN_TRIALS)


def _with_clara_on_path(tmp_path: Path) -> dict[str, str]:
    """The environment with `clara` and `python` of this interpreter first on PATH."""
    bin_dir = tmp_path / "bin"
    shim(bin_dir)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**os.environ, "PATH": path}
