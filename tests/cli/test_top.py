"""`clara top`: one frame when not on a terminal; live in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from .clirun import CLARA, fails, ok, write_in

ROWS = 4 * 1024  # float32 [32, 32]


def row(screen: str, name: str) -> str:
    """The line of allocation `name` in a frame ('' if absent)."""
    return next((line for line in screen.splitlines() if f" {name} " in f" {line} "), "")


# -- not a terminal -----------------------------------------------------------------------


def test_not_a_terminal_prints_one_frame_and_exits(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "f32", "--shape", "32,32")
    result = ok("top", timeout=30)  # stdout is a pipe: no live view, no waiting
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"namespace {os.environ['CLARA_NAMESPACE']} · ")
    assert "1 context(s), 1 allocation(s), 0 leak(s)" in lines[0]
    assert "\x1b[" not in result.stdout.decode()
    cells = row(result.stdout.decode(), "vol").split()
    assert cells == [ctx, "vol", "published", "float32", "32,32", "4.0", "KiB", "empty",
                     "none", "-", "live"]  # fmt: skip
    # its columns are named as `clara dump` names the same things (DATA a size, not a state)
    headers = [line.split() for line in lines if line.startswith("CONTEXT ")]
    contexts = ok("dump").stdout.decode().splitlines()[0].split()
    allocations = ok("dump", ctx).stdout.decode().splitlines()[0].split()
    assert headers[0] == [c for c in contexts if c != "AGE"]
    assert headers[1] == ["CONTEXT", "NAME", "KIND", "DTYPE", "SHAPE", "DATA", "STATE", "LOCK",
                          "MAPPED-BY", "STATUS"]  # fmt: skip
    assert set(allocations) - {"AGE"} <= set(headers[1])
    ok("destroy", "context", ctx)


def test_json_frame_and_leaks(ctx: str, tmp_path) -> None:
    ok("create", "context", ctx)
    script = " ".join([*CLARA, "create", "context", "gone", "--owner-pid", "$$"])
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)  # owner exits
    try:
        frame = json.loads(ok("top", "--json").stdout)
        assert frame["leaks"] == 1
        statuses = {c["name"]: c["leak_status"] for c in frame["contexts"]}
        assert statuses == {ctx: "idle", "gone": "owner-dead"}
        assert frame["shm_bytes"] >= frame["shm_free_bytes"] > 0
        focused = json.loads(ok("top", "--json", "-c", ctx).stdout)
        assert [c["name"] for c in focused["contexts"]] == [ctx] and focused["leaks"] == 0
    finally:
        ok("leak-check", "--fix")
        ok("destroy", "context", ctx)


def test_bad_options_are_one_line_errors() -> None:
    fails(3, "top", "-c", "nosuch")
    fails(2, "top", "--interval", "0")
    fails(2, "top", "--interval", "nan")
    fails(2, "top", "-c", "bad/name")


# -- a real terminal ----------------------------------------------------------------------


class Terminal:
    """A shell in a detached tmux session of its own (its own server socket)."""

    def __init__(self) -> None:
        self.socket = f"clara-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-x", "200", "-y", "50", "bash --norc --noprofile")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, what: str, test: Callable[[str], bool], limit: float = 30.0) -> str:
        """The screen once `test(screen)` holds; fails showing the screen after `limit` s."""
        deadline = time.monotonic() + limit
        while True:
            screen = self.screen()
            if test(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"never saw {what}; the terminal shows:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing in CI (.ci/run installs it)")
        pytest.skip("tmux is not installed: `clara top` needs a real terminal to be tested")
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


def start_top(terminal: Terminal, *args: str) -> None:
    command = " ".join([*CLARA, "top", "--interval", "0.2", *args])
    terminal.type(
        f"export CLARA_NAMESPACE={os.environ['CLARA_NAMESPACE']} PS1='$ '; clear; "
        f"{command}; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon\\|-\\?echo'",
        "Enter",
    )
    terminal.wait_for("clara top's frame", lambda s: "clara top · namespace" in s)


def map_in_background(ctx: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLARA, "map", "vol", "-c", ctx, f"--{mode}", "--", "sleep", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # clara map passes it on to CMD and lets go
    process.wait(timeout=30)


def assert_left_cleanly(terminal: Terminal) -> None:
    screen = terminal.wait_for("the shell again", lambda s: "EXIT=" in s and "echo" in s)
    assert "EXIT=0" in screen
    assert "clara top ·" not in screen  # the alternate screen is gone, the shell is back
    modes = screen.split("EXIT=0", 1)[1].split()
    assert "icanon" in modes and "echo" in modes, screen  # not left in cbreak mode


def test_live_rows_follow_readers_and_writers_and_q_quits(terminal: Terminal, ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--dtype", "f32", "--shape", "32,32")
    write_in(ctx, "vol", bytes(ROWS))
    start_top(terminal)
    screen = terminal.wait_for("vol, complete", lambda s: "complete" in row(s, "vol"))
    assert row(screen, "vol").split()[-3:] == ["none", "-", "live"]

    reader = map_in_background(ctx, "read")
    try:
        # Its reference shows before its map: wait for both (the wait fails if never).
        terminal.wait_for(
            "a reader",
            lambda s: all(f" {word} " in row(s, "vol") for word in (str(reader.pid), "read")),
        )
    finally:
        stop(reader)
    terminal.wait_for("the reader gone", lambda s: f"{reader.pid} " not in row(s, "vol"))

    writer = map_in_background(ctx, "write")
    try:  # the same for a writer
        terminal.wait_for(
            "a writer",
            lambda s: all(
                f" {word} " in row(s, "vol") for word in (str(writer.pid), "write", "writing")
            ),
        )
    finally:
        stop(writer)
    screen = terminal.wait_for("the writer gone", lambda s: f"{writer.pid} " not in row(s, "vol"))
    line = row(screen, "vol")
    assert " incomplete " in line and " none " in line  # stopped mid-write, lock let go

    terminal.type("q")
    assert_left_cleanly(terminal)
    ok("destroy", "context", ctx)


def test_focus_on_a_context_that_appears_later_and_ctrl_c_quits(
    terminal: Terminal, ctx: str
) -> None:
    start_top(terminal, "-c", ctx)
    terminal.wait_for("the missing context", lambda s: "does not exist (yet)" in s)
    ok("create", "context", ctx)
    ok("create", "allocation", "vol", "-c", ctx, "--size", "4K")
    ok("create", "context", "other")
    try:
        screen = terminal.wait_for("the context", lambda s: bool(row(s, "vol")))
        assert "other" not in screen and f"context {ctx}" in screen
        terminal.type("C-c")
        assert_left_cleanly(terminal)
    finally:
        ok("destroy", "context", "other")
        ok("destroy", "context", ctx)
