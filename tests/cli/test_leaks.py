"""`clara leak-check`: exit 1 while leaks are left, --fix reclaims only what nobody uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_core import Context
from clara_core.names import PUBLISHED, allocation_file
from clara_core.shm.segment import path_of
from tests.helpers import Child

from .clirun import clara, data, fails, ok, run_script


def leak_check(*args: str, code: int) -> dict:
    import json

    result = clara("--json", "leak-check", *args)
    assert result.returncode == code, result.stderr.decode()
    return json.loads(result.stdout)


def test_clean_namespace_exits_0() -> None:
    report = leak_check(code=0)
    assert report["clean"] is True and report["leaks"] == 0 and report["findings"] == []
    assert set(report) == {"namespace", "clean", "leaks", "leaked_bytes", "findings"}


def test_orphaned_handle_of_an_exited_script(ctx: str, bin_dir: Path) -> None:
    ok("create", "context", ctx)
    script = run_script(
        f"""
        handle=$(clara create allocation -c {ctx} --size 4K)
        echo "$handle"
        """,
        bin_dir,
    )
    assert script.returncode == 0, script.stderr
    handle = script.stdout.strip()
    report = leak_check(code=1)
    assert (report["clean"], report["leaks"], report["leaked_bytes"]) == (False, 1, 8192)
    [leak] = [f for f in report["findings"] if f["leak"]]
    assert (leak["kind"], leak["name"], leak["status"]) == ("handle", handle, "orphaned")
    assert "exited" in leak["reason"]
    fixed = leak_check("--fix", code=0)
    assert [f["name"] for f in fixed["removed"]] == [handle]
    assert fixed["kept"] == [] and fixed["freed_bytes"] == 8192 and fixed["clean"]
    leak_check(code=0)
    assert Context.exists(ctx)  # a context without owner is idle, not a leak


def test_handle_of_a_live_holder_is_not_a_leak(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "-c", ctx, "--size", "4K")  # its holder: this test process
    report = leak_check(code=0)
    assert [f["status"] for f in report["findings"]] == ["idle", "live"]


def test_context_whose_owner_exited_is_reclaimed(bin_dir: Path) -> None:
    script = run_script(
        """
        clara create context job --owner-pid $$ >/dev/null
        clara create allocation vol -c job --size 4K >/dev/null
        """,
        bin_dir,
    )
    assert script.returncode == 0, script.stderr
    report = leak_check(code=1)
    assert sorted((f["kind"], f["status"]) for f in report["findings"]) == [
        ("context", "owner-dead"),
        ("published", "owner-dead"),
    ]
    human = clara("leak-check")
    assert human.returncode == 1
    assert b"owner-dead*" in human.stdout and b"leak(s)" in human.stderr
    fixed = leak_check("--fix", code=0)
    assert len(fixed["removed"]) == 2
    assert not Context.exists("job")


def test_fix_never_removes_what_is_in_use(bin_dir: Path) -> None:
    script = run_script(
        """
        clara create context job --owner-pid $$ >/dev/null
        clara create allocation vol -c job --size 4K >/dev/null
        """,
        bin_dir,
    )
    assert script.returncode == 0, script.stderr
    reader = Child(
        """
        import time
        from clara_core import Context
        mapping = Context.open("job").get("vol").map("r", allow_incomplete=True)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    try:
        reader.expect("ready")
        kept = leak_check("--fix", code=1)
        assert kept["removed"] == []
        assert {f["kind"] for f in kept["kept"]} == {"context", "published"}
        assert all("in use" in f["why"] for f in kept["kept"])
        assert all(f"pid {reader.pid} (python -c " in f["why"] for f in kept["kept"])
        assert all(f["why"].endswith("stop it or wait, then rerun --fix") for f in kept["kept"])
        assert Context.exists("job")
        human = clara("leak-check", "--fix")
        assert human.returncode == 1
        rows = human.stdout.decode().splitlines()
        assert rows[0].split() == ["FIX", "KIND", "CONTEXT", "NAME", "MEMORY", "REASON"]
        assert sorted(row.split()[0] for row in rows[1:]) == ["kept", "kept"]
        notes = human.stderr.decode()
        assert f"clara: kept context 'job' (2 segment(s)): in use by pid {reader.pid}" in notes
        assert "reclaims" not in notes  # no promise that --fix could do it
        checked = clara("leak-check").stderr.decode()
        assert "--fix cannot reclaim context 'job'" in checked and "reclaims" not in checked
    finally:
        reader.kill()
    leak_check("--fix", code=0)
    assert not Context.exists("job")


def test_older_than_counts_idle_contexts(ctx: str) -> None:
    ok("create", "context", ctx)
    leak_check(code=0)
    report = leak_check("--older-than", "0s", code=1)
    [finding] = report["findings"]
    assert (finding["status"], finding["leak"]) == ("stale", True)
    leak_check("--older-than", "1d", code=0)
    assert leak_check("--fix", "--older-than", "2h", code=0)["removed"] == []
    assert Context.exists(ctx)
    assert len(leak_check("--fix", "--older-than", "0", code=0)["removed"]) == 1
    assert not Context.exists(ctx)


@pytest.mark.parametrize("duration", ["soon", "10 minutes", "-5s", "1w"])
def test_bad_duration_exits_2(duration: str) -> None:
    fails(2, "leak-check", "--older-than", duration)


def test_incomplete_data_is_flagged_but_not_a_leak(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--size", "8")
    assert clara("map", "v", "-c", ctx, "--write", "--", "false").returncode == 1
    report = leak_check(code=0)
    [finding] = [f for f in report["findings"] if f["kind"] == "published"]
    assert finding["incomplete"] is True and finding["leak"] is False
    assert b"data incomplete" in ok("leak-check").stdout
    assert data("dump", ctx, "v")["allocation"]["state"] == "incomplete"


def test_fix_never_removes_a_segment_mapped_only_by_a_plain_numpy_memmap(bin_dir: Path) -> None:
    """No clara reference, no lock: only /proc/PID/maps shows the mapping, and it counts."""
    script = run_script(
        """
        clara create context job --owner-pid $$ >/dev/null
        clara create allocation vol -c job --dtype u8 --shape 4096 >/dev/null
        """,
        bin_dir,
    )
    assert script.returncode == 0, script.stderr
    path = path_of(allocation_file("job", PUBLISHED, "vol"))
    mapper = Child(
        f"""
        import time
        import numpy as np
        array = np.memmap({path!r}, np.uint8, "r+", offset=4096, shape=(4096,))
        array[:] = 9
        print("mapped", flush=True)
        time.sleep(120)
        """
    )
    try:
        mapper.expect("mapped")
        users = data("dump", "job", "vol")["allocation"]["mapped_by"]
        assert [user["pid"] for user in users] == [mapper.pid]
        report = leak_check(code=1)
        found = {f["kind"]: f for f in report["findings"]}
        assert found["published"]["status"] == "owner-dead"
        assert [user["pid"] for user in found["published"]["mapped_by"]] == [mapper.pid]
        assert f"pid {mapper.pid}" in found["published"]["reason"]
        fixed = leak_check("--fix", code=1)
        assert fixed["removed"] == []
        assert {f["kind"] for f in fixed["kept"]} == {"context", "published"}
        assert all(f"pid {mapper.pid}" in f["why"] for f in fixed["kept"]), fixed["kept"]
        with open(path, "rb") as segment:  # still there, and still what the mapper wrote
            segment.seek(4096)
            assert segment.read() == b"\x09" * 4096
    finally:
        mapper.kill()
    assert len(leak_check("--fix", code=0)["removed"]) == 2
    assert not Context.exists("job")
