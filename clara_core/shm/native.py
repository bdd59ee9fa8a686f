"""The C extension `_calls` (clara_core/shm/c/), or None.

`_calls` issues the system-call sequences of the hot paths (get, map, unmap, create,
publish, free) in one call each. It is built at install when a C compiler and Python's
headers are there; without it, or with CLARA_PURE_PYTHON=1 in the environment, clara
issues the same calls from Python, with the same results and errors, only slower.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from types import ModuleType

VERSION = 15  # the C sources' CLARA_CALLS_VERSION this Python code was written for


# Every name the Python side takes from the extension (shm/access.py, making.py, memory.py,
# fields.py, staging.py, directory.py).
NAMES = (
    "open_locked",
    "map_locked",
    "map_at",
    "munmap",
    "set_lock",
    "holder",
    "cut_off",
    "disown",
    "AllocationFields",
    "RegionFields",
    "MappingFields",
    "create",
    "create_private",
    "publish",
    "lock_lifecycle",
    "free_named",
    "stage",
    "write_staged",
    "attach_staged",
    "link_open_file",
    "rename_new",
    "set_up_maps",
    "view_known",
    "map_staged",
    "set_up_usual",
    "publish_usual",
    "free_usual",
    "create_usual",
    "UsualMethod",
    "PROT_READ",
    "PROT_WRITE",
    "MAP_SHARED",
    "MAP_POPULATE",
)


# Why `calls` is what it is (`clara doctor` says it): the extension LOADED; OFF
# (CLARA_PURE_PYTHON=1); NOT_BUILT; or a build skipped: UNLOADABLE (the import failed),
# STALE (its VERSION differs), INCOMPLETE (it lacks a name). `problem` says what, for these.
LOADED, OFF, NOT_BUILT = "loaded", "off", "not built"
UNLOADABLE, STALE, INCOMPLETE = "unloadable", "stale", "incomplete"
state = LOADED
problem = ""


def _load() -> ModuleType | None:
    global state, problem
    if os.environ.get("CLARA_PURE_PYTHON") == "1":  # (only "1": "0" leaves it on)
        state = OFF
        return None
    try:
        from . import _calls
    except ImportError as exc:  # (none built: "cannot import name" from this package)
        state, problem = (NOT_BUILT, "") if exc.name == __package__ else (UNLOADABLE, str(exc))
        return None
    # A build left from other sources (an editable install not rebuilt) is not used, nor
    # one that lacks a name: the pure-Python twins then run, rather than an import failing.
    built = getattr(_calls, "VERSION", None)
    missing = [name for name in NAMES if not hasattr(_calls, name)]
    if built != VERSION:
        state, problem = STALE, f"built from version {built} of the C sources, not {VERSION}"
    elif missing:
        state, problem = INCOMPLETE, "it lacks " + ", ".join(missing)
    else:
        return _calls
    where = getattr(_calls, "__file__", None)  # (None: a module made by a test)
    problem += f" ({where})" if where else ""
    return None


calls = _load()
