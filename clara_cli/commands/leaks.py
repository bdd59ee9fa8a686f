"""`clara leak-check [--fix] [--older-than DURATION]`: find and reclaim leaked memory."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from ..options import json_option
from ..render import age, emit, note, size, table

if TYPE_CHECKING:
    from clara_core.leaks import Finding

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
    """A duration such as 90s, 10m, 2h, 1d (plain numbers are seconds)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, (int, float)):
            return float(value)
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration like 90s, 10m, 2h or 1d", param, ctx)
        return float(match.group(1)) * _SECONDS[match.group(2).lower()]


@click.command("leak-check")
@click.option("--fix", is_flag=True, help="Remove the leaks nobody uses (never what is in use).")
@click.option(
    "--older-than",
    type=Duration(),
    metavar="DURATION",
    help="Count contexts without owner idle for longer than this (90s, 10m, 2h, 1d) as leaks.",
)
@json_option
def leak_check(fix: bool, older_than: float | None) -> None:
    """List leaked shared memory; with --fix, reclaim it.

    Exit 0 if nothing leaks (or --fix removed every leak), 1 if leaks are left.
    """
    from clara_core import leaks
    from clara_core.names import namespace

    data: dict[str, Any] = {"namespace": namespace()}
    if fix:
        outcome = leaks.reclaim(older_than=older_than)
        report = outcome.after
        data["removed"] = [finding_data(f) for f in outcome.removed]
        data["kept"] = [{**finding_data(f), "why": why} for f, why in outcome.kept]
        data["freed_bytes"] = outcome.freed_bytes
    else:
        report = leaks.check(older_than=older_than)
    left = report.leaks
    data.update(
        clean=not left,
        leaks=len(left),
        leaked_bytes=report.leaked_bytes,
        findings=[finding_data(f) for f in report.findings],
    )
    emit(data, lambda: _human(data))
    if left:
        click.get_current_context().exit(1)


def finding_data(finding: Finding) -> dict[str, Any]:
    """JSON of one finding (keys documented in the README)."""
    info = finding.segment
    return {
        "file": info.file_name,
        "context": info.context,
        "name": info.name,
        "kind": info.kind,
        "status": finding.status,
        "leak": finding.is_leak,
        "reason": finding.reason,
        "incomplete": finding.incomplete,
        "size": info.size,
        "age_seconds": round(info.age, 3),
    }


def _rows(findings: list[dict[str, Any]], why: str = "reason") -> list[list[object]]:
    return [
        [
            f["status"] + ("*" if f["leak"] else ""),
            f["kind"],
            f["context"],
            f["name"] or None,
            size(f["size"]),
            age(f["age_seconds"]),
            f[why] + (" (data incomplete)" if f["incomplete"] else ""),
        ]
        for f in findings
    ]


def _human(data: dict[str, Any]) -> None:
    columns = ["status", "kind", "context", "name", "size", "age", "reason"]
    right = ["size", "age"]
    if "removed" in data:
        if data["removed"]:
            table(columns, _rows(data["removed"]), title="removed", right=right)
        if data["kept"]:
            table([*columns[:-1], "why"], _rows(data["kept"], "why"), title="kept", right=right)
        note(f"removed {len(data['removed'])} segment(s), {size(data['freed_bytes'])}")
    shown = [f for f in data["findings"] if f["leak"] or f["incomplete"] or f["status"] != "live"]
    if shown:
        table(columns, _rows(shown), title="findings (* = leak)", right=right)
    if data["clean"]:
        note(f"no leaks in namespace {data['namespace']}")
    else:
        hint = "" if "removed" in data else "; `clara leak-check --fix` reclaims them"
        note(f"{data['leaks']} leak(s), {size(data['leaked_bytes'])}{hint}")
