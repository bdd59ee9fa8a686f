"""Live inspection that tells the truth, and one style across commands: through real
`clara` commands, in a pipe and on a real terminal (tmux)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from tests.helpers import Child

from .clirun import CLARA, clara, data, fails, ok

LONG = "x" * 120  # an argument no 80-column table can show whole


def on_terminal(*args: str, width: int = 80, env: dict[str, str] | None = None) -> str:
    """Run `clara ARGS` in a tmux pane `width` columns wide; what the pane shows (escape
    sequences included)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    socket = f"clara-test-{uuid.uuid4().hex[:8]}"
    variables = {
        "PATH": os.environ["PATH"],
        "CLARA_NAMESPACE": os.environ["CLARA_NAMESPACE"],
        "TERM": "xterm-256color",
        **(env or {}),
    }
    command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in variables.items()), *CLARA, *args])
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            str(width),
            "-y",
            "40",
            f"{command}; echo @@END; sleep 60",
        ],
        check=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = subprocess.run(
                [*tmux, "capture-pane", "-p", "-e"], capture_output=True, text=True
            ).stdout
            if "@@END" in shown:
                return shown.split("@@END")[0]
            time.sleep(0.1)
        raise AssertionError(f"clara {' '.join(args)} did not finish on the terminal")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def plain(text: str) -> list[str]:
    """Lines of terminal output without escape sequences or trailing blanks."""
    return [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in text.splitlines()]


