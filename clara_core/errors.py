"""The one exception hierarchy of clara_core.

    ClaraError                      exit code 1, root of everything clara_core raises
    ├── InvalidArgument (ValueError)        2  bad name, element type, shape, size, file
    ├── NotFound (FileNotFoundError)        3  no such context, allocation or handle
    ├── Busy (BlockingIOError)              4  mapped by another process right now
    ├── Timeout (TimeoutError)              5  waited `timeout` seconds for a map
    ├── Incomplete                          6  its writer died or failed mid-write
    │   └── NeverWritten                    6  no writer has finished writing it yet
    ├── OutOfSpace (OSError)                7  /dev/shm or the context's capacity is full
    ├── PermissionDenied (PermissionError)  8  mode bits, another user, or a read-only input
    │   └── ReadOnly                        8  a write map of something only readable
    ├── Corrupt                             9  a damaged or foreign segment
    └── AlreadyExists (FileExistsError)    10  the name is taken

Each class also inherits the builtin exception a plain Python caller would expect, and
carries the exit code that the `clara` command line turns it into.

An error may carry a `hint`: what to do, with the options that would help written as
`{allow_incomplete}`, `{wait}`, `{timeout}`. `str(error)` spells them as a Python caller
passes them (`allow_incomplete=True`); the command line spells them as its flags
(`--allow-incomplete`) with `error.explain(spelling)`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = [
    "AlreadyExists",
    "Busy",
    "ClaraError",
    "Corrupt",
    "Incomplete",
    "InvalidArgument",
    "NeverWritten",
    "NotFound",
    "OutOfSpace",
    "PermissionDenied",
    "ReadOnly",
    "Timeout",
]


# How a Python caller spells the options a hint names.
PYTHON_SPELLING = {
    "allow_incomplete": "allow_incomplete=True",
    "wait": "wait=True",
    "timeout": "timeout=SECONDS",
}


class ClaraError(Exception):
    """Root of every error clara_core raises; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint  # what to do; options as {allow_incomplete}, {wait}, {timeout}

    def explain(self, spelling: Mapping[str, str]) -> str:
        """The message and its hint, the options in the hint spelled by `spelling`."""
        if not self.hint:
            return self.message
        return f"{self.message}; {self.hint.format_map(spelling)}"

    def __str__(self) -> str:
        return self.explain(PYTHON_SPELLING)


class InvalidArgument(ClaraError, ValueError):
    """A name, element type, shape, size or input file that cannot be used."""

    exit_code = 2


class NotFound(ClaraError, FileNotFoundError):
    """No context, allocation or handle of that name exists (any more)."""

    exit_code = 3


class Busy(ClaraError, BlockingIOError):
    """The allocation is mapped by someone else in a conflicting mode."""

    exit_code = 4


class Timeout(ClaraError, TimeoutError):
    """A map waited its whole `timeout` for a conflicting holder to go."""

    exit_code = 5


class Incomplete(ClaraError):
    """The last writer died or failed while mapped for writing: the data may be torn."""

    exit_code = 6


class NeverWritten(Incomplete):
    """No writer has finished writing the data yet: it holds zeros, or, if its segment was
    recycled, the bytes of an allocation freed before in the same context."""


class OutOfSpace(ClaraError, OSError):
    """Not enough room in the shared-memory file system or in the context's capacity."""

    exit_code = 7


class PermissionDenied(ClaraError, PermissionError):
    """The operating system or the object's access mode forbids the operation."""

    exit_code = 8


class ReadOnly(PermissionDenied):
    """A write map was asked of something that may only be read."""


class Corrupt(ClaraError):
    """A segment whose header is damaged, truncated, or not one of ours."""

    exit_code = 9


class AlreadyExists(ClaraError, FileExistsError):
    """The context or allocation name is already taken."""

    exit_code = 10
