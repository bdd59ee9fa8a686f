"""Timing, statistics and reporting shared by every benchmark group.

A benchmark group is a function ``run(cfg) -> list[Row]``. Each Row holds our samples and
those of its baselines, measured in the same run and *interleaved* (every round runs each
variant once, in a fresh random order) so that a noisy neighbour, or whichever variant ran
just before, weighs on every side alike. Times come from ``time.perf_counter_ns``. The
garbage collector stays enabled, for every variant alike, as in the programs users write
(GC_POLICY says so in the table).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Trial = Callable[[], float]  # runs one trial, returns the measured value


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How hard to benchmark: sizes and repetitions for one mode (full, quick, smoke)."""

    mode: str
    namespace: str
    micro_trials: int  # P1, P2, P7-get: operations timed one by one
    micro_warmup: int
    big_bytes: int  # P3, P4, P6, P9: bytes moved
    copy_trials: int  # P3
    recycle_reps: int  # P4: creates per round (the issue says 20)
    recycle_rounds: int  # P4
    cli_trials: int  # P5: runs of each command
    transfer_trials: int  # P6
    scale_entries: int  # P7: published allocations (the issue says 10,000)
    scale_trials: int  # P7: runs of dump and leak-check
    handoff_trials: int  # P8
    pipeline_trials: int  # P9
    settle_seconds: float  # P9: pause before each trial (see bench/pipeline.py)
    crowd_files: int  # P10: unrelated files in the crowded directory (the issue: 100,000)
    crowd_trials: int  # P10: create/free cycles per directory
    huge_bytes: int  # P12: the cold create + fill (the issue: 1 GiB)
    huge_trials: int  # P12
    workdir: str = ""  # scratch directory on disk (set by the runner)

    @property
    def big_label(self) -> str:
        """The big size as people write it (256 MiB)."""
        return size_label(self.big_bytes)


MIB = 1 << 20


def make_config(mode: str, namespace: str, workdir: str = "") -> Config:
    """The configuration of `mode`: 'full' (the issue's sizes), 'quick' or 'smoke'."""
    common = {"mode": mode, "namespace": namespace, "workdir": workdir}
    if mode == "full":
        return Config(
            **common,
            micro_trials=3000,
            micro_warmup=200,
            big_bytes=256 * MIB,
            copy_trials=15,
            recycle_reps=20,
            recycle_rounds=3,
            cli_trials=30,
            transfer_trials=10,
            scale_entries=10_000,
            scale_trials=7,
            handoff_trials=2000,
            pipeline_trials=5,
            settle_seconds=3.0,
            crowd_files=100_000,
            crowd_trials=300,
            huge_bytes=1 << 30,
            huge_trials=4,
        )
    if mode == "quick":
        return Config(
            **common,
            micro_trials=600,
            micro_warmup=50,
            big_bytes=64 * MIB,
            copy_trials=7,
            recycle_reps=20,
            recycle_rounds=1,
            cli_trials=8,
            transfer_trials=4,
            scale_entries=10_000,
            scale_trials=3,
            handoff_trials=400,
            pipeline_trials=2,
            settle_seconds=2.0,
            crowd_files=100_000,
            crowd_trials=100,
            huge_bytes=256 * MIB,
            huge_trials=2,
        )
    if mode == "smoke":
        return Config(
            **common,
            micro_trials=3,
            micro_warmup=1,
            big_bytes=2 * MIB,
            copy_trials=1,
            recycle_reps=2,
            recycle_rounds=1,
            cli_trials=1,
            transfer_trials=1,
            scale_entries=20,
            scale_trials=1,
            handoff_trials=3,
            pipeline_trials=1,
            settle_seconds=0.0,
            crowd_files=200,
            crowd_trials=3,
            huge_bytes=4 * MIB,
            huge_trials=1,
        )
    raise ValueError(f"unknown mode {mode!r}")


def size_label(nbytes: int) -> str:
    """256 MiB, 4 KiB, ... (binary units)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


# -- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Summary of one series of samples (in the row's unit)."""

    median: float
    p99: float
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """Plain data for JSON."""
        return {
            "median": self.median,
            "p99": self.p99,
            "mean": self.mean,
            "min": self.low,
            "max": self.high,
            "n": self.n,
        }


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted samples, by linear interpolation."""
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def summarise(samples: list[float]) -> Stats:
    """Median, p99, mean, min, max of the samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return Stats(
        median=statistics.median(ordered),
        p99=percentile(ordered, 99),
        mean=statistics.fmean(ordered),
        low=ordered[0],
        high=ordered[-1],
        n=len(ordered),
    )


# -- timing --------------------------------------------------------------------------------


GC_POLICY = "garbage collector enabled during every timed trial, ours and the baselines' alike"


def timed(operation: Callable[[], object]) -> int:
    """Nanoseconds one call of `operation` takes."""
    start = time.perf_counter_ns()
    operation()
    return time.perf_counter_ns() - start


def interleave(
    trials: dict[str, Trial], count: int, warmup: int = 0, seed: int = 0
) -> dict[str, list[float]]:
    """Run every trial `count` times, interleaved: each round runs every trial once, in a
    random order (seeded, so a run can be repeated), so no variant always follows another.

    `warmup` rounds run first and are discarded. Returns the samples of each trial, in
    round order (see `ratio_spread`).
    """
    names = list(trials)
    order = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + count):
        order.shuffle(names)
        for name in names:
            value = trials[name]()
            if round_index >= warmup:
                samples[name].append(value)
    return samples


