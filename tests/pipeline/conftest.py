"""Fixtures of the pipeline tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (their disk outputs land next to the pipeline files)."""
    shutil.copytree(EXAMPLES / "operators", tmp_path / "operators")
    for pipeline in EXAMPLES.glob("*.yaml"):
        shutil.copy(pipeline, tmp_path)
    return tmp_path
