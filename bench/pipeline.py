"""P9: a 3-operator pipeline moving 256 MiB, `clara run` (shared memory) vs .npy files.

produce -> transform -> consume (bench/p9_operators.py): the same numpy work either way.
Ours is `clara run` of a generated pipeline whose operators exchange static float32
shared-memory variables through the driver API; the baseline runs the same three
operators one after another (`sh -c 'op1 && op2 && op3'`), exchanging .npy files in a
directory on tmpfs (the fair baseline: the same memory as clara's, held against the target),
the same with the environment defaults `clara run` gives its operators (shown beside it),
and in a directory on disk. Wall time of the whole job, files removed between trials;
every variant must print the same checksum.

A second row, P9w, is the same `clara run` with `--warm-pool` (a pool that outlives the
job, see clara_core/warm_pool.py): each trial is a second (or later) run, whose variables
are claimed from the pages the run before it freed into the pool, measured in the same
interleaving as P9 and held against the same baselines (and against P9 itself).

Beside them, two floors: `clara run` of the same pipeline moving 1 MiB (the runner and
three interpreters importing numpy and the driver, started together) and the files
variant's three `import numpy` in sequence; no data movement can take either below them.

Beside the wall times, the CPU time of each job (user + system, of every process it ran),
in the row's note: on a machine of N CPUs no job can finish in less than its CPU time / N,
whatever overlaps inside it; for cold P9 on 2 CPUs that bound, not the schedule, is what
stands between it and the target.

Each trial starts after a pause (`settle_seconds`, untimed). On a VM that reports free
pages to its hypervisor (as this Firecracker guest does), memory freed less than a second
ago is touched again at memory speed, memory freed earlier costs a host fault per page
(about 1 GB/s): without the pause, whichever variant happens to run right after the other
inherits its freshly freed 512 MiB, and the figures swing by 3x from trial to trial.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from .harness import (
    Check,
    Config,
    Row,
    clara_executable,
    interleave,
    ns_to_s,
    run_command,
    spreads,
    summarise,
)

OPERATORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "p9_operators.py")
_CHECKSUM = re.compile(r"checksum=([0-9.eE+-]+)")


def shape_of(nbytes: int) -> tuple[int, int, int]:
    """A float32 volume of `nbytes`: slices of 256 x 1024."""
    return (max(1, nbytes // (4 * 256 * 1024)), 256, 1024)


def pipeline_yaml(shape: tuple[int, ...]) -> str:
    """The pipeline: produce -> transform -> consume over shared-memory variables."""
    dims = ", ".join(str(d) for d in shape)
    python = sys.executable

    def operator(name: str, inputs: str, outputs: str) -> str:
        return (
            f"- name: {name}\n"
            f"  container: {{image: clara-fastio/bench, tag: '0.1', "
            f"command: [{python}, {OPERATORS}, {name}]}}\n"
            f"  variables: {{P9_SHAPE: '{','.join(str(d) for d in shape)}'}}\n"
            f"{inputs}{outputs}"
        )

    def port(name: str, source: str | None = None) -> str:
        origin = f"from: {source}, " if source else ""
        kind = "type: array, element-type: float32"
        return f"  - {{{origin}name: {name}, {kind}, shape: [{dims}]}}\n"

    return (
        "api-version: 0.5.0\norchestrator: Clara\nname: bench-p9\noperators:\n"
        + operator("produce", "", "  output:\n" + port("data"))
        + operator(
            "transform", "  input:\n" + port("data", "produce"), "  output:\n" + port("result")
        )
        + operator("consume", "  input:\n" + port("result", "transform"), "")
    )


def _checksum(argv: list[str], env: dict[str, str] | None = None) -> float:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    found = _CHECKSUM.search(done.stdout + done.stderr)  # clara run: on stderr
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return float(found.group(1))


NPY_TMPFS = ".npy files on tmpfs"
# The same, with the environment `clara run` gives its operators on top of its own (today
# OPENBLAS_THREAD_TIMEOUT=4, see clara_core/pipeline/launch.py): what the runner's default
# alone is worth to the baseline, shown beside it (the target stays against NPY_TMPFS).
NPY_TMPFS_RUN_ENV = ".npy files on tmpfs, with clara run's operator defaults"
NPY_DISK = ".npy files on disk"
# The floors (what no data can go below, with today's operators): `clara run` of the same
# pipeline moving 1 MiB, its smallest volume (runner, three interpreters importing numpy
# and the driver, the readiness waits), and the files variant's interpreters alone,
# started one after another.
FLOOR_RUN = "floor: clara run moving 1 MiB"
FLOOR_IMPORTS = "floor: 3 x import numpy, in sequence"
COLD_RUN = "clara run, cold (P9)"
WARM_RUN = "clara run --warm-pool (P9w)"


def timed_with_cpu(argv: list[str], cpu: list[float]) -> float:
    """run_command(argv), also appending the CPU seconds (user + system) of the command
    and of every process it waited for (its operators, its stages) to `cpu`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_command(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


def cpu_note(
    cpu: dict[str, list[float]], order: list[str], wall_of_target: float, cpus: int
) -> str:
    """What the CPU times say: each variant's median (in `order`), and the least wall
    time that the cold run's CPU allows on `cpus` CPUs, as a ratio to the target's."""
    medians = {name: statistics.median(cpu[name]) for name in order if cpu.get(name)}
    parts = ", ".join(f"{name} {value:.2f} s" for name, value in medians.items())
    bound = medians.get(COLD_RUN, 0.0) / max(cpus, 1)
    return (
        f"CPU per job (user + system of all its processes, medians): {parts}. On {cpus} "
        f"CPUs the cold run cannot take less than {bound:.2f} s "
        f"({bound / wall_of_target:.2f}x {NPY_TMPFS}), however its work overlaps"
    )


def p9(cfg: Config) -> list[Row]:
    """P9: `clara run` of the 3-operator pipeline vs the same operators on .npy files."""
    from clara_core.names import shm_dir
    from clara_core.pipeline.launch import IDLE_THREADS_SLEEP

    clara = clara_executable()
    shape = shape_of(cfg.big_bytes)
    nbytes = 4 * shape[0] * shape[1] * shape[2]
    directory = os.path.join(cfg.workdir, "p9")
    where = {
        NPY_DISK: os.path.join(directory, "files"),
        NPY_TMPFS: os.path.join(shm_dir(), f"{cfg.namespace}-files-p9"),
    }
    for path in where.values():
        os.makedirs(path, exist_ok=True)
    yaml_path = os.path.join(directory, "p9.yaml")
    with open(yaml_path, "w", encoding="utf-8") as out:
        out.write(pipeline_yaml(shape))
    tiny_path = os.path.join(directory, "p9-tiny.yaml")
    with open(tiny_path, "w", encoding="utf-8") as out:
        out.write(pipeline_yaml(shape_of(4096)))
    imports = ["sh", "-c", " && ".join([shlex.join([sys.executable, "-c", "import numpy"])] * 3)]
    os.environ["P9_SHAPE"] = ",".join(str(d) for d in shape)  # for the files variant
    ours_argv = [clara, "run", yaml_path, "-q"]
    pool_name = "bench-p9-warm-pool"
    warm_argv = [*ours_argv, "--warm-pool", pool_name]
    stage = [sys.executable, OPERATORS]

    def chain(files: str, run_env: bool = False) -> list[str]:
        stages = ("produce", "transform", "consume")
        defaults = [f"{k}={v}" for k, v in IDLE_THREADS_SLEEP.items()] if run_env else []
        return [
            "sh",
            "-c",
            " && ".join(shlex.join([*defaults, *stage, n, "--files", files]) for n in stages),
        ]

    def clean(files: str) -> None:
        for name in os.listdir(files):
            os.unlink(os.path.join(files, name))

    cpu: dict[str, list[float]] = {}

    def files_trial(name: str, files: str, run_env: bool = False) -> Callable[[], float]:
        def trial() -> float:
            time.sleep(cfg.settle_seconds)
            try:
                return timed_with_cpu(chain(files, run_env), cpu.setdefault(name, []))
            finally:
                clean(files)

        return trial

    def command_trial(name: str, argv: list[str]) -> Callable[[], float]:
        def trial() -> float:
            time.sleep(cfg.settle_seconds)
            return timed_with_cpu(argv, cpu.setdefault(name, []))

        return trial

    try:
        ours_sum = _checksum([clara, "run", yaml_path])  # warm-up, and the operators' output
        warm_sum = _checksum([clara, "run", yaml_path, "--warm-pool", pool_name])  # fills it
        if warm_sum != ours_sum:
            raise RuntimeError(f"checksums differ: clara run {ours_sum}, warm pool {warm_sum}")
        for name, files in where.items():
            files_sum = _checksum(chain(files))
            clean(files)
            if ours_sum != files_sum:
                raise RuntimeError(f"checksums differ: clara run {ours_sum}, {name} {files_sum}")
        samples = interleave(
            {
                "clara": command_trial(COLD_RUN, ours_argv),
                "warm": command_trial(WARM_RUN, warm_argv),
                **{name: files_trial(name, path) for name, path in where.items()},
                NPY_TMPFS_RUN_ENV: files_trial(NPY_TMPFS_RUN_ENV, where[NPY_TMPFS], True),
                FLOOR_RUN: command_trial(FLOOR_RUN, [clara, "run", tiny_path, "-q"]),
                FLOOR_IMPORTS: command_trial(FLOOR_IMPORTS, imports),
            },
            cfg.pipeline_trials,
        )
    finally:
        shutil.rmtree(where[NPY_TMPFS], ignore_errors=True)
        subprocess.run([clara, "destroy", "context", pool_name], capture_output=True, check=False)
    seconds = {name: ns_to_s(values) for name, values in samples.items()}
    ours = seconds.pop("clara")
    warm = seconds.pop("warm")
    baselines = (NPY_TMPFS, NPY_TMPFS_RUN_ENV, NPY_DISK, FLOOR_RUN, FLOOR_IMPORTS)
    target_wall = summarise(seconds[NPY_TMPFS]).median
    note = cpu_note(cpu, [COLD_RUN, WARM_RUN, *baselines], target_wall, os.cpu_count() or 1)
    return [
        Row(
            id="P9",
            what=(
                f"3-operator pipeline moving {nbytes >> 20} MiB per edge: `clara run` "
                "(shared memory) vs the same operators on .npy files, wall"
            ),
            unit="s",
            target="≥ 3x faster than .npy on tmpfs (ratio ≤ 0.33)",
            checks=[Check("<=", 1 / 3, NPY_TMPFS)],
            ours=summarise(ours),
            baselines={name: summarise(seconds[name]) for name in baselines},
            note=note,
            details={
                "checksum": ours_sum,
                "shape": list(shape),
                "settle_seconds": cfg.settle_seconds,
                "ratio_spread": spreads(ours, seconds),
                "cpu_seconds": cpu,
            },
        ),
        Row(
            id="P9w",
            what=(
                f"P9 with `clara run --warm-pool` (a later run: its {nbytes >> 20} MiB "
                "variables claimed from the pages the run before freed), wall"
            ),
            unit="s",
            target="≥ 3x faster than .npy on tmpfs (ratio ≤ 0.33)",
            checks=[Check("<=", 1 / 3, NPY_TMPFS)],
            ours=summarise(warm),
            baselines={
                COLD_RUN: summarise(ours),
                **{name: summarise(seconds[name]) for name in baselines},
            },
            details={
                "checksum": warm_sum,
                "settle_seconds": cfg.settle_seconds,
                "ratio_spread": spreads(warm, {COLD_RUN: ours, **seconds}),
            },
        ),
    ]
