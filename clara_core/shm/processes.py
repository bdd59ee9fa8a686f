"""Process identity and who maps what, read from /proc.

A pid alone does not name a process: pids are reused. A process is (pid, start time), the
start time being field 22 of /proc/<pid>/stat (clock ticks since boot), so a recorded creator
whose pid now belongs to someone else is correctly seen as dead.
"""

from __future__ import annotations

import os

from ..records import Record

_self_identity: tuple[int, int] | None = None


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def identity(pid: int | None = None) -> tuple[int, int]:
    """(pid, start time) of `pid`, by default this process; start 0 if it is not running."""
    global _self_identity
    if pid is None:
        if _self_identity is None:  # cached: getpid() is a system call (reset at fork)
            pid = os.getpid()
            _self_identity = (pid, start_time(pid) or 0)
        return _self_identity
    return pid, start_time(pid) or 0


def _forget_identity() -> None:
    global _self_identity
    _self_identity = None


os.register_at_fork(after_in_child=_forget_identity)


def is_alive(pid: int, start: int) -> bool:
    """Whether the process (pid, start) still runs; start 0 means 'whoever has that pid'."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):  # a zombie has already died
        return False
    return start == 0 or int(fields[19]) == start


def command_name(pid: int) -> str:
    """The short command name of a process, or '?' if it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _is_interpreter(program: str) -> bool:
    """Whether a program's name is python's: python, python3, python3.11 ...

    (str methods, not `re`: this module is loaded by every `clara`, see clara_cli.fastpath)
    """
    return program.startswith("python") and not program[6:].strip("0123456789.")


def command_line(pid: int) -> str:
    """A process's command line on one line, for people: `clara map v --read -- sleep 15`.

    From /proc/<pid>/cmdline; programs are named without their directory, and a Python
    console script (`/venv/bin/python3 /venv/bin/clara ...`) by the script's name. Falls
    back to the short command name (kernel threads, zombies), or '?' if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return command_name(pid)
    args = [arg.decode(errors="replace") for arg in raw.split(b"\0")]
    if args and not args[-1]:
        args.pop()
    if not args:
        return command_name(pid)
    args[0] = os.path.basename(args[0])
    if len(args) > 1 and _is_interpreter(args[0]) and os.path.isabs(args[1]):
        args = [os.path.basename(args[1]), *args[2:]]
    return " ".join(" ".join(arg.split()) or "''" for arg in args)


class Mapper(Record):
    """A live process that maps a segment: how (writable?), and the map lock it holds.

    `lock` is 'read' or 'write' while the process holds a map, None for a mapping kept
    idle (a reference keeps its last mapping for reuse) or when locks were not read.
    """

    pid: int
    writable: bool
    command: str = "?"
    lock: str | None = None

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"

    @property
    def activity(self) -> str:
        """'read', 'write' or 'idle mapping': what the process is doing with it."""
        return self.lock or "idle mapping"


FileId = tuple[int, int]  # (st_dev, st_ino)


def mappers(files: set[FileId]) -> dict[FileId, list[Mapper]]:
    """For each file of `files` that some process maps, the processes mapping it.

    Reads every /proc/<pid>/maps this user may read. A file is matched by device and
    inode, never by path (the directory may be reached through a symbolic link or a bind
    mount, and renamed or deleted files still count); only maps that mention one of the
    files' devices are parsed.
    """
    wanted = {(os.major(dev), os.minor(dev), ino): (dev, ino) for dev, ino in files}
    needles = {f" {os.major(dev):02x}:{os.minor(dev):02x} ".encode() for dev, _ in files}
    found: dict[FileId, dict[int, bool]] = {}
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                text = f.read()
        except OSError:
            continue
        if not any(needle in text for needle in needles):
            continue
        for line in text.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) < 5 or fields[4] == b"0":
                continue
            major, _, minor = fields[3].partition(b":")
            key = wanted.get((int(major, 16), int(minor, 16), int(fields[4])))
            if key is not None:
                holders = found.setdefault(key, {})
                holders[pid] = holders.get(pid, False) or fields[1][1:2] == b"w"
    return {
        key: [Mapper(pid, w, command_line(pid)) for pid, w in sorted(holders.items())]
        for key, holders in found.items()
    }


def openers(files: set[FileId]) -> dict[FileId, list[Mapper]]:
    """For each file of `files` that some process has open, the processes holding it open
    (e.g. a reference without a mapping). Stats every open file of every process this
    user may inspect: for the rare question "who holds this", never on a hot path."""
    found: dict[FileId, dict[int, None]] = {}
    me = os.getpid()  # the asker holds the files it asks about open: never a user of them
    for pid in _pids():
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in files:
                found.setdefault(key, {})[pid] = None
    return {
        key: [Mapper(pid, False, command_line(pid)) for pid in sorted(pids)]
        for key, pids in found.items()
    }


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def lock_holders(
    file_id: FileId, byte: int, candidates: list[Mapper] | None = None
) -> list[Mapper]:
    """Which of the `candidates` (default: every process we can see) hold a lock on
    `byte` of the file, with `lock` set to 'read' or 'write'.

    Read from /proc/<pid>/fdinfo, where the kernel lists every lock of an open file
    (an OFD lock shows pid -1 in /proc/locks, so this is the only way to a holder).
    """
    dev, ino = file_id
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    found = []
    if candidates is None:
        candidates = [Mapper(pid, False) for pid in _pids()]
    for candidate in candidates:
        pid = candidate.pid
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        modes = set()
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    text = f.read()
            except OSError:
                continue
            for line in text.splitlines():
                # lock:\t1: OFDLCK  ADVISORY  WRITE -1 00:1b:3 1 1  (first and last byte;
                # the kernel merges neighbouring locks of one kind into one range)
                fields = line.split()
                if fields[:1] == ["lock:"] and key in fields and _covers(fields, byte):
                    modes.add(fields[-5] == "WRITE")
        if modes:
            command = candidate.command if candidate.command != "?" else command_line(pid)
            lock = "write" if any(modes) else "read"
            found.append(candidate._replace(command=command, lock=lock))
    return found


def _covers(fields: list[str], byte: int) -> bool:
    last = fields[-1]
    return int(fields[-2]) <= byte and (last == "EOF" or byte <= int(last))
