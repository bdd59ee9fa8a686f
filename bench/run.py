"""Run clara-fastio's benchmarks (issues 5 and 14) side by side with their baselines.

    python -m bench                 # everything, the issue's sizes (a few minutes)
    python -m bench --quick         # a reduced version, under a minute
    python -m bench --only P1,P1b,P4 --json results.json
    python bench/run.py ...         # the same

Everything runs in a namespace of its own (``clarabench-<random>``, or --namespace), which
is checked to be empty at the end; anything left behind is removed and reported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable

if __package__ in (None, ""):  # `python bench/run.py`: import `bench` from the repository
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.harness import GC_POLICY, Config, Row, machine_info, make_config, unmeasurable

# id -> (module, function, what, unit, target): the table, in order.
BENCHMARKS: dict[str, tuple[str, str, str, str, str]] = {
    "P1": ("core_ops", "p1", "get + map(read) + unmap", "µs", "≤ 2x raw"),
    "P1b": ("core_ops", "p1b", "map(read) + unmap, held reference", "µs", "≤ 2x raw"),
    "P2": (
        "core_ops",
        "p2",
        "create + map(write) + write + unmap + publish + free, 4 KiB",
        "µs",
        "≤ 2x raw, < peers",
    ),
    "P3": ("bandwidth", "p3", "write through a write map", "GB/s", "≥ 0.9x"),
    "P4": ("bandwidth", "p4", "create + fill, recycled", "GB/s", "≥ 5x cold"),
    "P5": ("cli", "p5", "CLI start-up", "ms", "≤ 1.5x import click"),
    "P6": ("cli", "p6", "clara map --in/--out", "ms", "≤ 1.3x cat"),
    "P7": ("core_ops", "p7", "10,000 allocations", "µs / s", "get ≤ 1.5x P1; ≤ 1 s"),
    "P8": ("handoff", "p8", "hand-off latency", "µs", "≤ 3x pipe round trip"),
    "P9": ("pipeline", "p9", "3-operator pipeline vs .npy files", "s", "≥ 3x faster"),
    "P10": ("crowded", "p10", "a crowded shared-memory directory", "µs / s", "≤ 1.5x; ≤ 1 s"),
    "P11": ("native", "p11", "the C library vs raw C shared memory", "µs", "≤ 1.3x; ≤ 1.5x raw C"),
    "P12": ("hugepages", "p12", "cold create + fill on a huge-page tmpfs", "GB/s", "≥ 0.9x raw"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="clara-fastio benchmarks (issue 5)."
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    size.add_argument(
        "--smoke", action="store_true", help="one iteration each at tiny sizes (for tests)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="IDS", help="comma-separated ids, e.g. P1,P4")
    parser.add_argument(
        "--namespace", help="CLARA_NAMESPACE to use (default: a fresh clarabench-<random>)"
    )
    args = parser.parse_args(argv)
    args.ids = _select(args.only, parser)
    return args


def _select(only: str | None, parser: argparse.ArgumentParser) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    canonical = {key.upper(): key for key in BENCHMARKS}
    given = [part.strip().upper() for part in only.split(",") if part.strip()]
    ids = [canonical.get(i, i) for i in given]
    unknown = [i for i in ids if i not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return [i for i in BENCHMARKS if i in ids]


def run_one(bench_id: str, cfg: Config, log: Callable[[str], None]) -> list[Row]:
    """Run one benchmark group; a crash becomes a 'failed' row, not a lost run."""
    module_name, function, what, unit, target = BENCHMARKS[bench_id]
    start = time.perf_counter()
    log(f"{bench_id}: {what} ...")
    try:
        module = importlib.import_module(f"bench.{module_name}")
        rows: list[Row] = getattr(module, function)(cfg)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rows = [unmeasurable(bench_id, what, unit, target, f"failed: {exc}", status="failed")]
    log(f"{bench_id}: done in {time.perf_counter() - start:.1f} s")
    return rows


def ours(file_name: str, namespace: str) -> bool:
    """Whether a shared-memory file is the benchmark's: clara's segments of the namespace,
    the baselines' (`<ns>-raw.`) and P6's directory (`<ns>-files`)."""
    return file_name.startswith((f"{namespace}.", f"{namespace}-raw.", f"{namespace}-files"))


def leftovers(namespace: str) -> list[str]:
    """Files of the benchmark's namespace still in the shared-memory directories."""
    from clara_core.names import shm_dir

    found = []
    for directory in sorted({shm_dir(), "/dev/shm"}):
        if os.path.isdir(directory):
            found += [
                os.path.join(directory, f) for f in os.listdir(directory) if ours(f, namespace)
            ]
    return found


def remove(paths: list[str]) -> None:
    """Remove leftover files or directories."""
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def cache_bytecode(prefix: str) -> str:
    """Let the commands we time run from cached bytecode, as an installed package does.

    With PYTHONDONTWRITEBYTECODE set (as in some development shells) every `clara` run
    recompiles each module whose .pyc is stale: about 10 ms of start-up that no installed
    copy pays. Bytecode then goes to a private PYTHONPYCACHEPREFIX (removed at the end),
    never into the source tree; the warm-up runs fill it.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "as configured (bytecode written normally)"
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    return "PYTHONDONTWRITEBYTECODE was set: unset for the run, .pyc kept in a private prefix"


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, print the table, write JSON; 0 unless something broke."""
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    namespace = args.namespace or f"clarabench-{uuid.uuid4().hex[:10]}"
    os.environ["CLARA_NAMESPACE"] = namespace  # inherited by every `clara` and operator
    os.environ.pop("CLARA_CONTEXT", None)

    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    meta = machine_info()
    meta.update(mode=mode, namespace=namespace, gc=GC_POLICY)
    log(f"mode {mode}, namespace {namespace}, load {meta['load_before']}")
    rows: list[Row] = []
    workdir = tempfile.mkdtemp(prefix=f"{namespace}-disk-", dir=tempfile.gettempdir())
    meta["bytecode"] = cache_bytecode(os.path.join(workdir, "pycache"))
    started = time.perf_counter()
    try:
        cfg = make_config(mode, namespace, workdir)
        for bench_id in args.ids:
            rows += run_one(bench_id, cfg, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        left = leftovers(namespace)
        remove(left)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["leftovers"] = left

    from bench.report import print_table

    print_table(rows, meta)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"meta": meta, "results": [r.as_dict() for r in rows]}, out, indent=2)
            out.write("\n")
    if left:
        log(f"ERROR: the benchmark left {len(left)} file(s) behind (removed): {left}")
        return 1
    if any(r.status == "failed" for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
