"""P5, P6: the `clara` command line, timed as a shell script sees it (wall time of a run).

P5  `clara publish HANDLE NAME`, `clara dump CTX`, `clara leak-check`
    vs  `python -c "import click"` (the least a click program can cost)
P6  `clara map NAME --write --in FILE` of 256 MiB into a published, already-touched
    allocation  vs  `cat FILE 1<> x` (into an existing, already-touched file: no truncation,
    no fresh pages, like clara);
    a fresh allocation: `clara create allocation NAME --in FILE`  vs  `cat FILE > x`
    (truncated: fresh pages);
    `clara map NAME --read --out FILE`  vs  `cat x > FILE` (both write a fresh file);
    the floor of any Python program doing it, `python -c pass` + the same cat, is shown
    beside them (these two forms of `clara map` do not load click: clara_cli.fastpath)

P6's files live in a tmpfs directory of the benchmark's namespace, so that disk write-back
adds noise to neither side.
"""

from __future__ import annotations

import os
import shlex
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
    spreads,
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


CAT_IN = "cat FILE 1<> x (no truncation)"
CAT_FRESH = "cat FILE > x (fresh pages)"
CAT_OUT = "cat x > FILE"
FLOOR = "floor: python -c pass + the same cat"


def p6(cfg: Config) -> list[Row]:
    """P6: `clara map --write --in` / `--read --out` vs cat, 256 MiB."""
    clara = clara_executable()
    files = os.path.join(shm_dir(), f"{cfg.namespace}-files")
    os.makedirs(files, exist_ok=True)
    source, target = os.path.join(files, "in.raw"), os.path.join(files, "out.raw")
    x, y = os.path.join(files, "x"), os.path.join(files, "y")
    ctx = Context.create("p6")
    try:
        _file_of(source, cfg.big_bytes)
        alloc = ctx.create(cfg.big_bytes)
        alloc.publish("blob")
        alloc.release()
        write = [clara, "map", "blob", "--write", "--in", source, "-c", "p6"]
        read = [clara, "map", "blob", "--read", "--out", target, "-c", "p6"]
        fresh = [clara, "create", "allocation", "fresh", "--in", source, "-c", "p6"]
        cat_in = ["sh", "-c", f"cat {source} 1<> {x}"]
        cat_fresh = ["sh", "-c", f"cat {source} > {y}"]
        cat_out = ["sh", "-c", f"cat {x} > {target}"]
        python = shlex.join([sys.executable, "-c", "pass"])
        floor_in = ["sh", "-c", f"{python} && cat {source} 1<> {x}"]
        floor_out = ["sh", "-c", f"{python} && cat {x} > {target}"]
        run_command(write)  # warm up: first touch of the allocation's pages
        run_command(["sh", "-c", f"cat {source} > {x}"])  # x exists, full size, touched

        def fresh_trial() -> float:
            try:
                return run_command(fresh)
            finally:
                ctx.get("fresh").free()

        samples = interleave(
            {
                "write": lambda: run_command(write),
                "cat_in": lambda: run_command(cat_in),
                "fresh": fresh_trial,
                "cat_fresh": lambda: run_command(cat_fresh),
                "read": lambda: run_command(read),
                "cat_out": lambda: run_command(cat_out),
                "floor_in": lambda: run_command(floor_in),
                "floor_out": lambda: run_command(floor_out),
            },
            cfg.transfer_trials,
            warmup=1,
        )
    finally:
        Context.destroy("p6")
        shutil.rmtree(files, ignore_errors=True)
    ms = {name: ns_to_ms(values) for name, values in samples.items()}
    size = cfg.big_label

    def row(
        bench_id: str, what: str, ours: str, baseline: str, name: str, floor: str | None = None
    ) -> Row:
        shown = {name: ms[baseline], **({FLOOR: ms[floor]} if floor else {})}
        return Row(
            id=bench_id,
            what=f"{what}, {size} (tmpfs file)",
            unit="ms",
            target="≤ 1.3x cat",
            checks=[Check("<=", 1.3, name)],
            ours=summarise(ms[ours]),
            baselines={n: summarise(v) for n, v in shown.items()},
            details={"ratio_spread": spreads(ms[ours], shown)},
        )

    return [
        row(
            "P6.write", "`clara map NAME --write --in FILE`", "write", "cat_in", CAT_IN, "floor_in"
        ),
        row(
            "P6.write-fresh",
            "`clara create allocation NAME --in FILE` (fresh allocation)",
            "fresh",
            "cat_fresh",
            CAT_FRESH,
        ),
        row(
            "P6.read", "`clara map NAME --read --out FILE`", "read", "cat_out", CAT_OUT, "floor_out"
        ),
    ]
