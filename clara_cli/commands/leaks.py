"""`clara leak-check [--fix] [--older-than DURATION]`: find and reclaim leaked memory."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from ..options import json_option
from ..render import Styled, age, emit, note, size, table

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
@click.option("--all", "show_all", is_flag=True, help="List live segments in the table too.")
@json_option
def leak_check(fix: bool, older_than: float | None, show_all: bool) -> None:
    """List leaked shared memory; with --fix, reclaim it.

    The table lists every segment that is not simply live (leaks marked *, pooled,
    idle contexts, incomplete data); --all lists live ones too, --json every segment.
    Sizes are the memory held: data pages plus each segment's 4 KiB header page.
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
        in_use = [(finding_data(f), why) for f, why in outcome.kept if f.is_leak]
    else:
        report = leaks.check(older_than=older_than)
        in_use = [(finding_data(f), why) for f, why in report.in_use]
    left = report.leaks
    data.update(
        clean=not left,
        leaks=len(left),
        leaked_bytes=report.leaked_bytes,
        findings=[finding_data(f) for f in report.findings],
    )
    emit(data, lambda: _human(data, in_use, show_all))
    if left:
        click.get_current_context().exit(1)


def finding_data(finding: Finding) -> dict[str, Any]:
    """JSON of one finding (keys documented in the README); null where not applicable."""
    info = finding.segment
    return {
        "file": info.file_name,
        "context": info.context,
        "name": info.name or None,
        "kind": info.kind,
        "status": finding.status,
        "leak": finding.is_leak,
        "reason": finding.reason,
        "incomplete": finding.incomplete,
        "size": info.size,
        "age_seconds": round(info.age, 3),
        "owner_pid": finding.owner_pid,
        "holder_pid": finding.holder_pid,
        "mapped_by": [{"pid": m.pid, "command": m.command, "mode": m.lock} for m in info.mapped_by],
    }


STATUS_STYLES = {"live": "green", "pooled": "cyan", "foreign": "magenta"}


def _status(finding: dict[str, Any]) -> object:
    if finding["leak"]:
        return Styled(finding["status"] + "*", "bold red")
    style = STATUS_STYLES.get(finding["status"])
    return Styled(finding["status"], style) if style else finding["status"]


def _row(finding: dict[str, Any]) -> list[object]:
    reason = finding["reason"] + (" (data incomplete)" if finding["incomplete"] else "")
    return [
        _status(finding),
        finding["kind"],
        finding["context"],
        finding["name"],
        size(finding["size"]),
        age(finding["age_seconds"]),
        reason,
    ]


COLUMNS = ["status", "kind", "context", "name", "memory", "age", "reason"]
FIX_COLUMNS = ["fix", "kind", "context", "name", "memory", "reason"]


def _human(data: dict[str, Any], in_use: list[tuple[dict[str, Any], str]], show_all: bool) -> None:
    if "removed" in data:
        # What was done to each: the status and age said why it was a leak; now the
        # reason says it (and, for what was kept, the note below says what to do).
        done = [["removed", *_row(f)] for f in data["removed"]]
        done += [["kept", *_row(f)] for f in data["kept"]]
        if done:
            rows = [[row[0], *row[2:6], row[7]] for row in done]
            table(FIX_COLUMNS, rows, right=["memory"], squeeze=["reason"])
        note(f"removed {len(data['removed'])} segment(s), {size(data['freed_bytes'])}")
    else:
        shown = [
            f for f in data["findings"] if show_all or f["status"] != "live" or f["incomplete"]
        ]
        if shown:
            table(COLUMNS, [_row(f) for f in shown], right=["memory", "age"], squeeze=["reason"])
        hidden = len(data["findings"]) - len(shown)
        if hidden:
            note(f"{hidden} live segment(s) not listed (--all lists them)")
    for why, what in _grouped(in_use).items():
        note(f"{'kept' if 'removed' in data else '--fix cannot reclaim'} {what}: {why}")
    if data["clean"]:
        note(f"no leaks in namespace '{data['namespace']}'")
        return
    message = f"{data['leaks']} leak(s) left, {size(data['leaked_bytes'])}"
    stuck = {f["file"] for f, _ in in_use}
    free = [f for f in data["findings"] if f["leak"] and f["file"] not in stuck]
    if free and "removed" not in data:
        message += f"; `clara leak-check --fix` reclaims {len(free)} of them"
    note(message)


def _grouped(in_use: list[tuple[dict[str, Any], str]]) -> dict[str, str]:
    """why -> what it holds back: "context 'job' (2 segments)", "allocation 'v' of 'job'"."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding, why in in_use:
        groups.setdefault(why, []).append(finding)
    described = {}
    for why, findings in groups.items():
        contexts = [f for f in findings if f["kind"] == "context"]
        if contexts:
            what = f"context '{contexts[0]['context']}' ({len(findings)} segment(s))"
        elif len(findings) == 1:
            f = findings[0]
            what = f"{f['kind']} '{f['name']}' of context '{f['context']}'"
        else:
            what = f"{len(findings)} segments"
        described[why] = what
    return described
