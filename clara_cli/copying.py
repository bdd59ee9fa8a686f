"""`clara map NAME --write --in FILE` and `--read --out FILE`: the copies themselves.

Imports no click, so that the fast path (clara_cli.fastpath) and the click command
(clara_cli.commands.map) run the very same code. Each copy returns the summary that
`--json` prints.
"""

from __future__ import annotations

import os

from . import formats, transfer

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from clara_core import Allocation

    from .target import Target


def summary(allocation: Allocation, mode: str, **extra: object) -> dict:
    """What `clara map --json` prints about the allocation it mapped."""
    return {
        "context": allocation.context.name,
        "name": allocation.name,
        "handle": allocation.handle,
        "mode": "write" if mode == "w" else "read",
        "dtype": allocation.element_type.name,
        "shape": list(allocation.shape),
        "nbytes": allocation.nbytes,
        **extra,
    }


def copy_in(target: Target, path: str, fmt: str) -> dict:
    """Fill the allocation `target` names from `path` ('-': stdin) in format `fmt`."""
    with transfer.open_input(path) as stream:
        incoming = formats.read_head(stream, path, fmt)
        length = (lambda: formats.length(incoming)) if fmt == "raw" else None
        with target.open("w", incoming.shape, incoming.dtype, length) as allocation:
            formats.write_into(allocation, incoming, target.timeout)
            return summary(allocation, "w", format=fmt, file=path)


def copy_out(target: Target, path: str, fmt: str, allow_incomplete: bool) -> dict:
    """Copy the data of the allocation `target` names to `path` ('-': stdout)."""
    with target.open("r") as allocation:
        if fmt == "txt":
            formats.text_check(allocation.shape)
        fifo = transfer.open_fifo(path)  # its wait for a reader holds no lock
        try:
            # Nothing here touches the mapped pages (sendfile, or a copy through the
            # file): a segment cut short meanwhile is an error, never a SIGBUS.
            mapping = target.map(allocation, "r", allow_incomplete=allow_incomplete, populate=False)
            try:
                if fmt == "txt":
                    formats.text_check(mapping.shape)
                opened, fifo = fifo, None  # open_output owns it now (and closes it on error)
                with transfer.open_output(path, allocation.file_id, opened) as stream:
                    if fmt == "txt":
                        formats.write_text(stream, path, formats.copy_out(mapping), lambda _n: None)
                    else:
                        if fmt == "npy":
                            formats.write_npy_header(stream, path, mapping.etype, mapping.shape)
                        label = f"reading {allocation.name}"
                        with transfer.Progress(label, mapping.nbytes) as advance:
                            transfer.send(mapping, stream, path, advance)
            finally:
                mapping.unmap()
        finally:
            if fifo is not None:
                os.close(fifo)
        return summary(allocation, "r", format=fmt, file=path)
