"""`clara map NAME (--read | --write)`: copy data out or in, or run a command on the map."""

from __future__ import annotations

import os

import click

from .. import copying
from ..complete import complete_names_or_handles
from ..options import context_option, json_option, wants_json
from ..render import emit
from ..target import Target


@click.command("map", short_help="Copy data in or out of an allocation, or run CMD on it.")
@click.argument("name", metavar="NAME|HANDLE", shell_complete=complete_names_or_handles)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS...]]")
@click.option("--read", "read", is_flag=True, help="Map for reading (many readers at once).")
@click.option("--write", "write", is_flag=True, help="Map for writing (one writer, no readers).")
@click.option(
    "--handle",
    is_flag=True,
    help="NAME is the handle of a private allocation (fill it before `clara publish`).",
)
@context_option
@click.option(
    "--wait",
    is_flag=True,
    help="With --read: wait until NAME is published and a writer has finished writing it "
    "(up to --timeout, default 60 s).",
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Wait this long for a conflicting map to go (inf: as long as it takes); "
    "default: fail at once (busy). With --wait: how long to wait in all.",
)
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Read data that was never written, or whose writer failed.",
)
@click.option("--in", "in_path", metavar="FILE|-", help="Copy FILE (- : stdin) in (--write).")
@click.option("--out", "out_path", metavar="FILE|-", help="Copy the data to FILE (- : stdout).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "npy", "txt"]),
    default="raw",
    show_default=True,
    help="raw bytes, .npy (carries dtype and shape), or numpy's text form (1-D, 2-D).",
)
@json_option
def map_command(
    name: str,
    command: tuple[str, ...],
    read: bool,
    write: bool,
    handle: bool,
    context_name: str | None,
    wait: bool,
    timeout: float | None,
    allow_incomplete: bool,
    in_path: str | None,
    out_path: str | None,
    fmt: str,
) -> None:
    """Map the allocation NAME and copy data in (--in) or out (--out), or run CMD on it.

    \b
    CMD runs while the map is held, with in its environment:
      CLARA_MAP_PATH    a file to open the data at (e.g. with numpy.memmap)
      CLARA_MAP_OFFSET  where the data starts in that file, in bytes
      CLARA_MAP_NBYTES  size of the data in bytes
      CLARA_MAP_DTYPE   element type (numpy's name, e.g. float32)
      CLARA_MAP_SHAPE   dimensions, comma-separated
      CLARA_MAP_MODE    r or w
    clara exits with CMD's status; if CMD fails or is killed while writing, the data
    is marked incomplete (readers then get exit code 6).

    \b
    A reader started before its producer waits for it with --wait:
      producer.sh &  clara map volume --read --wait --out volume.raw
    """
    mode = _mode(read, write)
    _check_usage(mode, command, in_path, out_path, fmt, wait)
    target = Target(context_name, name, handle, wait, timeout)
    if in_path is not None:
        emit(copying.copy_in(target, in_path, fmt), lambda: None)
    elif out_path is not None:
        emit(copying.copy_out(target, out_path, fmt, allow_incomplete), lambda: None)
    else:
        _run(target, mode, command, allow_incomplete)


def _mode(read: bool, write: bool) -> str:
    if read == write:
        raise click.UsageError("give exactly one of --read and --write")
    return "r" if read else "w"


def _check_usage(
    mode: str,
    command: tuple[str, ...],
    in_path: str | None,
    out_path: str | None,
    fmt: str,
    wait: bool,
) -> None:
    given = [what for what, v in (("--in", in_path), ("--out", out_path), ("CMD", command)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --in FILE, --out FILE and -- CMD")
    if in_path is not None and mode != "w":
        raise click.UsageError("--in copies data in: it needs --write")
    if out_path is not None and mode != "r":
        raise click.UsageError("--out copies data out: it needs --read")
    if command and fmt != "raw":
        raise click.UsageError("--format applies to --in and --out, not to -- CMD")
    if out_path == "-" and wants_json():
        raise click.UsageError("--out - writes the data to stdout: it cannot go with --json")
    if wait and mode != "r":
        raise click.UsageError("--wait waits for data to read: it needs --read")


def _run(target: Target, mode: str, command: tuple[str, ...], allow_incomplete: bool) -> None:
    from .. import child

    executable = child.resolve(command)
    with target.open(mode) as allocation:
        mapping = target.map(allocation, mode, allow_incomplete=allow_incomplete)
        status = 1
        try:
            env = dict(os.environ)
            env.update(
                CLARA_CONTEXT=allocation.context.name,
                CLARA_MAP_PATH=mapping.path,
                CLARA_MAP_OFFSET=str(mapping.offset),
                CLARA_MAP_NBYTES=str(mapping.nbytes),
                CLARA_MAP_DTYPE=mapping.etype.name,
                CLARA_MAP_SHAPE=",".join(str(d) for d in mapping.shape),
                CLARA_MAP_MODE=mode,
            )
            status = child.run(command, executable, env)
        finally:
            mapping.unmap(complete=status == 0)
        data = copying.summary(allocation, mode, command=list(command), exit_code=status)
    emit(data, lambda: None)
    if status:
        click.get_current_context().exit(status)
