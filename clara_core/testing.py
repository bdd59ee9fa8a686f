"""pytest fixtures for testing your own operators with clara (a `pytest11` plugin).

Installed with clara-fastio, pytest loads it by itself; nothing to configure:

    def test_smooth(clara_context):                  # a context bound to the test process
        vol = clara_context.create(dtype="float32", shape=(4, 4))
        ...

- `clara_namespace`: the test runs in a CLARA_NAMESPACE of its own (subprocesses inherit
  it), so tests never see each other's segments. At teardown, every segment of it still
  in the shared-memory directory fails the test with a table (kind, context, name, size,
  creator, state), and is removed so that the next run starts clean.
- `clara_context`: a fresh context in that namespace, owned by the test process,
  destroyed at teardown (before the namespace is checked).

Only pytest imports this module: `import clara_core` never loads pytest.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from .context import Context
from .dtypes import format_size
from .inspect import SegmentInfo, survey
from .names import shm_dir
from .shm import processes

NAMESPACE_LIMIT = 64  # characters (names.namespace's rule)


@pytest.fixture
def clara_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A CLARA_NAMESPACE for this test alone; fails the test if it is not empty at the end."""
    base = os.environ.get("CLARA_NAMESPACE") or "clara-test"
    name = f"{base[: NAMESPACE_LIMIT - 9]}-{uuid.uuid4().hex[:8]}"
    directory = shm_dir()  # as at the start: a test may point CLARA_SHM_DIR elsewhere
    monkeypatch.setenv("CLARA_NAMESPACE", name)
    yield name
    left = leftovers(name, directory)
    if not left:
        return
    table = describe(name, directory)
    for file_name in left:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, file_name))
    pytest.fail(
        f"test left {len(left)} segment(s) of namespace {name} in {directory} "
        f"(now removed):\n{table}",
        pytrace=False,
    )


@pytest.fixture
def clara_context(clara_namespace: str) -> Iterator[Context]:
    """A fresh context owned by the test process, destroyed at teardown."""
    ctx = Context.create(f"test-{uuid.uuid4().hex[:8]}", owner_pid=os.getpid())
    try:
        yield ctx
    finally:
        with contextlib.suppress(Exception):  # the test may have destroyed it itself
            Context.destroy(ctx.name)
        ctx.close()


def leftovers(namespace: str, directory: str) -> list[str]:
    """File names of `namespace` (exactly, not longer namespaces) in `directory`."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(f for f in names if f.startswith(namespace + "."))


def describe(namespace: str, directory: str) -> str:
    """A table of the segments of `namespace` in `directory`, for a failure message."""
    with _environment(CLARA_NAMESPACE=namespace, CLARA_SHM_DIR=directory):
        try:
            infos = survey()
        except Exception as exc:  # a table is a courtesy: the file names still say it
            return f"  (cannot read them: {exc})"
    rows = [["KIND", "CONTEXT", "NAME", "SIZE", "CREATOR", "STATE"]]
    rows += [_row(info) for info in sorted(infos, key=lambda i: (i.context, i.kind, i.name))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _row(info: SegmentInfo) -> list[str]:
    creator = "-"
    if info.header is not None:
        pid = info.header.origin.creator_pid
        alive = processes.is_alive(pid, info.header.origin.creator_start)
        creator = f"{pid} ({processes.command_name(pid) if alive else 'exited'})"
    state = info.state or info.problem or ("in use" if info.in_use else "-")
    return [info.kind, info.context, info.name or "-", format_size(info.size), creator, state]


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
