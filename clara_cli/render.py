"""Output: JSON when asked, else human text; rich is imported only when a table is drawn."""

from __future__ import annotations

import sys
from collections.abc import Callable

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
