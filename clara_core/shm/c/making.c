/* Making and naming segments: create, publish, the lifecycle lock (a free: freeing.c).
 *
 * The system calls of a new allocation's create, of its first publish and of the
 * lifecycle lock, each sequence in one call; every check on what they return stays in
 * Python (see clara_core/shm/making.py, where each function's pure-Python twin is).
 */
#include "calls.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The segment format (clara_core/shm/header.py and locks.py); exported as constants so
 * that a test holds them equal to Python's. */
#define LIFECYCLE_AT 16
#define REFERENCE_BYTE 0
#define LIFECYCLE_BYTE 2
static const char zeros[MAKE_ZEROS_MAX];

/* close(fd), keeping the errno of what failed: -1. */
static int close_keeping_errno(int fd) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* The calls of a create (see create() below): openat(O_TMPFILE), fstat into `made`, then
 * `size` bytes written whole, `header` then zeros (size - length at most MAKE_ZEROS_MAX; a
 * short write is ENOSPC). The fd, or -1 with errno and nothing left open. */
int clara_make_file(int dir_fd, mode_t mode, const void *header, size_t length, size_t size,
                    struct stat *made) {
    int fd;
    do {
        fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    } while (fd < 0 && retry());
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, made) < 0) {
        return close_keeping_errno(fd);
    }
    struct iovec parts[2] = {
        {.iov_base = (void *)header, .iov_len = length},
        {.iov_base = (void *)zeros, .iov_len = size - length},
    };
    ssize_t written;
    // pwritev2 without flags: the call os.pwritev makes (the twin's, one strace for both).
    // Its cost grows with the size, but a few pages (always, here: at most 64 KiB of zeros)
    // cost less than letting the GIL go and taking it back, as unmap_range has it.
    int unlocked = size >= UNLOCKED_FROM;
    do {
        if (unlocked) {
            Py_BEGIN_ALLOW_THREADS written = pwritev2(fd, parts, 2, 0, 0);
            Py_END_ALLOW_THREADS
        } else {
            written = pwritev2(fd, parts, 2, 0, 0);
        }
    } while (written < 0 && retry());
    if (written >= 0 && (size_t)written < size) {
        errno = ENOSPC;  // (tmpfs writes whole pages or fails: a short write is no room)
        written = -1;
    }
    if (written < 0) {
        return close_keeping_errno(fd);
    }
    return fd;
}

/* create(dir_fd, mode, header, size) -> (fd, uid, mode, dev, ino)
 *
 * A nameless file of `size` bytes (at most 64 KiB) in the directory: openat(O_TMPFILE),
 * fstat (who made it, its mode, its identity), then its memory reserved by writing it
 * whole, `header` then zeros (a short write is ENOSPC). Closed again on any failure. */
