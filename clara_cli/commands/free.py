"""`clara free NAME`."""

from __future__ import annotations

import click

from ..complete import complete_names_or_handles
from ..options import context_option, json_option, require_context
from ..render import emit, note


@click.command(short_help="Free an allocation: no new access; maps held stay valid.")
@click.argument("name", metavar="NAME|HANDLE", shell_complete=complete_names_or_handles)
@click.option("--handle", is_flag=True, help="NAME is the handle of a private allocation.")
@context_option
@json_option
def free(name: str, handle: bool, context_name: str | None) -> None:
    """Free the allocation NAME: no new access; maps already held stay valid."""
    from clara_core import Context

    with Context.open(require_context(context_name)) as context:
        allocation = context.open_handle(name) if handle else context.get(name)
        allocation.free()
        data = {
            "context": context.name,
            "name": None if handle else name,
            "handle": name if handle else None,
        }
    emit(data, lambda: note(f"freed {'handle' if handle else 'allocation'} '{name}'"))
