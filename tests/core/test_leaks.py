"""Leak detection and reclaim, with real crashed processes."""

from __future__ import annotations

import os

import pytest

from clara_core import Context, Incomplete, leaks, names
from clara_core.names import shm_dir
from tests.helpers import Child


def shm_files(namespace):
    return sorted(f for f in os.listdir(shm_dir()) if f.startswith(namespace + "."))


def statuses(report: leaks.LeakReport) -> dict[str, tuple[str, bool]]:
    return {f.segment.file_name: (f.status, f.incomplete) for f in report.findings}


CRASHING_OPERATOR = """
import os, sys, time
from clara_core import Context
owned = Context.create("owned", owner_pid=os.getpid())
a = owned.create(dtype="f32", shape=(1000,))
a.publish("result")
mid_write = a.map("w")
mid_write.array[:10] = 1
shared = Context.open("shared")
b = shared.create(100)
b.publish("half-written")
writer = shared.get("half-written").map("w")
writer.array[:50] = 1
c = shared.create(50)
print("handle", c.make_handle(), flush=True)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_crash_is_classified_and_reclaimed(namespace):
    shared = Context.create("shared")  # no owner: idle, never a leak
    child = Child(CRASHING_OPERATOR)
    handle = child.expect("handle").split()[1]
    child.expect("ready")
    before = statuses(leaks.check())
    half = names.allocation_file("shared", "a", "half-written")
    assert before[names.context_file("owned")] == ("live", False)
    assert before[half] == ("live", False)  # being written: not incomplete yet
    assert before[names.allocation_file("shared", "h", handle)] == ("live", False)
    child.kill()

    report = leaks.check()
    after = statuses(report)
    assert after == {
        names.context_file("shared"): ("idle", False),
        half: ("live", True),  # writer died mid-write
        names.allocation_file("shared", "h", handle): ("orphaned", False),
        names.context_file("owned"): ("owner-dead", False),
        names.allocation_file("owned", "a", "result"): ("owner-dead", True),
    }
    assert {f.segment.file_name for f in report.leaks} == {
        names.allocation_file("shared", "h", handle),
        names.context_file("owned"),
        names.allocation_file("owned", "a", "result"),
    }
    assert report.leaked_bytes == sum(f.segment.size for f in report.leaks) > 4000
    with pytest.raises(Incomplete):
        shared.get("half-written").map("r")

    result = leaks.reclaim()
    removed = {f.segment.file_name for f in result.removed}
    assert removed == {f.segment.file_name for f in report.leaks}
    assert result.after.clean
    assert shm_files(namespace) == [names.context_file("shared"), half]
    shared.destroy()


def test_reclaim_never_removes_what_a_live_process_maps(namespace):
    child = Child(
        """
        import os, time
        from clara_core import Context
        ctx = Context.create("job", owner_pid=os.getppid())
        a = ctx.create(64)
        a.map("w").unmap()
        a.publish("data")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    child.expect("ready")
    reader = Child(
        """
        import time
        from clara_core import Context
        m = Context.open("job").get("data").map("r")
        print("mapped", flush=True)
        time.sleep(60)
        """
    )
    reader.expect("mapped")
    child.kill()  # the context's owner is the test process: still alive
    report = leaks.check()
    assert report.clean
    # Now make the owner dead: a context bound to the (dead) child.
    ctx = Context.create("bound", owner_pid=reader.pid)
    a = ctx.create(8)
    a.publish("x")
    mapping = a.map("r", allow_incomplete=True)
    reader.kill()
    bound = statuses(leaks.check())
    assert bound[names.context_file("bound")] == ("owner-dead", False)
    result = leaks.reclaim()
    assert result.removed == []
    assert any("in use" in why for _, why in result.kept)
    assert os.path.exists(os.path.join(shm_dir(), names.context_file("bound")))
    mapping.unmap()
    a.release()
    result = leaks.reclaim()
    assert {f.segment.file_name for f in result.removed} == {
        names.context_file("bound"),
        names.allocation_file("bound", "a", "x"),
    }
    Context.destroy("job")
    assert shm_files(namespace) == []


