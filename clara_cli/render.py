"""Output: JSON when asked, else human text.

Tables are drawn with rich only when stdout is a terminal (rich is imported then, and
NO_COLOR turns every style off); otherwise they are plain, space-aligned columns that
scripts can cut. Headers are upper case either way. Tables show sizes for people
(size()) and shapes as --shape takes them (shape()); JSON shows bytes and lists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from clara_core.records import Record

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from clara_core.errors import ClaraError

# Whether --json was given, when the click-free command line (clara_cli.fastrun: `clara
# run`) parsed it; None: click's context knows (the group's --json, options.json_option).
json_requested: bool | None = None


def wants_json() -> bool:
    """Whether the user asked for JSON output."""
    if json_requested is not None:
        return json_requested
    from .options import wants_json as in_click_context

    return in_click_context()


def emit(data: object, human: Callable[[], None]) -> None:
    """Print `data` as one JSON document if --json was given, else call `human()`.

    A stdout that cannot take it (a full disk) is a one-line error with its exit code
    (`clara dump > /dev/full`: 7), never a traceback; what was not written is dropped.
    """
    try:
        if wants_json():
            import json

            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            human()
        if sys.stdout is not None:
            sys.stdout.flush()  # (its failure here, not in the interpreter's last flush)
    except BrokenPipeError:  # a reader gone: not an error (exits.quiet_broken_pipe)
        raise
    except OSError as exc:
        raise stdout_failed(exc) from exc


def stdout_failed(exc: OSError) -> ClaraError:
    """The error a failed write to stdout ends with (a full disk: out of space, 7), after
    stdout is pointed at /dev/null (what was not written is dropped)."""
    from .transfer import file_error

    _drop_stdout()
    return file_error(exc, "-", "write")


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more (the interpreter's last flush of
    what stays buffered) fails on it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def console(stderr: bool = False):  # -> rich.console.Console
    """A rich Console; NO_COLOR (any value) removes every style, bold and italic too."""
    from rich.console import Console

    if os.environ.get("NO_COLOR"):
        return Console(stderr=stderr, highlight=False, color_system=None)
    return Console(stderr=stderr, highlight=False)


def note(message: str) -> None:
    """A message for the person at the terminal: stderr, never stdout."""
    from .exits import report

    report(f"clara: {message}")


class Styled(Record):
    """A table cell with a colour for terminals (e.g. leaks in red); plain text elsewhere."""

    text: str
    style: str

    def __str__(self) -> str:
        return self.text


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str | None = None,
    right: Sequence[str] = (),
    squeeze: Sequence[str] = (),
) -> None:
    """Print rows under column headings (upper case, on a terminal as in a pipe).

    `right` names right-aligned columns; `squeeze` names the columns that are cut short
    (with ...) on a terminal too narrow for them, rather than wrapped over several lines.
    A `title` goes above the table (`clara run`'s report of two tables); tables meant for
    awk and column (dump, leak-check) have none: piped, they are a header line and rows.
    """
    if sys.stdout.isatty():
        _rich_table(columns, rows, title, right, squeeze)
        return
    if title:
        sys.stdout.write(f"{title}:\n")
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    for line in lines:
        padded = [
            text.rjust(width) if column in right else text.ljust(width)
            for text, width, column in zip(line, widths, columns, strict=True)
        ]
        sys.stdout.write("  ".join(padded).rstrip() + "\n")


def _rich_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str | None,
    right: Sequence[str],
    squeeze: Sequence[str],
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [[_cell(value) for value in row] for row in rows]
    out = console()
    # The squeezed columns share what the others leave of the terminal's width (two
    # columns between neighbours), so that every row stays one line.
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    fixed = sum(w for w, c in zip(widths, columns, strict=True) if c not in squeeze)
    room = (out.width - fixed - 2 * (len(columns) - 1)) // max(1, len(squeeze))
    grid = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in columns:
        cut = column in squeeze
        grid.add_column(
            column.upper(),
            justify="right" if column in right else "left",
            no_wrap=True,  # one line a row: too narrow a terminal cuts cells with ...
            overflow="ellipsis",
            max_width=max(room, 16) if cut else None,
        )
    for row, texts in zip(rows, cells, strict=True):
        grid.add_row(
            *(
                Text(text, style=value.style) if isinstance(value, Styled) else Text(text)
                for value, text in zip(row, texts, strict=True)
            )
        )
    out.print(grid)


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """Print `key: value` lines, keys aligned."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{key + ':':<{width + 1}} {_cell(value)}\n")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, Styled):
        return value.text
    if isinstance(value, (tuple, list)):
        return shape(value)
    return str(value)


def shape(dims: Sequence[int] | None) -> str:
    """A shape as tables show it, the way --shape takes it: 64,256,256."""
    return ",".join(str(d) for d in dims) if dims else "-"


def size(nbytes: int) -> str:
    """A byte count for people: 512 B, 8.0 KiB, 256.0 MiB."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{nbytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """A duration for people: 42s, 5m, 3h, 2d."""
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"
