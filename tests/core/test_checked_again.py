"""A get validates what it opened on every call. The checks of a get whose file, header
bytes, name and context are those of the get before it are not run again (the same
inputs give the same verdict): each test here primes that with a first get, changes one
of those inputs, and the next get must notice."""

import os

import pytest

from clara_core import Context, Corrupt, Incomplete, NotFound, PermissionDenied, names
from clara_core.names import shm_dir
from clara_core.shm import segment, trust


@pytest.fixture
def published(namespace):
    ctx = Context.create("job")
    alloc = ctx.create(dtype="f32", shape=(16,))
    with alloc.map("w") as array:
        array[:] = 1.5
    alloc.publish("data")
    alloc.release()
    yield ctx, os.path.join(shm_dir(), names.allocation_file("job", "a", "data"))
    ctx.destroy()


def got_twice(ctx: Context, name: str = "data") -> None:
    """Two gets in a row, the second the one a repeated get would skip the checks of."""
    for _ in range(2):
        ctx.get(name).release()


def test_a_mode_granting_more_than_the_context_is_refused_after_a_get(published):
    ctx, path = published
    got_twice(ctx)
    os.chmod(path, 0o666)  # the same header bytes; only the stat's mode differs
    with pytest.raises(PermissionDenied, match="more than its context"):
        ctx.get("data")


def test_a_header_changed_after_a_get_is_validated_again(published):
    ctx, path = published
    got_twice(ctx)
    with open(path, "r+b") as segment:
        segment.seek(10)
        segment.write(b"\x07")  # an unknown kind: the same file, other header bytes
    with pytest.raises(Corrupt, match="unknown kind"):
        ctx.get("data")


def test_the_same_file_under_another_name_is_not_that_name(published):
    """A hard link of a published segment under a second published name (what a planted
    link, or a segment freed and published again meanwhile, looks like): its header names
    the first, so a get of the second says it was freed, even right after a get of the
    first has checked the very same header bytes."""
    ctx, path = published
    got_twice(ctx)
    other = os.path.join(shm_dir(), names.allocation_file("job", "a", "other"))
    os.link(path, other)
    try:
        with pytest.raises(NotFound):
            ctx.get("other")
        ctx.get("data").release()  # the first name is still good
    finally:
        os.unlink(other)


def test_the_same_file_in_another_context_is_not_that_context_s(published):
    """A hard link of a published segment under the same name in another context: its
    header says which context made it, so a get there finds nothing, even right after
    a get in the first context has checked the very same header bytes."""
    ctx, path = published
    got_twice(ctx)
    other = Context.create("job2")
    try:
        planted = os.path.join(shm_dir(), names.allocation_file("job2", "a", "data"))
        os.link(path, planted)
        try:
            with pytest.raises(NotFound):
                other.get("data")
            ctx.get("data").release()
        finally:
            os.unlink(planted)
    finally:
        other.destroy()


def read_twice(ctx: Context, name: str = "data") -> None:
    """Two read maps in a row (each of a new reference), the second the one whose
    header checks a repeated map skips."""
    for _ in range(2):
        with ctx.get(name) as ref, ref.map("r") as array:
            assert array.tolist() == [1.5] * 16


def test_a_read_map_sees_a_write_failed_since_the_last_read_map(published):
    ctx, _ = published
    read_twice(ctx)
    writer = ctx.get("data")
    with pytest.raises(RuntimeError), writer.map("w") as array:
        array[:] = 2.5
        raise RuntimeError("the writer fails mid-write")
    with ctx.get("data") as ref, pytest.raises(Incomplete, match="incomplete"):
        ref.map("r")
    writer.release()


def test_a_read_map_views_the_type_and_shape_retyped_since_the_last_one(published):
    ctx, _ = published
    read_twice(ctx)
    with ctx.get("data") as ref:
        ref.set_type_and_dimensions("u8", (4, 16))  # the same 64 bytes
    with ctx.get("data") as ref, ref.map("r") as array:
        assert (array.dtype.name, array.shape) == ("uint8", (4, 16))
        viewed = array.copy()
    assert viewed.view("f4").ravel().tolist() == [1.5] * 16


def test_a_narrower_opening_of_the_context_refuses_what_a_wider_one_just_admitted(namespace):
    """(rev5) The verdict is the context's Writers': two openings of one context, before
    and after its owner narrowed its mode, judge the same file differently."""
    wide = Context.create("job", mode=0o666)
    try:
        alloc = wide.create(dtype="u8", shape=(8,))
        with alloc.map("w") as array:
            array[:] = 1
        alloc.publish("data")
        alloc.release()
        os.chmod(os.path.join(shm_dir(), names.context_file("job")), 0o600)
        narrow = Context.open("job")
        got_twice(wide)  # admitted under 666
        with pytest.raises(PermissionDenied, match="more than its context"):
            narrow.get("data")
    finally:
        Context.destroy("job")


@pytest.mark.parametrize(
    "refusal", [trust.ours_refusal, trust.removable_refusal, lambda found: None]
)
def test_only_a_refusal_of_the_stat_alone_has_its_verdict_remembered(published, refusal):
    """open_segment remembers a verdict only for a context's Writers.refusal, which reads
    the stat alone: ours_refusal reads the euid too (after a seteuid the same key would
    get another verdict), so asking to remember it, or any other, is refused (a TypeError,
    the fd closed)."""
    ctx, path = published
    file_name = os.path.basename(path)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(TypeError, match="cannot be remembered"):
        segment.open_segment(file_name, "data", refusal, stat_only_refusal=True)
    assert sorted(os.listdir("/proc/self/fd")) == before  # (nothing left open)
    writers = ctx._registry.refusal  # the context's Writers': remembered, as every get does
    for _ in range(2):
        os.close(segment.open_segment(file_name, "data", writers, stat_only_refusal=True).fd)


def test_open_segment_takes_its_options_by_keyword_and_the_get_form_by_position(published):
    """open_segment's options (three of them booleans) are keyword-only, so a swap cannot
    pass silently; open_unpacked, the get path's form, takes positions only (a keyword
    would cost every get), its booleans named by constants (WITH_HEADER,
    STAT_ONLY_REFUSAL)."""
    ctx, path = published
    file_name = os.path.basename(path)
    refusal = ctx._registry.refusal
    with pytest.raises(TypeError, match="positional"):
        segment.open_segment(file_name, "data", refusal, True)  # read_only by position
    with pytest.raises(TypeError, match="positional"):
        segment.open_unpacked(file_name, "data", refusal, read_only=False)
    opened = segment.open_segment(file_name, "data", refusal, read_only=True, header=False)
    os.close(opened.fd)
    assert (opened.writable, opened.header) == (False, None)
    fd, writable, _, header = segment.open_unpacked(
        file_name,
        "data",
        refusal,
        False,
        segment.WITH_HEADER,
        None,
        None,
        segment.STAT_ONLY_REFUSAL,
    )
    os.close(fd)
    assert writable and header is not None and header.name == "data"
