"""`clara doctor`: run for real, here and against tmpfs mounts made for the test."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import clara_cli
import clara_core
from clara_core.shm import native, segment
from tests.reliability.harness import as_other_user, require_root

from .clirun import CLARA, clara, ok

NAMES = [
    "shm-dir",
    "shm-size",
    "container-shm",
    "remove-ipc",
    "open-files",
    "ofd-locks",
    "proc",
    "protected",
    "huge-pages",
    "leaks",
    "c-extension",
]
CODES = {"pass": 0, "warn": 1, "fail": 2}


def doctor(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):
    """(exit code, JSON report, checks by name) of `clara doctor --json`."""
    result = clara("doctor", "--json", *args, env=env, prefix=prefix)
    report = json.loads(result.stdout)
    return result.returncode, report, {c["name"]: c for c in report["checks"]}


@contextlib.contextmanager
def tmpfs(options: str) -> Iterator[str]:
    """A fresh tmpfs mounted with `options` (needs mount rights: skipped otherwise)."""
    path = tempfile.mkdtemp(prefix="clara-doctor-")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
        assert os.listdir(path) == [], "doctor left files behind"
    finally:
        segment.forget_directory(path)
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def test_on_this_machine_every_check_reports_and_the_exit_code_is_the_worst():
    code, report, checks = doctor()
    assert list(checks) == NAMES
    assert code == CODES[report["status"]] == max(CODES[c["status"]] for c in checks.values())
    for check in checks.values():
        assert check["status"] in CODES and check["message"]
        assert (check["fix"] is None) == (check["status"] == "pass"), check
    # the figures are this machine's, as other tools see it
    fstype = subprocess.run(
        ["stat", "-f", "-c", "%T", "/dev/shm"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert checks["shm-dir"]["figures"]["fstype"] == fstype
    limit = subprocess.run(["bash", "-c", "ulimit -n"], capture_output=True, text=True)
    assert checks["open-files"]["figures"]["soft"] == int(limit.stdout)
    for name, value in checks["protected"]["figures"].items():
        with open("/proc/sys/" + name.replace(".", "/")) as file:
            assert value == file.read().strip()
    stats = os.statvfs("/dev/shm")
    assert checks["shm-size"]["figures"]["size"] == stats.f_blocks * stats.f_frsize
    assert checks["ofd-locks"]["status"] == "pass"  # clara could not work otherwise


def test_human_output_is_one_line_per_check_with_its_fix():
    result = clara("doctor", "--no-measure", env={"NO_COLOR": "1"})
    lines = result.stdout.decode().splitlines()
    checks = [line for line in lines if line[:4] in ("pass", "warn", "fail")]
    assert [line.split()[1] for line in checks] == NAMES
    fixes = [line for line in lines if line.lstrip().startswith("fix: ")]
    assert len(fixes) == sum(1 for line in checks if not line.startswith("pass"))
    assert lines[-1].startswith("doctor: ")
    assert "\x1b[" not in result.stdout.decode()
    assert result.returncode == (2 if "fail" in lines[-1] else 1 if "warn" in lines[-1] else 0)


def test_a_small_tmpfs_with_huge_pages_is_measured_there():
    with tmpfs("size=64m,mode=1777,huge=always") as path:
        code, report, checks = doctor(env={"CLARA_SHM_DIR": path})
        assert report["shm_dir"] == path and code >= 1
        assert checks["shm-dir"]["status"] == "pass"
        assert checks["shm-dir"]["figures"]["mount_point"] == path
        small = checks["container-shm"]
        assert small["status"] == "warn" and "64.0 MiB" in small["message"]
        if os.path.exists("/.dockerenv"):  # in Docker: its default, and Docker's fix
            assert "--shm-size" in small["fix"]
        huge = checks["huge-pages"]
        assert huge["figures"]["tmpfs_huge"] == "always"
        assert huge["figures"]["measured_in"] == path  # in the directory itself
        assert huge["status"] == "pass" and huge["message"].startswith("in use")
        assert huge["figures"]["gain"] > 0
        assert checks["leaks"]["status"] == "pass"


def test_a_tmpfs_without_huge_pages_says_how_to_enable_them():
    with tmpfs("size=128m,mode=1777,huge=never") as path:
        _, _, checks = doctor(env={"CLARA_SHM_DIR": path})
        huge = checks["huge-pages"]
        assert huge["figures"]["tmpfs_huge"] == "never"
        assert huge["message"].startswith("not in use")
        if huge["status"] == "warn":  # huge pages were worth it in the measurement
            assert f"mount -o remount,huge=within_size {path}" in huge["fix"]
            assert huge["figures"]["gain"] >= 1.5


def test_a_world_writable_directory_without_sticky_bit_fails(tmp_path):
    directory = tmp_path / "shm"
    directory.mkdir()
    directory.chmod(0o777)
    code, _, checks = doctor("--no-measure", env={"CLARA_SHM_DIR": str(directory)})
    assert code == 2
    assert checks["shm-dir"]["status"] == "fail"
    assert checks["shm-dir"]["fix"] == f"chmod +t {directory}"


def test_a_directory_on_disk_is_a_warning(tmp_path):
    fstype = subprocess.run(
        ["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True
    ).stdout.strip()
    if fstype == "tmpfs":
        pytest.skip("the temporary directory is itself on tmpfs here")
    _, _, checks = doctor("--no-measure", env={"CLARA_SHM_DIR": str(tmp_path)})
    assert checks["shm-dir"]["status"] == "warn"
    assert "not tmpfs" in checks["shm-dir"]["message"]
    assert checks["shm-dir"]["fix"].startswith("mount -t tmpfs")


def test_a_missing_directory_fails_with_exit_2(tmp_path):
    missing = tmp_path / "nowhere"
    code, report, checks = doctor("--no-measure", env={"CLARA_SHM_DIR": str(missing)})
    assert code == 2 and report["status"] == "fail"
    assert checks["shm-dir"]["status"] == "fail"
    assert checks["shm-size"]["message"].startswith("not checked")


def test_leaks_in_the_namespace_are_reported():
    script = " ".join([*CLARA, "create", "context", "leaky", "--owner-pid", "$$"])
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)  # owner exits
    try:
        _, _, checks = doctor("--no-measure")
        assert checks["leaks"]["status"] == "warn"
        assert checks["leaks"]["figures"]["leaks"] == 1
        assert "clara leak-check --fix" in checks["leaks"]["fix"]
    finally:
        ok("leak-check", "--fix")


def test_a_regular_user_is_warned_about_remove_ipc_where_logind_is_installed():
    require_root()
    if not any(
        os.path.exists(p)
        for p in ("/usr/lib/systemd/systemd-logind", "/lib/systemd/systemd-logind")
    ):
        pytest.skip("systemd-logind is not installed here")
    _, _, as_root = doctor("--no-measure")
    _, _, as_user = doctor("--no-measure", prefix=tuple(as_other_user()))
    value = as_root["remove-ipc"]["figures"]["RemoveIPC"]
    if value != "yes":
        pytest.skip(f"RemoveIPC={value} on this machine")
    assert as_root["remove-ipc"]["status"] == "pass"  # root is exempt
    assert as_user["remove-ipc"]["status"] == "warn"
    assert "RemoveIPC=no" in as_user["remove-ipc"]["fix"]


def test_doctor_is_a_listed_command():
    assert "doctor" in subprocess.run([*CLARA, "--help"], capture_output=True, text=True).stdout


def test_the_c_extension_line_says_it_is_loaded_or_switched_off():
    if native.calls is None:
        pytest.skip("the C extension is not built here (CI requires it: test_native)")
    _, _, checks = doctor("--no-measure")
    check = checks["c-extension"]
    built = Path(native.calls.__file__)
    assert (check["status"], check["figures"]["state"]) == ("pass", "loaded"), check
    assert check["figures"]["file"] == str(built) and str(built) in check["message"]
    _, _, checks = doctor("--no-measure", env={"CLARA_PURE_PYTHON": "1"})
    check = checks["c-extension"]
    assert (check["status"], check["figures"]["state"]) == ("pass", "off"), check
    assert "CLARA_PURE_PYTHON=1" in check["message"] and check["figures"]["file"] is None


def _doctor_of_a_copy(tmp_path: Path, change: str) -> dict:
    """`clara doctor`'s c-extension check, run on a copy of this tree (its build included)
    after `change` to it; the exit code of a warning is 1 at least."""
    for package in (clara_core, clara_cli):
        source = Path(package.__file__).parent
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(source, tmp_path / source.name, ignore=ignore)
    shm = tmp_path / "clara_core" / "shm"
    native_py, built = shm / "native.py", next(shm.glob("_calls*.so"))
    if change == "stale":  # the sources moved on (VERSION bumped), the build did not
        native_py.write_text(native_py.read_text().replace("VERSION = ", "VERSION = 1000 + "))
    elif change == "incomplete":  # the sources take a call the build lacks
        native_py.write_text(native_py.read_text().replace('"munmap",', '"unmap_all",'))
    elif change == "unloadable":
        built.write_bytes(b"not a shared library")
    else:
        built.unlink()
    result = subprocess.run(  # (in the copy: `-m` puts the working directory first)
        [*CLARA, "--json", "doctor", "--no-measure"],
        capture_output=True,
        cwd=tmp_path,
        # (not CLARA_PURE_PYTHON: the build is what is checked, even in a pure run)
        env={**_without_pure_python(), "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert result.returncode >= 1, result.stderr  # (a warning at least)
    return checks["c-extension"]


def _without_pure_python() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "CLARA_PURE_PYTHON"}


@pytest.mark.parametrize("change", ["stale", "incomplete", "unloadable", "not built"])
def test_a_build_skipped_or_missing_is_a_warning_that_says_why(tmp_path: Path, change: str):
    if not list((Path(clara_core.__file__).parent / "shm").glob("_calls*.so")):
        pytest.skip("the C extension is not built here (CI requires it: test_native)")
    check = _doctor_of_a_copy(tmp_path, change)
    assert (check["status"], check["figures"]["state"]) == ("warn", change), check
    assert check["figures"]["file"] is None and check["fix"]
    problem = check["figures"]["problem"]
    if change == "not built":
        assert problem is None and check["message"].startswith("not built: ")
        assert "python3-dev" in check["fix"]
        return
    assert check["message"].startswith(f"built but skipped, {change}: {problem}"), check
    assert str(tmp_path) in problem  # the file skipped
    version = native.VERSION
    expected = {
        "stale": f"built from version {version} of the C sources, not {version + 1000}",
        "incomplete": "it lacks unmap_all",
        "unloadable": "file too short",
    }
    assert expected[change] in problem, problem
