"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import click

from .complete import complete_contexts

F = TypeVar("F", bound=Callable[..., object])


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["json"] = True


def json_option(func: F) -> F:
    """`--json` on a sub-command, same as `clara --json ...`."""
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print one JSON document on stdout.",
    )(func)


def context_option(func: F) -> F:
    """`--context/-c NAME`, defaulting to $CLARA_CONTEXT."""
    return click.option(
        "--context",
        "-c",
        "context_name",
        default=lambda: os.environ.get("CLARA_CONTEXT"),
        metavar="NAME",
        shell_complete=complete_contexts,
        help="Context name (default: $CLARA_CONTEXT).",
    )(func)


def wants_json() -> bool:
    """Whether the user asked for JSON output."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and (ctx.find_root().obj or {}).get("json"))


def require_context(context_name: str | None) -> str:
    """The context name given with --context or $CLARA_CONTEXT; a usage error if neither."""
    if not context_name:
        raise click.UsageError("no context: give --context NAME or set CLARA_CONTEXT")
    return context_name
