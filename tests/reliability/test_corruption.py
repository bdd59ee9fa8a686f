"""Corruption: hypothesis flips, overwrites and truncates the header of an allocation and of
a context; every operation answers Corrupt (or works), never crashes, never writes outside
the damaged segment.

Each example runs its operations in a forked process (a crash shows as a signal there,
not as the end of the test run) under a safety deadline, and the parent checks that every
other segment is byte for byte what it was. The oracle (`valid_header`, the format's rules
written out here, not clara's parser): if it refuses the damaged header, opening the damaged
object must answer exactly Corrupt; whatever it accepts, an operation may work or raise a
ClaraError, but nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import select
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clara_cli.main import cli
from clara_core import ClaraError, Context, leaks
from clara_core.inspect import context_members
from clara_core.names import allocation_file, context_file, shm_dir, validate_name
from clara_core.shm import header as hdr
from tests.cli.clirun import clara

from .figures import Area, area
from .harness import SAFETY

EXAMPLES = 150  # per target (allocation, context)
DATA_SHAPE = (16, 64)  # float32: 4 KiB of data after the header page

# Loaded once here, not again in every forked example.
for _command in ("dump", "leaks", "map"):
    importlib.import_module(f"clara_cli.commands.{_command}")

flips = st.lists(
    st.tuples(st.integers(0, hdr.HEADER_SIZE - 1), st.integers(1, 255)), min_size=1, max_size=8
)
words = st.lists(  # whole 8-byte fields set to anything: huge shapes, sizes, pids, modes
    st.tuples(st.integers(0, hdr.HEADER_SIZE // 8 - 1), st.integers(-(2**63), 2**63 - 1)),
    max_size=3,
)
sizes = st.one_of(st.none(), st.integers(0, 3 * 8192))
after_get = st.booleans()  # damage it while a reference is open, before the map


def valid_header(raw: bytes, size: int) -> bool:
    """The oracle: the documented header format's rules, written out here independently of
    clara's parser (which a test must not grade itself with)."""
    if len(raw) < 768 or size < 768:
        return False
    magic, version, kind = struct.unpack_from("<8sHB", raw, 0)
    lifecycle, state = raw[16], raw[24]
    if magic != b"CLARAFIO" or version != 1 or kind not in (1, 2) or lifecycle > 3 or state > 2:
        return False
    if kind == 2:  # an allocation: its layout block
        code, ndim = raw[64], raw[65]
        dims = struct.unpack_from("<8q", raw, 72)
        nbytes, capacity, offset = struct.unpack_from("<3Q", raw, 136)
        if code not in ITEM_SIZES or not 1 <= ndim <= 8:
            return False
        if min(dims[:ndim]) < 1 or any(dims[ndim:]):
            return False
        if math.prod(dims[:ndim]) * ITEM_SIZES[code] != nbytes:
            return False
        if offset != 4096 or not nbytes <= capacity <= size - 4096:
            return False
    if struct.unpack_from("<I", raw, 208)[0] > 0o777:  # the mode
        return False
    context, name = raw[257 : 257 + raw[256]], raw[513 : 513 + raw[512]]
    if not context or (kind == 1 and not name):
        return False
    return all(_valid_name(n) for n in (context, name) if n)


