"""`clara create context` and `clara create allocation`."""

from __future__ import annotations

import os

import click

from ..options import context_option, json_option, require_context
from ..render import emit


@click.group()
def create() -> None:
    """Create a context or an allocation."""


@create.command("context")
@click.argument("name")
@click.option("--capacity", metavar="BYTES", help="Cap on the bytes published in it (4K, 64M, 1G).")
@click.option("--mode", default="600", show_default=True, help="Octal mode of its segments.")
@click.option(
    "--owner-pid",
    type=int,
    metavar="PID",
    help="Bind it to this process: once PID exits, leak-check reclaims it (e.g. $$).",
)
@json_option
def create_context(name: str, capacity: str | None, mode: str, owner_pid: int | None) -> None:
    """Create the context NAME and print its name."""
    from clara_core import Context

    context = Context.create(name, capacity=capacity, mode=mode, owner_pid=owner_pid)
    data = {
        "context": context.name,
        "owner_pid": context.owner_pid,
        "mode": f"{context.mode:o}",
        "capacity": context.capacity,
    }
    emit(data, lambda: click.echo(context.name))


@create.command("allocation")
@click.argument("name", required=False)
@click.option("--size", metavar="BYTES", help="Size in bytes (4096, 4K, 64M, 1G).")
@click.option("--dtype", metavar="T", help="Element type: u8..u64, i8..i64, f16, f32, f64, ...")
@click.option("--shape", metavar="D0,D1,..", help="Dimensions, comma-separated.")
@context_option
@json_option
def create_allocation(
    name: str | None,
    size: str | None,
    dtype: str | None,
    shape: str | None,
    context_name: str | None,
) -> None:
    """Create an allocation: published as NAME, or private with a handle printed.

    A private allocation belongs to the calling shell (or script) until `clara publish`
    gives it a name; if that process exits first, `clara leak-check --fix` reclaims it.
    """
    if size is None and shape is None:
        raise click.UsageError("give --size BYTES, or --dtype T and --shape D0,D1,..")
    from clara_core import Context

    with Context.open(require_context(context_name)) as context:
        allocation = context.create(size, dtype=dtype, shape=_dims(shape))
        if name is not None:
            allocation.publish(name)
            handle = None
        else:
            handle = allocation.make_handle(holder_pid=os.getppid())
        data = {
            "context": context.name,
            "name": name,
            "handle": handle,
            "dtype": allocation.element_type.name,
            "shape": list(allocation.shape),
            "nbytes": allocation.nbytes,
        }
        allocation.release()
    emit(data, lambda: click.echo(name if name is not None else handle))


def _dims(shape: str | None) -> list[str] | None:
    """'64,256,256' (or '64x256x256', '[64, 256, 256]') as a list for the core to check."""
    if shape is None:
        return None
    return shape.strip().strip("[]()").replace("x", ",").split(",")
