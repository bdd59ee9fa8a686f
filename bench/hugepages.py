"""P12: cold create + fill of a big array on the default tmpfs and on a huge-page tmpfs.

A tmpfs mounted with ``huge=always`` backs files with 2 MiB pages: a fresh array costs one
fault and one clear per 2 MiB instead of per 4 KiB. The benchmark mounts one of its own
(``mount -t tmpfs -o huge=always``, as the space tests do; root or CAP_SYS_ADMIN needed,
else the row says why) and times, on each kind of tmpfs, clara's cold create + map('w') +
fill + free (a context with recycling off) next to the same with a raw file (open +
fallocate + mmap + fill + unlink). It also reads, from /proc/self/smaps, how much of
each mapping the kernel mapped with huge pages (ShmemPmdMapped / FilePmdMapped): clara's
data starts 4096 bytes into its file, after the header, so this shows whether that offset
or the mapping's address keeps the kernel from mapping 2 MiB at a time. Each trial starts
after the pause P9 takes (see bench/pipeline.py), so that no variant inherits the pages
another one just freed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import numpy as np

from clara_core import Context

from .crowded import shm_dir_set
from .harness import (
    Check,
    Config,
    Row,
    gbps,
    interleave,
    size_label,
    spreads,
    summarise,
    unmeasurable,
)

WHAT = "cold create + map(write) + fill + free"


def huge_fraction(address: int) -> float:
    """The fraction of the mapping holding `address` that the kernel maps with 2 MiB pages."""
    size = pmd = None
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(part, 16) for part in head.split("-"))
                inside = low <= address < high
            elif inside and head == "Size:":
                size = int(line.split()[1])
            elif inside and head in ("ShmemPmdMapped:", "FilePmdMapped:"):
                pmd = (pmd or 0) + int(line.split()[1])
    return (pmd or 0) / size if size else 0.0


def _clara_fill(ctx: Context, count: int, seen: list[float]) -> float:
    """One cold create + fill + free; returns ns, notes the huge fraction in `seen`."""
    start = time.perf_counter_ns()
    alloc = ctx.create(dtype="float32", shape=(count,))
    with alloc.map("w") as array:
        array.fill(1.0)
        middle = time.perf_counter_ns()
        seen.append(huge_fraction(array.__array_interface__["data"][0]))
        skipped = time.perf_counter_ns() - middle
    alloc.free()
    return time.perf_counter_ns() - start - skipped


def _raw_fill(directory: str, nbytes: int, seen: list[float]) -> float:
    """The same with a plain file: open + fallocate + mmap + fill + unlink + munmap."""
    import mmap

    start = time.perf_counter_ns()
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        os.posix_fallocate(fd, 0, nbytes)
        memory = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
    array = np.frombuffer(memory, np.float32)
    array.fill(1.0)
    middle = time.perf_counter_ns()
    seen.append(huge_fraction(array.__array_interface__["data"][0]))
    skipped = time.perf_counter_ns() - middle
    del array
    memory.close()
    return time.perf_counter_ns() - start - skipped


def _mount_huge(path: str, nbytes: int) -> str | None:
    """Mount a huge=always tmpfs at `path`; None, or why it could not be done."""
    size = 2 * nbytes + (64 << 20)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777,huge=always", "tmpfs", path],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stderr.strip() or "mount failed"


def p12(cfg: Config) -> list[Row]:
    """P12: cold create + fill on /dev/shm vs on a huge=always tmpfs, clara vs raw."""
    from clara_core.names import shm_dir
    from clara_core.shm import segment

    nbytes, count = cfg.huge_bytes, cfg.huge_bytes // 4
    label = size_label(nbytes)
    target = "≥ 0.9x raw file, same tmpfs"
    huge_dir = tempfile.mkdtemp(prefix="huge-", dir=cfg.workdir or None)
    failure = _mount_huge(huge_dir, nbytes)
    if failure is not None:
        os.rmdir(huge_dir)
        reason = f"cannot mount a huge=always tmpfs here: {failure}"
        return [unmeasurable("P12", f"{WHAT}, {label}", "GB/s", target, reason)]
    dirs = {"default": shm_dir(), "huge": huge_dir}
    seen: dict[str, list[float]] = {}
    contexts: dict[str, Context] = {}
    try:
        for kind, path in dirs.items():
            with shm_dir_set(path):
                contexts[kind] = Context.create("p12", pool_bytes=0)

        def trial(kind: str, raw: bool) -> float:
            time.sleep(cfg.settle_seconds)  # as P9: no variant inherits another's freed pages
            key = f"{'raw' if raw else 'clara'} {kind}"
            with shm_dir_set(dirs[kind]):
                if raw:
                    return _raw_fill(dirs[kind], nbytes, seen.setdefault(key, []))
                return _clara_fill(contexts[kind], count, seen.setdefault(key, []))

        samples = interleave(
            {
                f"{who} {kind}": (lambda kind=kind, raw=(who == "raw"): trial(kind, raw))  # type: ignore[misc]
                for kind in dirs
                for who in ("clara", "raw")
            },
            cfg.huge_trials,
            warmup=1,
        )
    finally:
        for kind, ctx in contexts.items():
            with shm_dir_set(dirs[kind]):
                ctx.destroy()
        segment.forget_directory(huge_dir)
        subprocess.run(["umount", "-l", huge_dir], check=False)
        os.rmdir(huge_dir)
    rates = {key: gbps(nbytes, values) for key, values in samples.items()}
    huge = {key: round(sum(values) / len(values), 3) for key, values in seen.items()}
    names = {
        "clara default": "clara, /dev/shm",
        "raw default": "raw file, /dev/shm",
        "clara huge": "clara, huge=always tmpfs",
        "raw huge": "raw file, huge=always tmpfs",
    }
    rows = []
    for kind, where in (("default", "default tmpfs (/dev/shm)"), ("huge", "huge=always tmpfs")):
        ours = rates[f"clara {kind}"]
        others = {names[k]: v for k, v in rates.items() if k != f"clara {kind}"}
        raw = names[f"raw {kind}"]
        rows.append(
            Row(
                id=f"P12.{kind}",
                what=f"{WHAT}, {label}, on a {where}",
                unit="GB/s",
                target=target,
                checks=[Check(">=", 0.9, raw)],
                ours=summarise(ours),
                baselines={name: summarise(values) for name, values in others.items()},
                higher_is_better=True,
                note=(
                    "share of the mapping on 2 MiB pages: "
                    + ", ".join(f"{names[k]} {v:.0%}" for k, v in huge.items())
                    if kind == "huge"
                    else ""
                ),
                details={
                    "huge_page_fraction": {names[k]: v for k, v in huge.items()},
                    "ratio_spread": spreads(ours, others),
                },
            )
        )
    return rows
