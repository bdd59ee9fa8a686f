/* Access to existing segments: get, map, unmap (twins in clara_core/shm/access.py and
 * memory_calls.py; the Holder of a mapping's views is in holder.c).
 *
 * open_locked  get: open, the reference lock, fstat (the fields checked), the header's pread
 * map_locked   map: the map lock, the mapping, the preads of its last byte and the layout
 * map_at       the mapping alone, over a kept range if there is one
 * munmap       a mapping no view can reach
 * set_lock     a lock request (unmap's unlock)
 *
 * Each issues the very calls of its Python twin, in the same order with the same arguments;
 * every check of what they return is made in Python, once, for both.
 */
#include "calls.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A lock request as fcntl.fcntl takes it: a packed struct flock (locks.requests). */
static int flock_of(PyObject *request, struct flock *lock) {
    if (!PyBytes_Check(request) || PyBytes_GET_SIZE(request) != (Py_ssize_t)sizeof *lock) {
        PyErr_SetString(PyExc_TypeError, "a lock request is a packed struct flock (bytes)");
        return -1;
    }
    memcpy(lock, PyBytes_AS_STRING(request), sizeof *lock);
    return 0;
}

/* pread into a new bytes object of at most `size` bytes. NULL if it failed: with *error
 * its errno (no exception set), or *error 0 and an exception (no memory; a signal's). */
static PyObject *read_at(int fd, Py_ssize_t size, off_t offset, int *error) {
    *error = 0;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes == NULL) {
        return NULL;
    }
    ssize_t got;
    do {
        got = pread(fd, PyBytes_AS_STRING(bytes), (size_t)size, offset);
    } while (got < 0 && retry());
    if (got < 0) {
        *error = PyErr_Occurred() ? 0 : errno;
        Py_DECREF(bytes);
        return NULL;
    }
    if (got != size && _PyBytes_Resize(&bytes, got) < 0) {
        return NULL;
    }
    return bytes;
}

static PyObject *uid_number(unsigned long id) {
    return id == (unsigned long)(uid_t)-1 ? PyLong_FromLong(-1) : PyLong_FromUnsignedLong(id);
}

/* The fields of `st` a get checks, as os.fstat makes them: (mode, inode, device, links,
 * owner, group, size), which are os.stat_result's first 7 (access.FileStat names them). A
 * whole os.stat_result (19 fields, 9 of them times) costs more than those checks. */
static PyObject *file_stat(const struct stat *st) {
    PyObject *fields[7] = {
        PyLong_FromLong((long)st->st_mode),        PyLong_FromUnsignedLongLong(st->st_ino),
        PyLong_FromLongLong((long long)st->st_dev), PyLong_FromLong((long)st->st_nlink),
        uid_number(st->st_uid),                     uid_number(st->st_gid),
        PyLong_FromLongLong((long long)st->st_size),
    };
    return tuple_of(7, fields);
}

/* Whether `known` (as file_stat makes them) holds the very fields of `st`. */
static int same_stat(const struct stat *st, PyObject *known) {
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 7) {
        return 0;
    }
    unsigned long uid = (unsigned long)st->st_uid, gid = (unsigned long)st->st_gid;
    long long values[7] = {
        (long long)st->st_mode,  0, (long long)st->st_dev, (long long)st->st_nlink,
        uid == (unsigned long)(uid_t)-1 ? -1 : (long long)uid,
        gid == (unsigned long)(uid_t)-1 ? -1 : (long long)gid, (long long)st->st_size,
    };
    for (int i = 0; i < 7; i++) {
        PyObject *item = PyTuple_GET_ITEM(known, i);
        int same;
        if (!PyLong_CheckExact(item)) {
            return 0;
        } else if (i == 1) {  // (the inode: unsigned)
            same = PyLong_AsUnsignedLongLong(item) == (unsigned long long)st->st_ino;
        } else {
            same = PyLong_AsLongLong(item) == values[i];
        }
        if (PyErr_Occurred()) {  // (too large: not these)
            PyErr_Clear();
            return 0;
        }
        if (!same) {
            return 0;
        }
    }
    return 1;
}

