"""Reading a pipeline file: its text through templates and the schema's rules into a `Pipeline`.

pipeline = load("examples/ct-smooth.yaml")   # PipelineInvalid lists every problem
pipeline = load("organ.yaml", {"organ": "liver"})   # template arguments (--param)
"""

from __future__ import annotations

from collections.abc import Mapping

from . import schema, templates
from .model import Pipeline, PipelineInvalid, Problem
from .textfile import read_text


def check(
    file: str, arguments: Mapping[str, str] | None = None
) -> tuple[Pipeline | None, list[Problem]]:
    """Load and validate a pipeline file; returns (pipeline or None, every problem found).

    Problems include warnings and notes (`Problem.severity`); the pipeline is None only
    when there is an error. Template placeholders are resolved first, with `arguments`.
    """
    text, problems = templates.resolve(read_text(file, "pipeline"), file, arguments)
    if problems:  # the rules would only trip over what is left unresolved
        return None, problems
    return schema.parse(text, file)


def load(file: str, arguments: Mapping[str, str] | None = None) -> Pipeline:
    """Load a pipeline file; PipelineInvalid (exit code 2) lists every error.

    Warnings and notes of a valid file are kept in `pipeline.remarks`.
    """
    pipeline, problems = check(file, arguments)
    if pipeline is None:
        raise PipelineInvalid(file, problems)
    return pipeline
