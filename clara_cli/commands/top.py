"""`clara top [-c CTX] [--interval S]`: a live view of contexts, allocations and leaks.

On a terminal it redraws every --interval seconds on the alternate screen (as top does)
until `q` or Ctrl-C, then restores the screen and the terminal's modes. Anywhere else
(a pipe, a file, cron) it prints one frame as plain columns and exits, so scripts can use
it; --json prints that frame as one document.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..complete import complete_contexts
from ..options import json_option, wants_json
from ..render import emit, shape, size, table

if TYPE_CHECKING:
    from clara_core.inspect import ContextSummary, SegmentInfo

QUIT_KEYS = b"qQ"


@dataclass
class Frame:
    """One look at the namespace: what `top` draws."""

    namespace: str
    directory: str
    total: int
    free: int
    contexts: list[tuple[ContextSummary, str]]  # summary, leak-check status
    allocations: list[tuple[SegmentInfo, str]]  # segment, leak-check status
    focus: str | None
    taken: float

    @property
    def missing(self) -> bool:
        """Whether the focused context does not exist (yet)."""
        return self.focus is not None and not self.contexts

    @property
    def leaks(self) -> int:
        """Leaked segments among those shown."""
        from clara_core.leaks import LEAK_STATUSES

        shown = [s for _, s in self.contexts] + [s for _, s in self.allocations]
        return sum(1 for status in shown if status in LEAK_STATUSES)


@click.command("top", short_help="Watch contexts, allocations and leaks live.")
@click.option(
    "--context",
    "-c",
    "context_name",
    metavar="CTX",
    shell_complete=complete_contexts,
    help="Show only this context (it may appear later).",
)
@click.option(
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes.",
)
@json_option
def top(context_name: str | None, interval: float) -> None:
    """Watch contexts, allocations and leaks live; q or Ctrl-C quits.

    \b
    Contexts: owner and status. Allocations: type, shape, size, data state, the map
    lock held now (read/write/none), the processes mapping it (pid and command) and
    leak-check's status; leaks are shown in red. The header shows the shared-memory
    directory's use. Not on a terminal (or with --json): one frame, then exit.
    """
    from clara_core.errors import InvalidArgument, NotFound
    from clara_core.names import validate_name

    if not 0 < interval < math.inf:
        raise InvalidArgument(f"invalid --interval {interval}: use seconds > 0")
    if context_name is not None:
        validate_name(context_name, "context name")
    if wants_json() or not (sys.stdout.isatty() and sys.stdin.isatty()):
        frame = look(context_name)
        if frame.missing:
            raise NotFound(f"context '{context_name}' does not exist")
        emit(frame_data(frame), lambda: print_frame(frame))
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one leaves top
        watch(context_name, interval)


def look(focus: str | None) -> Frame:
    """Survey the namespace once (one leak-check scan: segments, locks, /proc)."""
    from clara_core.inspect import summaries
    from clara_core.leaks import check
    from clara_core.names import namespace, same_name, shm_dir

    report = check()
    status = {f.segment.file_name: f.status for f in report.findings}
    contexts = summaries([f.segment for f in report.findings])
    if focus is not None:
        contexts = [c for c in contexts if same_name(c.name, focus)]
    names = {c.segment.context_token: c.name for c in contexts}
    members = [
        (f.segment, f.status)
        for f in report.findings
        if f.segment.kind != "context" and (focus is None or f.segment.context_token in names)
    ]
    members.sort(
        key=lambda m: (
            names.get(m[0].context_token, "~").lower(),
            m[0].kind != "published",
            m[0].name.lower(),
        )
    )
    stats = os.statvfs(shm_dir())
    return Frame(
        namespace=namespace(),
        directory=shm_dir(),
        total=stats.f_blocks * stats.f_frsize,
        free=stats.f_bavail * stats.f_frsize,
        contexts=[(c, status.get(c.segment.file_name, "")) for c in contexts],
        allocations=members,
        focus=focus,
        taken=time.time(),
    )


# -- what a frame shows -------------------------------------------------------------------


def _owner(summary: ContextSummary) -> str:
    if summary.owner_pid is None:
        return "-"
    from clara_core.shm.processes import command_name

    if not summary.owner_alive:
        return f"{summary.owner_pid} (dead)"
    return f"{summary.owner_pid} {command_name(summary.owner_pid)}"


def _context_row(summary: ContextSummary, status: str) -> list[str]:
    return [summary.name, _owner(summary), status, str(summary.allocations), size(summary.nbytes)]


def _allocation_row(info: SegmentInfo, status: str, contexts: dict[str, str]) -> list[str]:
    layout = info.header.layout if info.header else None
    # who maps it and what each does with it, as `clara dump CTX` says it
    mappers = "; ".join(f"pid {m.pid} [{m.activity}] {m.command}" for m in info.mapped_by)
    return [
        contexts.get(info.context_token, info.context),
        info.name or "-",
        info.kind,
        layout.etype.name if layout else "-",
        shape(layout.shape) if layout else "-",
        size(layout.nbytes) if layout else size(info.size),
        info.state or info.problem or "-",
        info.map_mode or "none",
        mappers or "-",
        status,
    ]


# Named as `clara dump` names the same things (MEMORY: the segments' bytes; DATA: the
# allocation's data size; STATE: its data state); STATUS is leak-check's.
CONTEXT_COLUMNS = ["context", "owner", "status", "allocations", "memory"]
ALLOCATION_COLUMNS = [
    "context",
    "name",
    "kind",
    "dtype",
    "shape",
    "data",
    "state",
    "lock",
    "mapped-by",
    "status",
]


def _headline(frame: Frame) -> str:
    used = frame.total - frame.free
    focus = f", context {frame.focus}" if frame.focus else ""
    return (
        f"namespace {frame.namespace}{focus} · {frame.directory}: {size(used)} used of "
        f"{size(frame.total)}, {size(frame.free)} free · {len(frame.contexts)} context(s), "
        f"{len(frame.allocations)} allocation(s), {frame.leaks} leak(s)"
    )


def _rows(frame: Frame) -> tuple[list[list[str]], list[list[str]]]:
    contexts = {c.segment.context_token: c.name for c, _ in frame.contexts}
    return (
        [_context_row(c, s) for c, s in frame.contexts],
        [_allocation_row(i, s, contexts) for i, s in frame.allocations],
    )


def print_frame(frame: Frame) -> None:
    """One frame as plain text (not a terminal)."""
    click.echo(_headline(frame))
    context_rows, allocation_rows = _rows(frame)
    click.echo()
    table(CONTEXT_COLUMNS, context_rows, right=["allocations", "memory"])
    click.echo()
    table(ALLOCATION_COLUMNS, allocation_rows, right=["data"], squeeze=["mapped-by"])


def frame_data(frame: Frame) -> dict[str, Any]:
    """One frame as JSON: dump's keys, plus each segment's leak-check status."""
    from .dump import allocation_data, context_data

    return {
        "namespace": frame.namespace,
        "shm_dir": frame.directory,
        "shm_bytes": frame.total,
        "shm_free_bytes": frame.free,
        "leaks": frame.leaks,
        "contexts": [{**context_data(c), "leak_status": s} for c, s in frame.contexts],
        "allocations": [
            {"context": frame_context(frame, info), **allocation_data(info), "leak_status": s}
            for info, s in frame.allocations
        ],
    }


def frame_context(frame: Frame, info: SegmentInfo) -> str:
    """The name of the context an allocation is in."""
    for summary, _ in frame.contexts:
        if summary.segment.context_token == info.context_token:
            return summary.name
    return info.context


def render(frame: Frame, interval: float) -> Any:
    """The frame for rich Live: a headline and two tables, leaks in red."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from clara_core.leaks import LEAK_STATUSES

    when = time.strftime("%H:%M:%S", time.localtime(frame.taken))
    head = Text.assemble(
        ("clara top", "bold"),
        f" · {_headline(frame)} · {when}, every {interval:g}s · ",
        ("q", "bold"),
        " quits",
    )
    if frame.missing:
        return Group(head, Text(f"\ncontext '{frame.focus}' does not exist (yet)", style="yellow"))
    context_rows, allocation_rows = _rows(frame)
    parts: list[Any] = [head]
    for columns, rows, statuses, right in (
        (CONTEXT_COLUMNS, context_rows, [s for _, s in frame.contexts], ("allocations", "memory")),
        (ALLOCATION_COLUMNS, allocation_rows, [s for _, s in frame.allocations], ("data",)),
    ):
        grid = Table(box=box.SIMPLE_HEAD, expand=False)
        for column in columns:
            grid.add_column(column.upper(), justify="right" if column in right else "left")
        for row, status in zip(rows, statuses, strict=True):
            style = (
                "bold red" if status in LEAK_STATUSES else ("yellow" if "write" in row else None)
            )
            grid.add_row(*row, style=style)
        parts.append(grid)
    return Group(*parts)


# -- the live loop ------------------------------------------------------------------------


def watch(focus: str | None, interval: float) -> None:
    """Redraw until q or Ctrl-C; the screen and the terminal's modes come back as they were."""
    from rich.live import Live

    from ..render import console

    with (
        _keys() as stdin,
        Live(console=console(), screen=True, auto_refresh=False, redirect_stderr=False) as live,
    ):
        keys: list[int] = [stdin]
        while True:
            live.update(render(look(focus), interval), refresh=True)
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select(keys, [], [], left)
                if not ready:
                    continue
                typed = os.read(stdin, 64)
                if not typed:  # the terminal went away: only a signal can stop us now
                    keys = []
                elif any(key in QUIT_KEYS for key in typed):
                    return


@contextlib.contextmanager
def _keys() -> Iterator[int]:
    """stdin in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still interrupts)."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
