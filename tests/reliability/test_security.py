"""Security: owner-only segments, another user can do nothing to ours, leak-check never
removes another user's segment, names cannot escape the namespace.

The other user is uid/gid 65534 (nobody), reached with setpriv(1); these tests skip when
not run as root. Each of its attempts runs in a process of its own, through the library
and through the real `clara` command.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from clara_core import (
    AlreadyExists,
    Context,
    InvalidArgument,
    PermissionDenied,
    leaks,
    names,
)
from clara_core.names import shm_dir
from tests.cli.clirun import clara

from .figures import Area
from .harness import OTHER_UID, as_other_user, directory_listing, our_files, require_root

ATTEMPTS = """
import json
from clara_core import ClaraError, Context, leaks

def attempt(step):
    try:
        step()
    except ClaraError as exc:
        return type(exc).__name__
    except Exception as exc:
        return f"bug: {type(exc).__name__}: {exc}"
    return "allowed"

def get(name, mode=None):
    alloc = Context.open("job").get(name)
    if mode:
        alloc.map(mode).unmap()

def publish():
    ctx = Context.open("job")
    alloc = ctx.create(4096)
    alloc.publish("planted")

def handle():
    Context.open("job").create(4096).make_handle()

outcomes = {
    "open": attempt(lambda: Context.open("job")),
    "map r": attempt(lambda: get("data", "r")),
    "map w": attempt(lambda: get("data", "w")),
    "free": attempt(lambda: Context.open("job").get("data").free()),
    "publish into": attempt(publish),
    "hand over into": attempt(handle),
    "destroy": attempt(lambda: Context.destroy("job")),
    "list": Context.list(),
    "reclaim": [f.segment.name or f.segment.context for f in leaks.reclaim().removed],
}
print(json.dumps(outcomes))
"""


def _as_other(code: str) -> dict:
    """Run python `code` as the other user; its JSON answer."""
    result = subprocess.run(
        [*as_other_user(), sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _as_other_clara(*args: str):
    """Run `clara ARGS` as the other user."""
    return clara(*args, prefix=tuple(as_other_user()), env={"PYTHONDONTWRITEBYTECODE": "1"})


@pytest.fixture
def job(request: pytest.FixtureRequest) -> Iterator[Context]:
    """Our context `job` (mode from the test's parameter, default 600) with `data`, and an
    owner-dead context `dead` of ours with a leaked allocation."""
    mode = getattr(request, "param", 0o600)
    ctx = Context.create("job", mode=mode)
    data = ctx.create(4096)
    with data.map("w") as array:
        array[:] = 9
    data.publish("data")
    data.release()
    yield ctx
    Context.destroy("job")


def _mode(file_name: str) -> int:
    """Permission bits of a segment."""
    return stat.S_IMODE(os.stat(os.path.join(shm_dir(), file_name)).st_mode)


def test_segments_and_contexts_are_owner_only_by_default(area: Area) -> None:
    """Context, published, handle and pooled segments: 0600 whatever the umask."""
    old = os.umask(0)
    try:
        ctx = Context.create("job", pool_bytes="8M")
        published = ctx.create(4096)
        published.publish("data")
        handed = ctx.create(4096)
        handle = handed.make_handle()
        ctx.create(1 << 20).release()  # into the pool
        modes = {name: _mode(name) for name in our_files()}
        kinds = {name.split(".")[2] if name.count(".") > 1 else "context" for name in modes}
        area.trials += len(modes)
        assert kinds == {"context", "a", "h", "p"}, modes
        assert set(modes.values()) == {0o600}, modes
        published.release()
        handed.release()
        ctx.open_handle(handle).free()
    finally:
        os.umask(old)
        Context.destroy("job")


@pytest.mark.parametrize("job", [0o600, 0o644], indirect=True, ids=["mode-600", "mode-644"])
def test_another_user_can_do_nothing_to_our_context(job: Context, area: Area) -> None:
    """Not open, map, free, publish into, hand over into, destroy, or reclaim it; with mode
    644 it may read (the mode says so) and nothing more."""
    require_root()
    before = {name: os.stat(os.path.join(shm_dir(), name)).st_mtime_ns for name in our_files()}
    outcomes = _as_other(ATTEMPTS)
    readable = job.mode & 0o004
    expected = {
        "open": "allowed" if readable else "PermissionDenied",
        "map r": "allowed" if readable else "PermissionDenied",
        "map w": "ReadOnly" if readable else "PermissionDenied",
        "free": "ReadOnly" if readable else "PermissionDenied",
        "publish into": "PermissionDenied",
        "hand over into": "PermissionDenied",
        "destroy": "PermissionDenied",
        "list": ["job"] if readable else [],
        "reclaim": [],
    }
    area.trials += len(expected)
    area.failures += sum(outcomes.get(k) != v for k, v in expected.items())
    assert outcomes == expected
    after = {name: os.stat(os.path.join(shm_dir(), name)).st_mtime_ns for name in our_files()}
    assert after == before, "another user changed or left segments in our namespace"
    assert job.names() == ["data"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("create", "allocation", "x", "-c", "job", "--size", "4K"), 8),
        (("map", "data", "-c", "job", "--read", "--out", "-"), 8),
        (("map", "data", "-c", "job", "--write", "--in", "-"), 8),
        (("map", "data", "-c", "job", "--write", "--", "true"), 8),
        (("free", "data", "-c", "job"), 8),
        (("dump", "job", "data", "--values"), 8),
        (("destroy", "context", "job"), 8),
    ],
    ids=["create", "read", "write", "map-cmd", "free", "dump", "destroy"],
)
def test_another_user_through_clara_gets_exit_8(job: Context, args, code, area: Area) -> None:
    """The same refusals through the real `clara` command: exit 8, one line."""
    require_root()
    before = our_files()
    result = _as_other_clara(*args)
    err = result.stderr.decode()
    area.trials += 1
    area.failures += result.returncode != code
    assert (result.returncode, len(err.splitlines())) == (code, 1), err
    assert "Traceback" not in err
    assert our_files() == before
    with job.get("data") as data, data.map("r") as array:
        assert (array == 9).all()


def test_another_user_reclaiming_never_touches_ours(job: Context, area: Area) -> None:
    """`clara leak-check --fix` as the other user, with a dead context of ours around."""
    require_root()
    dead = _dead_context("dead")
    try:
        before = our_files()
        result = _as_other_clara("--json", "leak-check", "--fix")
        area.trials += 1
        report = json.loads(result.stdout)
        assert report["removed"] == [], report
        assert {f["status"] for f in report["findings"]} == {"foreign"}
        assert our_files() == before
    finally:
        Context.destroy(dead)


def _dead_context(name: str) -> str:
    """A context of ours bound to a process that has exited, with a published allocation."""
    from tests.helpers import run_python

    made = run_python(
        f"""
        import os
        from clara_core import Context
        ctx = Context.create({name!r}, owner_pid=os.getpid())
        a = ctx.create(4096)
        a.publish("leaked")
        """
    )
    assert made.returncode == 0, made.stderr
    return name


OTHERS_CODE = """
import os, json
from clara_core import Context
theirs = Context.create("theirs", owner_pid=os.getpid())  # owner-dead once we exit
a = theirs.create(4096)
a.publish("leaked")
handle = theirs.create(4096).make_handle()  # orphaned once we exit
# A segment of theirs planted under our dead context's name, and one in our live one.
for context, name in (("dead", "planted"), ("job", "planted")):
    mine = theirs.create(4096)
    mine.publish(name)
    os.rename(
        "/dev/shm/" + theirs.file_name + ".a." + name,
        "/dev/shm/" + theirs.file_name.rsplit(".", 1)[0] + "." + context + ".a." + name,
    )
print(json.dumps(handle))
"""


def test_leak_check_fix_as_root_never_removes_another_users_segment(job: Context, area: Area):
    """Another user's owner-dead context, orphaned handle, corrupt file, and segments of
    theirs planted in our dead and live contexts: root's --fix removes ours, not theirs."""
    require_root()
    dead = _dead_context("dead")
    code = OTHERS_CODE.replace("/dev/shm", shm_dir())
    _as_other(code)
    junk = names.allocation_file("theirs", "a", "junk")
    with open(os.path.join(shm_dir(), junk), "wb") as f:
        f.write(b"not a clara header")
    os.chown(os.path.join(shm_dir(), junk), OTHER_UID, OTHER_UID)
    theirs = {n for n in our_files() if os.stat(os.path.join(shm_dir(), n)).st_uid == OTHER_UID}
    try:
        result = clara("--json", "leak-check", "--fix")
        report = json.loads(result.stdout)
        removed = {f["file"] for f in report["removed"]}
        area.trials += len(theirs)
        area.failures += len(removed & theirs)
        assert not removed & theirs, f"removed another user's segments: {removed & theirs}"
        assert theirs <= our_files()
        assert not Context.exists(dead), f"our dead context was kept: {report['kept']}"
        assert job.names() == ["data"]  # theirs is not a member: never listed, used or removed
        with pytest.raises(PermissionDenied, match="belongs to another user"):
            job.get("planted")
    finally:
        for name in theirs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(shm_dir(), name))
        with contextlib.suppress(Exception):
            Context.destroy(dead)


