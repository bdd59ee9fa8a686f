"""A staged write map (shm/staging.py: the first write map of a small fresh private
allocation, held in this process's memory until anything else can reach the file) and
fork: whenever the process forks (from another thread, a signal handler, a finalizer),
in the middle of any step of an unmap, the file never says *complete* before it holds
the data."""

from __future__ import annotations

import json

from tests.helpers import run_python

# Forks at the AT-th Python-level call (sys.setprofile) made by OP on a fresh allocation
# whose staged write map holds 7s (the view dead or alive): one fork per allocation (a
# fork makes it public). The child reads the file through the fd it inherited: a
# complete data state with other data than 7s is reported.
_FORK_AT_EVERY_CALL = """
import json, os, sys
from clara_core import Context
from clara_core.shm import header as hdr

N = 4096
ctx = Context.create("job")
stale, forks = [], 0


def complete_but_stale(alloc):
    pid = os.fork()
    if pid == 0:
        head = os.pread(alloc._fd, hdr.DATA_END, 0)
        data = os.pread(alloc._fd, N, hdr.DATA_OFFSET)
        complete = hdr.read_data_state(head).state == hdr.COMPLETE
        os._exit(3 if complete and data != bytes([7]) * N else 0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


try:
    for view_alive in (False, True):
        for at in range(100):
            alloc = ctx.create(dtype="u8", shape=(N,))
            mapping = alloc.map("w")
            array = mapping.array
            array[:] = 7
            if not view_alive:
                del array
            seen = []

            def profile(frame, event, arg):
                if event in ("call", "c_call") and len(seen) <= at:
                    seen.append(frame.f_code.co_name if event == "call" else repr(arg))
                    if len(seen) > at:
                        sys.setprofile(None)
                        if complete_but_stale(alloc):
                            stale.append([view_alive, at, seen[-1]])

            sys.setprofile(profile)
            mapping.unmap()
            sys.setprofile(None)
            alloc.release()
            if len(seen) <= at:  # the unmap made fewer calls: all tried
                break
            forks += 1
    print(json.dumps({"forks": forks, "stale": stale}))
finally:
    Context.destroy("job")
"""


def test_a_fork_during_a_staged_unmap_never_sees_complete_data_not_yet_written():
    result = run_python(_FORK_AT_EVERY_CALL, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["forks"] >= 10  # (every step of the unmap was forked at)
    assert found["stale"] == []
