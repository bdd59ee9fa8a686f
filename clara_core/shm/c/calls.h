/* The C half of clara_core.shm._calls: the system-call sequences of the hot paths.
 *
 * Each C file adds its own functions to the module (module.c calls its add_* function),
 * so that the files stay independent. Every function mirrors a pure-Python fallback with
 * the same arguments, results and errors (OSError with the errno), which runs when the
 * extension is not built or CLARA_PURE_PYTHON=1 is set.
 */
#ifndef CLARA_CALLS_H
#define CLARA_CALLS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* The helpers access.c, holder.c and making.c share, once (static inline: each file keeps its
 * own copy in the build, so none costs a call across files). */

/* After a failed call: true if it was interrupted and may be retried (PEP 475), false if
 * it failed for good, or if a signal handler raised (then an exception is set). */
static inline int retry(void) { return errno == EINTR && PyErr_CheckSignals() == 0; }

/* Raise the OSError of errno, unless a signal handler's exception is already set. */
static inline PyObject *fail(void) {
    if (!PyErr_Occurred()) {
        PyErr_SetFromErrno(PyExc_OSError);
    }
    return NULL;
}

/* fcntl(F_OFD_SETLK): 0 if taken, else -1 with errno (EINTR retried). */
static inline int set_lock(int fd, struct flock *lock) {
    int result;
    do {
        result = fcntl(fd, F_OFD_SETLK, lock);
    } while (result < 0 && retry());
    return result;
}

/* set_lock() on the one byte `byte` of a segment's lock bytes (type F_RDLCK, F_WRLCK or
 * F_UNLCK). */
static inline int lock_byte(int fd, short type, off_t byte) {
    struct flock request = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return set_lock(fd, &request);
}

/* Drop the lock on `byte`, keeping the errno of what failed before. */
static inline void unlock_keeping_errno(int fd, off_t byte) {
    int saved = errno;
    struct flock request = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    fcntl(fd, F_OFD_SETLK, &request);
    errno = saved;
}

/* fail(), after dropping the lock on `byte`. */
static inline PyObject *fail_unlocking(int fd, off_t byte) {
    unlock_keeping_errno(fd, byte);
    return fail();
}

/* Encodes a str or bytes name for the file system (as os functions do); None stays NULL. */
static inline int file_name(PyObject *name, PyObject **encoded) {
    *encoded = NULL;
    if (name == Py_None) {
        return 0;
    }
    return PyUnicode_FSConverter(name, encoded) ? 0 : -1;
}

/* An int argument (a descriptor, flags, a protection), or -1 with an exception. */
static inline int int_of(PyObject *number, int *value) {
    long wide = PyLong_AsLong(number);
    if (wide == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (wide < INT_MIN || wide > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "an int argument is out of range");
        return -1;
    }
    *value = (int)wide;
    return 0;
}

/* 0 if `given` positional arguments are the `expected` ones, else -1 with a TypeError. */
static inline int arguments(const char *name, Py_ssize_t given, Py_ssize_t expected) {
    if (given == expected) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments (%zd given)", name,
                 expected, given);
    return -1;
}

/* A tuple of `count` new references, stolen (NULL if any is NULL: all are released). */
static inline PyObject *tuple_of(int count, PyObject **items) {
    PyObject *tuple = NULL;
    for (int i = 0; i < count; i++) {
        if (items[i] == NULL) {
            goto failed;
        }
    }
    if ((tuple = PyTuple_New(count)) == NULL) {
        goto failed;
    }
    for (int i = 0; i < count; i++) {
        PyTuple_SET_ITEM(tuple, i, items[i]);
    }
    return tuple;
failed:
    for (int i = 0; i < count; i++) {
        Py_XDECREF(items[i]);
    }
    return NULL;
}

/* Mappings at least this long are made, cut off or unmapped without the GIL: their cost
 * grows with their pages (populate, teardown); a shorter one costs less than letting the
 * GIL go. */
#define UNLOCKED_FROM (256 << 10)

/* munmap, without the GIL from UNLOCKED_FROM bytes: the teardown grows with the pages
 * (other threads would stall for tens of ms on 256 MiB). 0, or -1 with errno. */
static inline int unmap_range(void *address, size_t length) {
    if (length < UNLOCKED_FROM) {
        return munmap(address, length);
    }
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = munmap(address, length);
    Py_END_ALLOW_THREADS
    return result;  // (errno: PyEval_RestoreThread keeps it)
}

/* Access to existing segments: get, map, unmap (access.c). */
int clara_add_access(PyObject *module);

/* The Holder of a mapping's views, and its cut-off (holder.c). */
int clara_add_holder(PyObject *module);

/* A new Holder; its range cut off (private zeros mapped over it) or disowned (private
 * already): see holder.c. */
PyObject *clara_holder(void *address, Py_ssize_t length, int writable, PyObject *owner);
int clara_cut_off(PyObject *holder, int prot, PyObject *spare, Py_ssize_t keep);
int clara_disown(PyObject *holder, PyObject *spare, Py_ssize_t keep);

/* Making and naming segments: create, publish, the lifecycle lock (making.c). */
int clara_add_making(PyObject *module);

/* What follows the header of a small segment made in one call, at most (making.py's
 * WHOLE_WRITE_MAX, less the header). */
#define MAKE_ZEROS_MAX (64 << 10)

/* The calls of a create: a nameless file of `size` bytes in dir_fd, `header` (`length`
 * bytes) then zeros written whole, its fstat in `made`; the fd, or -1 with errno and
 * nothing left open (making.c). */
int clara_make_file(int dir_fd, mode_t mode, const void *header, size_t length, size_t size,
                    struct stat *made);

/* A new private allocation in one call: its segment, header and object (creating.c). */
int clara_add_creating(PyObject *module);

/* The staged write map of a fresh private segment: stage, write, attach (staging.c). */
int clara_add_staging(PyObject *module);

/* A staged range's data written into its file (staging.c): 0, or -1 with an exception. */
int clara_write_staged(int fd, char *address, Py_ssize_t length);

/* The staged write map's map and unmap, a map's view, each in one call (mapped.c). */
int clara_add_mapped(PyObject *module);

/* An allocation's usual create, first publish and free, each in one call (usual.c). */
int clara_add_usual(PyObject *module);

/* UsualMethod: a method whose usual case is one of those calls (usual_methods.c). */
int clara_add_usual_methods(PyObject *module);

/* The fields of the objects made on every map: Region, Mapping (fields.c). */
int clara_add_fields(PyObject *module);

/* A free of a named segment in one call (freeing.c). */
int clara_add_freeing(PyObject *module);

/* Names given to open segments: linkat(AT_EMPTY_PATH), renameat2 (naming.c). */
int clara_add_naming(PyObject *module);

#endif
