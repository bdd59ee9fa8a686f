"""clara_core: fast, safe, typed POSIX shared memory for multi-process pipelines.

    from clara_core import Context
    ctx = Context.create("job", owner_pid=os.getpid())
    vol = ctx.create(dtype="float32", shape=(64, 256, 256))
    with vol.map("w") as array:
        array[...] = 1.0
    vol.publish("volume")            # another process: Context.open("job").get("volume")

The house, top to bottom (arrows point down only; a lower module that needs a type from
above takes it under TYPE_CHECKING, or is handed a narrow object or callable):

    pipeline/    the Clara pipeline language, the local runner, the operator side
                 (Variable, Driver); uses the object model like any user does
    context.py allocation.py mapping.py pool.py        the object model: what users hold
    members.py lifecycle.py    how a context makes and opens its members; how an
    publishing.py freeing.py   allocation gains and loses names (the lifecycle lock;
                               publish, handle; release, free);
    contexts.py                how a context's own segment is made, and contexts listed
    warm_segments.py           the pool's segments a process keeps mapped for its next claim
    registry.py reference.py   their narrow insides: a context as its allocations see it,
    maps.py private_maps.py    an allocation's reference (its fd; mixed into it), its maps
    forks.py                   (shared ones under the map lock; private ones without),
    removal.py waiting.py      and what a forked child may do with them, the name-removal
                               protocol, bounded waits
    leaks.py inspect.py doctor/   tooling over segments: plain data, no rendering
    shm/         the only code that talks to the kernel: segment files, mmap, the header
                 format, OFD locks, /proc readers
    errors.py names.py dtypes.py records.py   the vocabulary every layer shares

No click, no rich: the `clara` command line (clara_cli) renders what this returns.
"""

from __future__ import annotations

from .errors import (
    AlreadyExists,
    Busy,
    ClaraError,
    Corrupt,
    Incomplete,
    InvalidArgument,
    NeverWritten,
    NotFound,
    OutOfSpace,
    PermissionDenied,
    ReadOnly,
    Timeout,
)
from .lazy import lazy_names

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from .allocation import Allocation
    from .context import Context
    from .dtypes import ElementType, element_type, parse_size
    from .mapping import Mapping

__version__ = "0.1.0"

# Loaded on first use: a command that only lists segments need not load allocations.
_LAZY = {
    "Allocation": "allocation",
    "Context": "context",
    "ElementType": "dtypes",
    "Mapping": "mapping",
    "element_type": "dtypes",
    "parse_size": "dtypes",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "Allocation",
    "AlreadyExists",
    "Busy",
    "ClaraError",
    "Context",
    "Corrupt",
    "ElementType",
    "Incomplete",
    "InvalidArgument",
    "Mapping",
    "NeverWritten",
    "NotFound",
    "OutOfSpace",
    "PermissionDenied",
    "ReadOnly",
    "Timeout",
    "__version__",
    "element_type",
    "parse_size",
]
