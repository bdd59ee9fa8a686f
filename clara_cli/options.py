"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import click

from .complete import complete_contexts, complete_dtypes

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


def param_option(func: F) -> F:
    """`--param NAME=VALUE` (repeatable): a template argument of a pipeline."""
    return click.option(
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="A template argument: replaces ${{ NAME }} (NAME must be a declared parameter).",
    )(func)


def bindings_option(func: F) -> F:
    """`--bindings FILE` (repeatable): a YAML file of OPERATOR: COMMAND bindings."""
    return click.option(
        "--bindings",
        "binding_files",
        multiple=True,
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="A YAML file of OPERATOR: COMMAND bindings (--bind wins over it).",
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


class Shape(click.ParamType):
    """Dimensions as comma-separated integers: 512,512 (also 512x512 and [512, 512])."""

    name = "shape"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip().strip("[]()").replace("x", ",")
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            self.fail(
                f"invalid shape {value!r}: use comma-separated integers, e.g. 512,512",
                param,
                ctx,
            )


def dtype_option(func: F) -> F:
    """`--dtype T`, completing the element types."""
    return click.option(
        "--dtype",
        metavar="T",
        shell_complete=complete_dtypes,
        help="Element type: u8..u64, i8..i64, f16, f32, f64, bool, c64, c128 (or numpy's "
        "names: float32, ...).",
    )(func)


def shape_option(func: F) -> F:
    """`--shape D0,D1,..`."""
    return click.option(
        "--shape",
        type=Shape(),
        metavar="D0,D1,..",
        help="Dimensions, comma-separated integers, e.g. 512,512 (512x512 works too).",
    )(func)


class SuggestingGroup(click.Group):
    """A group that answers a mistyped command with the closest ones: `clara dmp`."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if args and self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.65)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"no such command {name!r}{hint}", ctx)
        return super().resolve_command(ctx, args)