/* The header: read_at's, or `known` itself if it holds the very bytes read. */
static PyObject *read_header(int fd, Py_ssize_t size, PyObject *known, int *error) {
    char bytes[4096];
    if (!PyBytes_CheckExact(known) || size > (Py_ssize_t)sizeof bytes) {
        return read_at(fd, size, 0, error);
    }
    *error = 0;
    ssize_t got;
    do {
        got = pread(fd, bytes, (size_t)size, 0);
    } while (got < 0 && retry());
    if (got < 0) {
        *error = PyErr_Occurred() ? 0 : errno;
        return NULL;
    }
    if (got == PyBytes_GET_SIZE(known) && memcmp(bytes, PyBytes_AS_STRING(known), got) == 0) {
        return Py_NewRef(known);
    }
    return PyBytes_FromStringAndSize(bytes, got);
}

/* open_locked(dir_fd, name, flags, lock, header_size, known)
 *   -> (fd, locked, stat, header)
 *
 * get's calls: openat(dir_fd, name, flags); the lock `lock` (a packed request, or None)
 * tried once, never waited for (any failure: not locked, Python decides); fstat; and if it
 * is a regular file and `header_size`, the pread of the header at 0 (its errno, an int,
 * if that fails: the checks of the file come first). Closes the fd if it raises.
 * `known`: None, or a tuple whose first two items are a stat and a header an earlier
 * call gave: a stat or header equal to those is that very object (so that Python, which
 * remembers the verdict of their checks, compares them by identity). */
static PyObject *open_locked(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int dir_fd, flags;
    if (arguments("open_locked", nargs, 6) < 0 || int_of(args[0], &dir_fd) < 0 ||
        int_of(args[2], &flags) < 0) {
        return NULL;
    }
    PyObject *known_stat = Py_None, *known_header = Py_None;
    if (args[5] != Py_None) {
        if (!PyTuple_Check(args[5]) || PyTuple_GET_SIZE(args[5]) < 2) {
            PyErr_SetString(PyExc_TypeError, "open_locked: known is (stat, header, ...)");
            return NULL;
        }
        known_stat = PyTuple_GET_ITEM(args[5], 0);
        known_header = PyTuple_GET_ITEM(args[5], 1);
    }
    Py_ssize_t header_size = PyLong_AsSsize_t(args[4]);
    if (header_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    struct flock lock;
    if (args[3] != Py_None && flock_of(args[3], &lock) < 0) {
        return NULL;
    }
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(args[1], &path)) {  // as os.open: str, bytes or a path
        return NULL;
    }
    int fd;
    do {
        fd = openat(dir_fd, PyBytes_AS_STRING(path), flags, 0);
    } while (fd < 0 && retry());
    int error = errno;  // (before the DECREF: a free may set errno)
    Py_DECREF(path);
    if (fd < 0) {
        if (!PyErr_Occurred()) {
            errno = error;
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, args[1]);
        }
        return NULL;
    }
    int locked = args[3] != Py_None && set_lock(fd, &lock) == 0;
    if (PyErr_Occurred()) {  // a signal handler raised while the lock was retried
        close(fd);
        return NULL;
    }
    struct stat st;
    int result;
    do {
        result = fstat(fd, &st);
    } while (result < 0 && retry());
    PyObject *found = result < 0                      ? fail()
                      : same_stat(&st, known_stat) ? Py_NewRef(known_stat)
                                                   : file_stat(&st);
    PyObject *header = NULL;
    if (found != NULL) {
        if (header_size <= 0 || !S_ISREG(st.st_mode)) {
            header = Py_NewRef(Py_None);
        } else if ((header = read_header(fd, header_size, known_header, &error)) == NULL &&
                   error) {
            header = PyLong_FromLong(error);
        }
    }
    if (header == NULL) {
        Py_XDECREF(found);
        close(fd);
        return NULL;
    }
    PyObject *items[4] = {PyLong_FromLong(fd), PyBool_FromLong(locked), found, header};
    PyObject *opened = tuple_of(4, items);
    if (opened == NULL) {
        close(fd);
    }
    return opened;
}

