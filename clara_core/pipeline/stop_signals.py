"""SIGINT, SIGTERM and SIGHUP as events of the runner's selector: an orderly stop.

with signal_wakeups(selector, received):   # received: a list the signals are appended to
    ...  # the selector reports ("signal", "") when one came; read and drop its bytes
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signal_wakeups(selector: selectors.BaseSelector, received: list[int]) -> Iterator[None]:
    """Turn the stop signals into entries of `received` and a wake-up of `selector` (main
    thread only: elsewhere signals keep their handlers), restoring the handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, _frame: received.append(number))
    selector.register(read_fd, selectors.EVENT_READ, ("signal", ""))
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(read_fd)
        os.close(read_fd)
        os.close(write_fd)
