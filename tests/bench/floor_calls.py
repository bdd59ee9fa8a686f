"""Run clara's idiomatic P1 and P2 forms and their floors (bench/floors.py) one after
the other, each step between two markers, for tests/bench/test_floor_calls.py to trace;
and both again by their C floors ("cfloor"), when a C compiler builds them here.

Every marker is an access() of a path that cannot exist: `/clara-floor-step <label>`.
"""

from __future__ import annotations

import os
import sys
import tempfile

from bench import floors
from clara_core import Context

MARKER = "/clara-floor-step "
VOL_BYTES = 12 << 10  # a length no other map of this process has (its own spare ranges)
WARM_BYTES = 32 << 10
SMALL_BYTES = 4 << 10  # P2's


def mark(label: str) -> None:
    """A call strace shows, between steps."""
    os.access(MARKER + label, os.F_OK)


def publish(ctx: Context, name: str, nbytes: int) -> None:
    alloc = ctx.create(nbytes)
    with alloc.map("w") as array:
        array[...] = 1
    alloc.publish(name)
    alloc.release()


def main() -> None:
    ctx = Context.create("floors")
    try:
        publish(ctx, "warm", WARM_BYTES)
        publish(ctx, "vol", VOL_BYTES)

        def read(name: str, delete: bool) -> object:
            with ctx.get(name) as ref, ref.map("r") as array:
                if delete:
                    del array
                    return None
            return array.shape  # alive after the block, as P1 times it

        def create(name: str) -> object:
            alloc = ctx.create(SMALL_BYTES)
            with alloc.map("w") as array:
                array[...] = 1
            alloc.publish(name)
            alloc.free()
            return array.shape

        forms = {
            "clara": {
                "I": lambda: read("vol", False),
                "D": lambda: read("vol", True),
                "P2": lambda: create("small"),
                "warm": lambda: (read("warm", False), read("warm", True)),
            },
            "floor": {
                "I": floors.get_map_unmap("floors", "vol"),
                "D": floors.get_map_unmap("floors", "vol", delete=True),
                "P2": floors.create_write_publish_free("floors", "floor", SMALL_BYTES),
                "warm": lambda: (
                    floors.get_map_unmap("floors", "warm")(),
                    floors.get_map_unmap("floors", "warm", delete=True)(),
                ),
            },
        }
        with tempfile.TemporaryDirectory() as scratch:
            built = floors.c_floor(scratch)
        if not isinstance(built, str):
            in_c = floors.create_write_publish_free_in_c(built, "floors", "cfloor", SMALL_BYTES)
            read_warm = floors.get_map_unmap_in_c(built, "floors", "warm")
            deleted_warm = floors.get_map_unmap_in_c(built, "floors", "warm", delete=True)
            forms["cfloor"] = {
                "I": floors.get_map_unmap_in_c(built, "floors", "vol"),
                "D": floors.get_map_unmap_in_c(built, "floors", "vol", delete=True),
                "P2": in_c,
                "warm": lambda: (read_warm(), deleted_warm()),
            }
        for steps in forms.values():  # imports, ctypes, caches: nothing of it traced
            for _ in range(3):
                steps["warm"]()
                steps["P2"]()
        # From no kept range: a new mapping, then the range the dead view left, then none.
        for form, steps in forms.items():
            for index, step in enumerate(sys.argv[1:]):
                if step in steps:
                    mark(f"{form} {index} {step}")
                    steps[step]()
        mark("end")
    finally:
        floors.release()
        Context.destroy("floors")


if __name__ == "__main__":
    main()
