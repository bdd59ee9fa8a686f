"""`clara publish HANDLE NAME`."""

from __future__ import annotations

import click

from ..complete import complete_handles
from ..options import context_option, json_option, require_context
from ..render import emit


@click.command(short_help="Publish a private allocation under NAME.")
@click.argument("handle", shell_complete=complete_handles)
@click.argument("name")
@context_option
@json_option
def publish(handle: str, name: str, context_name: str | None) -> None:
    """Publish the private allocation HANDLE under NAME, and print NAME."""
    from clara_core import Context

    with Context.open(require_context(context_name)) as context:
        allocation = context.open_handle(handle)
        allocation.publish(name)
        allocation.release()
        data = {"context": context.name, "name": name, "handle": handle}
    emit(data, lambda: click.echo(name))
