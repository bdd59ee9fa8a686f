"""Fixtures of the CLI tests: a context that is always destroyed, a `clara` on PATH."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from clara_core import Context

from .clirun import shim

_numbers = itertools.count(1)


@pytest.fixture
def ctx() -> Iterator[str]:
    """The name of a fresh context (made by the test), destroyed at the end whatever happens."""
    name = f"ctx{next(_numbers)}"
    try:
        yield name
    finally:
        if Context.exists(name):
            Context.destroy(name)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory holding a `clara` executable, for shell scripts."""
    directory = tmp_path / "bin"
    shim(directory)
    return directory
