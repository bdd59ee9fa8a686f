"""The core suite and the threat model's tests once more with the C extension switched off
(CLARA_PURE_PYTHON=1): each system-call sequence's pure-Python twin (clara_core/shm/native.py)
must keep every property its C call has, since that is what runs wherever the extension
could not be built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent
SECURITY = CORE.parent / "reliability" / "test_security.py"  # (a planting second uid)


def test_the_core_suite_passes_without_the_extension() -> None:
    if os.environ.get("CLARA_PURE_PYTHON") == "1":
        pytest.skip("this is the pure-Python run")
    env = {**os.environ, "CLARA_PURE_PYTHON": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            str(CORE),
            str(SECURITY),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]
