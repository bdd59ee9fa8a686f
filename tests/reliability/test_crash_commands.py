"""Crash matrix through the commands: kill -9 inside `clara map x --write -- CMD` (of
clara, and of CMD), of `clara map` in the middle of a copy in or out, and of an operator
inside `clara run`.

After each kill: CMD does not outlive clara (it would write on without the lock), no lock
is held, the data reads as incomplete (no reader hangs), and `clara leak-check --fix`
leaves exactly the files that were there before.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clara_core import Context, Incomplete
from tests.cli.clirun import CLARA, clara, shim
from tests.helpers import running

from .figures import Area
from .harness import LEFT_LOCK, SAFETY, deadline, kill9, our_files, wait_until
from .trials import CLI_EVERY, TRIALS, Trials, reclaim

SIZE = 256 << 10  # bytes of the allocation CMD and the operators write


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
    """Write x completely: Timeout (a failure) if any lock were still held."""
    with ctx.get("x") as x:
        mapping = x.map("w", timeout=LEFT_LOCK)
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
        reclaim(i)
        assert our_files() == before

    Trials(area, f"map -- CMD, kill {victim}", before).run(trial, TRIALS)


@pytest.mark.parametrize("direction", ["in", "out"])
def test_kill_9_of_clara_map_in_the_middle_of_a_copy(direction: str, area: Area, job: Context):
    """`clara map x --write --in -` killed with half the data in; `clara map x --read --out -`
    killed while its reader is slow: the write is incomplete, the read changes nothing,
    and no lock is left either way."""
    before = our_files()
    mode, option = ("--write", "--in") if direction == "in" else ("--read", "--out")

    def trial(i: int) -> None:
        process = subprocess.Popen(
            [*CLARA, "map", "x", "-c", "job", mode, option, "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with deadline(SAFETY, f"clara map --{direction} getting into its copy"):
                if direction == "in":  # more than a pipe holds: clara has read some of it
                    process.stdin.write(b"\x07" * (SIZE // 2))
                    process.stdin.flush()
                else:  # the rest waits in a full pipe: clara is stuck in the middle
                    assert len(process.stdout.read(4096)) == 4096
            assert kill9(process) == -9
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(SAFETY)
            for stream in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
        with job.get("x") as x:
            assert x.state == ("incomplete" if direction == "in" else "complete")
        _rewrite(job)  # no lock left: at once
        reclaim(i)
        assert our_files() == before

    Trials(area, f"clara map --{direction} -, mid-copy", before).run(trial, TRIALS)


WRITER = """
import os, sys
from clara_core.pipeline.driver import Driver

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
from clara_core.pipeline.driver import Driver
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
        # The reader reads the writer in shared memory: it started with the job, waited
        # for the writer, and was stopped when the writer failed.
        assert ops["reader"]["status"] == "stopped", ops
        assert not running(operator_pid) and not running(ops["reader"]["pid"])
        assert our_files() == before  # the runner destroyed the job's context
        fixed = clara("leak-check", "--fix", timeout=SAFETY)
        assert fixed.returncode == 0, fixed.stderr.decode()
        assert our_files() == before

    Trials(area, "operator in clara run", before).run(trial, TRIALS)


def _with_clara_on_path(tmp_path: Path) -> dict[str, str]:
    """The environment with `clara` and `python` of this interpreter first on PATH."""
    bin_dir = tmp_path / "bin"
    shim(bin_dir)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**os.environ, "PATH": path}
