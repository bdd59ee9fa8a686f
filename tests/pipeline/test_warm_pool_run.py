"""`clara run --warm-pool NAME`: jobs claim their variables from a pool that outlives them.

Real `clara run` subprocesses, shell operators using `clara map`; reuse is proven from
inodes (the pooled segment's and the one the producer wrote), never from timing.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from clara_core import Context, NotFound, leaks
from clara_core.names import shm_dir
from clara_core.pipeline import runner
from clara_core.pipeline.loading import load
from tests.reliability.harness import require_root

from .pipes import clara, clara_run, operators, start_run, write
from .test_run import HEAD

NBYTES = 2 << 20  # above the pool's 1 MiB threshold
V = "{name: v, type: array, element-type: uint8, shape: [DIMS]}"

# The producer first tries to read its freshly allocated output (a claimed segment must
# look unwritten, whatever an earlier job left in it), then fills it with the byte in
# fill.txt and prints its inode; the consumer counts the bytes that are not that byte.
PRODUCE = f"""\
set -uo pipefail
clara map v --read --out /dev/null 2>/dev/null
echo "unwritten-read-exit $?"
head -c {NBYTES} /dev/zero | tr '\\0' "$(cat fill.txt)" | clara map v --write --in - || exit 1
clara map v --read -- sh -c 'echo "inode $(stat -L -c %i "$CLARA_MAP_PATH")"' || exit 1
test ! -e hold || {{ echo $$ > held; while test -e hold; do sleep 0.05; done; }}
"""
CONSUME = """\
set -euo pipefail
echo "other-bytes $(clara map v --read --out - | tr -d "$(cat fill.txt)" | wc -c)"
"""


def pipeline(directory: Path, name: str = "warm", fill: str = "a", dims: int = NBYTES) -> Path:
    """produce -> consume over v, static (`dims` bytes) or dynamic (-1: made by produce)."""
    (directory / "fill.txt").write_text(fill)
    port = V.replace("DIMS", str(dims))
    return write(
        directory,
        HEAD.format(name=name)
        + "- name: produce\n  container: {command: [bash, produce.sh]}\n"
        + f"  output:\n  - {port}\n"
        + "- name: consume\n  container: {command: [bash, consume.sh]}\n"
        + f"  input:\n  - {port.replace('{', '{from: produce, ')}\n",
        produce_sh=PRODUCE,
        consume_sh=CONSUME,
    )


def said(result: dict, operator: str, key: str) -> str:
    for line in operators(result)[operator]["output_tail"]:
        if line.startswith(key + " "):
            return line.split()[1]
    raise AssertionError(f"{operator} never said {key}: {result}")


def pooled(namespace: str, context: str = "pool") -> dict[str, int]:
    prefix = f"{namespace}.{context}.p."
    found = {}
    for name in os.listdir(shm_dir()):
        if name.startswith(prefix):
            found[name] = os.stat(os.path.join(shm_dir(), name)).st_ino
    return found


def test_a_second_run_reuses_the_first_runs_pages_and_never_shows_its_data(
    tmp_path: Path, namespace: str
) -> None:
    path = pipeline(tmp_path, fill="a")
    code, result, err = clara_run(path, "--warm-pool", "pool")
    assert code == 0, err
    assert result["warm_pool"] == "pool"
    first = int(said(result, "produce", "inode"))
    assert list(pooled(namespace).values()) == [first]  # made on first use, kept
    (tmp_path / "fill.txt").write_text("b")
    code, result, err = clara_run(path, "--warm-pool", "pool")
    assert code == 0, err
    assert int(said(result, "produce", "inode")) == first  # the same pages
    assert said(result, "produce", "unwritten-read-exit") == "6"  # not run 1's bytes
    assert said(result, "consume", "other-bytes") == "0"
    assert list(pooled(namespace).values()) == [first]
    # What the tools say: the warm pool is an idle context, its segment pooled, no leak.
    check = json.loads(clara("--json", "leak-check").stdout)
    statuses = sorted((f["kind"], f["status"]) for f in check["findings"])
    assert statuses == [("context", "idle"), ("pooled", "pooled")]
    dump = json.loads(clara("--json", "dump").stdout)
    (summary,) = dump["contexts"]
    assert (summary["name"], summary["pooled_bytes"]) == ("pool", 4096 + NBYTES)
    destroyed = clara("destroy", "context", "pool")
    assert destroyed.returncode == 0, destroyed.stderr
    assert [f for f in os.listdir(shm_dir()) if f.startswith(namespace)] == []


def test_an_operators_dynamic_output_is_claimed_from_the_warm_pool(
    tmp_path: Path, namespace: str
) -> None:
    """`clara run` names the warm pool to its operators (CLARA_WARM_POOL): an output the
    operator sizes itself (`clara map --in` of a declared dynamic output) reuses it too."""
    path = pipeline(tmp_path, dims=-1)
    code, result, err = clara_run(path, "--warm-pool", "pool")
    assert code == 0, err
    first = int(said(result, "produce", "inode"))
    assert list(pooled(namespace).values()) == [first]
    (tmp_path / "fill.txt").write_text("c")
    code, result, err = clara_run(path, "--warm-pool", "pool")
    assert code == 0, err
    assert int(said(result, "produce", "inode")) == first
    assert said(result, "consume", "other-bytes") == "0"
    assert list(pooled(namespace).values()) == [first]
    Context.destroy("pool")


def test_two_runs_at_once_share_one_warm_pool(tmp_path: Path, namespace: str) -> None:
    paths = []
    for fill in "xy":
        (tmp_path / fill).mkdir()
        paths.append(pipeline(tmp_path / fill, name=f"job-{fill}", fill=fill))
    clara_run(paths[0], "--warm-pool", "pool")  # prime it
    runs = [start_run(path, "--warm-pool", "pool") for path in paths]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        results.append(json.loads(out))
    for result in results:
        assert said(result, "produce", "unwritten-read-exit") == "6"
        assert said(result, "consume", "other-bytes") == "0"
    inodes = {int(said(result, "produce", "inode")) for result in results}
    assert len(inodes) == 2  # never the same segment for both
    assert set(pooled(namespace).values()) == inodes  # both went back to the pool
    assert Context.list() == ["pool"]
    assert leaks.check().clean
    Context.destroy("pool")


def test_a_run_killed_with_9_leaves_a_usable_warm_pool(tmp_path: Path, namespace: str) -> None:
    path = pipeline(tmp_path)
    code, result, err = clara_run(path, "--warm-pool", "pool")
    assert code == 0, err
    (tmp_path / "hold").touch()
    run = start_run(path, "--warm-pool", "pool")
    deadline = time.monotonic() + 60
    while not (tmp_path / "held").exists() or not (tmp_path / "held").read_text():
        assert time.monotonic() < deadline and run.poll() is None, run.stderr.read()
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)  # the runner, mid-job
    run.wait(10)
    os.kill(int((tmp_path / "held").read_text()), signal.SIGKILL)  # its producer
    assert pooled(namespace) == {}  # the variable it had claimed was published
    check = json.loads(clara("--json", "leak-check").stdout)
    dead = {f["context"] for f in check["findings"] if f["status"] == "owner-dead"}
    assert dead and "pool" not in dead
    fixed = clara("leak-check", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    (tmp_path / "hold").unlink()
    code, result, err = clara_run(path, "--warm-pool", "pool")  # the pool still serves
    assert code == 0, err
    assert said(result, "consume", "other-bytes") == "0"
    assert list(pooled(namespace).values()) == [int(said(result, "produce", "inode"))]
    assert Context.list() == ["pool"]
    Context.destroy("pool")


def test_a_warm_pool_that_cannot_serve_is_a_clear_error(tmp_path: Path, namespace: str) -> None:
    path = pipeline(tmp_path)
    Context.create("shared", mode=0o660).close()
    try:
        done = clara("run", str(path), "--warm-pool", "shared")
        assert done.returncode == 2
        assert done.stderr.startswith("clara: error: warm pool 'shared' has mode 660")
        assert len(done.stderr.splitlines()) == 1
        done = clara("run", str(path), "--warm-pool", "bad/name")
        assert done.returncode == 2, done.stderr
        made = clara("create", "context", "none", "--pool-bytes", "0")
        assert made.returncode == 0, made.stderr
        done = clara("run", str(path), "--warm-pool", "none")
        assert (done.returncode, done.stderr) == (
            2,
            "clara: error: warm pool 'none' has no pool (its pool cap is 0)\n",
        )
        assert Context.list() == ["none", "shared"]  # no job context was left
    finally:
        Context.destroy("shared")
        Context.destroy("none")


def trivial(directory: Path) -> Path:
    """A one-operator pipeline that does nothing (what is tested happens before it)."""
    return write(
        directory, HEAD.format(name="trivial") + "- name: op\n  container: {command: [true]}\n"
    )


def destroying_each_warm_pool_made(monkeypatch, namespace: str, times: int) -> list[int]:
    """Let another process destroy the warm pool 'pool' right after each of the first
    `times` makes of it by the runner (before the job's context opens it): the runner
    closes the context it made just then. Returns the exit codes of those destroys."""
    destroys: list[int] = []
    close = Context.close

    def close_then_destroy(self: Context) -> None:
        close(self)
        if self.name == "pool" and len(destroys) < times:
            destroys.append(clara("destroy", "context", "pool").returncode)

    monkeypatch.setattr(Context, "close", close_then_destroy)
    return destroys


def test_a_warm_pool_destroyed_as_the_run_starts_is_made_again(
    tmp_path: Path, namespace: str, monkeypatch
) -> None:
    """`clara run --warm-pool` makes the warm pool, then the job's context opens it: a
    destroy in between (another process's, real) made the run fail, 'does not exist'."""
    destroys = destroying_each_warm_pool_made(monkeypatch, namespace, times=2)
    result = runner.run(load(str(trivial(tmp_path))), warm_pool="pool")
    assert result.ok, result
    assert destroys == [0, 0]  # both really destroyed it in the gap
    Context.destroy("pool")


def test_a_warm_pool_destroyed_at_every_make_is_a_clear_error(
    tmp_path: Path, namespace: str, monkeypatch
) -> None:
    destroys = destroying_each_warm_pool_made(monkeypatch, namespace, times=99)
    with pytest.raises(NotFound, match="warm pool 'pool' was destroyed each time it was made"):
        runner.run(load(str(trivial(tmp_path))), warm_pool="pool")
    assert destroys and set(destroys) == {0}
    assert not Context.exists("pool")


REMADE_BY = {
    "another mode": "clara create context pool --mode 644 --pool-bytes 64M",
    "another user": "setpriv --reuid=65534 --regid=65534 --clear-groups "
    "clara create context pool --pool-bytes 64M",
}


@pytest.mark.parametrize("remade_by", sorted(REMADE_BY))
def test_an_operator_goes_on_with_fresh_pages_when_the_warm_pool_cannot_serve_it(
    tmp_path: Path, namespace: str, remade_by: str
) -> None:
    """The warm pool is destroyed mid-job and made again, unfit for the job (another
    mode; another user's, as anyone may do once the name is free): an operator's
    dynamic output failed then (exit 2 or 8); the job never depends on its warm pool."""
    if remade_by == "another user":
        require_root()
    produce = (
        "set -eu\nclara destroy context pool\n"
        + REMADE_BY[remade_by]
        + f"\nhead -c {NBYTES} /dev/zero | tr '\\0' a | clara map v --write --in -\n"
    )
    port = V.replace("DIMS", "-1")
    path = write(
        tmp_path,
        HEAD.format(name="remade")
        + "- name: produce\n  container: {command: [bash, produce.sh]}\n"
        + f"  output:\n  - {port}\n"
        + "- name: consume\n  container: {command: [bash, consume.sh]}\n"
        + f"  input:\n  - {port.replace('{', '{from: produce, ')}\n",
        produce_sh=produce,
        consume_sh=CONSUME,
    )
    (tmp_path / "fill.txt").write_text("a")
    try:
        code, result, err = clara_run(path, "--warm-pool", "pool")
        assert code == 0, (err, result)
        assert said(result, "consume", "other-bytes") == "0"
    finally:
        for name in os.listdir(shm_dir()):  # root removes what it, or the other user, made
            if name.startswith(f"{namespace}.pool"):
                os.unlink(os.path.join(shm_dir(), name))
