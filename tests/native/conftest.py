"""Build the C library and the test programs with the system compiler, once per session.

The library is built out of tree (``make -C native BUILD=<tmp>``), plainly and with
``-fsanitize=address,undefined``; test programs link the static library. Without a C
compiler (or make) every native test is skipped with that reason; CI's image has both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
HERE = Path(__file__).resolve().parent
SANITIZE = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"


def missing_tools() -> list[str]:
    """The build tools this machine lacks."""
    return [tool for tool in ("cc", "c++", "make") if shutil.which(tool) is None]


@dataclass
class Build:
    """One build of the library, and how to link programs against it."""

    directory: Path
    flags: list[str]

    @property
    def static(self) -> Path:
        return self.directory / "libclara_fastio.a"

    def program(self, source: Path, name: str | None = None) -> Path:
        """Compile `source` (C or C++) against this build; returns the executable."""
        output = self.directory / (name or source.stem)
        cxx = source.suffix == ".cpp"
        command = [
            "c++" if cxx else "cc",
            "-std=c++17" if cxx else "-std=c99",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
            f"-I{NATIVE / 'include'}",
            f"-I{NATIVE / 'src'}",
            *self.flags,
            str(source),
            str(self.static),
            "-o",
            str(output),
        ]
        compiled = subprocess.run(command, capture_output=True, text=True)
        assert compiled.returncode == 0, f"{' '.join(command)}\n{compiled.stderr}"
        return output


def _build(directory: Path, flags: str) -> Build:
    made = subprocess.run(
        ["make", "-C", str(NATIVE), f"BUILD={directory}", f"CFLAGS_EXTRA={flags}", "all"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return Build(directory, flags.split())


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The library built with the system compiler (skips where there is none)."""
    missing = missing_tools()
    if missing:
        why = f"no {', '.join(missing)} on this machine: the native tests need a C compiler"
        if os.environ.get("CLARA_REQUIRE_NATIVE"):  # CI: never skip them
            pytest.fail(why + " (CLARA_REQUIRE_NATIVE is set)")
        pytest.skip(why)
    return _build(tmp_path_factory.mktemp("native"), "")


@pytest.fixture(scope="session")
def sanitized(native: Build, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The library built with AddressSanitizer and UndefinedBehaviorSanitizer."""
    return _build(tmp_path_factory.mktemp("native-asan"), SANITIZE)


@pytest.fixture(scope="session")
def tool(native: Build) -> Path:
    """tests/native/tool.c: the C API from the command line."""
    return native.program(HERE / "tool.c")


def run(program: Path, *args: str, timeout: float = 30.0, **kwargs) -> subprocess.CompletedProcess:
    """Run a test program to the end (never a hang: a timeout fails the test)."""
    return subprocess.run(
        [str(program), *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
