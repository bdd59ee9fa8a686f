"""P1, P1b, P2, P7: the cost of clara_core's small operations, next to raw POSIX shared memory.

P1  get + map('r') + unmap of an existing allocation   vs  posix_ipc open + mmap + close,
                                                            SharedArray attach
P1b map('r') + unmap on a reference held throughout     vs  mmap + munmap of one open fd
    (the per-frame loop of a streaming operator)
P2  create + map('w') + write + unmap + publish + free  vs  the same work with posix_ipc +
    of 4 KiB                                                mmap, multiprocessing.shared_memory
                                                            and SharedArray (create, map,
                                                            write, unmap, unlink)
P7  a context of 10,000 published allocations: P1's get vs the same in a context of 10;
    `clara dump CTX` and `clara leak-check` wall time (target: at most 1 s)

Beside P1 and P2, their floors (bench/floors.py): the very system calls clara's form makes,
in its order, with almost no Python; each is a baseline of its row (ours / floor: what
Python costs above the calls) and a row of its own (floor / raw: what the calls cost above
raw's, against the same target). tests/bench/test_floor_calls.py keeps them clara's calls.

P1, P1b and P2 time the form people write: the view stays bound after the ``with`` block
(``with ref.map("r") as arr: total = arr.sum()``), so clara's unmap must cut off a live
view; it dies when the operation returns, inside the timed region, as the baselines' views
do. P1 and P1b also report the best case, the view deleted inside the block, beside it.
Every operation yields what a user works with: a numpy view of the data.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from clara_core import Context

from . import baselines as base
from . import floors
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
    spreads,
    summarise,
    timed,
    unmeasurable,
)

READ_BYTES = 64 << 10  # P1, P7: a small array
SMALL_BYTES = 4 << 10  # P2: the 4 KiB
FILLER_BYTES = 4 << 10  # P7: the other 9,999 entries


def _timer(operation: Callable[[], object]) -> Trial:
    """A trial timing one call of `operation`."""
    return lambda: timed(operation)


def _get_map_unmap(ctx: Context, name: str) -> Callable[[], object]:
    """clara, idiomatic: get + map('r') + numpy view + unmap + release, the view left bound
    after the block (it dies when the operation returns)."""

    def operation() -> object:
        with ctx.get(name) as ref, ref.map("r") as array:
            pass
        return array.shape  # the view is still alive here, after the unmap

    return operation


def _get_map_unmap_deleted(ctx: Context, name: str) -> Callable[[], None]:
    """clara, best case: the view deleted inside the block."""

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


RAW = "raw posix_ipc+mmap"
RAW_DELETED = "raw posix_ipc+mmap, view deleted"
RAW_FD = "raw mmap+munmap of the held fd"
RAW_FD_DELETED = "raw mmap+munmap of the held fd, view deleted"
FLOOR = "floor: clara's system calls, almost no Python"
FLOOR_DELETED = "floor: clara's system calls, almost no Python, view deleted"
C_FLOOR = "C floor: clara's system calls from one C function"
C_FLOOR_DELETED = "C floor: clara's system calls from one C function, view deleted"
C_HOW = "from one C function, no numpy view"
MICRO = {"show_p99": True}


def p1(cfg: Config) -> list[Row]:
    """P1: get + map(read) + unmap vs raw open + mmap + close and SharedArray attach."""
    ns = cfg.namespace
    raw, shared_array = base.raw_name(ns, "p1"), base.raw_name(ns, "p1-sa")
    with tempfile.TemporaryDirectory(prefix="clara-p1-", dir=cfg.workdir or None) as scratch:
        built = floors.c_floor(scratch)  # (loaded: the file may go)
    ctx = Context.create("p1")
    try:
        _published(ctx, "vol", READ_BYTES)
        base.raw_create(raw, READ_BYTES)
        base.sa_create(shared_array, READ_BYTES)
        trials = {
            "clara": _timer(_get_map_unmap(ctx, "vol")),
            "clara, view deleted": _timer(_get_map_unmap_deleted(ctx, "vol")),
            RAW: _timer(base.raw_attach_read(raw, READ_BYTES)),
            RAW_DELETED: _timer(base.raw_attach_read(raw, READ_BYTES, delete=True)),
            "SharedArray attach": _timer(base.sa_attach_read(shared_array)),
            FLOOR: _timer(floors.get_map_unmap("p1", "vol")),
            FLOOR_DELETED: _timer(floors.get_map_unmap("p1", "vol", delete=True)),
        }
        if not isinstance(built, str):
            trials[C_FLOOR] = _timer(floors.get_map_unmap_in_c(built, "p1", "vol"))
            deleted = floors.get_map_unmap_in_c(built, "p1", "vol", delete=True)
            trials[C_FLOOR_DELETED] = _timer(deleted)
        samples = interleave(trials, cfg.micro_trials, cfg.micro_warmup)
    finally:
        floors.release()
        Context.destroy("p1")
        base.raw_unlink(raw)
        base.sa_delete(shared_array)
    what = f"get + map(read) + unmap, {size_label(READ_BYTES)} allocation"
    rows = _rows_idiomatic_and_deleted(
        "P1",
        what,
        samples,
        {RAW: 2.0, RAW_DELETED: 1.8},
        ["SharedArray attach"],
        (FLOOR,) if isinstance(built, str) else (FLOOR, C_FLOOR),
    )
    return [
        *rows,
        _floor_row("P1.floor", what, samples, FLOOR, RAW, 2.0),
        _floor_row("P1.deleted.floor", what, samples, FLOOR_DELETED, RAW_DELETED, 1.8),
        *(
            [
                _floor_row("P1.cfloor", what, samples, C_FLOOR, RAW, 2.0, C_HOW),
                _floor_row(
                    "P1.deleted.cfloor", what, samples, C_FLOOR_DELETED, RAW_DELETED, 1.8, C_HOW
                ),
            ]
            if not isinstance(built, str)
            else [unmeasurable("P1.cfloor", f"the C floor of {what}", "µs", "≤ 2x raw", built)]
        ),
    ]


def _floor_row(
    row_id: str,
    what: str,
    samples: dict[str, list[float]],
    floor: str,
    raw: str,
    limit: float,
    how: str = "almost no Python",
) -> Row:
    """A floor against raw, under the target of its row: if it is not met here, the
    target lies below what clara's system calls themselves cost."""
    us = {name: ns_to_us(values) for name, values in samples.items()}
    return Row(
        id=row_id,
        what=f"the floor of {what}: clara's system calls in its order, {how}",
        unit="µs",
        target=f"≤ {limit:g}x raw (the row's own)",
        checks=[Check("<=", limit, raw)],
        ours=summarise(us[floor]),
        baselines={raw: summarise(us[raw])},
        details={**MICRO, "ratio_spread": spreads(us[floor], {raw: us[raw]})},
    )


