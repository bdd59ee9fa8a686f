/* Names given to open segments: the two calls of clara_core/shm/directory.py that Python's
 * os module does not offer (their pure-Python twins, through ctypes, are in shm/libc.py).
 * In C, a process that publishes does not load ctypes for them (~1.8 ms at start-up). */
#include "calls.h"

#include <stdio.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* link_open_file(fd, dir_fd, name) -> None
 *
 * linkat(fd, "", dir_fd, name, AT_EMPTY_PATH): the open file `fd` gets the name `name`
 * in the directory `dir_fd` (EEXIST if taken). Linux 6.10+ allows it to whoever opened
 * the file with the same credentials, older kernels only to CAP_DAC_READ_SEARCH: a
 * refusal is ENOENT (the caller then links through /proc/self/fd). */
static PyObject *link_open_file(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd, dir_fd;
    if (arguments("link_open_file", nargs, 3) < 0 || int_of(args[0], &fd) < 0 ||
        int_of(args[1], &dir_fd) < 0) {
        return NULL;
    }
    PyObject *name;
    if (!PyUnicode_FSConverter(args[2], &name)) {
        return NULL;
    }
    int linked;
    do {
        linked = linkat(fd, "", dir_fd, PyBytes_AS_STRING(name), AT_EMPTY_PATH);
    } while (linked < 0 && retry());
    Py_DECREF(name);
    if (linked < 0) {
        return fail();
    }
    Py_RETURN_NONE;
}

/* rename_new(dir_fd, old, new) -> None
 *
 * renameat2(RENAME_NOREPLACE) within the directory `dir_fd`: `old` becomes `new`
 * atomically, EEXIST if `new` exists (never replaced). */
static PyObject *rename_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int dir_fd;
    if (arguments("rename_new", nargs, 3) < 0 || int_of(args[0], &dir_fd) < 0) {
        return NULL;
    }
    PyObject *old = NULL, *new = NULL;
    if (!PyUnicode_FSConverter(args[1], &old) || !PyUnicode_FSConverter(args[2], &new)) {
        Py_XDECREF(old);
        return NULL;
    }
    int renamed;
    do {
        renamed = renameat2(dir_fd, PyBytes_AS_STRING(old), dir_fd, PyBytes_AS_STRING(new),
                            RENAME_NOREPLACE);
    } while (renamed < 0 && retry());
    Py_DECREF(old);
    Py_DECREF(new);
    if (renamed < 0) {
        return fail();
    }
    Py_RETURN_NONE;
}

static PyMethodDef naming_methods[] = {
    {"link_open_file", (PyCFunction)(void (*)(void))link_open_file, METH_FASTCALL,
     "link_open_file(fd, dir_fd, name) -> None: linkat(AT_EMPTY_PATH), the open file named"},
    {"rename_new", (PyCFunction)(void (*)(void))rename_new, METH_FASTCALL,
     "rename_new(dir_fd, old, new) -> None: renameat2(RENAME_NOREPLACE) in one directory"},
    {NULL, NULL, 0, NULL},
};

int clara_add_naming(PyObject *module) { return PyModule_AddFunctions(module, naming_methods); }
