"""Helpers for pipeline tests: write a pipeline with its operator scripts, run `clara`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

CLARA = [sys.executable, "-m", "clara_cli"]


def clara(*args: str, timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `clara ARGS...` in a subprocess to its end (text output captured)."""
    return subprocess.run(
        [*CLARA, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def clara_run(
    pipeline: Path, *options: str, timeout: float = 60.0, **kwargs: Any
) -> tuple[int, dict, str]:
    """`clara --json run PIPELINE`; returns (exit code, the JSON result, stderr)."""
    result = clara("--json", "run", str(pipeline), *options, timeout=timeout, **kwargs)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def start_run(pipeline: Path, *options: str) -> subprocess.Popen:
    """Start `clara --json run PIPELINE` without waiting."""
    return subprocess.Popen(
        [*CLARA, "--json", "run", str(pipeline), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write(directory: Path, pipeline: str, **files: str) -> Path:
    """Write pipeline.yaml and operator files (name with '_' for '.': op_py -> op.py)."""
    for name, text in files.items():
        stem, _, ext = name.rpartition("_")
        (directory / f"{stem}.{ext}").write_text(textwrap.dedent(text))
    path = directory / "pipeline.yaml"
    path.write_text(textwrap.dedent(pipeline))
    return path


def operators(result: dict) -> dict[str, dict]:
    """The JSON result's operators by name."""
    return {op["name"]: op for op in result["operators"]}


ENV = dict(os.environ)
