"""An operator tells `clara run` that its outputs are complete, before it exits.

A reader of a shared-memory variable waits until its producer has completed it
(`readiness`). Without a word from the producer, the runner learns that only at the
producer's exit, so the producer's exit (interpreter finalisation, the teardown of its
maps' page tables) and the runner's wake-up are on every edge's critical path. With it,
the runner checks the outputs as it would at the exit, and lets the readers go at once.

The channel is an unnamed Unix datagram socket pair per operator: the runner keeps one
end (SO_PASSCRED on), the operator inherits the other as descriptor $CLARA_COMPLETE_FD.
A message ``complete`` (a trailing newline allowed) counts only if it comes from the
process the runner started (its pid, attached by the kernel to each message: only a
process with CAP_SYS_ADMIN, such as root, can claim another's pid, and only the
operator's own processes hold its end), whatever it has exec'd since; anything else is
read and ignored. The message is a claim, never trusted as such: the runner then checks
every output someone reads, exactly as at the exit (there, completely written, as
declared), and only if that passes, and every operator it reads from has completed,
marks it succeeded and lets its readers go; otherwise it ignores the message and the
exit decides, as before. Nothing here can release a reader onto data that is not
complete, and nobody but the runner and the operator's own processes holds either end
(another user cannot reach a descriptor of these processes).

    channel = CompletionChannel()          # the runner, before it starts the operator
    env[COMPLETE_FD] = str(channel.child_fd); spawn with pass_fds=(channel.child_fd,)
    channel.started()                      # the runner's copy of the child's end goes
    channel.claimed_by(pid)                # on each readable event: a valid claim?

    tell_runner_complete()                 # the operator: best effort, never raises
"""

from __future__ import annotations

import _socket as socket  # socket.py's C core: socket.py itself costs each operator 3-7 ms
import contextlib
import os
import struct
from collections.abc import Mapping

COMPLETE_FD = "CLARA_COMPLETE_FD"
MESSAGE = b"complete"
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_MESSAGE = 64
_READS_PER_EVENT = 64  # then back to the runner's loop (its timeout, signals, exits)


class CompletionChannel:
    """The runner's end of one operator's channel (non-blocking, close-on-exec)."""

    def __init__(self) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM, 0)
        self.child: socket.socket | None = child
        # Before the operator exists: every message it sends then carries its credentials.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setblocking(False)

    @property
    def fd(self) -> int:
        """The runner's end, for a selector."""
        return self.sock.fileno()

    @property
    def child_fd(self) -> int:
        """The operator's end, to pass to it (pass_fds) and name in $CLARA_COMPLETE_FD."""
        assert self.child is not None
        return self.child.fileno()

    def started(self) -> None:
        """Close the runner's copy of the operator's end (once it is started, or failed to)."""
        if self.child is not None:
            self.child.close()
            self.child = None

    def claimed_by(self, pid: int) -> bool:
        """Read the messages waiting (a few dozen at most: a flood never holds the runner
        up, the selector reports the rest); whether one was ``complete`` from `pid`."""
        claimed = False
        for _ in range(_READS_PER_EVENT):
            try:
                data, ancillary, _, _ = self.sock.recvmsg(
                    _MAX_MESSAGE, socket.CMSG_SPACE(_CREDENTIALS.size)
                )
            except (BlockingIOError, InterruptedError):
                break
            if data.removesuffix(b"\n") == MESSAGE and _sender(ancillary) == pid:
                claimed = True
        return claimed

    def close(self) -> None:
        """Close both ends the runner still has."""
        self.started()
        self.sock.close()


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The pid the kernel attached to a message (SO_PASSCRED), if any."""
    for level, kind, data in ancillary:
        credentials = level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        if credentials and len(data) >= _CREDENTIALS.size:
            return _CREDENTIALS.unpack_from(data)[0]
    return None


def tell_runner_complete(environ: Mapping[str, str] | None = None) -> bool:
    """Tell the runner that this operator's outputs are complete; whether it was sent.

    Sent only through a descriptor that is what the runner gave: a Unix datagram socket
    whose peer is this process's parent (a descriptor number inherited by some other
    process may be anything by now). Best effort: never raises, never blocks.
    """
    text = (os.environ if environ is None else environ).get(COMPLETE_FD, "")
    if not text.isdigit():
        return False
    try:
        sock = socket.socket(fileno=int(text))
    except OSError:  # not a socket, or not open
        return False
    try:
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_DGRAM:
            return False
        peer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        if _CREDENTIALS.unpack(peer)[0] != os.getppid():
            return False
        sock.send(MESSAGE, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.detach()  # the descriptor stays as it was: not ours to close
