"""The `clara` command group: lazy sub-commands, the global --json flag, and the place
where clara_core's errors become a one-line message (spelled by clara_cli.exits, which the
click-free fast path of clara_cli.fastpath shares) and an exit code.

Exit codes: 0 ok · 1 leaks found, or an operator command failed · 2 usage or invalid input
· 3 not found · 4 busy · 5 timeout · 6 incomplete data · 7 out of space
· 8 permission denied · 9 corrupt segment · 10 already exists.
`clara map NAME -- CMD` exits with CMD's status (126/127: CMD cannot be run, like env(1)).
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from clara_core import __version__
from clara_core.errors import ClaraError, InvalidArgument

from .exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    StdoutWriteError,
    check_stdout,
    error_line,
    quiet_broken_pipe,
    report,
)
from .options import SuggestingGroup

# name -> "module:attribute". A command's module is imported only when that command runs
# (or when help or completion lists it), so `clara publish` never pays for numpy or rich.
COMMANDS = {
    "completion": "clara_cli.commands.completion:completion",
    "create": "clara_cli.commands.create:create",
    "destroy": "clara_cli.commands.destroy:destroy",
    "doctor": "clara_cli.commands.doctor:doctor",
    "dump": "clara_cli.commands.dump:dump",
    "exec-operator": "clara_cli.commands.exec_operator:exec_operator",
    "export": "clara_cli.commands.export:export",
    "free": "clara_cli.commands.free:free",
    "graph": "clara_cli.commands.graph:graph",
    "leak-check": "clara_cli.commands.leaks:leak_check",
    "map": "clara_cli.commands.map:map_command",
    "publish": "clara_cli.commands.publish:publish",
    "run": "clara_cli.commands.pipeline:run",
    "top": "clara_cli.commands.top:top",
    "validate": "clara_cli.commands.pipeline:validate",
}

EXIT_CODES_HELP = """\b
Environment:
  CLARA_NAMESPACE      prefix of every segment name (default: clara)
  CLARA_CONTEXT        the context of commands given no --context/-c
  CLARA_SHM_DIR        the tmpfs holding the segments (default: /dev/shm)
  CLARA_LOCK_TIMEOUT   seconds to wait for a bookkeeping lock (default: 10)
  CLARA_CONTEXT_OWNER  the owner of the contexts you join: a uid or user name
  CLARA_PURE_PYTHON    1: every system call from Python, not the C extension
  NO_COLOR             tables on a terminal without colour or any other style

\b
Exit codes:
  0 ok              1 leaks found / operator failed   2 usage or invalid input
  3 not found       4 busy                            5 timeout
  6 incomplete      7 out of space                    8 permission denied
  9 corrupt        10 already exists
`clara map NAME -- CMD` exits with CMD's status; 1 also: a system error
with no code of its own (its line names it).
"""


class ClaraGroup(SuggestingGroup):
    """A group whose commands load lazily and whose errors exit with documented codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in sorted(COMMANDS) if self.get_command(ctx, name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # not built yet
            raise
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context) -> None:
        try:
            super().invoke(ctx)
        except ClaraError as exc:
            report(error_line(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            report(INTERRUPTED)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `clara map x --read --out - | head`: not an error
            quiet_broken_pipe()
            ctx.exit(EXIT_BROKEN_PIPE)
        # The group returns nothing, so that main() can tell an exit code from a result.

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode every outcome is one exit code.

        Usage errors are one line on stderr (not click's usage block), like ClaraErrors.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        check_stdout()  # a stdout that cannot take what click prints: one line too
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
            if sys.stdout is not None:  # (None: Python started with fd 1 closed)
                sys.stdout.flush()  # (its failure here, not in the interpreter's last flush)
        except StdoutWriteError as exc:  # (a full disk: what emit says, with its exit code)
            from .render import stdout_failed  # (only now: not every command renders)

            error = stdout_failed(exc)
            report(error_line(error))
            _exit(error.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:
            report(exc.ctx.get_help() if exc.ctx else exc.format_message())
            _exit(2)
        except click.ClickException as exc:
            report(f"clara: error: {_one_line(exc)}")
            _exit(exc.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt):
            report(INTERRUPTED)
            _exit(EXIT_INTERRUPTED)
        _exit(code if isinstance(code, int) else 0)


def _one_line(exc: click.ClickException) -> str:
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _exit(code: int) -> NoReturn:
    # Every object left is ours and dies with the process: the cyclic garbage collector
    # need not walk them all again at exit (10-30 ms after `clara run`'s last operator).
    gc.freeze()
    sys.exit(code)


@click.group("clara", cls=ClaraGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="clara")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """clara: typed POSIX shared memory for multi-process pipelines."""
    ctx.ensure_object(dict)["json"] = as_json
    name = ctx.invoked_subcommand
    if as_json and name and not ctx.resilient_parsing:
        command = ctx.command.get_command(ctx, name)  # type: ignore[attr-defined]
        leaf = isinstance(command, click.Command) and not isinstance(command, click.Group)
        if leaf and not any("--json" in param.opts for param in command.params):
            # (its own format on stdout: a script parsing it as JSON would fail later)
            raise InvalidArgument(
                f"'clara {name}' prints no JSON: drop --json (see 'clara {name} --help')"
            )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="clara")


if __name__ == "__main__":
    sys.exit(main())
