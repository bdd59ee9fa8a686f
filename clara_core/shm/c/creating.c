/* A new private allocation in one call (twin: making.py's _create_private).
 *
 * ctx.create() of a small allocation: its header (the context's template with the time
 * of the create), its segment (making.c's calls), and its Allocation object with the
 * header kept pending in memory (reference.py's _defer), made here at once: a create
 * runs no Python frame between these. Whatever the results mean (who made the file) is
 * checked by the caller, in Python.
 */
#include "calls.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Where the origin's created_ns (8 bytes, little-endian) is in a header (header.py). */
#define CREATED_AT 160

/* The Allocation's fields after those given to its class (fields.c's). */
static PyObject *pending_name, *closed_name;

/* time.time_ns(): the clock the twin reads, or -1 with an exception. */
static long long now_ns(void) {
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) < 0) {
        fail();
        return -1;
    }
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* The header: `template` with created_ns at CREATED_AT (little-endian, as struct's "<Q"). */
static PyObject *header_of(const Py_buffer *template, long long created_ns) {
    PyObject *header = PyByteArray_FromStringAndSize(template->buf, template->len);
    if (header != NULL) {
        uint64_t value = (uint64_t)created_ns;
        unsigned char *at = (unsigned char *)PyByteArray_AS_STRING(header) + CREATED_AT;
        for (int i = 0; i < 8; i++) {
            at[i] = (unsigned char)(value >> (8 * i));
        }
    }
    return header;
}

/* The object of the new segment `fd` (the class called with its twelve fields), its header
 * pending, registered in `private` (id -> weak reference, as _defer does); NULL with an
 * exception, and then nothing of it is left (the caller closes `fd`). */
static PyObject *allocation_of(PyObject *const *args, int fd, const struct stat *made,
                               long long created_ns, PyObject *header) {
    PyObject *fields[12] = {args[5], args[6], NULL, Py_True, args[7], NULL,
                            NULL,    args[8], Py_None, Py_None, args[9], args[10]};
    fields[2] = PyLong_FromLong(fd);
    fields[5] = PyLong_FromLongLong(created_ns);
    PyObject *identity[2] = {PyLong_FromUnsignedLongLong(made->st_dev),
                             PyLong_FromUnsignedLongLong(made->st_ino)};
    fields[6] = tuple_of(2, identity);
    PyObject *self = NULL, *key = NULL, *weak = NULL;
    if (fields[2] != NULL && fields[5] != NULL && fields[6] != NULL) {
        self = PyObject_Vectorcall(args[0], fields, 12, NULL);
    }
    Py_XDECREF(fields[2]);
    Py_XDECREF(fields[5]);
    Py_XDECREF(fields[6]);
    if (self == NULL) {
        return NULL;
    }
    if (PyObject_SetAttr(self, pending_name, header) < 0 ||
        (key = PyLong_FromVoidPtr(self)) == NULL || (weak = PyWeakref_NewRef(self, NULL)) == NULL ||
        PyDict_SetItem(args[11], key, weak) < 0) {
        // Never made, as far as anyone can tell: its finalizer must not close `fd`.
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyObject_SetAttr(self, closed_name, Py_True);
        if (key != NULL && PyDict_DelItem(args[11], key) < 0) {
            PyErr_Clear();  // (not there: the set was what failed)
        }
        PyErr_Restore(type, value, traceback);
        Py_CLEAR(self);
    }
    Py_XDECREF(key);
    Py_XDECREF(weak);
    return self;
}

/* create_private(cls, dir_fd, mode, template, size, context, registry, layout,
 *                visibility, what, born, private) -> (allocation, uid, mode)
 *
 * A new private allocation of a small segment: its header (`template`, created now), its
 * segment (openat(O_TMPFILE), fstat, the header and zeros written whole: making.create's
 * calls), and `cls(context, registry, fd, True, layout, created_ns, (dev, ino),
 * visibility, None, None, what, born)` with the header as its `_pending`, registered in
 * `private` by id. Returns it, and the uid and mode the file was made with. On any
 * failure nothing is left: no descriptor, no object. */
static PyObject *create_private(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int dir_fd, mode;
    if (arguments("create_private", nargs, 12) < 0 || int_of(args[1], &dir_fd) < 0 ||
        int_of(args[2], &mode) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[4]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyDict_CheckExact(args[11])) {
        PyErr_SetString(PyExc_TypeError, "create_private() registers in a dict");
        return NULL;
    }
    Py_buffer template;
    if (PyObject_GetBuffer(args[3], &template, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *header = NULL;
    if (template.len < CREATED_AT + 8 || template.len > size ||
        size - template.len > MAKE_ZEROS_MAX) {
        PyErr_SetString(PyExc_ValueError,
                        "create_private() writes a header and at most 64 KiB of zeros");
        goto done;
    }
    long long created_ns = now_ns();
    if (created_ns < 0 || (header = header_of(&template, created_ns)) == NULL) {
        goto done;
    }
    struct stat made;
    int fd = clara_make_file(dir_fd, (mode_t)mode, PyByteArray_AS_STRING(header),
                             (size_t)template.len, (size_t)size, &made);
    if (fd < 0) {
        fail();
        goto done;
    }
    PyObject *allocation = allocation_of(args, fd, &made, created_ns, header);
    if (allocation == NULL) {
        close(fd);
        goto done;
    }
    PyObject *items[3] = {allocation, PyLong_FromUnsignedLong(made.st_uid),
                          PyLong_FromUnsignedLong(made.st_mode)};
    result = tuple_of(3, items);  // (on failure the object dies: its finalizer closes fd)
done:
    Py_XDECREF(header);
    PyBuffer_Release(&template);
    return result;
}

static PyMethodDef creating_methods[] = {
    {"create_private", (PyCFunction)(void (*)(void))create_private, METH_FASTCALL,
     "create_private(cls, dir_fd, mode, template, size, context, registry, layout, visibility, "
     "what, born, private) -> (allocation, uid, mode): a new private allocation"},
    {NULL, NULL, 0, NULL},
};

int clara_add_creating(PyObject *module) {
    pending_name = PyUnicode_InternFromString("_pending");
    closed_name = PyUnicode_InternFromString("_closed");
    if (pending_name == NULL || closed_name == NULL ||
        PyModule_AddIntConstant(module, "CREATED_AT", CREATED_AT) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, creating_methods);
}
