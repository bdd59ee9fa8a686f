/* A free of a named segment that nobody pools, in one call (twin: shm/making.py).
 *
 * The name protocol (clara_core/removal.py): a name is removed only under the segment's
 * lifecycle lock, by whoever finds the lifecycle as it expects and the name still
 * denoting this very segment (device and inode of its open file, not a name looked up
 * again). What is expected is the caller's to say (lifecycle.py): this call only
 * compares what it found with it, as a compare-and-swap does.
 */
#include "calls.h"

#include <sys/stat.h>
#include <unistd.h>

/* The segment format (clara_core/shm/header.py and locks.py), as in making.c. */
#define LIFECYCLE_AT 16
#define LIFECYCLE_BYTE 2

/* The lifecycle byte under the lock (-1: the file was cut short), or -2 with errno. */
static int read_lifecycle(int fd) {
    unsigned char lifecycle;
    ssize_t got;
    do {
        got = pread(fd, &lifecycle, 1, LIFECYCLE_AT);
    } while (got < 0 && retry());
    if (got < 0) {
        return -2;
    }
    return got == 1 ? lifecycle : -1;
}

/* Whether `name` denotes the file (dev, ino) now: 1 yes, 0 no (or no such name), -1 with
 * errno. */
static int names_file(int dir_fd, const char *name, dev_t dev, ino_t ino) {
    struct stat named;
    int status;
    do {
        status = fstatat(dir_fd, name, &named, AT_SYMLINK_NOFOLLOW);
    } while (status < 0 && retry());
    if (status < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    return named.st_dev == dev && named.st_ino == ino;
}

/* The lifecycle `freed` written, then `name` unlinked (already gone is no failure): 0, or
 * -1 with errno, the lifecycle `was` written back: a name that stays (EPERM: another
 * user's file in a sticky directory) must not denote a freed segment, which nobody could
 * get or free again. (The write back goes on whatever a signal handler raised.) */
static int unlink_as_freed(int fd, int dir_fd, const char *name, unsigned char was,
                           unsigned char freed) {
    ssize_t written;
    do {
        written = pwrite(fd, &freed, 1, LIFECYCLE_AT);
    } while (written < 0 && retry());
    if (written < 0) {
        return -1;
    }
    int removed;
    do {
        removed = unlinkat(dir_fd, name, 0);
    } while (removed < 0 && retry());
    if (removed == 0 || errno == ENOENT) {
        return 0;
    }
    int error = errno;
    do {
        written = pwrite(fd, &was, 1, LIFECYCLE_AT);
    } while (written < 0 && errno == EINTR);
    errno = error;
    return -1;
}

/* free_named(fd, dir_fd, name, expected, dev, ino, freed, close) -> None, or the lifecycle
 *
 * The exclusive lifecycle lock, if nobody holds it (None: busy, nothing done); the
 * lifecycle byte; if it is `expected` and `name` (in dir_fd) still denotes the segment
 * (dev, ino): the lifecycle `freed` written and the name unlinked; the lock dropped; then,
 * if `close`, `fd` closed (close's own error is not reported: the descriptor is gone
 * whatever it says, and a tmpfs file has nothing to write back). Returns the lifecycle
 * found. A file cut short (-1) is only unlocked, never closed: the caller reports it, the
 * reference still open. On any failure the lock is dropped and `fd` stays open. */
static PyObject *free_named(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd, dir_fd, expected, freed, close_it;
    if (arguments("free_named", nargs, 8) < 0 || int_of(args[0], &fd) < 0 ||
        int_of(args[1], &dir_fd) < 0 || int_of(args[3], &expected) < 0 ||
        int_of(args[6], &freed) < 0 || (close_it = PyObject_IsTrue(args[7])) < 0) {
        return NULL;
    }
    unsigned long long dev = PyLong_AsUnsignedLongLong(args[4]);
    if (dev == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long long ino = PyLong_AsUnsignedLongLong(args[5]);
    if (ino == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *name;
    if (file_name(args[2], &name) < 0) {
        return NULL;
    }
    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "free_named() needs a name");
        return NULL;
    }
    PyObject *result = NULL;
    if (lock_byte(fd, F_WRLCK, LIFECYCLE_BYTE) < 0) {
        result = errno == EAGAIN || errno == EACCES ? Py_NewRef(Py_None) : fail();
        goto done;
    }
    const char *path = PyBytes_AS_STRING(name);
    int lifecycle = read_lifecycle(fd);
    int ours = lifecycle < -1 ? -1 : names_file(dir_fd, path, (dev_t)dev, (ino_t)ino);
    if (lifecycle < -1 || ours < 0 ||
        (lifecycle == expected && ours &&
         unlink_as_freed(fd, dir_fd, path, (unsigned char)lifecycle, freed) < 0)) {
        result = fail_unlocking(fd, LIFECYCLE_BYTE);
        goto done;
    }
    if (lock_byte(fd, F_UNLCK, LIFECYCLE_BYTE) < 0) {
        result = fail();
        goto done;
    }
    if (close_it && lifecycle >= 0) {
        close(fd);
    }
    result = PyLong_FromLong(lifecycle);
done:
    Py_DECREF(name);
    return result;
}

static PyMethodDef freeing_methods[] = {
    {"free_named", (PyCFunction)(void (*)(void))free_named, METH_FASTCALL,
     "free_named(fd, dir_fd, name, expected, dev, ino, freed, close) -> None (busy) or the "
     "lifecycle found: the name removed if still ours, unlocked, closed"},
    {NULL, NULL, 0, NULL},
};

int clara_add_freeing(PyObject *module) { return PyModule_AddFunctions(module, freeing_methods); }
