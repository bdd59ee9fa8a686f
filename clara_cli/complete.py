"""Shell completion of context, allocation and handle names from the live registry.

Completion must never fail loudly: whatever goes wrong (no context yet, a bad namespace),
it offers nothing. clara_core is imported inside the callbacks, which run only while the
shell asks for completions; click's completion module too.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import click

TYPE_CHECKING = False  # as typing's
if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


def _matching(names: list[str], incomplete: str) -> list[CompletionItem]:
    # (click.shell_completion only here: every command names these callbacks, and only
    # the shell's completion requests run them; ~0.3 ms of every start-up otherwise)
    from click.shell_completion import CompletionItem

    prefix = incomplete.lower()
    return [CompletionItem(name) for name in names if name.lower().startswith(prefix)]


def _offer(names: Callable[[], list[str]], incomplete: str) -> list[CompletionItem]:
    """The names that match; nothing at all if finding them fails in any way."""
    try:
        return _matching(names(), incomplete)
    except Exception:
        return []


def _context_of(ctx: click.Context) -> str | None:
    """The context the command line names so far (--context, CTX argument or $CLARA_CONTEXT)."""
    return ctx.params.get("context_name") or os.environ.get("CLARA_CONTEXT")


def _live_contexts() -> list[str]:
    from clara_core import Context

    return Context.list()


def _published_in(context_name: str) -> list[str]:
    from clara_core import Context

    with Context.open(context_name) as context:
        return context.names()


def _handles_in(context_name: str) -> list[str]:
    from clara_core.inspect import context_members

    return [m.name for m in context_members(context_name)[1] if m.kind == "handle"]


def complete_contexts(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Names of the live contexts."""
    return _offer(_live_contexts, incomplete)


def complete_allocations(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Names published in the context named so far on the command line."""
    context_name = _context_of(ctx)
    if not context_name:
        return []
    return _offer(lambda: _published_in(context_name), incomplete)


def complete_handles(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Handles of the private allocations of the context named so far."""
    context_name = _context_of(ctx)
    if not context_name:
        return []
    return _offer(lambda: _handles_in(context_name), incomplete)


def complete_names_or_handles(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Handles when --handle is on the command line already, else published names."""
    if ctx.params.get("handle"):
        return complete_handles(ctx, param, incomplete)
    return complete_allocations(ctx, param, incomplete)


def complete_dtypes(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The element types, short names first (u8 ... f64), then numpy's long names."""
    from clara_core.dtypes import BY_CODE

    types = [BY_CODE[code] for code in sorted(BY_CODE)]
    names = [t.short for t in types] + [t.name for t in types]
    return _matching(list(dict.fromkeys(names)), incomplete)
