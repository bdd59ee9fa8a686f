"""P5, P6: the `clara` command line, timed as a shell script sees it (wall time of a run).

P5  `clara publish HANDLE NAME`, `clara dump CTX`, `clara leak-check`
    vs  `python -c "import click"` (the least a click program can cost)
P6  `clara map NAME --write --in FILE` and `--read --out FILE` of 256 MiB
    vs  `cat FILE > /dev/shm/x` (and `cat /dev/shm/x > FILE`)

P6's files live in a tmpfs directory of the benchmark's namespace, so that disk write-back
adds noise to neither side.
"""

from __future__ import annotations

import os
import shutil
import sys

from clara_core import Context
from clara_core.names import shm_dir

from .harness import (
    Check,
    Config,
    Row,
    clara_executable,
    interleave,
    ns_to_ms,
    run_command,
    summarise,
)

PUBLISH_BYTES = 4 << 10
DUMP_ENTRIES = 10
IMPORT_CLICK = "python -c 'import click'"


def p5(cfg: Config) -> list[Row]:
    """P5: start-up bound commands vs the interpreter importing click."""
    clara = clara_executable()
    ctx = Context.create("p5")
    handles: list[str] = []
    counter = iter(range(10**9))

    def publish() -> float:
        alloc = ctx.create(PUBLISH_BYTES)
        handle = alloc.make_handle()
        alloc.release()  # the handle keeps it alive, as after `clara create allocation`
        handles.append(handle)
        name = f"pub{next(counter)}"
        elapsed = run_command([clara, "publish", handle, name, "-c", "p5"])
        ctx.get(name).free()
        handles.remove(handle)
        return elapsed

    try:
        for index in range(DUMP_ENTRIES):
            alloc = ctx.create(PUBLISH_BYTES)
            alloc.publish(f"entry{index}")
            alloc.release()
        samples = interleave(
            {
                "publish": publish,
                "dump": lambda: run_command([clara, "dump", "p5"]),
                "leak-check": lambda: run_command([clara, "leak-check"]),
                IMPORT_CLICK: lambda: run_command([sys.executable, "-c", "import click"]),
            },
            cfg.cli_trials,
            warmup=1,
        )
    finally:
        Context.destroy("p5")
    baseline = {IMPORT_CLICK: summarise(ns_to_ms(samples.pop(IMPORT_CLICK)))}
    whats = {
        "publish": "`clara publish HANDLE NAME -c CTX` wall",
        "dump": f"`clara dump CTX` wall ({DUMP_ENTRIES} allocations)",
        "leak-check": "`clara leak-check` wall",
    }
    return [
        Row(
            id=f"P5.{command}",
            what=whats[command],
            unit="ms",
            target="≤ 1.5x import click",
            checks=[Check("<=", 1.5, IMPORT_CLICK)],
            ours=summarise(ns_to_ms(values)),
            baselines=baseline,
        )
        for command, values in samples.items()
    ]


def _file_of(path: str, nbytes: int) -> None:
    """Write a file of `nbytes` (not all zeros), 8 MiB at a time."""
    chunk = bytes(range(256)) * (8 << 20 >> 8)
    with open(path, "wb") as out:
        left = nbytes
        while left:
            left -= out.write(chunk[: min(left, len(chunk))])


def p6(cfg: Config) -> list[Row]:
    """P6: `clara map --write --in` / `--read --out` vs cat, 256 MiB."""
    clara = clara_executable()
    files = os.path.join(shm_dir(), f"{cfg.namespace}-files")
    os.makedirs(files, exist_ok=True)
    source, target = os.path.join(files, "in.raw"), os.path.join(files, "out.raw")
    x = os.path.join(files, "x")
    ctx = Context.create("p6")
    try:
        _file_of(source, cfg.big_bytes)
        alloc = ctx.create(cfg.big_bytes)
        alloc.publish("blob")
        alloc.release()
        write = [clara, "map", "blob", "--write", "--in", source, "-c", "p6"]
        read = [clara, "map", "blob", "--read", "--out", target, "-c", "p6"]
        cat_in = ["sh", "-c", f"cat {source} > {x}"]
        cat_out = ["sh", "-c", f"cat {x} > {target}"]
        run_command(write)  # warm up: first touch of the allocation's pages
        run_command(cat_in)
        samples = interleave(
            {
                "write": lambda: run_command(write),
                "cat_in": lambda: run_command(cat_in),
                "read": lambda: run_command(read),
                "cat_out": lambda: run_command(cat_out),
            },
            cfg.transfer_trials,
            warmup=1,
        )
    finally:
        Context.destroy("p6")
        shutil.rmtree(files, ignore_errors=True)
    size = cfg.big_label
    return [
        Row(
            id="P6.write",
            what=f"`clara map NAME --write --in FILE`, {size} (tmpfs file)",
            unit="ms",
            target="≤ 1.3x cat",
            checks=[Check("<=", 1.3, "cat FILE > /dev/shm/x")],
            ours=summarise(ns_to_ms(samples["write"])),
            baselines={"cat FILE > /dev/shm/x": summarise(ns_to_ms(samples["cat_in"]))},
        ),
        Row(
            id="P6.read",
            what=f"`clara map NAME --read --out FILE`, {size} (tmpfs file)",
            unit="ms",
            target="≤ 1.3x cat",
            checks=[Check("<=", 1.3, "cat /dev/shm/x > FILE")],
            ours=summarise(ns_to_ms(samples["read"])),
            baselines={"cat /dev/shm/x > FILE": summarise(ns_to_ms(samples["cat_out"]))},
        ),
    ]
