"""README's native section as a reader follows it: `make -C native install PREFIX=...`
(a program then builds from pkg-config's flags alone, whatever PREFIX the library was first
built with), and its C++ example compiles as shown."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .conftest import NATIVE, Build


def make(*args: str) -> None:
    made = subprocess.run(["make", "-C", str(NATIVE), *args], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr


def test_install_writes_a_pkg_config_file_for_its_own_prefix(native: Build, tmp_path: Path):
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    make(f"BUILD={build}")  # built first with the default prefix (/usr/local), as README says
    make(f"BUILD={build}", "install", f"PREFIX={prefix}")
    pc = prefix / "lib" / "pkgconfig" / "clara_fastio.pc"
    assert f"prefix={prefix}\n" in pc.read_text()
    if shutil.which("pkg-config"):
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "clara_fastio"],
            capture_output=True,
            text=True,
            env={**os.environ, "PKG_CONFIG_PATH": str(pc.parent)},
            check=True,
        ).stdout.split()
    else:  # what pkg-config would say, from the installed file's own words
        flags = [f"-I{prefix}/include", f"-L{prefix}/lib", "-lclara_fastio"]
    compiled = subprocess.run(
        ["cc", str(NATIVE / "examples" / "threshold.c"), *flags, "-o", str(tmp_path / "op")],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    make(f"BUILD={build}", "install", f"PREFIX={prefix}")  # again: nothing changes
    assert f"prefix={prefix}\n" in pc.read_text()


def test_the_readme_s_cpp_example_compiles_as_shown(native: Build, tmp_path: Path):
    """The C++ block of README's native section, copied as a reader would copy it."""
    readme = (NATIVE.parent / "README.md").read_text()
    block = readme.split("```cpp\n", 1)[1].split("```", 1)[0]
    source = tmp_path / "threshold.cpp"
    source.write_text(block)
    assert native.program(source).exists()