def test_idle_contexts_are_reclaimed_only_when_asked_with_an_age(namespace):
    ctx = Context.create("idle")
    a = ctx.create(8)
    a.publish("x")
    a.release()
    assert leaks.reclaim().removed == []
    assert leaks.check(older_than=3600).clean
    assert leaks.reclaim(older_than=3600).removed == []
    stale = leaks.check(older_than=0)
    assert [f.status for f in stale.findings] == ["stale", "stale"]
    assert len(stale.leaks) == 2
    assert len(leaks.reclaim(older_than=0).removed) == 2
    assert shm_files(namespace) == []


def test_allocations_of_a_vanished_context_are_orphans(namespace):
    ctx = Context.create("job")
    a = ctx.create(8)
    a.publish("x")
    a.release()
    os.unlink(os.path.join(shm_dir(), names.context_file("job")))  # e.g. a crashed destroy
    report = leaks.check()
    assert statuses(report) == {names.allocation_file("job", "a", "x"): ("orphaned", False)}
    assert report.leaks[0].reason == "its context is gone"
    leaks.reclaim()
    assert shm_files(namespace) == []


def test_a_corrupt_segment_is_reported_and_reclaimed(namespace):
    path = os.path.join(shm_dir(), f"{namespace}.job.a.junk")
    with open(path, "wb") as f:
        f.write(b"not a clara segment" * 100)
    report = leaks.check()
    assert statuses(report) == {f"{namespace}.job.a.junk": ("corrupt", False)}
    assert "no clara header" in report.leaks[0].reason
    leaks.reclaim()
    assert shm_files(namespace) == []


def test_other_namespaces_are_invisible(namespace, monkeypatch):
    ctx = Context.create("job")
    monkeypatch.setenv("CLARA_NAMESPACE", namespace + "-other")
    assert leaks.check().findings == []
    assert Context.list() == []
    monkeypatch.setenv("CLARA_NAMESPACE", namespace)
    ctx.destroy()


def test_reclaim_looks_again_for_mappings_just_before_it_removes(namespace, monkeypatch):
    """A process that maps a segment after the leak scan still stops its removal.

    The interleaving is forced, not hoped for: reclaim is handed the scan it would have
    made a moment before the mapper came (a plain numpy.memmap: no reference, no lock,
    only /proc/PID/maps shows it), so only its last look at the mappings can save it.
    """
    owner = Child(
        """
        import os, time
        from clara_core import Context
        ctx = Context.create("job", owner_pid=os.getpid())
        ctx.create(4096).publish("data")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    owner.expect("ready")
    owner.kill()
    files = {names.context_file("job"), names.allocation_file("job", "a", "data")}
    scan = leaks.check()
    assert {name: status for name, (status, _) in statuses(scan).items()} == dict.fromkeys(
        files, "owner-dead"
    )
    path = os.path.join(shm_dir(), names.allocation_file("job", "a", "data"))
    mapper = Child(
        f"""
        import time
        import numpy as np
        array = np.memmap({path!r}, np.uint8, "r", offset=4096, shape=(4096,))
        print("mapped", flush=True)
        time.sleep(60)
        """
    )
    try:
        mapper.expect("mapped")
        fresh_check, scans = leaks.check, []

        def scan_from_before_the_mapper(older_than=None):
            scans.append(older_than)
            return scan if len(scans) == 1 else fresh_check(older_than)

        with monkeypatch.context() as patched:
            patched.setattr(leaks, "check", scan_from_before_the_mapper)
            result = leaks.reclaim()
        assert scans, "reclaim did not start from leaks.check(): the race was not set up"
        assert result.removed == []
        assert {f.segment.file_name for f, _ in result.kept} == files
        assert all(f"pid {mapper.pid}" in why for _, why in result.kept), result.kept
        assert set(shm_files(namespace)) == files
    finally:
        mapper.kill()
    final = leaks.reclaim()
    assert {f.segment.file_name for f in final.removed} == files, final.kept
