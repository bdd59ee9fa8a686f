"""Fixtures of the pipeline tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (to check that nothing is written next to the pipeline files)."""
    for folder in ("operators", "stand-ins", "payload", "bindings"):
        shutil.copytree(EXAMPLES / folder, tmp_path / folder)
    for pipeline in EXAMPLES.glob("*.yaml"):
        shutil.copy(pipeline, tmp_path)
    return tmp_path