def _rows_idiomatic_and_deleted(
    bench_id: str,
    what: str,
    samples: dict[str, list[float]],
    limits: dict[str, float],
    extra: list[str] | None = None,
    floors: tuple[str, ...] = (),
) -> list[Row]:
    """Two rows: clara's idiomatic form against the raw idiomatic form (`limits`' first
    key), and the deleted-view form against the raw deleted form (its second key); each
    row shows both raw forms, the `extra` baselines and its form's `floors` (their names,
    and those names + ", view deleted")."""
    us = {name: ns_to_us(values) for name, values in samples.items()}
    raw_forms = list(limits)
    rows = []
    for suffix, ours, raw, form in (
        ("", "clara", raw_forms[0], "view still bound after the block"),
        (".deleted", "clara, view deleted", raw_forms[1], "view deleted in the block"),
    ):
        shown = [raw, *(n for n in raw_forms if n != raw), *(extra or [])]
        shown.extend(floor + suffix.replace(".deleted", ", view deleted") for floor in floors)
        baselines = {name: us[name] for name in shown}
        rows.append(
            Row(
                id=bench_id + suffix,
                what=f"{what} ({form})",
                unit="µs",
                target=f"≤ {limits[raw]:g}x raw",
                checks=[Check("<=", limits[raw], raw)],
                ours=summarise(us[ours]),
                baselines={name: summarise(values) for name, values in baselines.items()},
                details={**MICRO, "ratio_spread": spreads(us[ours], baselines)},
            )
        )
    return rows


