"""Threads sharing one reference: whatever they interleave, a view never reaches memory
that is no longer its map's (no crash, no other file's pages): it reads the data or,
once cut off, zeros."""

from __future__ import annotations

import json

from tests.helpers import run_python

# One thread maps, takes a view and reads it, again and again; another unmaps the same
# reference as fast as it can. The unmap may come at any point of the map and the view's
# making (switch interval 1 us): the view must then read the data or zeros, never
# unmapped memory (SIGSEGV) nor whatever was mapped there since.
_MAP_AGAINST_UNMAP = """
import json, sys, threading
from clara_core import ClaraError, Context

sys.setswitchinterval(1e-6)
ctx = Context.create("job")
try:
    made = ctx.create(dtype="u8", shape=(65536,))
    with made.map("w") as data:
        data[:] = 7
    del data
    made.publish("data")
    made.release()
    ref = ctx.get("data")
    done = threading.Event()
    sums = set()

    def reader():
        for _ in range(int(sys.argv[1])):
            try:
                view = ref.map("r").array
            except ClaraError:  # (mapped by this reference already: the other's map)
                continue
            sums.add(int(view[:16].sum()))
            del view
        done.set()

    def unmapper():
        while not done.is_set():
            ref.unmap()

    threads = [threading.Thread(target=reader), threading.Thread(target=unmapper)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ref.release()
    print(json.dumps(sorted(sums)))
finally:
    Context.destroy("job")
"""


def test_a_view_taken_while_another_thread_unmaps_never_reaches_unmapped_memory() -> None:
    done = run_python(_MAP_AGAINST_UNMAP, "60000", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads(done.stdout)) <= {0, 16 * 7}  # the data, or zeros once cut off


# One thread maps 4 MiB (a size whose unmap moves the pages away from live views, to keep
# them warm), publishes the view and unmaps, again and again; another reads whichever
# view is current. The move must never leave the view's range unmapped, even for an
# instant: the reader may touch it at any moment.
_READ_AGAINST_DETACH = """
import json, sys, threading
from clara_core import Context

sys.setswitchinterval(1e-6)
ctx = Context.create("job")
try:
    made = ctx.create(dtype="u8", shape=(4 << 20,))
    with made.map("w") as data:
        data[:] = 7
    del data
    made.publish("data")
    made.release()
    ref = ctx.get("data")
    current = {"view": None}
    done = threading.Event()
    sums = set()

    def unmapper():
        for _ in range(int(sys.argv[1])):
            current["view"] = ref.map("r").array
            ref.unmap()  # cuts the view off, its pages moved away (kept warm)
        done.set()

    def reader():
        while not done.is_set():
            view = current["view"]
            if view is not None:
                sums.add(int(view[::65536].sum()))  # 64 bytes, one per 64 KiB

    threads = [threading.Thread(target=reader), threading.Thread(target=unmapper)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    current.clear()
    ref.release()
    print(json.dumps(sorted(sums)))
finally:
    Context.destroy("job")
"""


def test_a_view_read_while_another_thread_unmaps_a_large_map_never_faults() -> None:
    done = run_python(_READ_AGAINST_DETACH, "3000", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # Each byte read is the data (7) or, cut off, zero: sums of 64 such bytes.
    assert set(json.loads(done.stdout)) <= {7 * n for n in range(65)}
