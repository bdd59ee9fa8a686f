"""P11: the C library against raw POSIX shared memory in C, both timed in C.

The library is built with the system compiler (``make -C native``, into a scratch
directory) and `bench/native_p11.c` times, interleaving the two sides trial by trial:

- get + map(read) + unmap + release of a 64 KiB allocation
  vs shm_open + mmap(PROT_READ) + munmap + close of a 64 KiB segment;
- create + publish + free of 4 KiB
  vs shm_open(O_CREAT) + ftruncate + mmap + munmap + shm_unlink + close.

Timing in C keeps Python's own overhead out of both sides. Without a C compiler the rows
say so (never a made-up number).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .harness import Check, Config, Row, ns_to_us, spreads, summarise, unmeasurable

ROOT = Path(__file__).resolve().parent.parent
READ_BYTES = 64 << 10
CREATE_BYTES = 4096
READ = ("P11", "C get + map(read) + unmap + release, 64 KiB", "≤ 1.3x raw C")
CREATE = ("P11b", "C create + publish + free, 4 KiB", "≤ 1.5x raw C")
RAW_READ = "raw C shm_open + mmap + munmap + close"
RAW_CREATE = "raw C shm_open(O_CREAT) + ftruncate + mmap + munmap + shm_unlink"


def _build(directory: str) -> str:
    """Build the library and the timing program; returns the program's path."""
    build = os.path.join(directory, "build")
    subprocess.run(
        ["make", "-C", str(ROOT / "native"), f"BUILD={build}", "all"],
        check=True,
        capture_output=True,
    )
    program = os.path.join(directory, "native_p11")
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-D_GNU_SOURCE",
            "-O2",
            f"-I{ROOT / 'native' / 'include'}",
            str(ROOT / "bench" / "native_p11.c"),
            os.path.join(build, "libclara_fastio.a"),
            "-o",
            program,
        ],
        check=True,
        capture_output=True,
    )
    return program


def p11(cfg: Config) -> list[Row]:
    """P11 and P11b: the C library's read and create paths against raw C."""
    missing = [tool for tool in ("cc", "make") if shutil.which(tool) is None]
    if missing:
        reason = f"no {', '.join(missing)} here: the C library cannot be built"
        return [unmeasurable(i, what, "µs", target, reason) for i, what, target in (READ, CREATE)]
    with tempfile.TemporaryDirectory(prefix="clara-p11-", dir=cfg.workdir or None) as scratch:
        program = _build(scratch)
        env = {**os.environ, "CLARA_NAMESPACE": cfg.namespace}
        args = [str(cfg.micro_trials), str(cfg.micro_warmup), str(READ_BYTES), str(CREATE_BYTES)]
        result = subprocess.run(
            [program, *args], env=env, capture_output=True, text=True, check=True
        )
    series = {}
    for line in result.stdout.splitlines():
        name, *values = line.split()
        series[name] = ns_to_us([float(v) for v in values])
    rows = []
    for (bench_id, what, target), ours, raw, raw_label, limit in (
        (READ, "clara-read", "raw-read", RAW_READ, 1.3),
        (CREATE, "clara-create", "raw-create", RAW_CREATE, 1.5),
    ):
        baselines = {raw_label: series[raw]}
        rows.append(
            Row(
                bench_id,
                what,
                "µs",
                target,
                checks=[Check("<=", limit, raw_label)],
                ours=summarise(series[ours]),
                baselines={raw_label: summarise(series[raw])},
                details={
                    "timed_in": "C (clock_gettime), trials interleaved with the baseline",
                    "ratio_spread": spreads(series[ours], baselines),
                },
            )
        )
    return rows
