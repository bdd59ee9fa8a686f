"""What a user would pick instead of clara: raw posix_ipc + mmap (the floor),
multiprocessing.shared_memory and SharedArray, each wrapped as the same small operations.

Every name made here starts with ``<namespace>-raw.``: inside the benchmark's namespace (so
the final check finds anything left behind) but outside clara's own file-name scheme
(``<namespace>.``), so that clara's leak-check never mistakes them for its segments.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable

import numpy as np
import posix_ipc
import SharedArray


def raw_name(namespace: str, name: str) -> str:
    """The name of a baseline segment (without the leading '/' posix_ipc wants)."""
    return f"{namespace}-raw.{name}"


# -- raw posix_ipc + mmap: the floor --------------------------------------------------------


def raw_create(name: str, size: int, fill: int = 1) -> None:
    """Create a named segment of `size` bytes holding `fill` (setup, not timed)."""
    shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=size)
    with mmap.mmap(shm.fd, size) as memory:
        memory.write(bytes([fill]) * size)
    shm.close_fd()


def raw_attach_read(name: str, size: int) -> Callable[[], None]:
    """open + mmap(PROT_READ) + numpy view + close, as clara's get + map('r') + unmap."""
    path = "/" + name

    def operation() -> None:
        shm = posix_ipc.SharedMemory(path, read_only=True)
        memory = mmap.mmap(shm.fd, size, prot=mmap.PROT_READ)
        shm.close_fd()
        view = np.frombuffer(memory, np.uint8)
        del view
        memory.close()

    return operation


def raw_create_map_unlink(name: str, size: int) -> Callable[[], None]:
    """shm_open(O_CREAT|O_EXCL) + ftruncate + mmap + unlink + munmap."""
    path = "/" + name

    def operation() -> None:
        shm = posix_ipc.SharedMemory(path, posix_ipc.O_CREX, size=size)
        memory = mmap.mmap(shm.fd, size)
        shm.close_fd()
        shm.unlink()
        memory.close()

    return operation


def raw_unlink(name: str) -> None:
    """Remove a raw segment if it exists."""
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory("/" + name)


# -- multiprocessing.shared_memory ----------------------------------------------------------


def mp_create_unlink(name: str, size: int) -> Callable[[], None]:
    """SharedMemory(create=True) + close + unlink (its resource tracker included)."""
    from multiprocessing import shared_memory

    def operation() -> None:
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        shm.close()
        shm.unlink()

    return operation


# -- SharedArray ----------------------------------------------------------------------------


def sa_url(name: str) -> str:
    """SharedArray's spelling of a POSIX shared-memory name."""
    return "shm://" + name


def sa_create(name: str, size: int, fill: int = 1) -> None:
    """Create a SharedArray of `size` bytes holding `fill` (setup, not timed)."""
    array = SharedArray.create(sa_url(name), size, dtype=np.uint8)
    array[...] = fill
    del array


def sa_attach_read(name: str) -> Callable[[], None]:
    """SharedArray.attach (read-only) + drop the array (which unmaps it)."""
    url = sa_url(name)

    def operation() -> None:
        array = SharedArray.attach(url, ro=True)
        del array

    return operation


def sa_create_delete(name: str, size: int) -> Callable[[], None]:
    """SharedArray.create + delete + drop the array."""
    url = sa_url(name)

    def operation() -> None:
        array = SharedArray.create(url, size, dtype=np.uint8)
        SharedArray.delete(url)
        del array

    return operation


def sa_delete(name: str) -> None:
    """Remove a SharedArray if it exists."""
    with contextlib.suppress(OSError):
        SharedArray.delete(sa_url(name))
