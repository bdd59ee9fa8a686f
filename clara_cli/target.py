"""The allocation a command line names (by name, handle or declared variable), and how
long it may wait for it: one deadline for the name to be published and its data written."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from clara_core import Allocation, Mapping
    from clara_core.waiting import Deadline


def names_declared(handle: bool) -> bool:
    """Whether a NAME (not a handle) names a declared variable: inside a pipeline operator."""
    return not handle and bool(os.environ.get("CLARA_OPERATOR"))


class Target:
    """What the command line names: an allocation (or handle) and how to wait for it."""

    def __init__(
        self,
        context_name: str | None,
        name: str,
        handle: bool,
        wait: bool,
        timeout: float | None,
        declared: bool = True,
    ) -> None:
        """`declared`: inside a pipeline operator, NAME may be a declared input or output."""
        self.context_name, self.name, self.handle = context_name, name, handle
        self.declared = declared and names_declared(handle)
        self.wait, self.timeout = wait, timeout
        self.deadline: Deadline | None = None
        if wait:
            from clara_core.waiting import Deadline, seconds

            self.deadline = Deadline(seconds(timeout))  # one wait, for the name and the data

    def open(
        self,
        mode: str,
        shape: tuple | None = None,
        dtype: object = None,
        length: Callable[[], int] | None = None,
    ) -> Allocation:
        """The allocation: a handle's, a declared variable inside a pipeline operator,
        else the one published under the name (waited for with --wait)."""
        if self.declared:
            from clara_core.pipeline.declared import open_declared

            return open_declared(self.name, mode, shape=shape, dtype=dtype, length=length)
        from clara_core import Context

        context_name = self.context_name
        if not context_name:
            from .options import require_context  # imports click: only for this error

            context_name = require_context(context_name)
        with Context.open(context_name) as context:
            if self.handle:
                return context.open_handle(self.name, timeout=self.timeout)
            if self.deadline is not None:
                return context.get(self.name, wait=True, timeout=self.deadline)
            return context.get(self.name, timeout=self.timeout)

    def map(self, allocation: Allocation, mode: str, **options: Any) -> Mapping:
        """Map it; with --wait, for what is left of the wait."""
        if self.deadline is not None:
            return allocation.map(mode, wait=True, timeout=self.deadline, **options)
        return allocation.map(mode, timeout=self.timeout, **options)
