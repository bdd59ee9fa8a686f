"""Bounded waits for what no lock can signal: a name being published, data being written.

The kernel offers no wait on "a file appears" or "a header field changes" that works
across users and file systems, so these waits poll, with a pause that grows from 1 ms to
20 ms: a wait that ends soon costs little, a long one wakes ~50 times a second. Every wait
has a deadline (math.inf only when a caller asks for it).
"""

from __future__ import annotations

import math
import time

from .errors import InvalidArgument

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

DEFAULT_WAIT = 60.0  # seconds a wait lasts when no timeout is given (kubectl wait: 30 s)
FIRST_PAUSE = 1e-3
LONGEST_PAUSE = 20e-3


def seconds(timeout: float | None) -> float:
    """The length of a wait: `timeout` checked (>= 0, math.inf allowed), else DEFAULT_WAIT."""
    if timeout is None:
        return DEFAULT_WAIT
    if timeout < 0 or timeout != timeout:
        raise InvalidArgument(f"invalid timeout {timeout}: use seconds >= 0")
    return float(timeout)


class Deadline:
    """The moment a wait of `length` seconds started now must give up.

    One Deadline may be passed as the `timeout` of several calls, to bound them together
    (e.g. wait for a name, then for its data).
    """

    def __init__(self, length: float) -> None:
        self.length = length
        self.at = math.inf if length == math.inf else time.monotonic() + length

    def left(self) -> float:
        """Seconds left (math.inf for an endless wait, 0.0 once passed)."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - time.monotonic())


def deadline(timeout: float | Deadline | None) -> Deadline:
    """A new Deadline `timeout` seconds from now (see seconds()), or the one given."""
    return timeout if isinstance(timeout, Deadline) else Deadline(seconds(timeout))


def until(ready: Callable[[], T | None], deadline: Deadline) -> T | None:
    """Call `ready()` until it returns something other than None, or the deadline passes.

    Returns what `ready()` returned, or None when the time ran out (`ready()` is always
    called at least once, and once more at the deadline).
    """
    pause = FIRST_PAUSE
    while True:
        found = ready()
        if found is not None:
            return found
        left = deadline.left()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
