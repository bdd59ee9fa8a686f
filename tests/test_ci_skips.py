"""The suite's own rules: in CI a skipped security, space or race test fails the run, and a
test that hangs is stopped (run on a small suite of their own, by a real inner pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = """
import pytest
from tests.ci_skips import pytest_configure, pytest_runtest_makereport

@pytest.fixture
def small_shm_dir():
    pytest.skip("cannot mount a small tmpfs here")
"""

TESTS = """
import time
import pytest

@pytest.mark.must_run
def test_security():
    pytest.skip("needs root")

def test_space(small_shm_dir):
    pass

def test_convenience():
    pytest.skip("nice to have")

@pytest.mark.must_run
@pytest.mark.xfail(reason="known", strict=True)
def test_known_bug():
    assert False

def test_passes():
    pass
"""


def inner_pytest(directory: Path, ci: str, *args: str) -> subprocess.CompletedProcess:
    """Run pytest on `directory` with CI=`ci`, with this repository importable."""
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_rules.py").write_text(textwrap.dedent(TESTS))
    return tmp_path


def test_in_ci_a_skipped_security_or_space_test_fails_the_run(suite: Path) -> None:
    result = inner_pytest(suite, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in result.stdout, result.stdout
    failed = {
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith(("FAILED", "ERROR"))  # a skip in a fixture fails at setup: error
    }
    assert failed == {"test_rules.py::test_security", "test_rules.py::test_space"}
    assert "CI must run this security, space or race test, but it skipped: needs root" in (
        result.stdout
    )


@pytest.mark.parametrize("ci", ["", "false"])
def test_elsewhere_they_stay_visible_skips(suite: Path, ci: str) -> None:
    result = inner_pytest(suite, ci)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in result.stdout, result.stdout
    assert "SKIPPED [1] test_rules.py:7: needs root" in result.stdout, result.stdout


def test_a_hanging_test_is_stopped_by_the_per_test_timeout(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hang():\n    time.sleep(600)\n")
    result = inner_pytest(tmp_path, "true", "--timeout", "1")
    assert result.returncode == 1, result.stdout
    assert "Timeout (0:00:01)" in result.stdout or "Timeout" in result.stdout, result.stdout
    assert "1 failed" in result.stdout
