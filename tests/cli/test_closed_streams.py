"""`clara ... >&-` and `<&-`: a standard stream closed when clara starts is no traceback
(Python leaves sys.stdout None then), a copy from or to it is refused on one line, and no
file clara opens ever becomes "standard output"."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from clara_core import names

from .clirun import ok, write_in

# The console script, as users run it (the interpreter then holds the script file open,
# at the lowest free number: 1 if stdout is closed), and `python -m clara_cli`.
LAUNCHERS = {
    "script": [str(Path(sys.executable).parent / "clara")],
    "module": [sys.executable, "-m", "clara_cli"],
}


def _run(launcher: str, args: list[str], redirect: str, stdin: bytes = b"") -> tuple:
    """Run clara with `redirect` (e.g. '>&-') applied by a real shell."""
    command = shlex.join([*LAUNCHERS[launcher], *args]) + " " + redirect
    result = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, timeout=60)
    return result.returncode, result.stderr.decode()


def _one_error(err: str, text: str) -> None:
    assert "Traceback" not in err, err
    assert err.strip().splitlines() == [f"clara: error: {text}"], err


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_copies_to_or_from_a_closed_stream_are_refused(ctx: str, launcher: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--dtype", "u8", "--shape", "4")
    write_in(ctx, "v", b"abcd")
    for fmt in ("raw", "npy"):
        args = ["map", "v", "-c", ctx, "--read", "--out", "-", "--format", fmt]
        code, err = _run(launcher, args, ">&-")
        assert code == 2
        _one_error(err, "cannot write standard output: Bad file descriptor")
    code, err = _run(launcher, ["map", "v", "-c", ctx, "--write", "--in", "-"], "<&-")
    assert code == 2
    _one_error(err, "cannot read standard input: Bad file descriptor")
    # Refused before anything was mapped: the data is as it was.
    assert ok("map", "v", "-c", ctx, "--read", "--out", "-").stdout == b"abcd"


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_create_allocation_with_stdout_closed_is_refused_before_it_creates(
    ctx: str, launcher: str
) -> None:
    """`clara create allocation [NAME] >&-`: its name or handle is its result, and nobody
    could learn it (a handle would stay held until leak-check): refused as a copy to a
    closed stdout is, before anything is created."""
    ok("create", "context", ctx)
    members = f"{names.context_file(ctx)}."
    for args in (
        ["create", "allocation", "-c", ctx, "--size", "4K"],  # a handle
        ["create", "allocation", "v", "-c", ctx, "--size", "4K"],
        ["--json", "create", "allocation", "v", "-c", ctx, "--size", "4K"],
    ):
        code, err = _run(launcher, args, ">&-")
        assert code == 2, args
        _one_error(err, "cannot write standard output: Bad file descriptor")
        assert [f for f in os.listdir(names.shm_dir()) if f.startswith(members)] == [], args
    assert ok("create", "allocation", "v", "-c", ctx, "--size", "4K").stdout == b"v\n"


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_output_to_a_closed_stream_is_dropped_and_a_command_gets_dev_null(
    ctx: str, launcher: str
) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--dtype", "u8", "--shape", "4")
    write_in(ctx, "v", b"abcd")
    for args in (
        ["--json", "dump", ctx],
        ["--json", "map", "v", "-c", ctx, "--read", "--out", "/dev/null"],
    ):
        code, err = _run(launcher, args, ">&-")
        assert (code, err) == (0, "")
    tell = "import os, sys; sys.stderr.write(os.readlink('/proc/self/fd/1'))"
    args = ["map", "v", "-c", ctx, "--read", "--", sys.executable, "-c", tell]
    code, err = _run(launcher, args, ">&-")
    assert (code, err) == (0, "/dev/null")
    code, err = _run(launcher, ["map", "nope", "-c", ctx, "--read", "--out", "-"], "2>&-")
    assert (code, err) == (3, "")


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_an_error_line_stderr_cannot_take_keeps_the_errors_exit_code(launcher: str) -> None:
    """stderr on a full disk, or a pipe whose reader is gone: the line is lost, but the
    exit code still says what happened (not 1, "leaks or an operator failed", as the
    traceback of the failed write made it), for the copies, clara run and click alike."""
    commands = [
        (["map", "nothing", "-c", "nothing", "--read", "--out", os.devnull], 3),  # a copy
        (["run", "/nonexistent/pipeline.yaml"], 3),  # clara run without click
        (["dump", "nothing"], 3),  # the click command line
        (["no-such-command"], 2),  # a usage error
    ]
    for args, code in commands:
        with open("/dev/full", "w") as full:
            done = subprocess.run([*LAUNCHERS[launcher], *args], stderr=full, timeout=60)
        assert done.returncode == code, (args, "stderr on /dev/full")
        reader, writer = os.pipe()
        os.close(reader)  # nobody reads stderr
        try:
            done = subprocess.run([*LAUNCHERS[launcher], *args], stderr=writer, timeout=60)
        finally:
            os.close(writer)
        assert done.returncode == code, (args, "stderr a pipe without reader")


_TINY = "api-version: 0.5.0\norchestrator: Clara\nname: tiny\noperators:\n- name: a\n" + (
    "  container:\n    command: [bash, -c, 'echo hello']\n"
)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_output_stdout_cannot_take_is_one_error_line_with_its_exit_code(
    ctx: str, launcher: str, tmp_path: Path
) -> None:
    """`clara ... > /dev/full`: out of space (7) on one line, as a copy to it says; not a
    traceback and exit code 1, as if the command itself had failed."""
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--dtype", "u8", "--shape", "4")
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text(_TINY)
    for args in (
        ["dump", ctx],
        ["--json", "dump", ctx],
        ["validate", str(pipeline)],
        ["run", str(pipeline), "--job-dir", str(tmp_path / "job1")],  # (click-free)
        ["--json", "run", str(pipeline), "--job-dir", str(tmp_path / "job2")],
    ):
        code, err = _run(launcher, args, "> /dev/full")
        assert "Traceback" not in err, (args, err)
        assert code == 7, (args, err)
        last = err.strip().splitlines()[-1]
        assert last == "clara: error: cannot write standard output: No space left on device"


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_create_allocation_whose_output_stdout_cannot_take_leaves_nothing(
    ctx: str, launcher: str
) -> None:
    """`clara create allocation [NAME] > /dev/full`: out of space (7), and the allocation
    is freed, as if create had failed: nobody learned its handle, and a script that
    retries NAME does not find it taken."""
    ok("create", "context", ctx)
    members = f"{names.context_file(ctx)}."
    for args in (
        ["create", "allocation", "v", "-c", ctx, "--size", "4K"],
        ["--json", "create", "allocation", "v", "-c", ctx, "--size", "4K"],
        ["create", "allocation", "-c", ctx, "--size", "4K"],  # a handle
    ):
        code, err = _run(launcher, args, "> /dev/full")
        assert (code, err.strip().splitlines()) == (
            7,
            ["clara: error: cannot write standard output: No space left on device"],
        ), args
        assert [f for f in os.listdir(names.shm_dir()) if f.startswith(members)] == [], args
    assert ok("create", "allocation", "v", "-c", ctx, "--size", "4K").stdout == b"v\n"


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_what_is_printed_outside_emit_ends_with_the_same_line_on_a_full_stdout(
    launcher: str, tmp_path: Path
) -> None:
    """Click's own output (--version, --help: click probes stdout with an empty write
    first, which fails on /dev/full too) and the commands that print with click.echo
    rather than emit: out of space (7) on one line, not a traceback (exit code 1)."""
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text(_TINY.replace("    command:", "    image: busybox\n    command:"))
    for args in (
        ["--version"],
        ["--help"],
        ["dump", "--help"],
        ["graph", str(pipeline)],
        ["completion", "bash"],
        ["export", str(pipeline), "--to", "argo"],
    ):
        code, err = _run(launcher, args, "> /dev/full")
        assert "Traceback" not in err, (args, err)
        assert (code, err.strip().splitlines()) == (
            7,
            ["clara: error: cannot write standard output: No space left on device"],
        ), args
        code, err = _run(launcher, args, "> /dev/null")  # the same, where it fits: fine
        assert (code, err) == (0, ""), (args, err)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_failed_job_s_account_survives_a_stdout_that_cannot_take_its_result(
    launcher: str, tmp_path: Path
) -> None:
    """`clara run FAILING > /dev/full`: stderr still says which operator failed (and where
    its logs are) before the one line about standard output, whose exit code (7) ends it."""
    pipeline = tmp_path / "failing.yaml"
    pipeline.write_text(_TINY.replace("echo hello", "exit 3"))
    code, err = _run(
        launcher, ["run", str(pipeline), "--job-dir", str(tmp_path / "job")], "> /dev/full"
    )
    assert "Traceback" not in err, err
    assert code == 7, err
    assert "operator 'a' exited with code 3" in err, err
    last = err.strip().splitlines()[-1]
    assert last == "clara: error: cannot write standard output: No space left on device"


def test_the_entry_point_called_in_process_takes_a_closed_stdout() -> None:
    """clara_cli.main.main() (the documented entry point) with Python's stdout None, as an
    embedder calls it: no launcher re-opened fd 1 on /dev/null first."""
    call = (
        "import sys; sys.argv = ['clara', *sys.argv[1:]]; from clara_cli.main import main; main()"
    )
    for args in (["--version"], ["--json", "validate", "/nonexistent.yaml"]):
        command = shlex.join([sys.executable, "-c", call, *args]) + " >&-"
        result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=60)
        assert b"Traceback" not in result.stderr, result.stderr
        assert result.returncode == (0 if args == ["--version"] else 3), result.stderr