def ratio_spread(
    ours: list[float], baseline: list[float], blocks: int = 5
) -> tuple[float, float] | None:
    """The lowest and highest ours/baseline median ratio over `blocks` consecutive blocks
    of rounds: how much the ratio moves within one run (None if too few samples)."""
    size = min(len(ours), len(baseline)) // blocks
    if size < 3:
        return None
    ratios = [
        statistics.median(ours[i * size : (i + 1) * size])
        / statistics.median(baseline[i * size : (i + 1) * size])
        for i in range(blocks)
    ]
    return min(ratios), max(ratios)


def spreads(ours: list[float], baselines: dict[str, list[float]]) -> dict[str, list[float]]:
    """`ratio_spread` of ours against each baseline (for Row.details['ratio_spread'])."""
    found = {}
    for name, samples in baselines.items():
        spread = ratio_spread(ours, samples)
        if spread is not None:
            found[name] = list(spread)
    return found


def ns_to_us(samples: list[float]) -> list[float]:
    """Nanoseconds to microseconds."""
    return [s / 1e3 for s in samples]


def ns_to_ms(samples: list[float]) -> list[float]:
    """Nanoseconds to milliseconds."""
    return [s / 1e6 for s in samples]


def ns_to_s(samples: list[float]) -> list[float]:
    """Nanoseconds to seconds."""
    return [s / 1e9 for s in samples]


def gbps(nbytes: int, samples_ns: list[float]) -> list[float]:
    """Throughput in GB/s (10^9 bytes per second) for each duration."""
    return [nbytes / s for s in samples_ns]  # bytes per ns == GB/s


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One condition of a target: ours/baseline (or ours alone) against a threshold."""

    op: str  # "<=", ">=", "<"
    threshold: float
    baseline: str | None = None  # None: compare our median itself, in the row's unit

    def holds(self, row: Row) -> bool | None:
        """Whether the condition holds for `row` (None if it cannot be evaluated)."""
        if row.ours is None:
            return None
        if self.baseline is None:
            value = row.ours.median
        else:
            ratio = row.ratios().get(self.baseline)
            if ratio is None:
                return None
            value = ratio
        if self.op == "<=":
            return value <= self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        raise ValueError(f"unknown comparison {self.op!r}")


@dataclass
class Row:
    """One line of the results table: our figure, its baselines, and the target."""

    id: str
    what: str
    unit: str
    target: str
    checks: list[Check]
    ours: Stats | None = None
    baselines: dict[str, Stats] = field(default_factory=dict)
    higher_is_better: bool = False
    status: str = "measured"  # or "not measurable", "failed"
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def ratios(self) -> dict[str, float]:
        """ours / baseline (medians), per baseline."""
        if self.ours is None:
            return {}
        return {
            name: self.ours.median / base.median if base.median else math.inf
            for name, base in self.baselines.items()
        }

    @property
    def met(self) -> bool | None:
        """Whether every check holds (None if not measured)."""
        if self.ours is None or self.status != "measured":
            return None
        outcomes = [check.holds(self) for check in self.checks]
        if any(o is None for o in outcomes):
            return None
        return all(outcomes)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "id": self.id,
            "what": self.what,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "status": self.status,
            "ours": self.ours.as_dict() if self.ours else None,
            "baselines": {name: s.as_dict() for name, s in self.baselines.items()},
            "ratios": self.ratios(),
            "target": self.target,
            "checks": [
                {"op": c.op, "threshold": c.threshold, "baseline": c.baseline} for c in self.checks
            ],
            "met": self.met,
            "note": self.note,
            "details": self.details,
        }


def unmeasurable(
    id: str, what: str, unit: str, target: str, reason: str, status: str = "not measurable"
) -> Row:
    """A row that could not be measured, saying why (never a made-up number)."""
    return Row(id, what, unit, target, [], status=status, note=reason)


def machine_info() -> dict[str, Any]:
    """Where and when the numbers were taken."""
    import platform

    load = os.getloadavg()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "load_before": [round(x, 2) for x in load],
        **source_state(),
    }


def source_state() -> dict[str, Any]:
    """The commit measured, and the files of clara_core / clara_cli changed since."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "clara_core", "clara_cli")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": [line[3:] for line in changed.splitlines() if line.strip()],
    }


# -- commands ------------------------------------------------------------------------------


def clara_executable() -> str:
    """The `clara` next to this interpreter (the venv's), else the one on PATH."""
    import shutil
    import sys

    beside = os.path.join(os.path.dirname(sys.executable), "clara")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("clara")
    if found is None:
        raise RuntimeError("the `clara` command is not installed (pip install -e .)")
    return found


def run_command(argv: list[str], ok: tuple[int, ...] = (0,), stdout: int | None = None) -> int:
    """Run a command to its end; returns its wall time in ns. RuntimeError on a bad exit.

    stdout goes to /dev/null unless `stdout` (a file descriptor) is given; stderr is kept
    for the error message.
    """
    import subprocess

    start = time.perf_counter_ns()
    done = subprocess.run(
        argv,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter_ns() - start
    if done.returncode not in ok:
        message = done.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {message}")
    return elapsed