static PyObject *create(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int dir_fd, mode;
    if (arguments("create", nargs, 4) < 0 || int_of(args[0], &dir_fd) < 0 ||
        int_of(args[1], &mode) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[3]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer header;
    if (PyObject_GetBuffer(args[2], &header, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (header.len > size || size - header.len > MAKE_ZEROS_MAX) {
        PyBuffer_Release(&header);
        PyErr_SetString(PyExc_ValueError, "create() writes a header and at most 64 KiB of zeros");
        return NULL;
    }
    PyObject *result = NULL;
    struct stat made;
    int fd = clara_make_file(dir_fd, (mode_t)mode, header.buf, (size_t)header.len, (size_t)size,
                             &made);
    if (fd < 0) {
        result = fail();
        goto done;
    }
    PyObject *items[5] = {
        PyLong_FromLong(fd),
        PyLong_FromUnsignedLong(made.st_uid),
        PyLong_FromUnsignedLong(made.st_mode),
        PyLong_FromUnsignedLongLong(made.st_dev),
        PyLong_FromUnsignedLongLong(made.st_ino),
    };
    result = tuple_of(5, items);
    if (result == NULL) {
        close(fd);
    }
done:
    PyBuffer_Release(&header);
    return result;
}

/* publish(context_fd, fd, tail, dir_fd, name) -> the context's link count
 *
 * A nameless segment's first publish: fstat of its context's file (0 links: destroyed,
 * and nothing else is done), the shared reference lock (busy is no failure: nobody else
 * can hold it), `tail` written from the lifecycle on (lifecycle, data state, name), then
 * linkat(AT_EMPTY_PATH) to `name` (skipped if None: the caller links it). */
static PyObject *publish(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int context_fd, fd, dir_fd;
    if (arguments("publish", nargs, 5) < 0 || int_of(args[0], &context_fd) < 0 ||
        int_of(args[1], &fd) < 0 || int_of(args[3], &dir_fd) < 0) {
        return NULL;
    }
    PyObject *name;
    if (file_name(args[4], &name) < 0) {
        return NULL;
    }
    Py_buffer tail;
    if (PyObject_GetBuffer(args[2], &tail, PyBUF_SIMPLE) < 0) {
        Py_XDECREF(name);
        return NULL;
    }
    PyObject *result = NULL;
    struct stat context;
    if (fstat(context_fd, &context) < 0) {
        result = fail();
        goto done;
    }
    if (context.st_nlink == 0) {
        result = PyLong_FromLong(0);
        goto done;
    }
    if (lock_byte(fd, F_RDLCK, REFERENCE_BYTE) < 0 && errno != EAGAIN && errno != EACCES) {
        result = fail();
        goto done;
    }
    ssize_t written;
    do {
        written = pwrite(fd, tail.buf, (size_t)tail.len, LIFECYCLE_AT);
    } while (written < 0 && retry());
    if (written < 0) {
        result = fail();
        goto done;
    }
    if (name != NULL) {
        int linked;
        do {
            linked = linkat(fd, "", dir_fd, PyBytes_AS_STRING(name), AT_EMPTY_PATH);
        } while (linked < 0 && retry());
        if (linked < 0) {
            result = fail();
            goto done;
        }
    }
    result = PyLong_FromUnsignedLong(context.st_nlink);
done:
    PyBuffer_Release(&tail);
    Py_XDECREF(name);
    return result;
}

/* lock_lifecycle(fd, dir_fd, name) -> None, or (lifecycle, dev, ino)
 *
 * The exclusive lifecycle lock, if nobody holds it (None: busy, not taken); then the
 * lifecycle byte (-1: the file was cut short) and what `name` denotes now (-1, -1: no
 * such name, or `name` None). Unlocked again on any failure after the lock. */
static PyObject *lock_lifecycle(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd, dir_fd;
    if (arguments("lock_lifecycle", nargs, 3) < 0 || int_of(args[0], &fd) < 0 ||
        int_of(args[1], &dir_fd) < 0) {
        return NULL;
    }
    PyObject *name;
    if (file_name(args[2], &name) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (lock_byte(fd, F_WRLCK, LIFECYCLE_BYTE) < 0) {
        if (errno == EAGAIN || errno == EACCES) {
            result = Py_NewRef(Py_None);
        } else {
            result = fail();
        }
        goto done;
    }
    unsigned char lifecycle;
    ssize_t got;
    do {
        got = pread(fd, &lifecycle, 1, LIFECYCLE_AT);
    } while (got < 0 && retry());
    if (got < 0) {
        result = fail_unlocking(fd, LIFECYCLE_BYTE);
        goto done;
    }
    struct stat named = {0};
    int found = 0;
    if (name != NULL) {
        int status;
        do {
            status = fstatat(dir_fd, PyBytes_AS_STRING(name), &named, AT_SYMLINK_NOFOLLOW);
        } while (status < 0 && retry());
        if (status < 0 && errno != ENOENT) {
            result = fail_unlocking(fd, LIFECYCLE_BYTE);
            goto done;
        }
        found = status == 0;
    }
    PyObject *items[3] = {
        PyLong_FromLong(got == 1 ? lifecycle : -1),
        found ? PyLong_FromUnsignedLongLong(named.st_dev) : PyLong_FromLong(-1),
        found ? PyLong_FromUnsignedLongLong(named.st_ino) : PyLong_FromLong(-1),
    };
    result = tuple_of(3, items);
    if (result == NULL) {
        unlock_keeping_errno(fd, LIFECYCLE_BYTE);
    }
done:
    Py_XDECREF(name);
    return result;
}

static PyMethodDef making_methods[] = {
    {"create", (PyCFunction)(void (*)(void))create, METH_FASTCALL,
     "create(dir_fd, mode, header, size) -> (fd, uid, mode, dev, ino): a nameless, reserved "
     "segment"},
    {"publish", (PyCFunction)(void (*)(void))publish, METH_FASTCALL,
     "publish(context_fd, fd, tail, dir_fd, name) -> context links: a nameless segment "
     "published"},
    {"lock_lifecycle", (PyCFunction)(void (*)(void))lock_lifecycle, METH_FASTCALL,
     "lock_lifecycle(fd, dir_fd, name) -> None (busy) or (lifecycle, dev, ino)"},
    {NULL, NULL, 0, NULL},
};

int clara_add_making(PyObject *module) {
    if (PyModule_AddIntConstant(module, "LIFECYCLE_AT", LIFECYCLE_AT) < 0 ||
        PyModule_AddIntConstant(module, "REFERENCE_BYTE", REFERENCE_BYTE) < 0 ||
        PyModule_AddIntConstant(module, "LIFECYCLE_BYTE", LIFECYCLE_BYTE) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, making_methods);
}
