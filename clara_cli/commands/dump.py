"""`clara dump [CTX [NAME]]`: live contexts, their allocations, one allocation's values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..complete import complete_allocations, complete_contexts
from ..options import json_option
from ..render import age, emit, fields, size, table

if TYPE_CHECKING:
    from clara_core.inspect import ContextSummary, SegmentInfo

VALUES_IN_JSON = 1000  # elements; numpy's own print threshold


@click.command()
@click.argument("context_name", metavar="[CTX]", required=False, shell_complete=complete_contexts)
@click.argument("name", required=False, shell_complete=complete_allocations)
@click.option("--values", is_flag=True, help="Also print the values (needs CTX NAME).")
@click.option("--allow-incomplete", is_flag=True, help="Print values whose writer failed.")
@json_option
def dump(context_name: str | None, name: str | None, values: bool, allow_incomplete: bool) -> None:
    """Show all contexts, the allocations of CTX, or the allocation NAME in CTX.

    \b
    clara dump                    contexts: owner, status, allocations, bytes, age
    clara dump CTX                its allocations: dtype, shape, bytes, state, mappers
    clara dump CTX NAME --values  one allocation, and its values as numpy prints them
    """
    if values and name is None:
        raise click.UsageError("--values needs CTX and NAME")
    if context_name is None:
        _dump_all()
    elif name is None:
        _dump_context(context_name)
    else:
        _dump_allocation(context_name, name, values, allow_incomplete)


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
        "mapped_by": [
            {"pid": m.pid, "command": m.command, "mode": "write" if m.writable else "read"}
            for m in info.mapped_by
        ],
        "referenced": info.referenced,
        "created": info.created,
        "age_seconds": round(info.age, 3),
        "problem": info.problem,
    }


def _dump_all() -> None:
    from clara_core.inspect import contexts

    rows = [context_data(summary) for summary in contexts()]

    def human() -> None:
        table(
            ["context", "owner", "status", "allocations", "bytes", "age"],
            [
                [
                    r["name"],
                    r["owner_pid"],
                    r["status"],
                    r["allocations"],
                    size(r["bytes"]),
                    age(r["age_seconds"]),
                ]
                for r in rows
            ],
            right=["allocations", "bytes", "age"],
        )

    emit({"contexts": rows}, human)


def _members(name: str) -> tuple[ContextSummary, list[SegmentInfo]]:
    """A context's summary and its allocation segments, published first, by name."""
    from clara_core.inspect import context_members

    summary, members = context_members(name)
    return summary, sorted(members, key=lambda m: (m.kind != "published", m.name.lower()))


def _mappers(info: SegmentInfo) -> str | None:
    return "; ".join(str(m) for m in info.mapped_by) or None


def _dump_context(name: str) -> None:
    summary, members = _members(name)
    rows = [allocation_data(info) for info in members]

    def human() -> None:
        table(
            ["name", "kind", "dtype", "shape", "bytes", "state", "mapped by", "age"],
            [
                [
                    r["name"],
                    r["kind"],
                    r["dtype"],
                    r["shape"],
                    r["nbytes"],
                    r["state"],
                    _mappers(info),
                    age(r["age_seconds"]),
                ]
                for r, info in zip(rows, members, strict=True)
            ],
            right=["bytes", "age"],
        )

    emit({"context": context_data(summary), "allocations": rows}, human)


def _dump_allocation(context_name: str, name: str, values: bool, allow_incomplete: bool) -> None:
    from clara_core import Context

    with Context.open(context_name) as context, context.get(name) as allocation:
        summary, members = _members(context.name)
        found = [m for m in members if m.kind == "published" and m.name.lower() == name.lower()]
        info = found[0] if found else None
        data: dict[str, Any] = {
            "context": summary.name,
            "allocation": allocation_data(info) if info else None,
        }
        text = None
        if values:
            with allocation.map("r", allow_incomplete=allow_incomplete) as array:
                text = str(array)
                data["values"] = _json_values(array)
                data["values_text"] = text

    def human() -> None:
        row = data["allocation"] or {}
        fields(
            [
                ("context", summary.name),
                ("name", row.get("name", name)),
                ("dtype", row.get("dtype")),
                ("shape", row.get("shape")),
                ("bytes", row.get("nbytes")),
                ("state", row.get("state")),
                ("mapped by", _mappers(info) if info else None),
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
