"""Whether the shared-memory directory gets huge pages, and what they gain, measured here.

A fresh page costs a fault and zeroing; a 2 MiB huge page replaces 512 of them. tmpfs
gives huge pages by its `huge=` mount option (always, within_size, advise, never) and
/sys/kernel/mm/transparent_hugepage/shmem_enabled can force or deny them everywhere.
The gain is measured on the spot: the same fresh fill with huge pages refused and asked
for (madvise), in the directory itself, or in anonymous memory when the directory can
have none (then the figure says so).
"""

from __future__ import annotations

import os

from ..dtypes import format_size
from ..shm import system
from .checks import PASS, WARN, Check

WORTH_IT = 1.5  # a gain below this is not worth a remount
FILL_BYTES = 32 << 20
TRIALS = 3
SHMEM_ENABLED = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
ANON_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
HUGE_WITHOUT_ASKING = ("always", "within_size")  # clara does not madvise its segments


def huge_pages(directory: str, measure: bool) -> Check:
    """pass: in use, or not worth it; warn: available and worth it, but not enabled."""
    mount = system.mount_of(directory)
    option = (mount.options.get("huge") if mount else None) or "never"
    forced = system.selected(system.read_text(SHMEM_ENABLED))
    figures: dict[str, object] = {"tmpfs_huge": option, "shmem_enabled": forced}
    used = forced == "force" or (option in HUGE_WITHOUT_ASKING and forced != "deny")
    setting = f"tmpfs huge={option}, shmem_enabled={forced or '?'}"
    fix = (
        f"mount -o remount,huge=within_size {directory} (and in /etc/fstab: "
        "defaults,huge=within_size)"
    )
    if forced == "deny":
        fix = f"echo never > {SHMEM_ENABLED}; then {fix}"
    if not measure:
        status = PASS if used else WARN
        return Check(
            "huge-pages", status, f"{setting} (gain not measured)", "" if used else fix, figures
        )
    gain, where = _measure(directory, figures)
    if gain is None:
        return Check(
            "huge-pages",
            PASS,
            f"{setting}; this kernel gives no huge pages ({where})",
            figures=figures,
        )
    measured = f"a fresh fill of {format_size(figures['fill_bytes'])} ran {gain:.1f}x faster "
    measured += f"with huge pages ({where})"
    if used:
        return Check("huge-pages", PASS, f"in use ({setting}): {measured}", figures=figures)
    if gain < WORTH_IT:
        return Check(
            "huge-pages", PASS, f"not in use ({setting}); {measured}, not worth it", figures=figures
        )
    return Check("huge-pages", WARN, f"not in use ({setting}); {measured}", fix, figures)


def _measure(directory: str, figures: dict[str, object]) -> tuple[float | None, str]:
    """(gain, where it was measured), the best of TRIALS fills each way."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    nbytes = min(FILL_BYTES, free // 4) // (2 << 20) * (2 << 20)
    target: str | None = directory
    where = f"in {directory}"
    if nbytes < 4 << 20 or not _huge_possible(directory, nbytes):
        target, nbytes = None, FILL_BYTES
        where = "measured in anonymous memory: the directory cannot have huge pages"
        if not _huge_possible(None, nbytes):
            enabled = system.selected(system.read_text(ANON_ENABLED))
            return None, f"transparent huge pages: {enabled or 'unavailable'}"
    small = min(system.fresh_fill(target, nbytes, huge=False).seconds for _ in range(TRIALS))
    huge = min(system.fresh_fill(target, nbytes, huge=True).seconds for _ in range(TRIALS))
    gain = small / max(huge, 1e-9)
    figures.update(
        fill_bytes=nbytes,
        fill_seconds_small_pages=round(small, 6),
        fill_seconds_huge_pages=round(huge, 6),
        gain=round(gain, 2),
        measured_in=target or "anonymous memory",
    )
    return gain, where


def _huge_possible(directory: str | None, nbytes: int) -> bool:
    return system.fresh_fill(directory, nbytes, huge=True).huge_bytes > 0