def _valid_name(raw: bytes) -> bool:
    try:
        validate_name(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


# Element type codes and sizes, as the format defines them (u8 u16 u32 u64 i8 i16 i32 i64
# f16 f32 f64 bool c64 c128).
ITEM_SIZES = dict(enumerate((1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 1, 8, 16), start=1))


class Damage:
    """One way to damage a segment: byte flips, 8-byte fields, a new file size."""

    def __init__(self, flips: list, words: list, size: int | None) -> None:
        self.flips, self.words, self.size = flips, words, size

    def apply(self, path: str) -> None:
        """Damage the file at `path` in place."""
        with open(path, "r+b") as f:
            raw = bytearray(f.read(hdr.HEADER_SIZE))
            for offset, mask in self.flips:
                raw[offset] ^= mask
            for index, value in self.words:
                struct.pack_into("<q", raw, index * 8, value)
            f.seek(0)
            f.write(raw)
            if self.size is not None:
                f.truncate(self.size)

    def parses(self, path: str) -> bool:
        """Whether the damaged header is still valid, by the oracle's rules (not clara's)."""
        with open(path, "rb") as f:
            raw = f.read(hdr.HEADER_SIZE)
        return valid_header(raw, os.path.getsize(path))

    def __repr__(self) -> str:
        return f"Damage(flips={self.flips}, words={self.words}, size={self.size})"


def _outcome(step: Callable[[], Any]) -> str:
    """'ok', or the name of the exception, 'bug:' first if it is not a ClaraError."""
    try:
        step()
    except ClaraError as exc:
        return type(exc).__name__
    except Exception as exc:
        return f"bug: {type(exc).__name__}: {exc}"
    return "ok"


def _cli(*args: str) -> str:
    """Run the real `clara` entry point in this (forked) process; '<code> <stderr lines>'."""
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        cli.main(list(args), prog_name="clara", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    lines = err.getvalue().splitlines()
    if "Traceback" in err.getvalue() or len(lines) > 1:
        return f"bug: exit {code}, stderr {err.getvalue()!r}"
    return str(code)


def _in_child(operations: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Run `operations` in a forked process; its outcomes, or what killed or hung it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            data = json.dumps(operations()).encode()
            while data:
                data = data[os.write(write_end, data) :]
        except BaseException:
            code = 70
        os._exit(code)
    os.close(write_end)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], SAFETY)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return {"process": f"bug: hung for {SAFETY:g} s"}
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"process": f"bug: killed by {signal.Signals(os.WTERMSIG(status)).name}"}
    if os.WEXITSTATUS(status) != 0:
        return {"process": f"bug: exited {os.WEXITSTATUS(status)}"}
    return json.loads(b"".join(chunks))


def _fingerprints(names: list[str]) -> dict[str, str]:
    """sha256 of every named segment that exists."""
    found = {}
    for name in names:
        with contextlib.suppress(FileNotFoundError), open(os.path.join(shm_dir(), name), "rb") as f:
            found[name] = hashlib.sha256(f.read()).hexdigest()
    return found


def _scene() -> None:
    """Context `job` with `data` (damaged by the allocation test) and `other`, and context
    `keep` with `kept`: what must not change."""
    for ctx_name, names in (("job", ("data", "other")), ("keep", ("kept",))):
        with Context.create(ctx_name) as ctx:
            for name in names:
                alloc = ctx.create(dtype="f32", shape=DATA_SHAPE)
                with alloc.map("w") as array:
                    array[...] = 3.0
                alloc.publish(name)
                alloc.release()


def _clear() -> None:
    """Remove the scene whatever state it is in."""
    for ctx_name in ("job", "keep"):
        with contextlib.suppress(ClaraError):
            Context.destroy(ctx_name)


def _allocation_operations(damage: Damage, path: str, late: bool) -> Callable[[], dict]:
    """What is tried on a damaged allocation (in the forked child)."""

    def operations() -> dict[str, str]:
        ctx = Context.open("job")
        outcomes: dict[str, str] = {}
        reference: list[Any] = []
        if late:  # a reference held while the segment is damaged
            reference.append(ctx.get("data"))
            damage.apply(path)
        else:
            outcomes["get"] = _outcome(lambda: reference.append(ctx.get("data")))
        if reference:
            ref = reference[0]
            outcomes["state"] = _outcome(lambda: ref.state)
            outcomes["map r"] = _outcome(lambda: _touch(ref, "r"))
            outcomes["map w"] = _outcome(lambda: _touch(ref, "w"))
            outcomes["free"] = _outcome(ref.free)
        outcomes["names"] = _outcome(ctx.names)
        outcomes["list"] = _outcome(Context.list)
        outcomes["open"] = _outcome(lambda: Context.open("job").close())
        outcomes["dump data"] = _outcome(lambda: context_members("job"))
        outcomes["leak check"] = _outcome(leaks.check)
        outcomes["clara dump"] = _cli("--json", "dump", "job")
        outcomes["clara dump values"] = _cli("--json", "dump", "job", "data", "--values")
        outcomes["clara map"] = _cli("map", "data", "-c", "job", "--read", "--out", os.devnull)
        outcomes["clara leak-check --fix"] = _cli("--json", "leak-check", "--fix")
        return outcomes

    return operations


def _touch(ref: Any, mode: str) -> None:
    """Map, read (or write) every byte, unmap."""
    mapping = ref.map(mode, allow_incomplete=True)
    try:
        data = mapping.buffer
        if mode == "w":
            data[:] = bytes(len(data))
        else:
            bytes(data)
    finally:
        mapping.unmap()


def _check(outcomes: dict[str, str], refused: bool, first: str, area: Area) -> None:
    area.trials += 1
    bugs = {op: what for op, what in outcomes.items() if what.startswith("bug")}
    wrong = {}
    if refused and outcomes.get(first, "Corrupt") != "Corrupt":
        wrong[first] = outcomes[first]
    if bugs or wrong:
        area.failures += 1
    assert not bugs, bugs
    assert not wrong, f"the header is invalid, yet: {wrong}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flips=flips, words=words, size=sizes, late=after_get)
