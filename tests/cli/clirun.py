"""Helpers for CLI tests: run the real `clara` command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

CLARA = [sys.executable, "-m", "clara_cli"]


def clara(
    *args: str,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run `clara ARGS...` to its end; stdout and stderr are captured as bytes."""
    if isinstance(input, str):
        input = input.encode()
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*prefix, *CLARA, *args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )


def ok(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `clara ARGS...` and insist on exit code 0."""
    result = clara(*args, **kwargs)
    assert result.returncode == 0, (args, result.returncode, result.stderr.decode())
    return result


def write_in(context: str, name: str, raw: bytes) -> subprocess.CompletedProcess:
    """`clara map NAME -c CONTEXT --write --in -` with `raw` on stdin; must succeed."""
    return ok("map", name, "-c", context, "--write", "--in", "-", input=raw)


def data(*args: str, **kwargs: Any) -> Any:
    """Run `clara --json ARGS...` successfully and parse its one JSON document."""
    return json.loads(ok("--json", *args, **kwargs).stdout)


def fails(code: int, *args: str, **kwargs: Any) -> str:
    """Run `clara ARGS...`, insist on exit `code` and one `clara: error:` line; return it."""
    result = clara(*args, **kwargs)
    err = result.stderr.decode()
    assert result.returncode == code, (args, result.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clara: error: "), err
    return lines[0]


def mode_bits_apply() -> tuple[str, ...]:
    """A `prefix` for `clara(...)` under which file mode bits refuse access: none for a
    regular user; for root, setpriv dropping the capabilities that bypass them (the test
    is skipped where setpriv is missing)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        import pytest

        pytest.skip("needs setpriv(1) (util-linux) for root to drop its capabilities")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ("setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--")


def shim(directory: Path) -> Path:
    """A `clara` executable in `directory` running this interpreter's clara_cli."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "clara"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m clara_cli "$@"\n')
    path.chmod(0o755)
    return path


def run_script(script: str, bin_dir: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a bash script with the `clara` shim first on PATH."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
