"""P3, P4: moving big arrays through clara's maps, next to private memory and cold pages.

P3  write 256 MiB through a write map (map + numpy copy + unmap)  vs  the same numpy copy
    between two private, already-touched arrays; both as one long-lived reference does it
    (its kept mapping is reused) and as a fresh `get().map("w")` does (a new mapping)
P4  create + fill 256 MiB + free, 20 times in one context (freed segments are recycled)
    vs  the same with recycling disabled (pool_bytes=0: a fresh segment, cold pages, each
    time) and vs a fresh raw posix_ipc segment each time
"""

from __future__ import annotations

import functools
import mmap

import numpy as np
import posix_ipc

from clara_core import Allocation, Context

from . import baselines as base
from .harness import Check, Config, Row, gbps, interleave, summarise, timed


def _copy_inside_held_map(alloc: Allocation, source: np.ndarray, trials: int) -> list[float]:
    """The copy alone, into a map held throughout (what P3's map + unmap adds to)."""
    held = alloc.map("w")
    try:
        trial = {"held": functools.partial(timed, functools.partial(np.copyto, held.array, source))}
        samples = interleave(trial, trials, 1)
        trial.clear()  # drop the view before unmapping
    finally:
        held.unmap()
    return samples["held"]


def p3(cfg: Config) -> list[Row]:
    """P3: map('w') + copy + unmap of 256 MiB vs a copy between private arrays."""
    count = cfg.big_bytes // 4
    source = np.full(count, 1.5, dtype=np.float32)
    private = np.zeros(count, dtype=np.float32)
    private[...] = 0.5  # touched: no page faults in the baseline either
    ctx = Context.create("p3")
    try:
        alloc = ctx.create(dtype="float32", shape=(count,))
        with alloc.map("w") as array:  # first touch, outside the measurement
            array[...] = 0.5

        alloc.publish("p3")

        def ours() -> None:
            with alloc.map("w") as array:
                np.copyto(array, source)

        def fresh() -> None:
            with ctx.get("p3") as ref, ref.map("w") as array:
                np.copyto(array, source)

        copy_in_map = _copy_inside_held_map(alloc, source, cfg.copy_trials)
        samples = interleave(
            {
                "clara": lambda: timed(ours),
                "fresh": lambda: timed(fresh),
                "numpy copy, private arrays": lambda: timed(lambda: np.copyto(private, source)),
            },
            cfg.copy_trials,
            warmup=2,
        )
        alloc.free()
    finally:
        Context.destroy("p3")
    ours_samples = samples.pop("clara")
    fresh_samples = samples.pop("fresh")
    baseline = {n: summarise(gbps(cfg.big_bytes, s)) for n, s in samples.items()}
    return [
        Row(
            id="P3",
            what=f"map(write) + numpy copy {cfg.big_label} + unmap, one long-lived reference",
            unit="GB/s",
            target="≥ 0.9x private copy",
            checks=[Check(">=", 0.9, "numpy copy, private arrays")],
            ours=summarise(gbps(cfg.big_bytes, ours_samples)),
            baselines=baseline,
            higher_is_better=True,
            details={
                "copy_inside_held_map_gbps": summarise(gbps(cfg.big_bytes, copy_in_map)).as_dict()
            },
        ),
        Row(
            id="P3.fresh",
            what=f"get + map(write) + numpy copy {cfg.big_label} + unmap + release (new mapping)",
            unit="GB/s",
            target="≥ 0.9x private copy",
            checks=[Check(">=", 0.9, "numpy copy, private arrays")],
            ours=summarise(gbps(cfg.big_bytes, fresh_samples)),
            baselines=baseline,
            higher_is_better=True,
        ),
    ]


def _create_fill_free(ctx: Context, count: int) -> None:
    """One P4 iteration: create float32[count], fill it through a write map, free it."""
    alloc = ctx.create(dtype="float32", shape=(count,))
    with alloc.map("w") as array:
        array.fill(1.0)
    alloc.free()


def _raw_fresh(name: str, nbytes: int) -> None:
    """A fresh raw segment: create + mmap + fill + unlink + munmap (cold pages)."""
    shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=nbytes)
    try:
        memory = mmap.mmap(shm.fd, nbytes)
        shm.close_fd()
        array = np.frombuffer(memory, np.float32)
        array.fill(1.0)
        del array
        memory.close()
    finally:
        shm.unlink()


def p4(cfg: Config) -> list[Row]:
    """P4: create + fill 256 MiB 20 times, recycled vs cold."""
    count = cfg.big_bytes // 4
    raw = base.raw_name(cfg.namespace, "p4")
    per_round: dict[str, list[float]] = {"clara": [], "cold": [], "raw": []}
    per_create: dict[str, list[float]] = {"clara": [], "cold": [], "raw": []}
    for round_index in range(cfg.recycle_rounds):
        warm_name, cold_name = f"p4-{round_index}", f"p4-cold-{round_index}"
        warm = Context.create(warm_name)  # default pool: recycling on
        cold = Context.create(cold_name, pool_bytes=0)  # recycling off
        try:
            samples = interleave(
                {
                    "clara": lambda: timed(lambda: _create_fill_free(warm, count)),  # noqa: B023
                    "cold": lambda: timed(lambda: _create_fill_free(cold, count)),  # noqa: B023
                    "raw": lambda: timed(lambda: _raw_fresh(raw, cfg.big_bytes)),
                },
                cfg.recycle_reps,
                warmup=1,
            )
        finally:
            Context.destroy(warm_name)
            Context.destroy(cold_name)
            base.raw_unlink(raw)
        for name, values in samples.items():
            per_round[name] += gbps(cfg.big_bytes * len(values), [sum(values)])
            per_create[name] += gbps(cfg.big_bytes, values)
    ours = per_round.pop("clara")
    return [
        Row(
            id="P4",
            what=(
                f"create + fill {cfg.big_label} + free, x{cfg.recycle_reps} in one context "
                "(recycled), total bytes / total time"
            ),
            unit="GB/s",
            target="≥ 5x cold (clara's and raw's)",
            checks=[
                Check(">=", 5.0, "clara, no recycling (cold)"),
                Check(">=", 5.0, "raw posix_ipc, fresh each time"),
            ],
            ours=summarise(ours),
            baselines={
                "clara, no recycling (cold)": summarise(per_round["cold"]),
                "raw posix_ipc, fresh each time": summarise(per_round["raw"]),
            },
            higher_is_better=True,
            details={
                "per_create_gbps": {n: summarise(v).as_dict() for n, v in per_create.items()},
                "rounds": cfg.recycle_rounds,
            },
        )
    ]
