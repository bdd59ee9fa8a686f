"""P10: a crowded shared-memory directory (100,000 files that are not the benchmark's).

Two directories of the benchmark's own (``/dev/shm/<ns>-files-p10-*``, tmpfs like
/dev/shm, mode 1777 like it) serve in turn as CLARA_SHM_DIR: one empty, one holding
`crowd_files` unrelated files (half of them named like another namespace's segments,
half plain names). Measured in each: create + free of 2 MiB in one context (default pool,
as users get it), interleaved; in the crowded one, `clara dump CTX` and `clara leak-check`.
A third directory holds a context whose own names carry `crowd_files` files of another
user (uid 65534, made by root: the bench must run as root, else that row is not
measurable): planted files that `clara dump CTX` must count without opening any.
Nothing else of /dev/shm is touched: the crowds live in the benchmark's own directories.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from clara_core import Context
from clara_core.names import context_file, shm_dir

from .harness import (
    Check,
    Config,
    Row,
    clara_executable,
    interleave,
    ns_to_s,
    ns_to_us,
    run_command,
    spreads,
    summarise,
    timed,
    unmeasurable,
)

CYCLE_BYTES = 2 << 20
EMPTY, CROWDED = "empty directory", "crowded directory"
PLANTER_UID = 65534  # nobody: the other user of the security tests


@contextmanager
def shm_dir_set(path: str) -> Iterator[None]:
    """CLARA_SHM_DIR=path for this process and the commands it runs, within the block."""
    before = os.environ.get("CLARA_SHM_DIR")
    os.environ["CLARA_SHM_DIR"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CLARA_SHM_DIR", None)
        else:
            os.environ["CLARA_SHM_DIR"] = before


def _crowd(path: str, count: int) -> None:
    """`count` empty files in `path`: half another namespace's names, half unrelated."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
    for index in range(count):
        name = f"otherns.ctx{index % 97}.a.e{index}" if index % 2 else f"unrelated-{index}"
        os.close(os.open(os.path.join(path, name), flags, 0o600))


def _plant(path: str, prefix: str, count: int) -> None:
    """`count` files of another user named as members of the context `prefix` names."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
    for index in range(count):
        fd = os.open(os.path.join(path, f"{prefix}.a.planted{index}"), flags, 0o600)
        os.fchown(fd, PLANTER_UID, PLANTER_UID)
        os.close(fd)


def p10(cfg: Config) -> list[Row]:
    """P10: create/free 2 MiB in a crowded vs an empty directory; dump and leak-check."""
    clara = clara_executable()
    base = os.path.join(shm_dir(), f"{cfg.namespace}-files-p10")
    dirs = {EMPTY: base + "-empty", CROWDED: base + "-crowded"}
    contexts: dict[str, Context] = {}
    try:
        for path in dirs.values():
            os.mkdir(path)
            os.chmod(path, 0o1777)
        _crowd(dirs[CROWDED], cfg.crowd_files)
        for key, path in dirs.items():
            with shm_dir_set(path):
                contexts[key] = Context.create("p10")
                for index in range(10):  # a few published allocations for dump to show
                    alloc = contexts[key].create(4096)
                    alloc.publish(f"entry{index}")
                    alloc.release()

        def cycle(key: str) -> float:
            with shm_dir_set(dirs[key]):
                ctx = contexts[key]
                return timed(lambda: ctx.create(CYCLE_BYTES).free())

        cycles = interleave(
            {key: (lambda key=key: cycle(key)) for key in dirs},  # type: ignore[misc]
            cfg.crowd_trials,
            warmup=min(10, cfg.crowd_trials),
        )
        with shm_dir_set(dirs[CROWDED]):
            run_command([clara, "leak-check"])  # warm-up
            walls = interleave(
                {
                    "dump": lambda: run_command([clara, "dump", "p10"]),
                    "leak-check": lambda: run_command([clara, "leak-check"]),
                },
                cfg.scale_trials,
            )
    finally:
        for key, path in dirs.items():
            if key in contexts:
                with shm_dir_set(path):
                    contexts[key].destroy()
        shutil.rmtree(base + "-empty", ignore_errors=True)
        shutil.rmtree(base + "-crowded", ignore_errors=True)
    planted = _planted_dump(cfg, clara, base + "-planted")
    where = f"{cfg.crowd_files:,} unrelated files in the shared-memory directory"
    us = {key: ns_to_us(values) for key, values in cycles.items()}
    return [
        Row(
            id="P10.create-free",
            what=f"create + free of 2 MiB with {where}",
            unit="µs",
            target="≤ 1.5x empty directory",
            checks=[Check("<=", 1.5, EMPTY)],
            ours=summarise(us[CROWDED]),
            baselines={EMPTY: summarise(us[EMPTY])},
            details={"show_p99": True, "ratio_spread": spreads(us[CROWDED], {EMPTY: us[EMPTY]})},
        ),
        Row(
            id="P10.dump",
            what=f"`clara dump CTX` (10 allocations) with {where}",
            unit="s",
            target="≤ 1 s",
            checks=[Check("<=", 1.0)],
            ours=summarise(ns_to_s(walls["dump"])),
        ),
        Row(
            id="P10.leak-check",
            what=f"`clara leak-check` with {where}",
            unit="s",
            target="≤ 1 s",
            checks=[Check("<=", 1.0)],
            ours=summarise(ns_to_s(walls["leak-check"])),
        ),
        planted,
    ]


PLANTED_WHAT = "`clara dump CTX` (10 allocations) with {:,} files of another user under CTX's names"


def _planted_dump(cfg: Config, clara: str, path: str) -> Row:
    """`clara dump CTX` where another user planted `crowd_files` files as CTX's members."""
    what = PLANTED_WHAT.format(cfg.crowd_files)
    if os.geteuid() != 0:
        return unmeasurable(
            "P10.dump-planted", what, "s", "≤ 1 s", "needs root (to make another user's files)"
        )
    context = None
    try:
        os.mkdir(path)
        os.chmod(path, 0o1777)
        with shm_dir_set(path):
            context = Context.create("p10")
            for index in range(10):
                alloc = context.create(4096)
                alloc.publish(f"entry{index}")
                alloc.release()
            _plant(path, context_file("p10"), cfg.crowd_files)
            run_command([clara, "dump", "p10"])  # warm-up
            walls = interleave(
                {"dump": lambda: run_command([clara, "dump", "p10"])}, cfg.scale_trials
            )
    finally:
        if context is not None:
            with shm_dir_set(path):
                context.destroy()
        shutil.rmtree(path, ignore_errors=True)
    return Row(
        id="P10.dump-planted",
        what=what,
        unit="s",
        target="≤ 1 s",
        checks=[Check("<=", 1.0)],
        ours=summarise(ns_to_s(walls["dump"])),
    )
