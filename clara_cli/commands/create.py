"""`clara create context` and `clara create allocation`."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import click

from clara_core.errors import ClaraError

from ..options import (
    SuggestingGroup,
    context_option,
    dtype_option,
    json_option,
    require_context,
    shape_option,
)
from ..render import emit, note

if TYPE_CHECKING:
    from ..formats import Incoming


@click.group(cls=SuggestingGroup)
def create() -> None:
    """Create a context or an allocation."""


@create.command("context")
@click.argument("name")
@click.option("--capacity", metavar="BYTES", help="Cap on the bytes published in it (4K, 64M, 1G).")
@click.option(
    "--mode",
    default="600",
    show_default=True,
    metavar="OCTAL",
    help="Permission bits of its segments, in octal: 600, 640, 644, 660, 666.",
)
@click.option(
    "--owner-pid",
    type=int,
    metavar="PID",
    help="Bind it to this process: once PID exits, leak-check reclaims it (e.g. $$).",
)
@click.option(
    "--pool-bytes",
    metavar="BYTES",
    help="Cap on its recycling pool (default a quarter of /dev/shm; 0: none), e.g. for "
    "a warm pool (clara run --warm-pool).",
)
@json_option
def create_context(
    name: str, capacity: str | None, mode: str, owner_pid: int | None, pool_bytes: str | None
) -> None:
    """Create the context NAME and print its name."""
    from clara_core import Context

    context = Context.create(
        name, capacity=capacity, mode=mode, owner_pid=owner_pid, pool_bytes=pool_bytes
    )
    data = {
        "context": context.name,
        "owner_pid": context.owner_pid,
        "mode": f"{context.mode:o}",
        "capacity": context.capacity,
    }
    emit(data, lambda: click.echo(context.name))


@create.command("allocation", short_help="Create an allocation: published as NAME, or private.")
@click.argument("name", required=False)
@click.option("--size", metavar="BYTES", help="Size in bytes (4096, 4K, 64M, 1G).")
@dtype_option
@shape_option
@click.option(
    "--in",
    "in_path",
    metavar="FILE|-",
    help="Fill it from FILE (- : stdin) before anyone can see it; size, dtype and shape "
    "may come from the data.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "npy", "txt"]),
    default="raw",
    show_default=True,
    help="Format of --in: raw bytes, .npy (carries dtype and shape), or numpy's text form.",
)
@context_option
@json_option
def create_allocation(
    name: str | None,
    size: str | None,
    dtype: str | None,
    shape: tuple[int, ...] | None,
    in_path: str | None,
    fmt: str,
    context_name: str | None,
) -> None:
    """Create an allocation: published as NAME, or private with a handle printed.

    A private allocation belongs to the calling shell (or script) until `clara publish`
    gives it a name; if that process exits first, `clara leak-check --fix` reclaims it.

    \b
    With --in the data is written first and NAME published only once it is complete,
    so nobody ever sees it empty; if the data cannot be read, nothing is left:
      clara create allocation volume --in volume.npy --format npy
      producer | clara create allocation volume --dtype f32 --shape 64,256,256 --in -
    Without --size or --shape, raw data makes a 1-D array of its length (--dtype, u8 by
    default), .npy data keeps its dtype and shape, text its rows and columns.
    """
    if in_path is None:
        if fmt != "raw":
            raise click.UsageError("--format describes the data of --in FILE")
        if size is None and shape is None:
            raise click.UsageError("give --size BYTES, or --dtype T and --shape D0,D1,..")
        _create(context_name, name, size, dtype, shape, None)
        return
    from .. import formats, transfer

    with transfer.open_input(in_path) as stream:
        incoming = formats.read_head(stream, in_path, fmt)
        size, dtype, shape = _layout_of_data(incoming, size, dtype, shape)
        _create(context_name, name, size, dtype, shape, incoming)


def _layout_of_data(
    incoming: Incoming, size: str | None, dtype: str | None, shape: tuple[int, ...] | None
) -> tuple[str | None, object, tuple[int, ...] | None]:
    """Size, dtype and shape for data given with --in: as given, else from the data."""
    if size is not None or shape is not None:
        return size, dtype, shape
    from clara_core.dtypes import element_type
    from clara_core.errors import InvalidArgument

    if incoming.format == "npy":
        return None, dtype or incoming.dtype, incoming.shape
    etype = element_type(dtype or "u8")
    if incoming.format == "txt":
        from .. import formats

        return None, etype, formats.load_text(incoming, etype)
    from .. import formats

    if incoming.npy_as_raw:  # (a warning: keeping a file's bytes may be what is meant)
        note(
            f"warning: {incoming.where} is an .npy file, stored as raw bytes (header "
            "included); give --format npy to keep its dtype and shape"
        )
    nbytes = formats.length(incoming)
    if not nbytes:
        raise InvalidArgument(f"{incoming.where} is empty: no data to size the allocation by")
    return str(nbytes), etype, None


def _create(
    context_name: str | None,
    name: str | None,
    size: str | None,
    dtype: object,
    shape: tuple[int, ...] | None,
    incoming: Incoming | None,
) -> None:
    holder = os.getppid()
    if name is None and holder <= 1:
        from clara_core.errors import InvalidArgument

        # Adopted by init: whoever ran us has exited, and pid 1 would hold it forever.
        raise InvalidArgument(
            "the process that ran clara has already exited (clara's parent is now pid "
            f"{holder}): nobody would hold the private allocation; give it a NAME to publish it"
        )
    from ..transfer import require_stdout

    require_stdout()  # (`>&-`: a handle nobody learns would stay until leak-check)
    from clara_core import Context

    with Context.open(require_context(context_name)) as context:
        allocation = context.create(size, dtype=dtype, shape=shape)
        done = False
        try:
            if incoming is not None:
                from ..formats import write_into

                # private: nobody can see it half-written, and a failure discards it
                write_into(allocation, incoming, discarded=True)
            if name is not None:
                allocation.publish(name)
                handle = None
            else:
                handle = allocation.make_handle(holder_pid=holder)
            data = {
                "context": context.name,
                "name": name,
                "handle": handle,
                "dtype": allocation.element_type.name,
                "shape": list(allocation.shape),
                "nbytes": allocation.nbytes,
            }
            try:
                emit(data, lambda: click.echo(name if name is not None else handle))
            except ClaraError:  # stdout could not take it (a full disk): as if create failed
                with contextlib.suppress(ClaraError):  # (a free that fails: it stays, as before)
                    allocation.free()  # nobody learned the handle; the NAME is free to retry
                raise
            done = True
        finally:
            allocation.release(recycle=done)  # failed: gone for good, not even pooled