/* mmap(at, length, prot, flags, fd, 0); `at` != NULL: MAP_FIXED there first (a kept
 * range), anywhere if that fails. MAP_FAILED (errno) or the address. */
static void *map_at(void *at, size_t length, int prot, int flags, int fd) {
    void *address = MAP_FAILED;
    int unlocked = (flags & MAP_POPULATE) && length >= UNLOCKED_FROM;
    PyThreadState *state = unlocked ? PyEval_SaveThread() : NULL;
    if (at != NULL) {
        address = mmap(at, length, prot, flags | MAP_FIXED, fd, 0);
    }
    if (address == MAP_FAILED) {  // (a failed fixed map: the range is forgotten, as in Python)
        address = mmap(NULL, length, prot, flags, fd, 0);
    }
    if (state != NULL) {
        int error = errno;
        PyEval_RestoreThread(state);
        errno = error;
    }
    return address;
}

/* map_locked(fd, lock, at, length, prot, flags, header_size)
 *   -> (address, locked, last, header)
 *
 * map's calls: the map lock `lock` tried (None: held already); busy (EAGAIN, EACCES):
 * (0, False, b"", b"") at once, nothing mapped. Then the mapping of `length` bytes (`at`:
 * None, none (address 0: Python reuses a kept one, or defers it); 0, anywhere; else over
 * the kept range there, MAP_FIXED, or anywhere if that fails); the pread of the file's
 * last byte (b"": cut short) and of the header's first `header_size` bytes. If it raises,
 * what it mapped is unmapped and the lock it took let go; if the lock failed, the kept
 * range `at` is unmapped too (the caller gives back only a busy one's). */
static PyObject *map_locked(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd, prot, flags;
    if (arguments("map_locked", nargs, 7) < 0 || int_of(args[0], &fd) < 0 ||
        int_of(args[4], &prot) < 0 || int_of(args[5], &flags) < 0) {
        return NULL;
    }
    Py_ssize_t length = PyLong_AsSsize_t(args[3]);
    Py_ssize_t header_size = PyLong_AsSsize_t(args[6]);
    void *at = args[2] == Py_None ? NULL : PyLong_AsVoidPtr(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (length <= 0 || header_size < 0) {
        PyErr_SetString(PyExc_ValueError, "map_locked: a length must be positive");
        return NULL;
    }
    struct flock lock;
    int locking = args[1] != Py_None;
    if (locking) {
        if (flock_of(args[1], &lock) < 0) {
            return NULL;
        }
        if (set_lock(fd, &lock) < 0) {
            if (PyErr_Occurred() || (errno != EAGAIN && errno != EACCES)) {
                fail();
                if (at != NULL) {  // (the caller gives back only a busy one's kept range)
                    unmap_range(at, (size_t)length);
                }
                return NULL;
            }
            PyObject *busy[4] = {PyLong_FromLong(0), Py_NewRef(Py_False),
                                 PyBytes_FromStringAndSize(NULL, 0),
                                 PyBytes_FromStringAndSize(NULL, 0)};
            return tuple_of(4, busy);
        }
    }
    void *address = NULL;
    int error = 0;  // (read_at's errno: its DECREF may have changed errno)
    if (args[2] != Py_None) {
        address = map_at(at, (size_t)length, prot, flags, fd);
        if (address == MAP_FAILED) {
            address = NULL;
            goto failed;
        }
    }
    PyObject *last = read_at(fd, 1, (off_t)length - 1, &error);
    if (last == NULL) {
        goto failed;
    }
    PyObject *header = read_at(fd, header_size, 0, &error);
    if (header == NULL) {
        Py_DECREF(last);
        goto failed;
    }
    PyObject *items[4] = {PyLong_FromVoidPtr(address), PyBool_FromLong(1), last, header};
    PyObject *mapped = tuple_of(4, items);
    if (mapped != NULL) {
        return mapped;
    }
failed:
    if (error != 0) {
        errno = error;
    }
    fail();  // (errno's OSError, unless an exception is set already)
    if (address != NULL) {
        munmap(address, (size_t)length);
    }
    if (locking) {
        lock.l_type = F_UNLCK;
        fcntl(fd, F_OFD_SETLK, &lock);
    }
    return NULL;
}

/* map_at(at, length, prot, flags, fd) -> address
 *
 * memory.map_at's call: mmap `length` bytes of `fd` over the kept range at `at` (MAP_FIXED),
 * or anywhere if there is none (0) or that fails (the range is then forgotten). The map of
 * a segment only this process reaches (a fresh allocation's): no lock, no header to read;
 * through ctypes (the twin) it costs about 1 us more than the mmap itself. */
static PyObject *map_anywhere(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int prot, flags, fd;
    if (arguments("map_at", nargs, 5) < 0 || int_of(args[2], &prot) < 0 ||
        int_of(args[3], &flags) < 0 || int_of(args[4], &fd) < 0) {
        return NULL;
    }
    void *at = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t length = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    void *address = map_at(at, (size_t)length, prot, flags, fd);  // (0: EINVAL, as mmap says)
    return address == MAP_FAILED ? fail() : PyLong_FromVoidPtr(address);
}

/* munmap(address, length): a mapping nothing reaches any more (OSError if it fails). */
static PyObject *unmap(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("munmap", nargs, 2) < 0) {
        return NULL;
    }
    void *address = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t length = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return unmap_range(address, (size_t)length) < 0 ? fail() : Py_NewRef(Py_None);
}

