"""Reading a pipeline file: its text through the schema's rules into a `Pipeline`.

pipeline = load("examples/ct-smooth.yaml")   # PipelineInvalid lists every problem
"""

from __future__ import annotations

from ..errors import InvalidArgument, NotFound
from . import schema
from .model import Pipeline, PipelineInvalid, Problem


def check(file: str) -> tuple[Pipeline | None, list[Problem]]:
    """Load and validate a pipeline file; returns (pipeline or None, every problem found)."""
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFound(f"pipeline file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read pipeline file {file}: {exc}") from None
    return schema.parse(text, file)


def load(file: str) -> Pipeline:
    """Load a pipeline file; PipelineInvalid (exit code 2) lists every problem."""
    pipeline, problems = check(file)
    if problems or pipeline is None:
        raise PipelineInvalid(file, problems)
    return pipeline