SHARED = """
from clara_core import Context
Context.create("shared", mode=0o666)  # no owner: idle, kept until destroyed
"""


DESTROY_SHARED = """
import json
from clara_core import Context, PermissionDenied
try:
    Context.destroy("shared")
    outcome = "destroyed"
except PermissionDenied:
    outcome = "PermissionDenied"
print(json.dumps({"destroy": outcome, "exists": Context.exists("shared")}))
"""


def test_our_allocation_in_another_users_shared_context_is_not_ours_to_reclaim(area: Area):
    """Another user's context, mode 666, holds an allocation we published: we join it by
    naming its owner, our --fix leaves it (their context is alive), and their destroy
    is not stopped by our member, which stays, orphaned, for our own --fix."""
    require_root()
    _as_other(SHARED + "print('{}')")
    try:
        with pytest.raises(PermissionDenied, match="owner=65534"):
            Context.open("shared")  # another user's: joining it is something to say
        with Context.open("shared", owner=OTHER_UID) as shared:
            alloc = shared.create(4096)
            alloc.publish("ours")
            alloc.release()
        area.trials += 1
        report = leaks.reclaim()
        assert report.removed == [], [f.segment.file_name for f in report.removed]
        assert report.after.clean
        with Context.open("shared", owner="nobody") as shared:
            assert shared.names() == ["ours"]
    finally:
        destroyed = _as_other(DESTROY_SHARED)
    assert destroyed == {"destroy": "destroyed", "exists": False}
    (orphan,) = our_files()  # ours: they could not remove it, and it did not stop them
    report = leaks.reclaim()
    assert [f.segment.file_name for f in report.removed] == [orphan]
    assert our_files() == set()


