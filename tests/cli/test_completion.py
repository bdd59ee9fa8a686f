"""Shell completion: the committed scripts are current, names come from the live registry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .clirun import CLARA, fails, ok

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completion_scripts_are_current(shell: str) -> None:
    generated = ok("completion", shell).stdout.decode()
    committed = (COMPLETIONS / f"clara.{shell}").read_text()
    assert generated == committed, (
        f"completions/clara.{shell} is stale: regenerate it with "
        f"`clara completion {shell} > completions/clara.{shell}`"
    )
    assert "_CLARA_COMPLETE" in generated


def test_unknown_shell_exits_2_naming_the_shells() -> None:
    line = fails(2, "completion", "tcsh")
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in line
    assert ok("completion", "bash").stdout  # the same command with a known shell works


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash would offer for the command line `words` (the last word is being typed)."""
    parts = words.split(" ")
    result = subprocess.run(
        CLARA,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            **(env or {}),
            "_CLARA_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_commands_complete() -> None:
    assert {"create", "dump", "map", "leak-check"} <= set(complete("clara "))
    assert complete("clara leak") == ["leak-check"]


def test_context_names_complete_from_the_registry(ctx: str) -> None:
    assert complete("clara dump ") == []
    ok("create", "context", ctx)
    ok("create", "context", "Other")
    try:
        assert sorted(complete("clara dump ")) == sorted([ctx, "Other"])
        assert complete("clara dump oth") == ["Other"]  # names are case-insensitive
        assert complete(f"clara map vol -c {ctx[:3]}") == [ctx]
        assert complete("clara destroy context O") == ["Other"]
    finally:
        ok("destroy", "context", "Other")


def test_allocation_names_complete_within_the_context(ctx: str) -> None:
    ok("create", "context", ctx)
    for name in ("volume", "spacing", "Vectors"):
        ok("create", "allocation", name, "-c", ctx, "--size", "8")
    assert sorted(complete(f"clara dump {ctx} ")) == ["Vectors", "spacing", "volume"]
    assert sorted(complete(f"clara map -c {ctx} v")) == ["Vectors", "volume"]
    assert complete("clara free sp", env={"CLARA_CONTEXT": ctx}) == ["spacing"]
    assert complete("clara map vol", env={"CLARA_CONTEXT": "no-such-context"}) == []


def test_handles_complete_for_publish(ctx: str) -> None:
    ok("create", "context", ctx)
    handle = ok("create", "allocation", "-c", ctx, "--size", "8").stdout.decode().strip()
    assert complete(f"clara publish -c {ctx} ") == [handle]


def test_handles_complete_after_handle_and_dtypes_after_dtype(ctx: str) -> None:
    ok("create", "context", ctx)
    ok("create", "allocation", "named", "-c", ctx, "--size", "8")
    handle = ok("create", "allocation", "-c", ctx, "--size", "8").stdout.decode().strip()
    assert complete(f"clara free -c {ctx} --handle ") == [handle]
    assert complete(f"clara free -c {ctx} ") == ["named"]
    assert complete(f"clara map -c {ctx} --handle ") == [handle]
    dtypes = complete("clara create allocation x --dtype ")
    assert {"u8", "i16", "f32", "c128", "bool", "float32", "uint64"} <= set(dtypes)
    assert complete("clara create allocation x --dtype flo") == ["float16", "float32", "float64"]
