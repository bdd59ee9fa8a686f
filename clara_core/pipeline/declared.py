"""What an operator's own process opens by name: its job's context (with the job's warm
pool, if `clara run` names one), and a declared input or output for `clara map NAME`
inside the operator (`open_declared`), which falls back to an allocation published in the
job's context under that name (Clara's manual flavour).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ..allocation import Allocation
from ..context import Context
from ..dtypes import element_type
from ..errors import ClaraError, InvalidArgument, NotFound, ReadOnly
from ..names import validate_name
from .environment import WARM_POOL, OperatorIO
from .variables import Variable


def open_declared(
    name: str,
    mode: str,
    shape: tuple[int, ...] | None = None,
    dtype: object = None,
    length: Callable[[], int] | None = None,
) -> Allocation:
    """Inside an operator of `clara run`: the allocation behind its input or output `name`.

    Inputs resolve to the output of the operator in their `from` and are read-only (a
    write map raises ReadOnly). A dynamic output not yet allocated is sized from `shape`
    (the full shape) and allocated, once `dtype` (if given) is checked against the
    declared element type, so data of the wrong type allocates nothing; a 1-D one (a
    string, `uint8[-1]`) may instead be sized by `length()`, the data's length in bytes
    (raw data, called only then). A name the
    operator does not declare falls back to an allocation published in the job's context
    under that name (Clara's manual flavour).
    """
    validate_name(name, "variable name")
    io = OperatorIO.from_environment()
    writing = str(mode).lower() in ("w", "write")
    context = open_job_context(io.context)
    port = io.find(name)
    if port is None:
        try:
            return context.get(name)
        except NotFound:
            declared = ", ".join(io.names()) or "nothing"
            raise NotFound(
                f"operator '{io.operator}' declares no input or output '{name}' (it declares: "
                f"{declared}), and context '{io.context}' has no allocation of that name"
            ) from None
    if port.allocation is None:
        raise InvalidArgument(
            f"{port.describe(io.operator)} is on disk at {port.path}, not in shared memory"
        )
    variable = Variable(context, port, io.operator)
    if writing and variable.is_input:
        raise ReadOnly(
            f"{variable.describe()} is read-only: it is the output of '{port.source}'; "
            "inputs cannot be mapped for writing"
        )
    if writing and dtype is not None and element_type(dtype) != variable.element_type:
        raise InvalidArgument(
            f"{variable.describe()} holds {variable.element_type.name}; the data is "
            f"{element_type(dtype).name}"
        )
    if writing and shape is not None:
        shape = tuple(shape)
        if not variable.is_allocated:
            variable.update_shape(shape)
            variable.allocate()
        elif shape != variable.shape:
            raise InvalidArgument(
                f"{variable.describe()} has shape {list(variable.shape)}; the data has "
                f"shape {list(shape)}"
            )
    elif writing and not variable.is_allocated:
        if length is None or len(variable.declared_shape) != 1:
            raise InvalidArgument(
                f"{variable.describe()} is dynamic {list(variable.declared_shape)} and not "
                "allocated yet: give the data's full shape (e.g. with --format npy) to "
                "allocate it"
            )
        nbytes, itemsize = length(), variable.element_type.itemsize
        if nbytes == 0 or nbytes % itemsize:
            raise InvalidArgument(
                f"{variable.describe()} holds {variable.element_type.name}: {nbytes} bytes of "
                f"data is not a whole, non-zero number of {itemsize}-byte elements"
            )
        variable.update_shape((nbytes // itemsize,))
        variable.allocate()
    return variable.allocation


def open_job_context(name: str) -> Context:
    """The job's context `name`, using the job's warm pool if `clara run` names one."""
    context = Context.open(name)
    warm_pool = os.environ.get(WARM_POOL)
    if warm_pool:
        # Destroyed meanwhile, or made again unfit for this job (another mode, another
        # user's: anyone may take a free name): fresh pages then. A job never depends on
        # its warm pool, and nobody can make its operators fail through it.
        with contextlib.suppress(ClaraError):
            context.use_warm_pool(warm_pool)
    return context
