"""`clara completion bash|zsh|fish`: print the shell completion script."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_CLARA_COMPLETE"


def script(shell: str) -> str:
    """The completion script for `shell` (what completions/clara.<shell> holds)."""
    from click.shell_completion import get_completion_class

    from ..main import cli

    completer = get_completion_class(shell)
    assert completer is not None, shell
    return completer(cli, {}, "clara", COMPLETE_VAR).source()


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(clara completion bash)"    (or source completions/clara.bash)
    zsh:   eval "$(clara completion zsh)"
    fish:  clara completion fish | source
    """
    click.echo(script(shell), nl=False)