def p1b(cfg: Config) -> list[Row]:
    """P1b: map(read) + unmap on a held reference vs mmap + munmap of one open fd."""
    ns = cfg.namespace
    raw = base.raw_name(ns, "p1b")
    ctx = Context.create("p1b")
    ref = None
    try:
        _published(ctx, "frame", READ_BYTES)
        ref = ctx.get("frame")
        base.raw_create(raw, READ_BYTES)

        def idiomatic() -> object:
            with ref.map("r") as array:
                pass
            return array.shape  # still alive after the unmap

        def deleted() -> None:
            with ref.map("r") as array:
                del array

        with base.raw_open(raw) as fd:
            samples = interleave(
                {
                    "clara": _timer(idiomatic),
                    "clara, view deleted": _timer(deleted),
                    RAW_FD: _timer(base.raw_map_read(fd, READ_BYTES)),
                    RAW_FD_DELETED: _timer(base.raw_map_read(fd, READ_BYTES, delete=True)),
                },
                cfg.micro_trials,
                cfg.micro_warmup,
            )
    finally:
        if ref is not None:
            ref.release()
        Context.destroy("p1b")
        base.raw_unlink(raw)
    return _rows_idiomatic_and_deleted(
        "P1b",
        f"map(read) + unmap on a held reference, {size_label(READ_BYTES)}",
        samples,
        {RAW_FD: 2.0, RAW_FD_DELETED: 2.0},
    )


def p2(cfg: Config) -> list[Row]:
    """P2: create + map('w') + write + unmap + publish + free of 4 KiB vs raw,
    multiprocessing and SharedArray doing create + map + write + unmap + unlink."""
    ns = cfg.namespace
    names = {peer: base.raw_name(ns, f"p2-{peer}") for peer in ("raw", "mp", "sa")}
    with tempfile.TemporaryDirectory(prefix="clara-p2-", dir=cfg.workdir or None) as scratch:
        built = floors.c_floor(scratch)  # (loaded: the file may go)
    ctx = Context.create("p2")

    def ours() -> object:
        alloc = ctx.create(SMALL_BYTES)
        with alloc.map("w") as array:
            array[...] = 1
        alloc.publish("small")
        alloc.free()
        return array.shape  # bound after the block, as users write it

    try:
        trials = {
            "clara": _timer(ours),
            RAW: _timer(base.raw_create_write_unlink(names["raw"], SMALL_BYTES)),
            "multiprocessing.shared_memory": _timer(
                base.mp_create_write_unlink(names["mp"], SMALL_BYTES)
            ),
            "SharedArray": _timer(base.sa_create_write_delete(names["sa"], SMALL_BYTES)),
            FLOOR: _timer(floors.create_write_publish_free("p2", "floor", SMALL_BYTES)),
        }
        if not isinstance(built, str):
            in_c = floors.create_write_publish_free_in_c(built, "p2", "cfloor", SMALL_BYTES)
            trials[C_FLOOR] = _timer(in_c)
        samples = interleave(trials, cfg.micro_trials, cfg.micro_warmup)
    finally:
        floors.release()
        Context.destroy("p2")
        base.raw_unlink(names["raw"])
        base.raw_unlink(names["mp"])
        base.sa_delete(names["sa"])
    us = {name: ns_to_us(values) for name, values in samples.items()}
    ours_samples = us.pop("clara")
    what = f"create + map(write) + write + unmap + publish + free, {size_label(SMALL_BYTES)}"
    return [
        Row(
            id="P2",
            what=f"{what} (peers: create + map + write + unmap + unlink)",
            unit="µs",
            target="≤ 2x raw, faster than both peers",
            checks=[
                Check("<=", 2.0, RAW),
                Check("<", 1.0, "multiprocessing.shared_memory"),
                Check("<", 1.0, "SharedArray"),
            ],
            ours=summarise(ours_samples),
            baselines={name: summarise(s) for name, s in us.items()},
            details={**MICRO, "ratio_spread": spreads(ours_samples, us)},
        ),
        _floor_row("P2.floor", what, samples, FLOOR, RAW, 2.0),
        _floor_row("P2.cfloor", what, samples, C_FLOOR, RAW, 2.0, "from one C function")
        if not isinstance(built, str)
        else unmeasurable("P2.cfloor", f"the C floor of {what}", "µs", "≤ 2x raw", built),
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
            details={**MICRO, "fill_seconds": fill_seconds},
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
