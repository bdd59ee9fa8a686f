"""How an outcome becomes a one-line message and an exit code: the ONE translation of
clara_core's errors for the command line, shared by the click group (clara_cli.main) and
the click-free fast path (clara_cli.fastpath). Imports no click.
"""

from __future__ import annotations

import os
import sys

from clara_core.errors import ClaraError

# How the command line spells the options that clara_core's error hints name.
CLI_SPELLING = {
    "allow_incomplete": "--allow-incomplete",
    "wait": "--wait",
    "timeout": "--timeout SECONDS",
}

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our stdout went away
INTERRUPTED = "clara: interrupted"


def error_line(exc: ClaraError) -> str:
    """The one line a ClaraError prints on stderr (its exit code is `exc.exit_code`)."""
    return f"clara: error: {exc.explain(CLI_SPELLING)}"


def quiet_broken_pipe() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
