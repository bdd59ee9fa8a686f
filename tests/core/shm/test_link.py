"""Naming an open segment (publish): linkat(AT_EMPTY_PATH) where the kernel lets an
ordinary user do it, else through /proc/self/fd, with the same result. The calls os lacks
(link_open_file, rename_new) are the C extension's or libc's ctypes twins: both do the
same to real segments of the shared-memory directory, and fail alike."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clara_core.names import shm_dir
from clara_core.shm import libc
from clara_core.shm.native import calls

OTHER_UID = 65534

# As an ordinary user: publish one allocation with the credentials it was created under,
# then change credentials (setregid to the same ids gives the process a new set) and
# publish one created before the change, which Linux no longer lets AT_EMPTY_PATH name.
SCRIPT = """
import json, os
from clara_core import Context
from clara_core.shm import directory

out = {}
with Context.create("linked") as ctx:
    try:
        first, second = ctx.create(8), ctx.create(8)
        for alloc, value in ((first, 7), (second, 9)):
            with alloc.map("w") as array:
                array[:] = value
        first.publish("first")
        out["after_first"] = directory._empty_path
        gid = os.getgid()
        os.setregid(gid, gid)
        second.publish("second")
        out["after_second"] = directory._empty_path
        for name in ("first", "second"):
            with ctx.get(name) as ref, ref.map("r") as array:
                out[name] = array.tolist()
        first.free()
        second.free()
    finally:
        Context.destroy("linked")
print(json.dumps(out))
"""


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = platform.release().split("-")[0].split(".")
    return (int(numbers[0]), int(numbers[1])) >= (major, minor)


def test_an_ordinary_user_publishes_with_either_way_of_linking() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run as another user")
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={OTHER_UID}",
            f"--regid={OTHER_UID}",
            "--clear-groups",
            sys.executable,
            "-c",
            textwrap.dedent(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["first"] == [7] * 8 and out["second"] == [9] * 8
    if _kernel_at_least(6, 10):  # AT_EMPTY_PATH for whoever opened the file
        assert out["after_first"] is True  # it named the first one itself
    # The second one's file was opened under the old credentials: /proc/self/fd named it,
    # and is used from then on.
    assert out["after_second"] is False


_TWINS = ["python"] + (["c"] if calls is not None else [])


def _call(twin: str, name: str) -> Callable[..., Any]:
    return getattr(calls, name) if twin == "c" else getattr(libc, name)


@pytest.fixture
def directory() -> Iterator[int]:
    fd = os.open(shm_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def _nameless(directory: int) -> int:
    """A new segment without a name (O_TMPFILE, as clara's create makes them)."""
    return os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=directory)


@pytest.mark.parametrize("twin", _TWINS)
def test_link_open_file_names_the_open_file_and_never_replaces_a_name(
    twin: str, directory: int, namespace: str
) -> None:
    link_open_file = _call(twin, "link_open_file")
    name, taken = f"{namespace}.linked", f"{namespace}.taken"
    fd, other = _nameless(directory), _nameless(directory)
    try:
        os.pwrite(fd, b"seven", 0)
        link_open_file(fd, directory, name)
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
        assert (found.st_ino, found.st_nlink) == (os.fstat(fd).st_ino, 1)
        link_open_file(other, directory, taken)
        with pytest.raises(FileExistsError):
            link_open_file(fd, directory, taken)
        assert os.stat(taken, dir_fd=directory).st_ino == os.fstat(other).st_ino  # kept
    finally:
        for each in (name, taken):
            os.unlink(each, dir_fd=directory)
        os.close(fd)
        os.close(other)


def _error(call: Callable[[], object]) -> tuple[type, object]:
    with pytest.raises((OSError, ValueError, TypeError)) as caught:
        call()
    return type(caught.value), getattr(caught.value, "errno", None)


def test_link_and_rename_twins_fail_alike(directory: int, namespace: str) -> None:
    name, other_name = f"{namespace}.here", f"{namespace}.there"
    fd = _nameless(directory)
    not_a_directory = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    unlinked = os.open(name, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=directory)
    os.unlink(name, dir_fd=directory)  # (a file that had a name: no new one, ENOENT)
    for each in (name, other_name):
        os.close(os.open(each, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=directory))
    closed = _nameless(directory)
    os.close(closed)  # (last: no descriptor is opened again under its number)
    try:
        cases: dict[str, Callable[[str], object]] = {
            "name taken": lambda t: _call(t, "link_open_file")(fd, directory, name),
            "closed fd": lambda t: _call(t, "link_open_file")(closed, directory, "x"),
            "not a directory": lambda t: _call(t, "link_open_file")(fd, not_a_directory, "x"),
            "unlinked file": lambda t: _call(t, "link_open_file")(unlinked, directory, "x"),
            "NUL in the name": lambda t: _call(t, "link_open_file")(fd, directory, "a\0b"),
            "new name taken": lambda t: _call(t, "rename_new")(directory, name, other_name),
            "old name gone": lambda t: _call(t, "rename_new")(directory, "x" + name, "y" + name),
            "NUL in a new name": lambda t: _call(t, "rename_new")(directory, name, "a\0b"),
            "no name": lambda t: _call(t, "link_open_file")(fd, directory, None),
            "a number as a name": lambda t: _call(t, "rename_new")(directory, name, 7),
        }
        for case, call in cases.items():
            errors = {twin: _error(lambda call=call, twin=twin: call(twin)) for twin in _TWINS}
            assert len(set(errors.values())) == 1, (case, errors)
        expected = {"name taken": 17, "closed fd": 9, "not a directory": 20, "unlinked file": 2}
        for case, code in expected.items():
            assert _error(lambda case=case: cases[case]("python"))[1] == code, case
        assert os.path.exists(os.path.join(shm_dir(), name))  # nothing renamed over
    finally:
        for each in (name, other_name):
            os.unlink(each, dir_fd=directory)
        for each in (fd, not_a_directory, unlinked):
            os.close(each)


@pytest.mark.parametrize("twin", _TWINS)
def test_rename_new_renames_within_the_directory(twin: str, directory: int, namespace: str) -> None:
    old, new = f"{namespace}.old", f"{namespace}.new"
    fd = os.open(old, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=directory)
    try:
        _call(twin, "rename_new")(directory, old, new)
        assert os.stat(new, dir_fd=directory).st_ino == os.fstat(fd).st_ino
        assert not os.path.exists(os.path.join(shm_dir(), old))
    finally:
        os.unlink(new, dir_fd=directory)
        os.close(fd)
