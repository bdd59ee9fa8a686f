"""Output: JSON when asked, else human text.

Tables are drawn with rich only when stdout is a terminal (rich is imported then, and it
honours NO_COLOR); otherwise they are plain, space-aligned columns that scripts can cut.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .options import wants_json


def emit(data: object, human: Callable[[], None]) -> None:
    """Print `data` as one JSON document if --json was given, else call `human()`."""
    if wants_json():
        import json

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        human()


def console(stderr: bool = False):  # -> rich.console.Console
    """A rich Console that honours NO_COLOR and stays plain when not writing to a terminal."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def note(message: str) -> None:
    """A message for the person at the terminal: stderr, never stdout."""
    sys.stderr.write(f"clara: {message}\n")


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str | None = None,
    right: Sequence[str] = (),
) -> None:
    """Print rows under column headings; `right` names right-aligned columns."""
    cells = [[_cell(value) for value in row] for row in rows]
    if sys.stdout.isatty():
        _rich_table(columns, cells, title, right)
        return
    if title:
        sys.stdout.write(f"{title}:\n")
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    for line in lines:
        padded = [
            text.rjust(width) if column in right else text.ljust(width)
            for text, width, column in zip(line, widths, columns, strict=True)
        ]
        sys.stdout.write("  ".join(padded).rstrip() + "\n")


def _rich_table(
    columns: Sequence[str], cells: list[list[str]], title: str | None, right: Sequence[str]
) -> None:
    from rich import box
    from rich.table import Table

    grid = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="right" if column in right else "left")
    for row in cells:
        grid.add_row(*row)
    console().print(grid)


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """Print `key: value` lines, keys aligned."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{key + ':':<{width + 1}} {_cell(value)}\n")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


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
