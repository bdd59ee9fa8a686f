"""P1, P2, P7: the cost of clara_core's small operations, next to raw POSIX shared memory.

P1  get + map('r') + unmap of an existing allocation   vs  posix_ipc open + mmap + close,
                                                            SharedArray attach
P2  create + publish + free of 4 KiB                    vs  posix_ipc create + mmap + unlink,
                                                            multiprocessing.shared_memory,
                                                            SharedArray
P7  a context of 10,000 published allocations: P1's get vs the same in a context of 10;
    `clara dump CTX` and `clara leak-check` wall time (target: at most 1 s)

Every operation yields what a user works with: clara's and SharedArray's a numpy view,
the raw baseline a numpy view of its mmap (a few hundred ns, taken on both sides).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clara_core import Context

from . import baselines as base
from .harness import (
    Check,
    Config,
    Row,
    Trial,
    clara_executable,
    interleave,
    ns_to_s,
    ns_to_us,
    run_command,
    size_label,
    summarise,
    timed,
)

READ_BYTES = 64 << 10  # P1, P7: a small array
SMALL_BYTES = 4 << 10  # P2: the 4 KiB
FILLER_BYTES = 4 << 10  # P7: the other 9,999 entries


def _timer(operation: Callable[[], object]) -> Trial:
    """A trial timing one call of `operation`."""
    return lambda: timed(operation)


def _get_map_unmap(ctx: Context, name: str) -> Callable[[], None]:
    """clara: get + map('r') + numpy view + unmap + release."""

    def operation() -> None:
        with ctx.get(name) as ref, ref.map("r") as array:
            del array

    return operation


def _published(ctx: Context, name: str, nbytes: int, fill: int = 1) -> None:
    """Create, write and publish an allocation, then drop our reference to it."""
    alloc = ctx.create(nbytes)
    with alloc.map("w") as array:
        array[...] = fill
    alloc.publish(name)
    alloc.release()


def p1(cfg: Config) -> list[Row]:
    """P1: get + map(read) + unmap vs raw open + mmap + close and SharedArray attach."""
    ns = cfg.namespace
    raw, shared_array = base.raw_name(ns, "p1"), base.raw_name(ns, "p1-sa")
    ctx = Context.create("p1")
    try:
        _published(ctx, "vol", READ_BYTES)
        base.raw_create(raw, READ_BYTES)
        base.sa_create(shared_array, READ_BYTES)
        samples = interleave(
            {
                "clara": _timer(_get_map_unmap(ctx, "vol")),
                "raw posix_ipc+mmap": _timer(base.raw_attach_read(raw, READ_BYTES)),
                "SharedArray attach": _timer(base.sa_attach_read(shared_array)),
            },
            cfg.micro_trials,
            cfg.micro_warmup,
        )
    finally:
        Context.destroy("p1")
        base.raw_unlink(raw)
        base.sa_delete(shared_array)
    ours = samples.pop("clara")
    return [
        Row(
            id="P1",
            what=f"get + map(read) + unmap, {size_label(READ_BYTES)} allocation",
            unit="µs",
            target="≤ 2x raw",
            checks=[Check("<=", 2.0, "raw posix_ipc+mmap")],
            ours=summarise(ns_to_us(ours)),
            baselines={name: summarise(ns_to_us(s)) for name, s in samples.items()},
        )
    ]


def p2(cfg: Config) -> list[Row]:
    """P2: create + publish + free of 4 KiB vs raw, multiprocessing and SharedArray."""
    ns = cfg.namespace
    names = {peer: base.raw_name(ns, f"p2-{peer}") for peer in ("raw", "mp", "sa")}
    ctx = Context.create("p2")

    def ours() -> None:
        alloc = ctx.create(SMALL_BYTES)
        alloc.publish("small")
        alloc.free()

    try:
        samples = interleave(
            {
                "clara": _timer(ours),
                "raw posix_ipc+mmap": _timer(base.raw_create_map_unlink(names["raw"], SMALL_BYTES)),
                "multiprocessing.shared_memory": _timer(
                    base.mp_create_unlink(names["mp"], SMALL_BYTES)
                ),
                "SharedArray": _timer(base.sa_create_delete(names["sa"], SMALL_BYTES)),
            },
            cfg.micro_trials,
            cfg.micro_warmup,
        )
    finally:
        Context.destroy("p2")
        base.raw_unlink(names["raw"])
        base.raw_unlink(names["mp"])
        base.sa_delete(names["sa"])
    ours_samples = samples.pop("clara")
    return [
        Row(
            id="P2",
            what=f"create + publish + free, {size_label(SMALL_BYTES)}",
            unit="µs",
            target="≤ 2x raw, faster than both peers",
            checks=[
                Check("<=", 2.0, "raw posix_ipc+mmap"),
                Check("<", 1.0, "multiprocessing.shared_memory"),
                Check("<", 1.0, "SharedArray"),
            ],
            ours=summarise(ns_to_us(ours_samples)),
            baselines={name: summarise(ns_to_us(s)) for name, s in samples.items()},
        )
    ]


def _fill_context(name: str, entries: int) -> tuple[Context, float]:
    """A context holding `entries` published allocations (one of them 'vol', 64 KiB).

    Returns it and the seconds it took to fill.
    """
    ctx = Context.create(name)
    start = time.perf_counter()
    _published(ctx, "vol", READ_BYTES)
    for index in range(entries - 1):
        alloc = ctx.create(FILLER_BYTES)
        alloc.publish(f"e{index:05d}")
        alloc.release()
    return ctx, time.perf_counter() - start


def p7(cfg: Config) -> list[Row]:
    """P7: get among 10,000 entries vs among 10; dump and leak-check of 10,000 entries."""
    big, small = cfg.scale_entries, 10
    clara = clara_executable()
    try:
        ctx_small, _ = _fill_context("p7-small", small)
        ctx_big, fill_seconds = _fill_context("p7-big", big)
        gets = interleave(
            {
                "big": _timer(_get_map_unmap(ctx_big, "vol")),
                "small": _timer(_get_map_unmap(ctx_small, "vol")),
            },
            cfg.micro_trials,
            cfg.micro_warmup,
        )
        run_command([clara, "dump", "p7-big"])  # warm the page cache for the commands
        run_command([clara, "leak-check"])
        walls = interleave(
            {
                "dump": lambda: run_command([clara, "dump", "p7-big"]),
                "leak-check": lambda: run_command([clara, "leak-check"]),
            },
            cfg.scale_trials,
        )
    finally:
        for name in ("p7-small", "p7-big"):
            if Context.exists(name):
                Context.destroy(name)
    where = f"{big:,} published allocations"
    return [
        Row(
            id="P7.get",
            what=f"P1 (get + map(read) + unmap) among {where}",
            unit="µs",
            target="≤ 1.5x P1 at 10 entries",
            checks=[Check("<=", 1.5, f"P1 at {small} entries")],
            ours=summarise(ns_to_us(gets["big"])),
            baselines={f"P1 at {small} entries": summarise(ns_to_us(gets["small"]))},
            details={"fill_seconds": fill_seconds},
        ),
        Row(
            id="P7.dump",
            what=f"`clara dump CTX`, {where}",
            unit="s",
            target="≤ 1 s",
            checks=[Check("<=", 1.0)],
            ours=summarise(ns_to_s(walls["dump"])),
        ),
        Row(
            id="P7.leak-check",
            what=f"`clara leak-check`, {where}",
            unit="s",
            target="≤ 1 s",
            checks=[Check("<=", 1.0)],
            ours=summarise(ns_to_s(walls["leak-check"])),
        ),
    ]
