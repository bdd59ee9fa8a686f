"""Test isolation: every test runs in a namespace of its own, which must be empty afterwards.

The session namespace (``claratest-<random>``) is exported in CLARA_NAMESPACE before any
test runs, so every subprocess (python helpers, `clara` commands, pipeline operators)
inherits it; each test then gets ``<session>-<random>`` from clara's own pytest plugin
(`clara_namespace`). A test that leaves a segment of its namespace in the shared-memory
directory fails with a table of them, and its leftovers are removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

from clara_core.names import shm_dir
from clara_core.shm import segment
from tests.ci_skips import pytest_configure, pytest_runtest_makereport  # noqa: F401 (hooks)

SESSION_NAMESPACE = f"claratest-{uuid.uuid4().hex[:10]}"
os.environ["CLARA_NAMESPACE"] = SESSION_NAMESPACE
os.environ.pop("CLARA_CONTEXT", None)
os.environ.pop("CLARA_OPERATOR", None)

# The job directories of the `clara run`s the tests start (a killed or failing run keeps its
# own, by design) and their operators' temporary files go under one directory of the
# session, removed at its end: the suite leaves nothing in /tmp. It is sticky and
# world-writable as /tmp is (tests run `clara` as another uid too). Only subprocesses see it:
# this process keeps the temporary directory it had (pytest's tmp_path stays where it was).
tempfile.gettempdir()
SESSION_TMPDIR = tempfile.mkdtemp(prefix=f"{SESSION_NAMESPACE}-tmp-")
os.chmod(SESSION_TMPDIR, 0o1777)
os.environ["TMPDIR"] = SESSION_TMPDIR

# No property test has a deadline: it is a timing assertion (hypothesis fails an example
# that takes over 200 ms, then calls the run flaky when it is quick again), and a loaded
# machine can stall any one example that long.
settings.register_profile("clara", deadline=None)
settings.load_profile("clara")


@pytest.fixture(autouse=True)
def namespace(clara_namespace: str) -> str:
    """A fresh CLARA_NAMESPACE for this test (<session>-<random>); the test fails with a
    table of what it left if that namespace is not empty at the end.

    It is the `clara_namespace` fixture that clara's pytest plugin gives every user
    (clara_core/testing.py), so the suite tests it on itself.
    """
    return clara_namespace


@pytest.fixture
def small_shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh 64 MiB tmpfs as CLARA_SHM_DIR, to fill up for real (needs mount rights)."""
    yield from _mounted_shm_dir(monkeypatch, "size=64m,mode=1777")


@pytest.fixture
def few_inodes_shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh tmpfs of 64 inodes as CLARA_SHM_DIR, to run out of names for real."""
    yield from _mounted_shm_dir(monkeypatch, "size=64m,nr_inodes=64,mode=1777")


def _mounted_shm_dir(monkeypatch: pytest.MonkeyPatch, options: str) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="clara-small-shm-")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    monkeypatch.setenv("CLARA_SHM_DIR", path)
    try:
        yield path
        left = os.listdir(path)
        assert not left, f"test left shared memory behind in {path}: {left}"
    finally:
        segment.forget_directory(path)
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole run must leave nothing of its namespace behind either."""
    left = [f for f in os.listdir(shm_dir()) if f.startswith(SESSION_NAMESPACE)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"clara: namespace {SESSION_NAMESPACE}: {len(left)} segment(s) left in {shm_dir()}"
        )
    if left:
        for file_name in left:
            os.unlink(os.path.join(shm_dir(), file_name))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(SESSION_TMPDIR, ignore_errors=True)
