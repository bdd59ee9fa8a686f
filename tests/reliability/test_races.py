"""Races: soaks of the interleavings that once lost data, run for real in every test run.

- pool claim vs publish: four processes create, publish, get back and free 2 MiB
  allocations in one context (every one recycled through the pool) for SOAK seconds;
  a claimer must never hand out a segment a publisher has just named;
- leak-check --fix vs destroy + create: a job destroys its owner-dead context and
  creates it again, bound to itself, while another process reclaims over and over for
  SOAK seconds; the live context must never be removed;
- two processes freeing one allocation: the name is free when free() returns.

SOAK is 30 s each ($CLARA_SOAK_SECONDS overrides it, e.g. for a longer soak by hand).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clara_core import Context
from tests.cli.clirun import CLARA

from .figures import Area
from .harness import SAFETY, our_files, wait_until

SOAK = float(os.environ.get("CLARA_SOAK_SECONDS", "30"))
WORKERS = 4


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.race_workers", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _figures(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=SOAK + 4 * SAFETY)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_pool_claim_never_hands_out_a_just_published_allocation(area: Area) -> None:
    """Issue 9, item 1: 0 of the allocations published by 4 processes may vanish or hold
    another's bytes, while every create is served from the pool the others fill."""
    ctx = Context.create("job", pool_bytes="256M")
    try:
        workers = [_start("pool", str(SOAK), str(i)) for i in range(WORKERS)]
        results = [_figures(w) for w in workers]
    finally:
        ctx.destroy()
    made = sum(r["made"] for r in results)
    lost = sum(r["lost"] for r in results)
    area.trials += made
    area.failures += lost
    area.set("pool soak", f"{made} allocations in {SOAK:g} s, {lost} lost")
    assert made > 0
    assert lost == 0, results
    assert our_files() == set()


def test_reclaim_never_removes_a_context_destroyed_and_created_again(area: Area) -> None:
    """Issue 9, item 2: leak-check --fix (library, and every 20th run the command)
    racing a job that destroys its owner-dead context and creates it again."""
    job = _start("recreate", str(SOAK))
    reclaimer = _start("reclaim", str(SOAK))
    rounds = _figures(job)
    runs = _figures(reclaimer)
    area.trials += rounds["rounds"]
    area.failures += rounds["lost"]
    area.set(
        "reclaim soak",
        f"{rounds['rounds']} re-creations, {runs['runs']} reclaims, {rounds['lost']} lost",
    )
    assert rounds["rounds"] > 0 and runs["runs"] > 0
    assert rounds["lost"] == 0, rounds
    leftover = our_files()
    if leftover:  # the last owner-dead round may be left for the next reclaim
        from clara_core import leaks

        leaks.reclaim()
    assert our_files() == set()


def test_free_returning_means_the_name_is_free(area: Area) -> None:
    """Issue 9, item 13: two processes free one allocation at once; the one whose free()
    returns publishes the name again at once. Never AlreadyExists, never lost."""
    cycles = 3000
    figures = _figures(_start("freers", str(cycles)))
    failed = figures["republish_failed"] + figures["lost"]
    area.trials += cycles
    area.failures += failed
    area.set("double free", f"{cycles} cycles, {failed} failed")
    assert failed == 0, figures


# CMD of `clara map x -- CMD`: says it runs (creates the file $2), waits until the test
# says go (the file $1 exists), then
# reads 4 bytes of the data at $CLARA_MAP_PATH, or writes 9s there (mode w).
_MAP_CMD = """
: > "$2"
while [ ! -e "$1" ]; do sleep 0.02; done
if [ "$CLARA_MAP_MODE" = w ]; then
    printf '\\011\\011\\011\\011' | dd of="$CLARA_MAP_PATH" bs=1 seek="$CLARA_MAP_OFFSET" \\
        conv=notrunc status=none
else
    od -An -tu1 -N4 -j "$CLARA_MAP_OFFSET" "$CLARA_MAP_PATH"
fi
"""


@pytest.mark.parametrize("mode", ["--read", "--write"])
def test_map_cmd_reaches_only_the_allocation_it_maps(mode: str, tmp_path, area: Area) -> None:
    """While `clara map x -- CMD` runs, another process of the job frees x and publishes a
    new x. CMD must still read (or write) the x whose map clara holds, never the new one,
    whose locks nobody holds: CLARA_MAP_PATH must denote that very file, not the name."""
    ctx = Context.create("job")
    try:
        old = ctx.create(dtype="u8", shape=(4,))
        with old.map("w") as array:
            array[:] = 1
        old.publish("x")
        old.release()
        go, running = tmp_path / "go", tmp_path / "running"
        env = {**os.environ, "CLARA_CONTEXT": "job"}
        script = ["sh", "-c", _MAP_CMD, "sh", str(go), str(running)]
        command = [*CLARA, "map", "x", mode, "--", *script]
        cmd = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            wait_until(running.exists, "clara map to map x and start CMD")
            ctx.get("x").free()  # references and maps already held stay valid
            new = ctx.create(dtype="u8", shape=(4,))
            with new.map("w") as array:
                array[:] = 2
            new.publish("x")
            new.release()
            go.touch()
            out, err = cmd.communicate(timeout=SAFETY)
        finally:
            cmd.kill()
            cmd.wait()
        assert cmd.returncode == 0, err.decode()
        if mode == "--read":
            assert out.split()[-4:] == [b"1"] * 4, out  # the x it maps, not the new one
        with ctx.get("x") as x, x.map("r") as array:
            assert (array == 2).all(), "CMD wrote into an allocation it holds no map of"
        area.trials += 1
    finally:
        ctx.destroy()
