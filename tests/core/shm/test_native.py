"""The C extension clara_core.shm._calls: built where CI requires it, and switched off by
CLARA_PURE_PYTHON (the pure-Python calls then run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clara_core.shm import native

_WHICH = "from clara_core.shm import native; print(native.calls is not None)"


def _loaded(**environment: str) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "CLARA_PURE_PYTHON"} | environment
    done = subprocess.run(
        [sys.executable, "-c", _WHICH], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip() == "True"


@pytest.mark.skipif(
    not os.environ.get("CLARA_REQUIRE_NATIVE"), reason="the extension is optional here"
)
def test_the_extension_is_built_and_loaded_where_required() -> None:
    assert _loaded()
    if not os.environ.get("CLARA_PURE_PYTHON"):
        assert native.calls is not None and native.calls.VERSION == native.VERSION


def test_pure_python_switches_the_extension_off() -> None:
    assert not _loaded(CLARA_PURE_PYTHON="1")


_CONSTANTS = (
    "import mmap; from clara_core.shm import memory; names = ('PROT_READ', 'PROT_WRITE', "
    "'MAP_SHARED', 'MAP_POPULATE'); "
    "print([n for n in names if getattr(memory, n) != getattr(mmap, n)])"
)


@pytest.mark.parametrize("pure", ["", "1"])
def test_the_mapping_constants_are_the_systems(pure: str) -> None:
    """Those of the extension, or (pure Python) the values memory.py knows without
    importing the mmap module: both are the system's."""
    env = {k: v for k, v in os.environ.items() if k != "CLARA_PURE_PYTHON"}
    done = subprocess.run(
        [sys.executable, "-c", _CONSTANTS],
        env=env | {"CLARA_PURE_PYTHON": pure} if pure else env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_only_pure_python_1_switches_the_extension_off() -> None:
    """CLARA_PURE_PYTHON=1 (as README and --help say), not any value: "0" leaves it on
    (where it is built: the same answer as with the variable unset)."""
    assert _loaded(CLARA_PURE_PYTHON="0") == _loaded()


_WITHOUT_A_NAME = """
import sys, types
from clara_core import shm
from clara_core.shm import native
stale = types.ModuleType("clara_core.shm._calls")
stale.VERSION = native.VERSION  # as a build of other sources with this VERSION would be
sys.modules["clara_core.shm._calls"] = shm._calls = stale
for name in native.NAMES:
    setattr(stale, name, object())
delattr(stale, sys.argv[1])
print(native._load() is None)
"""


def test_a_build_lacking_a_name_the_twins_use_is_not_loaded() -> None:
    """A stale build with the right VERSION but a function missing: the pure-Python
    twins run, instead of an AttributeError at import."""
    for name in ("map_at", "free_named", "PROT_READ"):
        done = subprocess.run(
            [sys.executable, "-c", _WITHOUT_A_NAME, name],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == "True", name