def reader(ctx: str, *extra: str) -> subprocess.Popen:
    """`clara map v --read -- sh -c 'echo held; sleep 60' EXTRA...`, once it holds the map."""
    process = subprocess.Popen(
        [*CLARA, "map", "v", "-c", ctx, "--read", "--", "sh", "-c", "echo held; sleep 60", *extra],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"held\n"
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def test_dump_tells_a_held_map_from_an_idle_mapping(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--in", "-", input=b"data")
    idle = Child(
        f"""
        import time
        from clara_core import Context
        ref = Context.open({ctx!r}).get("v")
        with ref.map("w") as array:
            array[:] = 1
            del array  # a small mapping whose view outlives the map is not kept
        print("idle", flush=True)  # unmapped, but the reference keeps its mapping
        time.sleep(60)
        """
    )
    holder = None
    try:
        idle.expect("idle")
        holder = reader(ctx, "--", LONG)
        [row] = data("dump", ctx)["allocations"]
        users = {m["pid"]: m for m in row["mapped_by"]}
        assert users[idle.pid]["mode"] is None  # no lock: an idle mapping
        assert users[idle.pid]["command"].startswith("python -c import time")
        assert users[holder.pid]["mode"] == "read"
        # its whole command line: `python -m clara_cli` here, `clara` when run as clara
        command = f"python -m clara_cli map v -c {ctx} --read -- sh -c echo held; sleep 60 -- "
        assert users[holder.pid]["command"] == command + LONG
        assert row["map_mode"] == "read"
        table = ok("dump", ctx).stdout.decode()
        assert f"pid {idle.pid} [idle mapping] python -c" in table
        assert f"pid {holder.pid} [read] " in table and LONG in table  # piped: whole
        line = fails(4, "map", "v", "-c", ctx, "--write", "--in", "-", input=b"data")
        assert f"pid {holder.pid} (" in line and f"pid {idle.pid} " not in line
    finally:
        idle.kill()
        if holder is not None:
            stop(holder)


def test_dump_takes_the_context_like_every_command(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "context", "other")
    try:
        ok("create", "allocation", "v", "-c", ctx, "--in", "-", input=b"abc")
        by_option = data("dump", "-c", ctx)
        by_variable = data("dump", env={"CLARA_CONTEXT": ctx})
        for dumped in (by_option, by_variable):
            assert dumped["context"]["name"] == ctx
            assert [a["name"] for a in dumped["allocations"]] == ["v"]
        assert data("dump", "-c", ctx, "v")["allocation"]["name"] == "v"
        assert data("dump", "-c", ctx, "v", "--values")["values"] == [97, 98, 99]
        everything = data("dump", "--all", env={"CLARA_CONTEXT": ctx})["contexts"]
        assert sorted(c["name"] for c in everything) == sorted([ctx, "other"])
        assert data("dump", "other", env={"CLARA_CONTEXT": ctx})["context"]["name"] == "other"
        fails(2, "dump", "-c", ctx, "v", "extra")
        # the argument is a context; one that is an allocation of $CLARA_CONTEXT says so
        line = fails(3, "dump", "v", env={"CLARA_CONTEXT": ctx})
        assert line.endswith(f"run `clara dump -c {ctx} v`")
        assert "run `" not in fails(3, "dump", "w", env={"CLARA_CONTEXT": ctx})
        line = fails(2, "dump", "v", "--values", env={"CLARA_CONTEXT": ctx})  # the same hint
        assert f"run `clara dump -c {ctx} v --values`" in line
    finally:
        ok("destroy", "context", "other")


def test_an_empty_namespace_or_context_says_so(ctx: str, namespace: str) -> None:
    empty = clara("dump")
    assert empty.returncode == 0 and empty.stdout == b""
    assert empty.stderr.decode() == f"clara: no contexts in namespace '{namespace}'\n"
    ok("create", "context", ctx)
    none = clara("dump", ctx)
    assert none.stdout == b"" and f"no allocations in context '{ctx}'" in none.stderr.decode()


def test_leak_check_json_has_nulls_and_pids_as_fields(ctx: str) -> None:
    ok("create", "context", ctx, "--owner-pid", str(os.getpid()))
    handle = ok("create", "allocation", "-c", ctx, "--size", "4K").stdout.decode().strip()
    ok("create", "allocation", "v", "-c", ctx, "--in", "-", input=b"abcd")
    holder = reader(ctx)
    try:
        report = data("leak-check")
    finally:
        stop(holder)
    found = {(f["kind"], f["name"]): f for f in report["findings"]}
    context = found["context", None]  # null, not ""
    assert context["owner_pid"] == os.getpid() and context["holder_pid"] is None
    assert found["handle", handle]["holder_pid"] == os.getpid()
    assert found["handle", handle]["owner_pid"] == os.getpid()
    [mapper] = found["published", "v"]["mapped_by"]
    assert mapper["pid"] == holder.pid and mapper["mode"] == "read"
    assert mapper["command"].endswith("--read -- sh -c echo held; sleep 60")
    assert "" not in [value for f in report["findings"] for value in f.values()]
    # the table lists what is not simply live; --all lists everything
    listed = ok("leak-check").stdout.decode().splitlines()
    assert listed == []
    notes = clara("leak-check").stderr.decode()
    assert "3 live segment(s) not listed (--all lists them)" in notes
    rows = ok("leak-check", "--all").stdout.decode().splitlines()
    assert rows[0].split() == ["STATUS", "KIND", "CONTEXT", "NAME", "MEMORY", "AGE", "REASON"]
    assert len(rows) == 4
    assert any(row.split()[4:6] == ["8.0", "KiB"] for row in rows)  # 4 KiB + header page


def test_tables_on_a_terminal_fit_80_columns_and_cut_long_commands(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--in", "-", input=b"data")
    holder = reader(ctx, "--", LONG)
    try:
        shown = plain(on_terminal("dump", ctx, env={"NO_COLOR": "1"}))
        coloured = on_terminal("dump", ctx)
    finally:
        stop(holder)
    header = [line for line in shown if line.lstrip().startswith("NAME")]
    assert header and header[0].split() == [
        *["NAME", "KIND", "DTYPE", "SHAPE", "DATA", "STATE", "AGE", "MAPPED-BY"]
    ]
    [row] = [line for line in shown if line.lstrip().startswith("v ")]
    assert f"pid {holder.pid} [read] p" in row
    assert row.endswith("…") and LONG not in "".join(shown)  # cut, on one line
    assert all(len(line) <= 80 for line in shown)
    assert "\x1b[" in coloured  # colour where allowed: the state 'complete' in green
    assert "\x1b[" not in on_terminal("dump", ctx, env={"NO_COLOR": "1"})


def test_leak_check_on_a_terminal_keeps_each_finding_on_one_line(bin_dir) -> None:
    from .clirun import run_script

    script = run_script(
        """
        clara create context job --owner-pid $$ >/dev/null
        clara create allocation vol -c job --size 4K >/dev/null
        """,
        bin_dir,
    )
    assert script.returncode == 0, script.stderr
    try:
        shown = plain(on_terminal("leak-check", env={"NO_COLOR": "1"}))
        coloured = on_terminal("leak-check")
    finally:
        ok("leak-check", "--fix")
    rows = [line for line in shown if "owner-dead*" in line]
    assert len(rows) == 2 and all(len(line) <= 80 for line in shown)
    assert all(re.search(r" owner \d+ exited$", row) for row in rows)  # one line each, whole
    assert "\x1b[" in coloured  # leaks in red
