"""`clara destroy context NAME`."""

from __future__ import annotations

import click

from ..complete import complete_contexts
from ..options import SuggestingGroup, json_option
from ..render import emit, note


@click.group(cls=SuggestingGroup)
def destroy() -> None:
    """Destroy a context."""


@destroy.command("context")
@click.argument("name", shell_complete=complete_contexts)
@json_option
def destroy_context(name: str) -> None:
    """Destroy the context NAME and everything in it.

    Processes that still map its allocations keep their maps; the memory goes with them.
    """
    from clara_core import Context

    removed = Context.destroy(name)
    data = {"context": name, "segments_removed": removed}
    emit(data, lambda: note(f"destroyed context '{name}' ({removed} allocation segment(s))"))
