"""Operators for the pipeline tests: `python operators.py ROLE ARGS...` (driver API).

Each role prints what it saw as `key value` lines; the tests read them from the
runner's JSON result (each operator's output tail).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from clara_core import Context
from clara_core.errors import NotFound, ReadOnly
from clara_core.pipeline import Driver
from clara_core.pipeline.declared import open_declared


def produce(driver: Driver, payload, rows: str, name: str = "x") -> bool:
    """`name`: dynamic [-1, 3] float64 with `rows` rows = arange; s: static int32 [2] = shape."""
    x = payload.outputs[name]
    x.update_shape((int(rows), 3))
    x.allocate()
    with x.mapped() as array:
        array[...] = np.arange(array.size).reshape(array.shape)
    if "s" in payload.outputs:
        payload.outputs["s"].write(x.shape)
    return True


def _await_file(flag: str) -> bool:
    """Wait (30 s at most) until file `flag` exists: a reader's sign that it has started."""
    deadline = time.monotonic() + 30
    while not Path(flag).exists():
        if time.monotonic() > deadline:
            print("alone")
            return False
        time.sleep(0.01)
    return True


def produce_when(driver: Driver, payload, flag: str, rows: str) -> bool:
    """`produce`, once file `flag` exists."""
    return _await_file(flag) and produce(driver, payload, rows)


def fail_when(driver: Driver, payload, flag: str) -> bool:
    """Fail without writing anything, once file `flag` exists."""
    _await_file(flag)
    print("failing")
    return False


def check(driver: Driver, payload) -> bool:
    """Print y's shape and whether y == 2 * arange; write a result file to the disk output."""
    y = payload.inputs["y"].read()
    print("shape", ",".join(map(str, y.shape)))
    good = bool(np.array_equal(y, 2 * np.arange(y.size).reshape(y.shape)))
    print("doubled", good)
    Path(payload.output_path(), "result.txt").write_text(f"{y.shape} {good}\n")
    return good


def read_only(driver: Driver, payload) -> bool:
    """Try every way to write an input; print each outcome."""
    x = payload.inputs["x"]
    print("access", x.access)
    for name, attempt in (
        ("variable-map", lambda: x.map("w")),
        ("open-declared", lambda: open_declared("x", "w")),
        ("reference-map", lambda: open_declared("x", "r").map("w")),
        ("update-shape", lambda: x.update_shape((1, 3))),
    ):
        try:
            attempt()
            print(name, "allowed")
        except ReadOnly:
            print(name, "refused")
    with x.mapped() as array:
        try:
            array[0, 0] = 99.0
            print("view", "writable")
        except ValueError:
            print("view", "read-only")
    return True


def freed(driver: Driver, payload, *names: str) -> bool:
    """Print, for each allocation name, whether it is gone from the context."""
    context = payload.fastio_context
    for name in names:
        try:
            context.get(name).release()
            print("present", name)
        except NotFound:
            print("gone", name)
    return True


def rendezvous(driver: Driver, payload, me: str, other: str, directory: str) -> bool:
    """Record a start time, wait until `other` has started too, record an end time."""
    print("start", time.time())
    Path(directory, me).touch()
    deadline = time.monotonic() + 30
    while not Path(directory, other).exists():
        if time.monotonic() > deadline:
            print("alone")
            return False
        time.sleep(0.01)
    print("end", time.time())
    return True


def hold(driver: Driver, payload, ready: str, ignore_term: str = "no") -> bool:
    """Map an output for writing, say so in file `ready` (with our pid), then sleep."""
    if ignore_term == "yes":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    payload.outputs["x"].update_shape((4, 3))
    payload.outputs["x"].allocate()
    payload.outputs["x"].map("w")
    # Atomically (write, then rename): the test must never read half a pid.
    Path(ready + ".tmp").write_text(str(os.getpid()))
    os.replace(ready + ".tmp", ready)
    time.sleep(600)
    return True


def impostor(driver: Driver, payload) -> bool:
    """Publish an int32 [2, 2] under the name of our output x (declared float64 [-1, 3])."""
    allocation = payload.fastio_context.create(dtype="int32", shape=(2, 2))
    with allocation.map("w") as array:
        array[...] = 1
    allocation.publish(payload.outputs["x"].allocation_name)
    return True


def nothing(driver: Driver, payload) -> bool:
    """Succeed without writing anything."""
    return True


ROLES = {
    "produce": produce,
    "produce-when": produce_when,
    "fail-when": fail_when,
    "check": check,
    "read-only": read_only,
    "freed": freed,
    "rendezvous": rendezvous,
    "hold": hold,
    "nothing": nothing,
    "impostor": impostor,
}


def main() -> None:
    """Run ROLE under the driver; `at-exit ROLE ...` with start() and exit (it never tells
    the runner its outputs are complete: its readers go on at its exit)."""
    role, args = sys.argv[1], sys.argv[2:]
    if role == "at-exit":
        role, args = args[0], args[1:]
        driver = Driver(execute=lambda driver, payload: ROLES[role](driver, payload, *args))
        sys.exit(0 if driver.start() else 1)
    Driver(execute=lambda driver, payload: ROLES[role](driver, payload, *args)).run()


if __name__ == "__main__":
    if sys.argv[1] == "sleep":
        print("sleeping", os.getpid())
        time.sleep(float(sys.argv[2]))
    elif sys.argv[1] == "exit":
        print("exiting with", sys.argv[2])
        sys.exit(int(sys.argv[2]))
    elif sys.argv[1] == "exit-after-inputs":  # once its producers have completed its inputs

        def leave(driver: Driver, payload) -> None:
            print("exiting with", sys.argv[2])
            sys.exit(int(sys.argv[2]))

        Driver(execute=leave).run()
    elif sys.argv[1] == "standalone":
        try:
            Driver(execute=lambda d, p: True).start()
        except Exception as exc:
            print(type(exc).__name__, exc)
        print("context", Context.exists("nothing-here"))
    else:
        main()