THEIR_CONTEXT = """
from clara_core import Context
Context.create("theirs", mode=0o640)
print("{}")
"""
THEIR_READ_AND_DESTROY = """
import json
from clara_core import Context
with Context.open("theirs") as ctx, ctx.get("ours") as ref, ref.map("r") as array:
    total = int(array.sum())
Context.destroy("theirs")
print(json.dumps({"total": total}))
"""


def test_root_gives_what_it_creates_in_another_users_context_to_that_user(area: Area):
    """Root publishing into another user's 0640 context: the segment is theirs, with
    their context's mode (else their own clara would refuse it), and they read it."""
    require_root()
    _as_other(THEIR_CONTEXT)
    try:
        with Context.open("theirs", owner=OTHER_UID) as theirs:
            alloc = theirs.create(4096)
            with alloc.map("w") as array:
                array[...] = 1
            alloc.publish("ours")
            alloc.release()
        found = os.stat(os.path.join(shm_dir(), names.allocation_file("theirs", "a", "ours")))
        area.trials += 1
        assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (
            OTHER_UID,
            OTHER_UID,
            0o640,
        )
    finally:
        read = _as_other(THEIR_READ_AND_DESTROY)
    assert read == {"total": 4096}


OUR_GROUP_PUBLISHES = """
import json
from clara_core import Context
with Context.open("grp", owner=0) as ctx:
    alloc = ctx.create(4096)
    with alloc.map("w") as array:
        array[...] = 2
    alloc.publish("theirs")
    alloc.release()
print("{}")
"""


