"""`clara dump [CTX [NAME]]`: live contexts, their allocations, one allocation's values."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..complete import complete_allocations, complete_contexts
from ..options import json_option
from ..render import Styled, age, emit, fields, note, shape, size, table
from ..target import Target

if TYPE_CHECKING:
    from clara_core.inspect import ContextSummary, SegmentInfo

VALUES_IN_JSON = 1000  # elements; numpy's own print threshold


@click.command(short_help="Show contexts, a context's allocations, or one allocation.")
@click.argument("context_name", metavar="[CTX]", required=False, shell_complete=complete_contexts)
@click.argument("name", required=False, shell_complete=complete_allocations)
@click.option(
    "--context",
    "-c",
    "context_option",
    default=lambda: os.environ.get("CLARA_CONTEXT"),
    metavar="NAME",
    shell_complete=complete_contexts,
    help="The context to show (default: $CLARA_CONTEXT); then NAME is the only argument.",
)
@click.option("--all", "-A", "show_all", is_flag=True, help="All contexts, even with -c set.")
@click.option("--values", is_flag=True, help="Also print the values (needs NAME).")
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Print values that were never written, or whose writer failed.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="With --values: wait until NAME is published and a writer has finished "
    "(up to --timeout, default 60 s).",
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="With --values: wait this long for a writer holding it (with --wait: in all).",
)
@json_option
def dump(
    context_name: str | None,
    name: str | None,
    context_option: str | None,
    show_all: bool,
    values: bool,
    allow_incomplete: bool,
    wait: bool,
    timeout: float | None,
) -> None:
    """Show all contexts, the allocations of CTX, or the allocation NAME in CTX.

    \b
    clara dump                    contexts: owner, status, allocations, memory, age
    clara dump CTX                its allocations: dtype, shape, data size, state, users
    clara dump CTX NAME --values  one allocation, and its values as numpy prints them
    clara dump -c CTX [NAME]      the same, CTX given as every other command takes it
    Without CTX, $CLARA_CONTEXT is shown if set (--all: every context).
    """
    context_name, name = _what(context_name, name, context_option, show_all)
    if (wait or timeout is not None) and not values:
        raise click.UsageError("--wait and --timeout apply to --values")
    if values and name is None:
        if context_option and context_name not in (None, context_option):  # (likely meant)
            raise click.UsageError(
                f"--values needs CTX and NAME: for allocation '{context_name}' of context "
                f"'{context_option}' ($CLARA_CONTEXT), run "
                f"`clara dump -c {context_option} {context_name} --values`"
            )
        raise click.UsageError("--values needs CTX and NAME")
    if context_name is None:
        _dump_all()
    elif name is None:
        _dump_context(context_name, context_option if context_name != context_option else None)
    else:
        target = Target(context_name, name, False, wait, timeout, declared=False)
        _dump_allocation(target, values, allow_incomplete)


def _what(
    positional: str | None, name: str | None, option: str | None, show_all: bool
) -> tuple[str | None, str | None]:
    """(context, name) from the arguments, -c CTX and $CLARA_CONTEXT."""
    if show_all:
        if positional is not None:
            raise click.UsageError("--all lists every context: give no CTX or NAME with it")
        return None, None
    source = click.get_current_context().get_parameter_source("context_option")
    if source not in (ParameterSource.DEFAULT, None):  # -c CTX given: the argument is NAME
        if name is not None:
            raise click.UsageError("with -c CTX, give at most NAME")
        return option, positional
    if positional is not None:
        return positional, name
    return option, None  # $CLARA_CONTEXT, or every context


def context_data(summary: ContextSummary) -> dict[str, Any]:
    """JSON of one context (keys documented in the README)."""
    info = summary.segment
    settings = info.header.settings if info.header else None
    if summary.owner_pid is None:
        status = "idle"
    else:
        status = "live" if summary.owner_alive else "owner-dead"
    return {
        "name": summary.name,
        "owner_pid": summary.owner_pid,
        "owner_alive": summary.owner_alive,
        "status": status,
        "allocations": summary.allocations,
        "bytes": summary.nbytes,
        "pooled_bytes": summary.pooled_bytes,
        "foreign": summary.foreign,
        "mode": f"{settings.mode:o}" if settings else None,
        "capacity": (settings.capacity or None) if settings else None,
        "created": info.created,
        "age_seconds": round(info.age, 3),
    }


def allocation_data(info: SegmentInfo) -> dict[str, Any]:
    """JSON of one allocation segment (keys documented in the README)."""
    layout = info.header.layout if info.header else None
    return {
        "name": info.name,
        "kind": info.kind,
        "dtype": layout.etype.name if layout else None,
        "shape": list(layout.shape) if layout else None,
        "nbytes": layout.nbytes if layout else None,
        "size": info.size,
        "state": info.state or None,
        "map_mode": info.map_mode or None,
        "mapped_by": [{"pid": m.pid, "command": m.command, "mode": m.lock} for m in info.mapped_by],
        "referenced": info.referenced,
        "created": info.created,
        "age_seconds": round(info.age, 3),
        "problem": info.problem,
    }


STATUS_STYLES = {"live": "green", "owner-dead": "red"}
STATE_STYLES = {"complete": "green", "writing": "yellow", "incomplete": "red"}


def _styled(value: str | None, styles: dict[str, str]) -> object:
    return Styled(value, styles[value]) if value in styles else value


def _dump_all() -> None:
    from clara_core.inspect import contexts
    from clara_core.names import namespace

    rows = [context_data(summary) for summary in contexts()]

    def human() -> None:
        if not rows:
            note(f"no contexts in namespace '{namespace()}'")
            return
        _note_foreign(sum(r["foreign"] for r in rows), f"the contexts of namespace '{namespace()}'")
        table(
            ["context", "owner", "status", "allocations", "memory", "age"],
            [
                [
                    r["name"],
                    r["owner_pid"],
                    _styled(r["status"], STATUS_STYLES),
                    r["allocations"],
                    size(r["bytes"]),
                    age(r["age_seconds"]),
                ]
                for r in rows
            ],
            right=["allocations", "memory", "age"],
        )

    emit({"contexts": rows}, human)


def _members(name: str) -> tuple[ContextSummary, list[SegmentInfo]]:
    """A context's summary and its allocation segments, published first, by name."""
    from clara_core.inspect import context_members

    summary, members = context_members(name)
    return summary, sorted(members, key=lambda m: (m.kind != "published", m.name.lower()))


