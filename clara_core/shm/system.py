"""Facts about this machine that matter to shared memory, read from the kernel.

Plain readers and probes for `clara doctor` (clara_core.doctor judges them): mounts
from /proc/self/mountinfo, memory from /proc/meminfo, sysctls, whether OFD locks work,
and how fast fresh pages fill with and without huge pages. Nothing here names a file in
the shared-memory directory: probes use unnamed (O_TMPFILE) files only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import re
import struct
import time
from dataclasses import dataclass

_FLOCK = struct.Struct("hhqqi4x")  # as in locks.py: l_type, l_whence, l_start, l_len, l_pid


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on."""

    mount_point: str
    fstype: str
    options: dict[str, str]  # per-mount and superblock options; flags map to ''


def mount_of(path: str) -> Mount | None:
    """The mount holding `path` (the topmost, if several are stacked), or None."""
    real = os.path.realpath(path)
    best: Mount | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                mount = _parse_mountinfo(line)
                if mount is None or not _contains(mount.mount_point, real):
                    continue
                if best is None or len(mount.mount_point) >= len(best.mount_point):
                    best = mount  # later lines are mounted on top of earlier ones
    except OSError:
        return None
    return best


def _parse_mountinfo(line: str) -> Mount | None:
    left, sep, right = line.partition(" - ")
    fields, tail = left.split(), right.split()
    if not sep or len(fields) < 6 or len(tail) < 3:
        return None
    options: dict[str, str] = {}
    for option in (fields[5] + "," + tail[2]).split(","):
        key, _, value = option.partition("=")
        options.setdefault(key, value)
    return Mount(_unescape(fields[4]), tail[0], options)


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _contains(mount_point: str, path: str) -> bool:
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (MemTotal, MemAvailable, SwapTotal, ...); {} if unreadable."""
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
                    found[key] = int(parts[0]) * scale
    except OSError:
        pass
    return found


def read_text(path: str) -> str | None:
    """A small kernel file's text, stripped; None if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read(65536).strip()
    except OSError:
        return None


def sysctl(name: str) -> str | None:
    """The value of a sysctl such as 'fs.protected_regular', or None if unreadable."""
    return read_text("/proc/sys/" + name.replace(".", "/"))


def selected(choices: str | None) -> str | None:
    """The bracketed choice of a /sys setting ('always [madvise] never' -> 'madvise')."""
    match = re.search(r"\[([^\]]+)\]", choices or "")
    return match.group(1) if match else None


def ofd_locks_work(directory: str) -> str:
    """'' if open-file-description locks work on files of `directory`, else why not.

    Two opens of one unnamed file in this one process must exclude each other: that is
    what OFD locks give and classic POSIX locks do not.
    """
    try:
        first = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"cannot create a test file there: {os.strerror(exc.errno or 0)}"
    try:
        second = os.open(f"/proc/self/fd/{first}", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        os.close(first)
        return f"cannot reopen the test file: {os.strerror(exc.errno or 0)}"
    try:
        request = _FLOCK.pack(fcntl.F_WRLCK, 0, 0, 1, 0)
        fcntl.fcntl(first, fcntl.F_OFD_SETLK, request)
        try:
            fcntl.fcntl(second, fcntl.F_OFD_SETLK, request)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return ""
            raise
        return "a second open of the same file got the lock too: locks do not exclude"
    except OSError as exc:
        return f"F_OFD_SETLK failed: {os.strerror(exc.errno or 0)}"
    finally:
        os.close(second)
        os.close(first)


@dataclass(frozen=True)
class Fill:
    """One fresh-fill trial: how long writing every byte of new pages took."""

    nbytes: int
    seconds: float
    huge_bytes: int  # bytes of the mapping that the kernel backed with huge pages

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.nbytes / max(self.seconds, 1e-9)


def fresh_fill(directory: str | None, nbytes: int, huge: bool) -> Fill:
    """Write `nbytes` into fresh pages, asking for huge pages (madvise) or refusing them.

    `directory`: an unnamed file there (shared memory as clara uses it), or None for
    private anonymous memory. The pages are new each time: the cost measured is the
    kernel's fault and zeroing work, which is what huge pages cut.
    """
    fd = -1
    if directory is not None:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        os.ftruncate(fd, nbytes)
    try:
        flags = mmap.MAP_SHARED if fd >= 0 else mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        area = mmap.mmap(fd, nbytes, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            advice = mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE
            with contextlib.suppress(OSError):  # no THP: the trial measures small pages
                area.madvise(advice)
            anchor = ctypes.c_char.from_buffer(area)
            address = ctypes.addressof(anchor)
            start = time.perf_counter()
            ctypes.memset(address, 1, nbytes)
            seconds = time.perf_counter() - start
            huge_bytes = _huge_bytes_at(address)
            del anchor
        finally:
            area.close()
    finally:
        if fd >= 0:
            os.close(fd)
    return Fill(nbytes, seconds, huge_bytes)


_HUGE_FIELDS = ("AnonHugePages", "ShmemPmdMapped", "FilePmdMapped")


def _huge_bytes_at(address: int) -> int:
    """Bytes of the mapping starting at `address` mapped with huge pages (/proc/self/smaps)."""
    start = f"{address:x}-"
    total, inside = 0, False
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as lines:
            for line in lines:
                if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                    if inside:
                        break
                    inside = line.startswith(start)
                elif inside:
                    key, _, value = line.partition(":")
                    if key in _HUGE_FIELDS:
                        total += int(value.split()[0]) * 1024
    except OSError:
        return 0
    return total
