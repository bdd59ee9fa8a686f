"""A pre-flight check of this machine for shared-memory pipelines, as plain data.

    for check in diagnose(): print(check.status, check.message, check.fix)

Each `Check` is pass, warn or fail, says what was found (with the figures in
`figures`) and, unless it passed, how to fix it. `clara doctor` renders them; nothing
here prints. Every check reads the real machine: mounts, limits, sysctls, logind's
configuration, a probe of OFD locks, a short fresh-fill timing, the namespace's leaks.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import ClaraError
from ..names import shm_dir
from .checks import (
    FAIL,
    PASS,
    SEVERITY,
    WARN,
    Check,
    c_extension,
    container_shm,
    leaks,
    ofd_locks,
    open_files,
    proc_visibility,
    protected_sysctls,
    remove_ipc,
    shm_directory,
    shm_size,
)
from .huge_pages import huge_pages

__all__ = ["FAIL", "PASS", "WARN", "Check", "diagnose", "worst"]


def diagnose(measure: bool = True) -> list[Check]:
    """Every check, in a fixed order; `measure=False` skips the fill timing."""
    directory = shm_dir()
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("shm-dir", lambda: shm_directory(directory)),
        ("shm-size", lambda: shm_size(directory)),
        ("container-shm", lambda: container_shm(directory)),
        ("remove-ipc", remove_ipc),
        ("open-files", open_files),
        ("ofd-locks", lambda: ofd_locks(directory)),
        ("proc", proc_visibility),
        ("protected", protected_sysctls),
        ("huge-pages", lambda: huge_pages(directory, measure)),
        ("leaks", leaks),
        ("c-extension", c_extension),
    ]
    found = []
    usable = os.path.isdir(directory)
    for name, check in checks:
        if not usable and name in NEEDS_DIRECTORY:
            found.append(Check(name, WARN, f"not checked: {directory} is not a directory"))
            continue
        try:
            found.append(check())
        except (OSError, ClaraError) as exc:  # a check that cannot look warns, never crashes
            found.append(Check(name, WARN, f"could not check: {exc}"))
    return found


NEEDS_DIRECTORY = {"shm-size", "container-shm", "huge-pages", "leaks"}


def worst(checks: list[Check]) -> str:
    """The most severe status among `checks` (pass when there are none)."""
    return max((c.status for c in checks), key=SEVERITY.__getitem__, default=PASS)
