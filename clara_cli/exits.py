"""How an outcome becomes a one-line message and an exit code: the ONE translation of
clara_core's errors for the command line, shared by the click group (clara_cli.main) and
the click-free fast path (clara_cli.fastpath). Imports no click.
"""

from __future__ import annotations

import io
import os
import sys

from clara_core.errors import ClaraError

TYPE_CHECKING = False  # as typing's, without importing it (nor collections: a copy's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

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


def exit_code_of(action: Callable[[], int]) -> int:
    """`action()`'s exit code, or the one its failure means, reported as the click group
    reports it (clara_cli.main): a ClaraError's one line, ^C, a reader of stdout gone."""
    try:
        return action()
    except ClaraError as exc:
        report(error_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        report(INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `clara map x --read --out - | head`: not an error
        quiet_broken_pipe()
        return EXIT_BROKEN_PIPE


def report(line: str) -> None:
    """Write one line on stderr (see write_stderr)."""
    write_stderr(line + "\n")


def write_stderr(text: str) -> None:
    """Write `text` on stderr. If stderr cannot take it (a full disk, a reader gone), the
    text is lost but the exit code still says what happened: stderr is pointed at
    /dev/null, so that neither this nor the interpreter's last flush fails (which
    would end the process with a traceback and exit code 1 or 120, as if it had failed)."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # (ValueError: stderr was closed)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def quiet_broken_pipe() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class StdoutWriteError(OSError):
    """A write or flush of sys.stdout that failed (see `check_stdout`): the command line's
    one place for errors ends with `render.stdout_failed`'s line for it. Only raised: a
    caller that handles it (click probes the stream with an empty write) loses nothing."""


class _CheckedStdout(io.TextIOWrapper):
    """sys.stdout whose failed write or flush is a StdoutWriteError, whatever printed
    (click, rich). BrokenPipeError passes: a reader gone is not an error
    (quiet_broken_pipe)."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutWriteError(exc.errno, exc.strerror) from exc

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutWriteError(exc.errno, exc.strerror) from exc


def check_stdout() -> None:
    """Replace sys.stdout by a `_CheckedStdout` on the same buffer, so that a failed write
    of what is printed outside emit (click's --help and --version, `clara graph`, `clara
    completion`) is told from any other OSError and ends as emit's output does: one line
    and its exit code (`render.stdout_failed`), not a traceback."""
    stdout = sys.stdout
    if type(stdout) is not io.TextIOWrapper:  # (checked already, or a test's capture)
        return
    stdout.flush()  # (nothing written yet: this wrapper is left with nothing buffered)
    checked = _CheckedStdout(
        stdout.buffer,
        encoding=stdout.encoding,
        errors=stdout.errors,
        line_buffering=stdout.line_buffering,
        write_through=stdout.write_through,
    )
    checked.replaced = stdout  # (its death would close the buffer both share)
    sys.stdout = checked


# Standard streams (0, 1, 2) that were closed when clara started (see reserve_standard_fds).
closed_at_start: frozenset[int] = frozenset()


def reserve_standard_fds() -> None:
    """Give /dev/null to each of fds 0, 1 and 2 that was closed when clara started
    (`clara ... >&-`), as daemons do.

    Else the next file clara opens takes that number (the interpreter's script already
    has, when it found it free): a segment or the shared-memory directory would then be
    "standard output". Messages to a closed stream are dropped (as click drops them); a
    copy from or to one (`--in -`, `--out -`) is refused, and a child gets /dev/null.
    """
    global closed_at_start
    streams = (sys.stdin, sys.stdout, sys.stderr)  # None: closed when Python started
    closed = {fd for fd, stream in enumerate(streams) if stream is None}
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    if not closed:
        return
    closed_at_start = frozenset(closed)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in closed:
        if fd != null:
            os.dup2(null, fd)  # inheritable, as a standard stream is
    if null not in closed:
        os.close(null)
    else:
        os.set_inheritable(null, True)
    sys.stdin = sys.stdin or open(0, closefd=False)  # noqa: SIM115 (lives as the process)
    sys.stdout = sys.stdout or open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = sys.stderr or open(2, "w", closefd=False)  # noqa: SIM115


def check_settings() -> None:
    """Check at start the settings clara_core reads only when it needs them.

    `$CLARA_LOCK_TIMEOUT` is read only when a lock is busy (reading the environment on
    every lock costs the hot path): a bad value would otherwise pass unnoticed until the
    first contended lock, under load. `$CLARA_CONTEXT_OWNER` is read only where a context
    is opened by name: `dump` and `top` would take a bad one silently. InvalidArgument if
    either is not valid.
    """
    if os.environ.get("CLARA_LOCK_TIMEOUT"):
        from clara_core.shm.locks import default_wait

        default_wait()
    owner = os.environ.get("CLARA_CONTEXT_OWNER")
    if owner:  # (read where a context is opened: `dump`, `top` never would)
        from clara_core.errors import InvalidArgument
        from clara_core.shm.trust import uid_of

        try:
            uid_of(owner)
        except InvalidArgument:
            raise InvalidArgument(
                f"invalid CLARA_CONTEXT_OWNER {owner!r}: no such user (give a uid or a user name)"
            ) from None
