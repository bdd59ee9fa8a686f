"""What a user would pick instead of clara: raw posix_ipc + mmap (the floor),
multiprocessing.shared_memory and SharedArray, each wrapped as the same small operations.

Every name made here starts with ``<namespace>-raw.``: inside the benchmark's namespace (so
the final check finds anything left behind) but outside clara's own file-name scheme
(``<namespace>.``), so that clara's leak-check never mistakes them for its segments.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterator

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


def raw_attach_read(name: str, size: int, delete: bool = False) -> Callable[[], object]:
    """open + mmap(PROT_READ) + close + numpy view, as clara's get + map('r') + unmap.

    As people write it, the view and the mmap are simply dropped when the operation
    returns (munmap then); with `delete` the view is deleted and the mmap closed first.
    """
    path = "/" + name

    def operation() -> object:
        shm = posix_ipc.SharedMemory(path, read_only=True)
        memory = mmap.mmap(shm.fd, size, prot=mmap.PROT_READ)
        shm.close_fd()
        view = np.frombuffer(memory, np.uint8)
        if delete:
            del view
            memory.close()
            return None
        return view.shape

    return operation


@contextlib.contextmanager
def raw_open(name: str) -> Iterator[int]:
    """A read-only fd of a raw segment, held for the block."""
    shm = posix_ipc.SharedMemory("/" + name, read_only=True)
    try:
        yield shm.fd
    finally:
        shm.close_fd()


def raw_map_read(fd: int, size: int, delete: bool = False) -> Callable[[], object]:
    """mmap(PROT_READ) of a held fd + numpy view + munmap (as clara's map on a held
    reference); the view dropped on return, or deleted first with `delete`."""

    def operation() -> object:
        memory = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        view = np.frombuffer(memory, np.uint8)
        if delete:
            del view
            memory.close()
            return None
        return view.shape

    return operation


def raw_create_write_unlink(name: str, size: int) -> Callable[[], object]:
    """shm_open(O_CREAT|O_EXCL) + ftruncate + mmap + numpy view + write + unlink + munmap:
    the work of clara's create + map('w') + write + unmap + publish + free."""
    path = "/" + name

    def operation() -> object:
        shm = posix_ipc.SharedMemory(path, posix_ipc.O_CREX, size=size)
        memory = mmap.mmap(shm.fd, size)
        shm.close_fd()
        view = np.frombuffer(memory, np.uint8)
        view[...] = 1
        shm.unlink()
        return view.shape  # view and mmap dropped on return: munmap

    return operation


def raw_unlink(name: str) -> None:
    """Remove a raw segment if it exists."""
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory("/" + name)


# -- multiprocessing.shared_memory ----------------------------------------------------------


def mp_create_write_unlink(name: str, size: int) -> Callable[[], None]:
    """SharedMemory(create=True) + numpy view + write + close + unlink (its resource
    tracker included); the view must go before close(), as the module requires."""
    from multiprocessing import shared_memory

    def operation() -> None:
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        view = np.ndarray((size,), np.uint8, buffer=shm.buf)
        view[...] = 1
        del view
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


def sa_create_write_delete(name: str, size: int) -> Callable[[], object]:
    """SharedArray.create + write + delete (the name); the array dropped on return."""
    url = sa_url(name)

    def operation() -> object:
        array = SharedArray.create(url, size, dtype=np.uint8)
        array[...] = 1
        SharedArray.delete(url)
        return array.shape

    return operation


def sa_delete(name: str) -> None:
    """Remove a SharedArray if it exists."""
    with contextlib.suppress(OSError):
        SharedArray.delete(sa_url(name))
