"""A staged write map (shm/staging.py: the first write map of a small fresh private
allocation, held in this process's memory until anything else can reach the file) and
fork: whenever the process forks (from another thread, a signal handler, a finalizer),
in the middle of any step of an unmap, the file never says *complete* before it holds
the data."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_python

# What the scripts below share: `action(name)` run at the AT-th Python-level call (first
# 0) that `run()` makes (sys.setprofile); the name of that call, or None if `run` made no
# more calls than AT (every call was tried).
_AT_THE_NTH_CALL = """
import sys


def at_call(at, action, run):
    seen = []

    def profile(frame, event, arg):
        if event in ("call", "c_call") and len(seen) <= at:
            seen.append(frame.f_code.co_name if event == "call" else repr(arg))
            if len(seen) > at:
                sys.setprofile(None)
                action(seen[-1])

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen[-1] if len(seen) > at else None
"""

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
            if len(sys.argv) > 1:  # forked once first: public, the map still staged
                if os.fork() == 0:
                    os._exit(0)
                os.wait()
            if not view_alive:
                del array

            def fork_here(name):
                if complete_but_stale(alloc):
                    stale.append([view_alive, at, name])

            name = at_call(at, fork_here, mapping.unmap)
            alloc.release()
            if name is None:  # the unmap made fewer calls: all tried
                break
            forks += 1
    print(json.dumps({"forks": forks, "stale": stale}))
finally:
    Context.destroy("job")
"""


@pytest.mark.parametrize("forked_first", [False, True])
def test_a_fork_during_a_staged_unmap_never_sees_complete_data_not_yet_written(forked_first):
    """(forked_first: a fork while it was mapped made the segment public, its map still
    staged: the unmap's other branch, which writes the state into the file.)"""
    script = _AT_THE_NTH_CALL + _FORK_AT_EVERY_CALL
    result = run_python(script, *(["first"] if forked_first else []), timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["forks"] >= 10  # (every step of the unmap was forked at)
    assert found["stale"] == []


# A fork from another thread while a writer fills its staged view (brk6's S1): the fork
# stops at an attach's map_at, if any (an attach copies the view, then maps the file over
# it: a fill in between was lost, from view and file), and the writer fills meanwhile.
_WRITE_DURING_A_FORK = """
import json, os, sys, threading
from clara_core import Context

ctx = Context.create("job")
mapped, write_now, written, seen = (threading.Event() for _ in range(4))
found = {}


def writer():
    alloc = ctx.create(dtype="i64", shape=(4096,))
    mapping = alloc.map("w")
    found["staged"] = type(mapping._region).__name__ == "Staged"
    array = mapping.array
    array[:] = 1
    mapped.set()
    write_now.wait(10)
    array[:] = 2
    written.set()
    seen.wait(10)
    found["view"] = sorted(set(array.tolist()))
    mapping.unmap()
    with alloc.map("r") as read:
        found["file"] = sorted(set(read.tolist()))
    alloc.release()


def profile(frame, event, arg):  # the attach's mmap: the data was just copied
    name = frame.f_code.co_name if event == "call" else getattr(arg, "__name__", "")
    if event in ("call", "c_call") and name == "map_at" and not write_now.is_set():
        write_now.set()
        written.wait(2)  # (on the fixed path nothing is staged: no attach, no stop)


try:
    thread = threading.Thread(target=writer)
    thread.start()
    mapped.wait(10)
    sys.setprofile(profile)
    pid = os.fork()
    sys.setprofile(None)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    write_now.set()
    written.wait(10)
    seen.set()
    thread.join()
    print(json.dumps(found))
finally:
    Context.destroy("job")
"""


def test_a_fork_in_another_thread_loses_no_write_of_a_private_write_map():
    result = run_python(_WRITE_DURING_A_FORK)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert (found["view"], found["file"]) == ([2], [2]), found


# An exception (^C, or a signal handler's) raised at the AT-th Python-level call of a
# staged map's unmap (sys.setprofile), for every AT: the allocation must then read as
# complete with the data written, or as not readable (a clear error), never complete with
# other bytes (rev6's intr_unmap.py).
_INTERRUPTED_UNMAPS = """
import json, sys
from clara_core import ClaraError, Context

ctx = Context.create("job")
wrong, raised = [], 0
for at in range(1, 100):
    alloc = ctx.create(dtype="u8", shape=(4096,))
    mapping = alloc.map("w")
    mapping.array[:] = 7
    calls = [0]

    def profile(frame, event, arg):  # (not the script's own calls: setprofile)
        if event in ("call", "c_call") and frame.f_code.co_name != "<module>":
            calls[0] += 1
            if calls[0] == at:
                sys.setprofile(None)
                raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        mapping.unmap()
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
        raised += 1
    finally:
        sys.setprofile(None)
    try:
        with alloc.map("r") as array:
            if not (array == 7).all():
                wrong.append(at)
    except ClaraError:
        pass  # (still mapped, or incomplete: said so)
    alloc.release()
    if not interrupted:  # the unmap made fewer calls: every one was tried
        break
Context.destroy("job")
print(json.dumps({"raised": raised, "wrong": wrong}))
"""


def test_an_interrupted_staged_unmap_never_leaves_other_bytes_complete():
    result = run_python(_INTERRUPTED_UNMAPS)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["raised"] >= 5 and found["wrong"] == [], found


# A fork at the AT-th Python-level call (sys.setprofile) of what attaches a staged map
# (a publish, a handle, `.path`, a copy through the fd), made by the thread that made the
# map (as from a signal handler or a finalizer; another thread's fork waits for memory's
# lock): the child writes through the view it inherited, and its write must reach the
# parent, as at any other fork from that thread. In the middle of the attach the map was
# a Region of private memory: the child's write was its own.
_FORK_DURING_AN_ATTACH = """
import json, os, sys
from clara_core import Context

ctx = Context.create("job")
lost, forks = [], 0


def child_writes(array):
    pid = os.fork()
    if pid == 0:
        array[1] = 99
        os._exit(0)
    os.waitpid(pid, 0)


try:
    for op in ("publish", "handle", "path", "copy_to"):
        for at in range(200):
            alloc = ctx.create(dtype="u8", shape=(4096,))
            mapping = alloc.map("w")
            array = mapping.array
            array[:] = 7
            null = os.open(os.devnull, os.O_WRONLY)
            run = {
                "publish": lambda: alloc.publish("p"),
                "handle": alloc.make_handle,
                "path": lambda: alloc.path,
                "copy_to": lambda: mapping.copy_to(null),
            }[op]
            name = at_call(at, lambda name: child_writes(array), run)
            os.close(null)
            if name is not None and array[1] != 99:
                lost.append([op, at, name])
            mapping.unmap()
            if op in ("publish", "handle"):
                alloc.free()
            else:
                alloc.release()
            if name is None:  # fewer calls: every one was forked at
                break
            forks += 1
    print(json.dumps({"forks": forks, "lost": lost}))
finally:
    Context.destroy("job")
"""


def test_a_fork_in_the_middle_of_an_attach_shares_the_map_with_the_child():
    result = run_python(_AT_THE_NTH_CALL + _FORK_DURING_AN_ATTACH, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["forks"] >= 40  # (every step of each was forked at)
    assert found["lost"] == [], found