def test_a_damaged_allocation_header(flips, words, size, late, namespace) -> None:
    """get, state, map r/w, free, names, list, open, dump, leak-check (and --fix)."""
    damage = Damage(flips, words, size)
    stats = area("corruption")
    _scene()
    try:
        path = os.path.join(shm_dir(), allocation_file("job", "a", "data"))
        others = [context_file("job"), context_file("keep"), allocation_file("job", "a", "other")]
        others.append(allocation_file("keep", "a", "kept"))
        before = _fingerprints(others)
        if not late:
            damage.apply(path)
        refused = not damage.parses(path) if not late else False
        outcomes = _in_child(_allocation_operations(damage, path, late))
        _check(outcomes, refused, "get", stats)
        assert _fingerprints(others) == before, "a segment besides the damaged one changed"
        stats.add("allocation headers refused as corrupt", refused)
    finally:
        _clear()


def _context_operations() -> dict[str, str]:
    """What is tried on a damaged context (in the forked child)."""
    outcomes: dict[str, str] = {}
    opened: list[Context] = []
    outcomes["open"] = _outcome(lambda: opened.append(Context.open("job")))
    if opened:
        ctx = opened[0]
        outcomes["get"] = _outcome(lambda: ctx.get("data").release())
        outcomes["names"] = _outcome(ctx.names)
        outcomes["create"] = _outcome(lambda: ctx.create(4096).release())
    outcomes["exists"] = _outcome(lambda: Context.exists("job"))
    outcomes["list"] = _outcome(Context.list)
    outcomes["dump data"] = _outcome(lambda: context_members("job"))
    outcomes["leak check"] = _outcome(leaks.check)
    outcomes["clara dump"] = _cli("--json", "dump")
    outcomes["clara dump job"] = _cli("--json", "dump", "job")
    outcomes["clara leak-check --fix"] = _cli("--json", "leak-check", "--fix")
    return outcomes


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flips=flips, words=words, size=st.one_of(st.none(), st.integers(0, 3 * 4096)))
def test_a_damaged_context_header(flips, words, size, namespace) -> None:
    """open, get, names, create, exists, list, dump, leak-check (and --fix)."""
    damage = Damage(flips, words, size)
    stats = area("corruption")
    _scene()
    try:
        path = os.path.join(shm_dir(), context_file("job"))
        members = [allocation_file("job", "a", name) for name in ("data", "other")]
        keep = [context_file("keep"), allocation_file("keep", "a", "kept")]
        before = _fingerprints(members + keep)
        damage.apply(path)
        refused = not damage.parses(path)
        outcomes = _in_child(_context_operations)
        _check(outcomes, refused, "open", stats)
        assert _fingerprints(keep) == {k: before[k] for k in keep}, "context keep changed"
        after = _fingerprints(members)  # reclaimed with their context, or unchanged
        assert after == {m: before[m] for m in after}, "an allocation of the context changed"
        stats.add("context headers refused as corrupt", refused)
    finally:
        _clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(shm_dir(), context_file("job")))


@pytest.mark.parametrize(
    ("what", "damage"),
    [
        ("bad magic", Damage([(0, 0xFF)], [], None)),
        ("truncated into the header", Damage([], [], 100)),
        ("truncated into the data", Damage([], [], 4096 + 10)),
        ("huge shape", Damage([], [(9, 2**62)], None)),
    ],
)
def test_real_clara_commands_on_a_damaged_allocation(what: str, damage: Damage, area: Area):
    """The same through real `clara` processes: exit 9 and one line, then --fix removes
    just the damaged segment."""
    _scene()
    try:
        damage.apply(os.path.join(shm_dir(), allocation_file("job", "a", "data")))
        for args in (
            ("map", "data", "-c", "job", "--read", "--out", os.devnull),
            ("dump", "job", "data", "--values"),
            ("free", "data", "-c", "job"),
        ):
            result = clara(*args)
            err = result.stderr.decode()
            assert (result.returncode, len(err.splitlines())) == (9, 1), (args, err)
            assert "Traceback" not in err
        assert clara("leak-check").returncode == 1
        fixed = json.loads(clara("--json", "leak-check", "--fix").stdout)
        assert [f["name"] for f in fixed["removed"]] == ["data"], fixed
        area.trials += 1
    finally:
        _clear()