def _users(info: SegmentInfo) -> str | None:
    """Who maps it and what each does with it: `pid 9477 [idle mapping] python3 x.py`."""
    return "; ".join(f"pid {m.pid} [{m.activity}] {m.command}" for m in info.mapped_by) or None


def _dump_context(name: str, default_context: str | None = None) -> None:
    """The allocations of context `name`; `default_context` ($CLARA_CONTEXT, when `name`
    came as the argument) is suggested if `name` is no context but an allocation in it."""
    from clara_core.errors import NotFound

    try:
        summary, members = _members(name)
    except NotFound as missing:
        if default_context and _has_allocation(default_context, name):
            raise NotFound(
                f"{missing}; for allocation '{name}' of context '{default_context}' "
                f"($CLARA_CONTEXT), run `clara dump -c {default_context} {name}`"
            ) from None
        raise
    rows = [allocation_data(info) for info in members]

    def human() -> None:
        _note_foreign(summary.foreign, f"context '{summary.name}'")
        if not rows:
            note(f"no allocations in context '{summary.name}'")
            return
        table(
            ["name", "kind", "dtype", "shape", "data", "state", "age", "mapped-by"],
            [
                [
                    r["name"],
                    r["kind"],
                    r["dtype"],
                    shape(r["shape"]),
                    None if r["nbytes"] is None else size(r["nbytes"]),
                    _styled(r["state"], STATE_STYLES),
                    age(r["age_seconds"]),
                    _users(info),
                ]
                for r, info in zip(rows, members, strict=True)
            ],
            right=["data", "age"],
            squeeze=["mapped-by"],
        )

    emit({"context": context_data(summary), "allocations": rows}, human)


def _note_foreign(count: int, whose: str) -> None:
    if count:
        note(
            f"{count} file(s) under the names of {whose} were not made by a writer of the "
            "context: ignored, never opened (`clara leak-check` lists them)"
        )


def _has_allocation(context_name: str, name: str) -> bool:
    from clara_core import Context
    from clara_core.errors import ClaraError

    try:
        with Context.open(context_name) as context:
            return name.lower() in (n.lower() for n in context.names())
    except ClaraError:
        return False


def _dump_allocation(target: Target, values: bool, allow_incomplete: bool) -> None:
    with target.open("r") as allocation:
        summary, members = _members(allocation.context.name)
        name = allocation.name
        found = [m for m in members if m.kind == "published" and m.name.lower() == name.lower()]
        info = found[0] if found else None
        data: dict[str, Any] = {
            "context": summary.name,
            "allocation": allocation_data(info) if info else None,
        }
        text = None
        if values:
            from ..formats import copy_out

            # Copied through the file, not read from the map: a segment another writer
            # cuts short meanwhile is then an error, not a SIGBUS.
            mapping = target.map(allocation, "r", allow_incomplete=allow_incomplete, populate=False)
            try:
                array = copy_out(mapping)
            finally:
                mapping.unmap()
            text = str(array)
            data["values"] = _json_values(array)
            data["values_text"] = text

    def human() -> None:
        row = data["allocation"] or {}
        memory = row.get("size")
        fields(
            [
                ("context", summary.name),
                ("name", row.get("name", name)),
                ("dtype", row.get("dtype")),
                ("shape", shape(row.get("shape"))),
                ("data", None if row.get("nbytes") is None else size(row["nbytes"])),
                ("memory", None if memory is None else f"{size(memory)} (with the header page)"),
                ("state", row.get("state")),
                ("mapped by", _users(info) if info else None),
                ("age", age(row.get("age_seconds", 0))),
            ]
        )
        if text is not None:
            click.echo(text)

    emit(data, human)


def _json_values(array: Any) -> Any:
    """The values as nested lists (complex as [re, im]); None past VALUES_IN_JSON elements."""
    if array.size > VALUES_IN_JSON:
        return None
    if array.dtype.kind == "c":
        real = array.real.dtype
        return array.view(real).reshape((*array.shape, 2)).tolist()
    return array.tolist()
