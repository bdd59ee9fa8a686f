"""`clara map NAME (--read | --write)`: copy data out or in, or run a command on the map."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..complete import complete_names_or_handles
from ..options import context_option, json_option, wants_json
from ..render import emit
from ..target import Target

if TYPE_CHECKING:
    from clara_core import Allocation


@click.command("map")
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
        _copy_in(target, in_path, fmt)
    elif out_path is not None:
        _copy_out(target, out_path, fmt, allow_incomplete)
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


def _summary(allocation: Allocation, mode: str, **extra: object) -> dict:
    return {
        "context": allocation.context.name,
        "name": allocation.name,
        "handle": allocation.handle,
        "mode": "write" if mode == "w" else "read",
        "dtype": allocation.element_type.name,
        "shape": list(allocation.shape),
        "nbytes": allocation.nbytes,
        **extra,
    }


def _copy_in(target: Target, path: str, fmt: str) -> None:
    from .. import formats, transfer

    with transfer.open_input(path) as stream:
        incoming = formats.read_head(stream, path, fmt)
        length = (lambda: formats.length(incoming)) if fmt == "raw" else None
        with target.open("w", incoming.shape, incoming.dtype, length) as allocation:
            formats.write_into(allocation, incoming, target.timeout)
            data = _summary(allocation, "w", format=fmt, file=path)
    emit(data, lambda: None)


def _copy_out(target: Target, path: str, fmt: str, allow_incomplete: bool) -> None:
    from .. import formats, transfer

    with target.open("r") as allocation:
        if fmt == "txt":
            formats.text_check(allocation.shape)
        # Nothing here touches the mapped pages (sendfile, or a copy through the file):
        # a segment cut short meanwhile is an error, never a SIGBUS.
        mapping = target.map(allocation, "r", allow_incomplete=allow_incomplete, populate=False)
        try:
            if fmt == "txt":
                formats.text_check(mapping.shape)
            with transfer.open_output(path, forbidden=allocation.file_id) as stream:
                if fmt == "txt":
                    formats.write_text(stream, path, formats.copy_out(mapping), lambda _n: None)
                else:
                    if fmt == "npy":
                        formats.write_npy_header(stream, path, mapping.etype, mapping.shape)
                    label = f"reading {allocation.name}"
                    with transfer.Progress(label, mapping.nbytes) as advance:
                        transfer.send(mapping, stream, path, advance)
        finally:
            mapping.unmap()
        data = _summary(allocation, "r", format=fmt, file=path)
    emit(data, lambda: None)


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
        data = _summary(allocation, mode, command=list(command), exit_code=status)
    emit(data, lambda: None)
    if status:
        click.get_current_context().exit(status)
