"""The command group itself: documentation of exit codes and commands, one-line errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import clara_core.errors as errors
from clara_cli.main import COMMANDS, EXIT_CODES_HELP, cli

from .clirun import clara, fails, ok

README = Path(__file__).resolve().parents[2] / "README.md"
OURS = ["completion", "create", "destroy", "dump", "free", "leak-check", "map", "publish"]


def cli_section() -> str:
    text = README.read_text()
    return text[text.index("<!-- cli:start -->") : text.index("<!-- cli:end -->")]


def error_classes() -> list[type[errors.ClaraError]]:
    return [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("error", error_classes(), ids=lambda e: e.__name__)
def test_every_exit_code_is_documented(error: type[errors.ClaraError]) -> None:
    code = error.exit_code
    assert re.search(rf"(^|\s){code} \w", EXIT_CODES_HELP), f"{code} missing from clara --help"
    assert f"\n| {code} |" in cli_section(), f"{code} missing from the README exit-code table"


@pytest.mark.parametrize("name", OURS)
def test_every_command_has_help_and_docs(name: str) -> None:
    assert name in COMMANDS
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: clara" in result.output
    assert f"clara {name}" in cli_section()


@pytest.mark.parametrize("group", [[], ["create"], ["destroy"]])
def test_the_lists_of_commands_say_each_one_whole(group: list[str]) -> None:
    """`clara --help` lists each command with a line of its own, not one cut at '...'."""
    text = ok(*group, "--help").stdout.decode()
    listed = text[text.index("Commands:") :].split("\n\n")[0].splitlines()[1:]
    assert listed and all(len(line.split()) > 2 for line in listed), listed
    assert [line for line in listed if line.endswith("...")] == []


def test_pipeline_contract_entries_are_kept() -> None:
    assert COMMANDS["run"] == "clara_cli.commands.pipeline:run"
    assert COMMANDS["validate"] == "clara_cli.commands.pipeline:validate"


def test_clara_error_becomes_one_line_and_its_exit_code() -> None:
    result = CliRunner().invoke(cli, ["dump", "no-such-context"])
    assert result.exit_code == 3
    assert result.stderr == "clara: error: context 'no-such-context' does not exist\n"
    assert result.stdout == ""


def test_usage_error_is_one_line_with_a_pointer_to_help() -> None:
    result = CliRunner().invoke(cli, ["create", "context"])
    assert result.exit_code == 2
    assert result.stderr == (
        "clara: error: Missing argument 'NAME'. (see 'clara create context --help')\n"
    )


def test_json_flag_works_before_and_after_the_command() -> None:
    before = CliRunner().invoke(cli, ["--json", "dump"])
    after = CliRunner().invoke(cli, ["dump", "--json"])
    assert before.exit_code == after.exit_code == 0
    assert before.stdout == after.stdout == '{\n  "contexts": []\n}\n'


@pytest.mark.parametrize(
    "args",
    [
        ["graph", "examples/ct-smooth.yaml"],
        ["completion", "bash"],
        ["export", "examples/ct-smooth.yaml", "--to", "k8s-job"],
        ["exec-operator", "--", "true"],
    ],
    ids=lambda args: args[0],
)
def test_the_group_s_json_is_refused_by_a_command_that_prints_none(args: list[str]) -> None:
    """Not its own format on stdout under a flag that promised JSON (a script parsing it
    would fail later, and less clearly): exit 2 at once, as `clara graph FILE --json` is."""
    root = str(README.parent)
    line = fails(2, "--json", *[f"{root}/{arg}" if arg.endswith(".yaml") else arg for arg in args])
    command = args[0]
    assert line == f"clara: error: 'clara {command}' prints no JSON: drop --json " + (
        f"(see 'clara {command} --help')"
    )


@pytest.mark.parametrize("value", ["abc", "-1", "inf"])
def test_a_bad_lock_timeout_setting_fails_every_command_at_once(value: str, ctx: str) -> None:
    """The core reads $CLARA_LOCK_TIMEOUT only when a lock is busy; the command line checks
    it at start, so a bad value cannot hide until the first contended lock."""
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--size", "4K")
    env = {"CLARA_LOCK_TIMEOUT": value}
    for args in (("dump",), ("map", "v", "-c", ctx, "--read", "--out", "-")):  # click; fast path
        result = clara(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.decode() == (
            f"clara: error: invalid CLARA_LOCK_TIMEOUT '{value}': use seconds >= 0, e.g. 10\n"
        )
    assert ok("dump", env={"CLARA_LOCK_TIMEOUT": "2.5"}).stdout


@pytest.mark.parametrize("value", ["nosuchuser", "-5"])
def test_a_bad_context_owner_setting_fails_every_command_at_once(value: str, ctx: str) -> None:
    """$CLARA_CONTEXT_OWNER is read only where a context is opened by name: `dump CTX`
    took a bad one silently (exit 0) while `map` refused it. Now every command refuses it
    at start, in one line, exit 2."""
    ok("create", "context", ctx)
    ok("create", "allocation", "v", "-c", ctx, "--size", "4K")
    env = {"CLARA_CONTEXT_OWNER": value}
    for args in (("dump", ctx), ("map", "v", "-c", ctx, "--read", "--out", "-")):
        result = clara(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.decode() == (
            f"clara: error: invalid CLARA_CONTEXT_OWNER '{value}': no such user (give a uid "
            "or a user name)\n"
        )
    assert ok("dump", ctx, env={"CLARA_CONTEXT_OWNER": str(os.geteuid())}).stdout
