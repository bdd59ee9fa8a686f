"""clara_core: fast, safe, typed POSIX shared memory for multi-process pipelines.

from clara_core import Context
ctx = Context.create("job", owner_pid=os.getpid())
vol = ctx.create(dtype="float32", shape=(64, 256, 256))
with vol.map("w") as array:
    array[...] = 1.0
vol.publish("volume")            # another process: Context.open("job").get("volume")
"""

from .allocation import Allocation
from .context import Context
from .dtypes import ElementType, element_type, parse_size
from .errors import (
    AlreadyExists,
    Busy,
    ClaraError,
    Corrupt,
    Incomplete,
    InvalidArgument,
    NotFound,
    OutOfSpace,
    PermissionDenied,
    ReadOnly,
    Timeout,
)
from .mapping import Mapping

__version__ = "0.1.0"

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
    "NotFound",
    "OutOfSpace",
    "PermissionDenied",
    "ReadOnly",
    "Timeout",
    "__version__",
    "element_type",
    "parse_size",
]
