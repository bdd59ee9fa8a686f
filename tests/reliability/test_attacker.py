"""Another local user (uid 65534) against our shared memory: every planting it can make in
the shared-memory directory (regular file, FIFO, directory, symbolic link, hard link,
sparse huge file, a file with a clara header, held locks of every byte), against every
command and library entry point, and the audit's cases one by one (issue 9, items 3-12).

Each victim step runs under a safety deadline (no hang), must end in success or one
clear error line (no traceback), and our data must be neither read (never copied into
a planted file) nor changed. Figures count in the `security` area.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clara_core import Context, Corrupt, PermissionDenied, Timeout, leaks, names
from clara_core.names import shm_dir
from tests.cli.clirun import clara

from .attack import as_other, holding
from .figures import Area
from .harness import OTHER_UID, SAFETY, as_other_user, deadline, our_files, require_root

SECRET = 0x5EC12E7  # every word of the victim's data
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _root_and_quick_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    monkeypatch.setenv("CLARA_LOCK_TIMEOUT", "1")  # bounded waits end quickly here


@pytest.fixture
def victim(request: pytest.FixtureRequest) -> Iterator[Context]:
    """Our context `job` (mode from the test's parameter, default 600) with `data`."""
    mode = getattr(request, "param", 0o600)
    ctx = Context.create("job", mode=mode, capacity="64M")
    _publish(ctx, "data", 4096)
    yield ctx
    ctx.close()
    with contextlib.suppress(Exception):
        Context.destroy("job")
    _remove_theirs()


def _publish(ctx: Context, name: str, nbytes: int) -> None:
    alloc = ctx.create(dtype="u32", shape=(nbytes // 4,))
    with alloc.map("w") as array:
        array[:] = SECRET
    alloc.publish(name)
    alloc.release()


def _intact(ctx: Context) -> bool:
    with ctx.get("data") as data, data.map("r") as array:
        return bool((array == SECRET).all())


def _theirs() -> list[str]:
    """Files of our namespace that belong to someone else (what the attacker planted)."""
    found = []
    for name in our_files():
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(os.path.join(shm_dir(), name)).st_uid != os.geteuid():
                found.append(name)
    return found


def _remove_theirs() -> None:
    for name in _theirs():
        path = os.path.join(shm_dir(), name)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)


def _never_read(area: Area) -> None:
    """No planted regular file holds a copy of our data."""
    needle = SECRET.to_bytes(4, "little") * 16
    for name in _theirs():
        path = os.path.join(shm_dir(), name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                area.trials += 1
                assert needle not in f.read(8 * MIB), f"our data was copied into {name}"


def _one_line_or_ok(result: subprocess.CompletedProcess, codes: set[int]) -> None:
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert result.returncode in codes, (result.returncode, err)
    if result.returncode not in (0, 1):
        assert len(err.strip().splitlines()) == 1 and err.startswith("clara: error: "), err


def _member(kind: str, name: str) -> str:
    return names.allocation_file("job", kind, name)


def _crafted() -> bytes:
    """The header of a valid 1 MiB allocation, as the attacker can make it (their own)."""
    from clara_core.dtypes import UINT8
    from clara_core.shm import header as hdr

    made = hdr.Header(
        hdr.KIND_ALLOCATION,
        hdr.PUBLISHED,
        hdr.DataState(hdr.COMPLETE),
        hdr.Layout(UINT8, (MIB,), MIB, MIB),
        hdr.Origin(time.time_ns(), 1, 0),
        hdr.Settings(0, 0, 0),
        "job",
        "planted",
    )
    return made.pack()


# -- the audit's cases, one by one ----------------------------------------------------


@pytest.mark.parametrize("pool_bytes", [None, 0], ids=["pool", "no-pool"])
def test_item3_a_planted_pool_file_is_never_claimed(pool_bytes, area: Area) -> None:
    """Item 3: their file under a pool name of our 0600 context, right size, mode 666:
    our next 1 MiB create must not take it (so they neither read nor rewrite our data)."""
    ctx = Context.create("job", pool_bytes=pool_bytes)
    try:
        planted = _member("p", f"{MIB:x}-0123456789ab")
        as_other(f"plant({planted!r}, 'regular', 4096 + {MIB}, {_crafted()!r})", shm_dir())
        inode = os.stat(os.path.join(shm_dir(), planted)).st_ino
        alloc = ctx.create(dtype="u32", shape=(MIB // 4,))
        area.trials += 1
        assert alloc._file_id[1] != inode, "our create took their planted pool file"
        with alloc.map("w") as array:
            array[:] = SECRET
        alloc.publish("mine")
        alloc.release()
        _never_read(area)
    finally:
        ctx.close()
        Context.destroy("job")
        _remove_theirs()


@pytest.mark.parametrize("victim", [0o660], indirect=True, ids=["mode-660"])
def test_item4_a_shared_context_refuses_members_made_by_outsiders(victim, area) -> None:
    """Item 4: in our 0660 context, they (not in our group) rename a segment of theirs to
    <ns>.job.a.weights: `clara map weights --read` refuses it (exit 8), never their bytes."""
    planted = _member("a", "weights")
    as_other(
        f"""
        from clara_core import Context
        theirs = Context.create("theirs")
        a = theirs.create(4096)
        with a.map("w") as array:
            array[:] = 66
        a.publish("weights")
        made = os.path.join(DIR, theirs.file_name + ".a.weights")
        os.rename(made, os.path.join(DIR, {planted!r}))
        Context.destroy("theirs")
        """,
        shm_dir(),
    )
    result = clara("map", "weights", "-c", "job", "--read", "--out", "-", timeout=SAFETY)
    area.trials += 1
    _one_line_or_ok(result, {8})
    assert b"\x42" * 16 not in result.stdout
    assert "belongs to another user" in result.stderr.decode()
    assert victim.names() == ["data"]


def test_item5_fifos_and_directories_never_hang_or_break_tooling(victim, area) -> None:
    """Item 5: FIFOs (theirs, 666, and one of root's 644 for the other user's view) and a
    directory, in the namespace and as members: dump, leak-check, --fix, dump CTX, list,
    map finish, with one-line errors or reports."""
    ns = names.namespace()
    as_other(
        f"""
        plant("{ns}.zz", "fifo")
        plant({_member("a", "fifo")!r}, "fifo")
        plant({_member("a", "dir")!r}, "directory")
        plant("{ns}.zdir", "directory")
        """,
        shm_dir(),
    )
    os.mkfifo(os.path.join(shm_dir(), f"{ns}.theirs.a.x"), 0o644)  # root's, for them
    os.mkfifo(os.path.join(shm_dir(), f"{ns}.zroot"), 0o644)
    try:
        for args, codes in [
            (("dump",), {0}),
            (("dump", "job"), {0}),
            (("leak-check",), {0, 1}),
            (("leak-check", "--fix"), {0, 1}),
            (("map", "fifo", "-c", "job", "--read", "--out", "-"), {8}),
            (("map", "dir", "-c", "job", "--read", "--out", "-"), {8}),
        ]:
            area.trials += 1
            _one_line_or_ok(clara(*args, timeout=SAFETY), codes)
        theirs = as_other(
            """
            import json
            from clara_core import Context, ClaraError
            try:
                Context.open("theirs").get("x")
                got = "opened"
            except ClaraError as exc:
                got = type(exc).__name__
            print(json.dumps([Context.list(), got]))
            """,
            shm_dir(),
        )
        area.trials += 1
        assert json.loads(theirs.stdout) == [[], "NotFound"]
        with deadline(SAFETY, "Context.list"):
            assert Context.list() == ["job"]
        assert _intact(victim)
    finally:
        for name in (f"{ns}.theirs.a.x", f"{ns}.zroot"):
            os.unlink(os.path.join(shm_dir(), name))


def test_item6_a_planted_name_with_a_held_lock_does_not_hang_get(victim, area) -> None:
    """Item 6: their file as <ns>.job.a.held with every lock byte held: `clara map held
    --timeout 1` ends at once with exit 8 (the owner is checked before any wait)."""
    planted = _member("a", "held")
    holder = holding(
        f"""
        plant({planted!r}, "regular", 4096 + {MIB}, {_crafted()!r})
        fd = os.open(os.path.join(DIR, {planted!r}), os.O_RDWR)
        for byte in range(5):
            lock(fd, byte, fcntl.F_WRLCK)
        """,
        shm_dir(),
    )
    try:
        result = clara(
            "map", "held", "-c", "job", "--read", "--out", "-", "--timeout", "1", timeout=SAFETY
        )
        area.trials += 1
        _one_line_or_ok(result, {8})
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("victim", [0o644], indirect=True, ids=["mode-644"])
def test_item7_a_reader_holding_every_lock_delays_but_never_hangs(victim, area) -> None:
    """Item 7: a reader (mode 644) holds read locks on every byte of our context and of
    `data`: free, publish into the capacity-capped context and releasing a private
    2 MiB allocation end within the bounded wait, with Timeout naming the holder."""
    context_file = os.path.join(shm_dir(), victim.file_name)
    data_file = os.path.join(shm_dir(), _member("a", "data"))
    holder = holding(
        f"""
        for path in ({context_file!r}, {data_file!r}):
            fd = os.open(path, os.O_RDONLY)
            for byte in range(5):
                lock(fd, byte, fcntl.F_RDLCK)
        """,
        shm_dir(),
    )
    try:
        with deadline(SAFETY, "free"), pytest.raises(Timeout, match=f"pid {holder.pid}"):
            victim.get("data").free()
        with deadline(SAFETY, "publish"), pytest.raises(Timeout, match="quota lock"):
            _publish(victim, "more", 4096)
        with deadline(SAFETY, "release"):
            victim.create(2 * MIB).release()  # the pool is skipped, the memory freed
        area.trials += 3
    finally:
        holder.kill()
        holder.wait()
    assert _intact(victim)
    victim.get("data").free()  # once they let go, it works
    _publish(victim, "data", 4096)


@pytest.mark.parametrize("spelling", ["symlink", "double-slash"])
def test_item8_a_non_canonical_shm_dir_still_sees_who_maps(spelling, tmp_path, monkeypatch, area):
    """Item 8: CLARA_SHM_DIR a symbolic link to /dev/shm, or /dev//shm: a segment of an
    owner-dead context that a live process maps (numpy.memmap, no clara reference) is kept
    by `leak-check --fix`."""
    real = shm_dir()
    if spelling == "symlink":
        link = tmp_path / "shm"
        link.symlink_to(real)
        given = str(link)
    else:
        given = real.replace("/", "//", 1) if real.count("/") > 1 else real + "//"
    dead = _dead_owned("job")
    _publish(dead, "mapped", 4096)
    dead.close()
    path = os.path.join(real, _member("a", "mapped"))
    mapper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import numpy, sys, time; m = numpy.memmap({path!r}, mode='r');"
            "print('mapped', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert mapper.stdout.readline().strip() == "mapped"
        monkeypatch.setenv("CLARA_SHM_DIR", given)
        result = clara("--json", "leak-check", "--fix", timeout=SAFETY)
        report = json.loads(result.stdout)
        area.trials += 1
        assert os.path.exists(path), "removed a segment a live process maps"
        assert any(f["file"].endswith(".a.mapped") for f in report["kept"]), report["kept"]
    finally:
        mapper.kill()
        mapper.wait()
        monkeypatch.setenv("CLARA_SHM_DIR", real)
        Context.destroy("job")


def _dead_owned(name: str) -> Context:
    """A context bound to a process that has exited (owner-dead)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        return Context.create(name, owner_pid=owner.pid)
    finally:
        owner.kill()
        owner.wait()


def test_item9_foreign_members_never_count_nor_block_destroy(victim, area) -> None:
    """Item 9: their 1 TiB sparse file as a member of our capacity-capped context does not
    count toward its capacity; and (as a non-root owner) a member of someone else's does
    not stop us from destroying our own context."""
    as_other(f"plant({_member('a', 'huge')!r}, 'sparse', 1 << 40)", shm_dir())
    _publish(victim, "fits", 4096)  # 64M capacity: fits unless their terabyte counts
    area.trials += 1
    assert sorted(victim.names()) == ["data", "fits"]
    # A non-root owner (uid 65534) and a third user (65533) who plants in its context.
    as_other("from clara_core import Context; Context.create('mine')", shm_dir())
    as_other(
        f"plant({names.allocation_file('mine', 'a', 'junk')!r}, 'regular', 4096)",
        shm_dir(),
        uid=OTHER_UID - 1,
    )
    result = as_other("from clara_core import Context; print(Context.destroy('mine'))", shm_dir())
    area.trials += 1
    assert result.stdout.strip() == "0"
    assert not Context.exists("mine")


def test_item9_no_create_publish_or_free_lists_the_directory(monkeypatch, area) -> None:
    """Item 9: the pool and the capacity are kept in the context's ledger: creating,
    publishing, getting and freeing (pooled or not, capacity or not) never lists the
    shared-memory directory, so junk in it costs them nothing."""
    ctx = Context.create("job", capacity="64M", pool_bytes="32M")
    try:

        def listing(*_args, **_kwargs):
            raise AssertionError("the directory was listed")

        with monkeypatch.context() as patched:
            patched.setattr(os, "scandir", listing)
            patched.setattr(os, "listdir", listing)
            for round_ in range(3):
                alloc = ctx.create(2 * MIB)  # from the second round on: from the pool
                alloc.publish(f"a{round_}")
                ctx.get(f"a{round_}").free()
                alloc.release()
                ctx.create(2 * MIB).release()
        area.trials += 1
        assert ctx.names() == []
    finally:
        ctx.close()
        Context.destroy("job")


@pytest.mark.parametrize("victim", [0o666], indirect=True, ids=["mode-666"])
def test_item10_a_header_others_can_write_is_no_proof(victim, area) -> None:
    """Item 10: in our 0666 context (bound to this live process), they rewrite the owner
    pid in the header to a dead one: our own `leak-check --fix` must not remove it."""
    ctx = Context.create("live", mode=0o666, owner_pid=os.getpid())
    try:
        _publish(ctx, "x", 4096)
        path = os.path.join(shm_dir(), ctx.file_name)
        as_other(
            f"""
            import struct
            fd = os.open({path!r}, os.O_RDWR)
            os.pwrite(fd, struct.pack("<iQ", 999999, 1), 160 + 20)  # owner pid + start
            """,
            shm_dir(),
        )
        report = leaks.reclaim()
        area.trials += 1
        assert Context.exists("live"), "removed a live context on a header they wrote"
        assert not report.removed
        assert any("others may write its header" in why for _, why in report.kept), report.kept
        ctx.get("x").release()
    finally:
        ctx.close()
        Context.destroy("live")


@pytest.mark.parametrize("victim", [0o666], indirect=True, ids=["mode-666"])
def test_item10_a_segment_cut_short_while_copied_is_an_error_not_sigbus(
    victim, tmp_path, area
) -> None:
    """Item 10: they truncate our mapped segment while `clara map --out` copies it:
    one error line (exit 9), not a death by SIGBUS."""
    _publish(victim, "big", 4 * MIB)
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clara_cli",
            "map",
            "big",
            "-c",
            "job",
            "--read",
            "--format",
            "txt",
            "--out",
            str(fifo),
        ],
        stderr=subprocess.PIPE,
    )
    # clara has mapped it and now waits for a reader of the FIFO: they strike.
    time.sleep(0.5)  # (a pause, not an assertion: the test holds either way)
    segment = os.path.join(shm_dir(), _member("a", "big"))
    as_other(f"os.truncate({segment!r}, 4096)", shm_dir())
    with open(fifo, "rb") as f:
        f.read()
    err = reader.communicate(timeout=SAFETY)[1].decode()
    area.trials += 1
    assert reader.returncode == 9, (reader.returncode, err)
    assert err.startswith("clara: error: ") and "cut short" in err, err


@pytest.mark.parametrize("capacity", [None, "64M"], ids=["one-call", "counted"])
def test_item10_their_free_of_our_allocation_fails_and_leaves_it_whole(capacity, area) -> None:
    """Item 10: in our 0666 context they may write our segments but not remove our files
    (the directory is sticky): their free of our allocation fails (PermissionDenied) and
    changes nothing. It marked the header freed before the unlink failed: nobody could
    get the allocation any more, nor free it, and its name stayed until destroy.
    (capacity: free's one C call, or the Python path that counts published bytes.)"""
    ctx = Context.create("shared", mode=0o666, capacity=capacity)
    try:
        _publish(ctx, "data", 4096)
        result = as_other(
            """
            from clara_core import Context, PermissionDenied
            try:
                Context.open("shared").get("data").free()
            except PermissionDenied:
                print("refused")
            """,
            shm_dir(),
        )
        area.trials += 1
        assert result.stdout == "refused\n", result.stdout
        with ctx.get("data") as data, data.map("r") as array:
            assert (array == SECRET).all()
        ctx.get("data").free()
        assert ctx.names() == []
    finally:
        ctx.close()
        Context.destroy("shared")


def test_item10_their_publish_of_our_handle_is_refused_before_it_names_anything(area) -> None:
    """Item 10: in our 0666 context they open our handle and publish it. The new name was
    linked, then the handle's name (our file, in a sticky directory) could not be
    removed: PermissionDenied for an allocation published all the same, under a name
    their retry found taken, and a handle name left over a segment it no longer opens.
    Refused before anything is done instead; we still publish it ourselves."""
    ctx = Context.create("shared", mode=0o666)
    try:
        made = ctx.create(dtype="u32", shape=(1024,))
        with made.map("w") as array:
            array[:] = SECRET
        handle = made.make_handle()
        made.release()
        result = as_other(
            f"""
            from clara_core import Context, PermissionDenied
            try:
                Context.open("shared").open_handle({handle!r}).publish("theirs")
            except PermissionDenied as exc:
                print("refused", "only they or root" in str(exc))
            """,
            shm_dir(),
        )
        area.trials += 1
        assert result.stdout == "refused True\n", result.stdout
        assert ctx.names() == []
        mine = ctx.open_handle(handle)  # still a handle, still private
        mine.publish("data")
        mine.release()
        assert ctx.names() == ["data"] and _intact(ctx)
        ctx.get("data").free()
        assert not [n for n in os.listdir(shm_dir()) if n.startswith(f"{ctx.file_name}.")]
    finally:
        ctx.close()
        Context.destroy("shared")


def test_item12_a_squatted_context_is_not_ours(area) -> None:
    """Item 12: they create context `job` first (mode 666): our create says who holds
    the name, our open refuses it (we did not ask for their context), and so do the
    commands (exit 10, exit 8)."""
    as_other("from clara_core import Context; Context.create('job', mode=0o666)", shm_dir())
    try:
        result = clara("create", "context", "job", timeout=SAFETY)
        _one_line_or_ok(result, {10})
        assert "uid 65534" in result.stderr.decode()
        with pytest.raises(PermissionDenied, match="owner=65534"):
            Context.open("job")
        result = clara("create", "allocation", "x", "-c", "job", "--size", "4K", timeout=SAFETY)
        _one_line_or_ok(result, {8})
        area.trials += 3
    finally:
        as_other("from clara_core import Context; Context.destroy('job')", shm_dir())


@pytest.mark.parametrize("how", ["other-owner", "not-sticky"])
def test_item12_a_shm_dir_others_control_is_refused(how, tmp_path, monkeypatch, area) -> None:
    """Item 12: CLARA_SHM_DIR owned by another user, or world-writable and not sticky:
    refused (exit 2), nothing created."""
    directory = tmp_path / "shm"
    directory.mkdir()
    os.chmod(tmp_path, 0o755)
    if how == "other-owner":
        os.chown(directory, OTHER_UID, OTHER_UID)
        os.chmod(directory, 0o1777)
    else:
        os.chmod(directory, 0o777)
    result = clara("create", "context", "c", env={"CLARA_SHM_DIR": str(directory)})
    area.trials += 1
    _one_line_or_ok(result, {2})
    assert os.listdir(directory) == []


def test_item9_planted_members_are_counted_by_dump_never_listed(victim, area) -> None:
    """Item 9: their files under our context's names (a crafted valid header, a FIFO, a
    plain file) are not rows of `clara dump job` nor counted in its memory: dump says
    how many there are; leak-check still lists each."""
    as_other(
        f"""
        plant({_member("a", "planted")!r}, "header", data={_crafted()!r})
        plant({_member("a", "fifo")!r}, "fifo")
        plant({_member("p", "junk")!r}, "regular", 4096)
        """,
        shm_dir(),
    )
    shown = json.loads(clara("--json", "dump", "job", timeout=SAFETY).stdout)
    assert [a["name"] for a in shown["allocations"]] == ["data"]
    assert shown["context"]["foreign"] == 3
    assert shown["context"]["bytes"] == 4096 + 4096  # data alone: header page + 4 KiB
    every = json.loads(clara("--json", "dump", timeout=SAFETY).stdout)
    assert [(c["name"], c["foreign"]) for c in every["contexts"]] == [("job", 3)]
    human = clara("dump", "job", timeout=SAFETY)
    assert b"planted" not in human.stdout and b"fifo" not in human.stdout
    assert "3 file(s) under the names of context 'job'" in human.stderr.decode()
    findings = json.loads(clara("--json", "leak-check", timeout=SAFETY).stdout)["findings"]
    listed = {f["file"] for f in findings if f["status"] == "foreign"}
    assert {_member("a", "planted"), _member("p", "junk")} <= listed
    area.trials += 5


def test_item13_a_planted_symlink_is_a_classified_error(victim, area) -> None:
    """Item 13: their symbolic link as <ns>.job.a.link: exit 8 (another user's), and ours
    would be 9 (not a segment), never exit 1 'Too many levels of symbolic links'."""
    data = os.path.join(shm_dir(), _member("a", "data"))
    as_other(f"plant({_member('a', 'link')!r}, 'symlink', target={data!r})", shm_dir())
    os.symlink(data, os.path.join(shm_dir(), _member("a", "ours")))
    result = clara("map", "link", "-c", "job", "--read", "--out", "-", timeout=SAFETY)
    _one_line_or_ok(result, {8})
    result = clara("map", "ours", "-c", "job", "--read", "--out", "-", timeout=SAFETY)
    _one_line_or_ok(result, {9})
    assert "symbolic link" in result.stderr.decode()
    area.trials += 2
    os.unlink(os.path.join(shm_dir(), _member("a", "ours")))


def test_item11_a_users_own_junk_never_aborts_their_leak_check_fix(area) -> None:
    """Item 11: a (non-root) user's own directory, symbolic link and mode-000 file in its
    namespace, next to a dead context of theirs: `clara leak-check --fix` removes the
    dead context, reports the junk it cannot handle, and never stops with a traceback."""
    ns = names.namespace()
    as_other(
        f"""
        from clara_core import Context
        read, write = os.pipe()
        owner = os.fork()
        if owner == 0:
            os.close(write)
            os.read(read, 1)
            os._exit(0)
        ctx = Context.create("dead", owner_pid=owner)
        ctx.create(4096).publish("leaked")
        os.close(write); os.waitpid(owner, 0)
        plant("{ns}.adir", "directory")
        plant("{ns}.alink", "symlink")
        plant("{ns}.dead.a.zero", "regular", 4096)
        os.chmod(os.path.join(DIR, "{ns}.dead.a.zero"), 0)
        """,
        shm_dir(),
    )
    try:
        result = clara(
            "--json",
            "leak-check",
            "--fix",
            prefix=tuple(as_other_user()),
            timeout=SAFETY,
            env={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        err = result.stderr.decode()
        area.trials += 1
        assert "Traceback" not in err and result.returncode == 1, (result.returncode, err)
        report = json.loads(result.stdout)
        kept = {f["file"] for f in report["kept"]} | {f["file"] for f in report["findings"]}
        assert {f"{ns}.adir", f"{ns}.alink", f"{ns}.dead.a.zero"} <= kept, report
        assert f"{ns}.dead.a.leaked" not in kept  # what could be removed was
    finally:
        _remove_theirs()


# -- the matrix: every planting against every entry point -------------------------------

HANDLE = "0123456789ab"
PLANTINGS = ["regular", "fifo", "directory", "symlink", "hardlink", "sparse", "garbage", "held"]
VICTIM_COMMANDS = [
    (("dump",), {0}),
    (("dump", "job"), {0}),
    (("leak-check", "--fix"), {0, 1}),
    (("map", "planted", "-c", "job", "--read", "--out", "-", "--timeout", "1"), {8}),
    (("free", "planted", "-c", "job"), {8}),
    (("publish", HANDLE, "taken", "-c", "job"), {8}),
    (("map", "x", "-c", "squat", "--read", "--out", "-"), {8}),
    (("map", "data", "-c", "job", "--read", "--out", "-"), {0}),
]


def _plant_everywhere(kind: str) -> subprocess.Popen | None:
    """Plant `kind` under a member, a handle, a pool name, a context name and a junk
    name of our namespace; for `held`, keep every lock byte of each held."""
    ns = names.namespace()
    targets = [
        _member("a", "planted"),
        _member("h", HANDLE),
        _member("p", f"{MIB:x}-{HANDLE}"),
        f"{ns}.squat",
        f"{ns}.zz",
    ]
    data_file = os.path.join(shm_dir(), _member("a", "data"))
    how = {
        "regular": "'regular', 4096 + {mib}, {crafted!r}",
        "fifo": "'fifo'",
        "directory": "'directory'",
        "symlink": "'symlink', target={data!r}",
        "hardlink": "'hardlink', data={crafted!r}",
        "sparse": "'sparse', 1 << 40, {crafted!r}",
        "garbage": "'regular', 4096 + {mib}, b'garbage' * 200",
        "held": "'regular', 4096 + {mib}, {crafted!r}",
    }[kind].format(mib=MIB, crafted=_crafted(), data=data_file)
    code = "".join(f"plant({t!r}, {how})\n" for t in targets)
    if kind != "held":
        as_other(code, shm_dir())
        return None
    code += "".join(
        f"fd = os.open(os.path.join(DIR, {t!r}), os.O_RDWR)\n"
        "for byte in range(5):\n    lock(fd, byte, fcntl.F_WRLCK)\n"
        for t in targets
    )
    return holding(code, shm_dir())


@pytest.mark.parametrize("kind", PLANTINGS)
def test_every_planting_against_every_entry_point(kind: str, victim: Context, area) -> None:
    """Their planting under every kind of name of ours, then every command and library
    call we make: none hangs, none shows a traceback, every error is one line, our data
    is intact and never copied into their files, and our own work goes on."""
    holder = _plant_everywhere(kind)
    try:
        for args, codes in VICTIM_COMMANDS:
            result = clara(*args, timeout=SAFETY)
            area.trials += 1
            try:
                _one_line_or_ok(result, codes)
            except AssertionError:
                area.failures += 1
                raise
            if args[:2] == ("map", "data"):
                assert result.stdout == SECRET.to_bytes(4, "little") * 1024
        with deadline(SAFETY, f"library calls against a {kind}"):
            assert Context.list() == ["job"]
            assert victim.names() == ["data"]
            for call in (
                lambda: victim.get("planted"),
                lambda: victim.open_handle(HANDLE),
                lambda: Context.open("squat"),
            ):
                with pytest.raises((PermissionDenied, Corrupt)):
                    call()
            made = victim.create(dtype="u32", shape=(MIB // 4,))  # the pool is theirs
            with made.map("w") as array:
                array[:] = SECRET
            made.publish("mine")
            made.release()
            victim.get("mine").free()
            area.trials += 7
        assert _intact(victim)
        _never_read(area)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        _remove_theirs()


def test_item10_they_never_claim_our_pooled_segment_they_could_not_rename(area) -> None:
    """Item 10: in our 0666 context with a pool, their create claimed our pooled segment
    (1 MiB), and their publish linked its new name, then could not remove the pool name
    (our file, sticky directory): PermissionDenied for an allocation published all the
    same, and a pool name left over it. A pooled segment whose names they cannot remove
    is not theirs to claim: they make a new one."""
    ctx = Context.create("shared", mode=0o666, pool_bytes="64M")
    try:
        ours = ctx.create(MIB)
        ours.publish("ours")
        ours.free()  # into the pool
        result = as_other(
            """
            from clara_core import Context
            theirs = Context.open("shared").create(1 << 20)
            theirs.publish("theirs")
            print(os.fstat(theirs._fd).st_uid)
            theirs.free()
            """,
            shm_dir(),
        )
        area.trials += 1
        assert result.stdout == f"{OTHER_UID}\n", result.stdout  # a segment of their own
        assert ctx.names() == []
    finally:
        ctx.close()
        Context.destroy("shared")