def test_a_group_member_gives_what_it_creates_the_contexts_group(area: Area):
    """A member of a 0660 context's group (uid 65534, group 0 besides its own) creates
    in it: the segment gets the context's group and mode, so the context admits it."""
    require_root()
    ctx = Context.create("grp", mode=0o660)
    try:
        os.chown(os.path.join(shm_dir(), names.context_file("grp")), 0, 0)
        member = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--groups=0"]
        done = subprocess.run(
            [*member, sys.executable, "-c", OUR_GROUP_PUBLISHES],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert done.returncode == 0, done.stderr
        found = os.stat(os.path.join(shm_dir(), names.allocation_file("grp", "a", "theirs")))
        area.trials += 1
        assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (
            OTHER_UID,
            0,
            0o660,
        )
        with ctx.get("theirs") as ref, ref.map("r") as array:
            assert int(array.sum()) == 2 * 4096
    finally:
        Context.destroy("grp")


ESCAPES = ["..", "../x", "/", "/etc/passwd", "a/../b", ".", "a.b", "x" * 256, "", "é", "名", "a\0b"]


@pytest.mark.parametrize("bad", ESCAPES)
def test_names_cannot_escape_the_namespace(bad: str, area: Area) -> None:
    """Context, allocation and handle names and CLARA_NAMESPACE are refused, and nothing
    is created anywhere."""
    listing = directory_listing()
    ctx = Context.create("job")
    try:
        area.trials += 3
        with pytest.raises(InvalidArgument):
            Context.create(bad)
        with pytest.raises(InvalidArgument):
            ctx.create(16).publish(bad)
        with pytest.raises(InvalidArgument):
            ctx.open_handle(bad)
        if bad and "\0" not in bad:  # an empty CLARA_NAMESPACE means the default
            area.trials += 1
            with pytest.raises(InvalidArgument), _namespace(bad):
                Context.create("other")
    finally:
        Context.destroy("job")
    assert directory_listing() == listing


@contextlib.contextmanager
def _namespace(value: str) -> Iterator[None]:
    old = os.environ["CLARA_NAMESPACE"]
    os.environ["CLARA_NAMESPACE"] = value
    try:
        yield
    finally:
        os.environ["CLARA_NAMESPACE"] = old


def test_long_and_odd_valid_names_stay_inside_the_namespace(namespace: str, area: Area) -> None:
    """255-character, dash-leading and differently-cased names: every file is a plain
    file of the namespace in the shared-memory directory, within NAME_MAX, and names that
    differ only far into them stay apart."""
    listing = directory_listing()
    long_a, long_b = "a" * 254 + "x", "a" * 254 + "y"
    made = []
    for context in (long_a, long_b, "-rf", "--", "_"):
        ctx = Context.create(context)
        made.append(context)
        for name in (long_a, long_b, "-", "Data"):
            alloc = ctx.create(16)
            alloc.publish(name)
            alloc.release()
        assert sorted(ctx.names(), key=str.lower) == sorted(
            [long_a, long_b, "-", "Data"], key=str.lower
        )
        ctx.close()
    try:
        new = directory_listing() - listing
        area.trials += len(new)
        assert len(new) == 5 * 5
        for file_name in new:
            path = os.path.join(shm_dir(), file_name)
            assert file_name.startswith(namespace + ".") and "/" not in file_name
            assert len(file_name.encode()) <= 255
            assert stat.S_ISREG(os.lstat(path).st_mode)
        with pytest.raises(AlreadyExists):
            Context.create("-RF")  # names are case-insensitive: "-rf" is taken
    finally:
        for context in made:
            Context.destroy(context)
    assert directory_listing() == listing


def test_leak_check_of_other_namespaces_is_blind(namespace: str, monkeypatch, area: Area) -> None:
    """A reclaim in one namespace never looks at, let alone removes, another's segments."""
    _dead_context("dead")
    mine = our_files()
    monkeypatch.setenv("CLARA_NAMESPACE", namespace + "-x")
    area.trials += 1
    assert leaks.reclaim().removed == []
    monkeypatch.setenv("CLARA_NAMESPACE", namespace)
    assert our_files() == mine
    assert leaks.reclaim().after.clean