/* set_lock(fd, request): fcntl(F_OFD_SETLK) of a packed struct flock (locks.requests), never
 * waited for: unmap's unlock of its map lock, without fcntl.fcntl's copy of the request
 * into a new bytes result (OSError if it fails; a busy lock: EAGAIN or EACCES). */
static PyObject *lock_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd;
    struct flock request;
    if (arguments("set_lock", nargs, 2) < 0 || int_of(args[0], &fd) < 0 ||
        flock_of(args[1], &request) < 0) {
        return NULL;
    }
    return set_lock(fd, &request) < 0 ? fail() : Py_NewRef(Py_None);
}

static PyMethodDef access_methods[] = {
    {"open_locked", (PyCFunction)(void (*)(void))open_locked, METH_FASTCALL,
     "get's calls: open, reference lock, fstat, header (see access.py)."},
    {"map_locked", (PyCFunction)(void (*)(void))map_locked, METH_FASTCALL,
     "map's calls: map lock, mmap, last byte, header (see access.py)."},
    {"map_at", (PyCFunction)(void (*)(void))map_anywhere, METH_FASTCALL,
     "map_at(at, length, prot, flags, fd) -> address: mmap, over a kept range if `at`."},
    {"munmap", (PyCFunction)(void (*)(void))unmap, METH_FASTCALL, "munmap(address, length)."},
    {"set_lock", (PyCFunction)(void (*)(void))lock_request, METH_FASTCALL,
     "set_lock(fd, request): fcntl(F_OFD_SETLK) of a packed struct flock, never waited for."},
    {NULL, NULL, 0, NULL},
};

int clara_add_access(PyObject *module) {
    if (PyModule_AddIntMacro(module, PROT_READ) < 0 || PyModule_AddIntMacro(module, PROT_WRITE) < 0 ||
        PyModule_AddIntMacro(module, MAP_SHARED) < 0 ||
        PyModule_AddIntMacro(module, MAP_POPULATE) < 0) {
        return -1;  // (the constants: so that the mmap module need not be imported)
    }
    return PyModule_AddFunctions(module, access_methods);
}
