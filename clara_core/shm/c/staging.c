/* The staged write map of a fresh private segment (clara_core/shm/staging.py, where each
 * function's pure-Python twin is): its first write map is held in private memory of this
 * process (`stage`), written into the file at unmap (`write_staged`), or attached, its
 * data written and the file mapped in its place in one call (`attach_staged`).
 */
#include "calls.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Where the data starts in a segment (clara_core/shm/header.py), exported so that a test
 * holds it equal to Python's. */
#define DATA_OFFSET 4096

/* The length of a staged range (at least its header page), or -1 with an exception. */
static Py_ssize_t staged_length(PyObject *number) {
    Py_ssize_t length = PyLong_AsSsize_t(number);
    if (length == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (length <= DATA_OFFSET) {
        PyErr_SetString(PyExc_ValueError, "a staged range is longer than its header page");
        return -1;
    }
    return length;
}

/* The data of the staged range at `address` into `fd` at the same offsets (pwrite; a
 * short write goes on, none at all is ENOSPC). 0, or -1 with an exception set. */
int clara_write_staged(int fd, char *address, Py_ssize_t length) {
    for (Py_ssize_t done = DATA_OFFSET; done < length;) {
        ssize_t written = pwrite(fd, address + done, (size_t)(length - done), done);
        if (written < 0 && retry()) {
            continue;
        }
        if (written <= 0) {
            errno = written < 0 ? errno : ENOSPC;
            fail();
            return -1;
        }
        done += written;
    }
    return 0;
}

/* stage(at, length) -> address
 *
 * Private, read-write memory of `length` bytes whose data (from DATA_OFFSET on) is zeros:
 * the kept range `at` with its data zeroed in place (no system call), or, if `at` is 0,
 * a new mapping of private zeros (mmap MAP_PRIVATE|MAP_ANONYMOUS). */
static PyObject *stage(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("stage", nargs, 2) < 0) {
        return NULL;
    }
    char *at = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t length = staged_length(args[1]);
    if (length < 0 || PyErr_Occurred()) {
        return NULL;
    }
    if (at != NULL) {
        memset(at + DATA_OFFSET, 0, (size_t)(length - DATA_OFFSET));
        return PyLong_FromVoidPtr(at);
    }
    void *address = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return address == MAP_FAILED ? fail() : PyLong_FromVoidPtr(address);
}

/* write_staged(fd, address, length, zero) -> None
 *
 * The data of the staged range at `address` (its bytes from DATA_OFFSET to `length`)
 * written into the file `fd` at the same offsets (pwrite; a short write goes on, none
 * at all is ENOSPC), then, if `zero`, zeroed in place (its views read zeros). */
static PyObject *write_staged(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd;
    if (arguments("write_staged", nargs, 4) < 0 || int_of(args[0], &fd) < 0) {
        return NULL;
    }
    char *address = PyLong_AsVoidPtr(args[1]);
    Py_ssize_t length = staged_length(args[2]);
    int zero = PyObject_IsTrue(args[3]);
    if (length < 0 || zero < 0 || PyErr_Occurred()) {
        return NULL;
    }
    if (clara_write_staged(fd, address, length) < 0) {
        return NULL;
    }
    if (zero) {
        memset(address + DATA_OFFSET, 0, (size_t)(length - DATA_OFFSET));
    }
    Py_RETURN_NONE;
}

/* attach_staged(fd, address, length) -> None
 *
 * A staged map attached in one call, so that no Python code (no signal handler's
 * exception) runs between its steps: the data written into the file (as write_staged),
 * then the file mapped in its place (mmap MAP_SHARED|MAP_FIXED), views and all. On any
 * failure the range is still private memory holding the staged data: a failed fixed map
 * (which may have unmapped it) is replaced by private memory into which the data is read
 * back from the file. */
static PyObject *attach_staged(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int fd;
    if (arguments("attach_staged", nargs, 3) < 0 || int_of(args[0], &fd) < 0) {
        return NULL;
    }
    char *address = PyLong_AsVoidPtr(args[1]);
    Py_ssize_t length = staged_length(args[2]);
    if (length < 0 || PyErr_Occurred() || clara_write_staged(fd, address, length) < 0) {
        return NULL;
    }
    int prot = PROT_READ | PROT_WRITE;
    if (mmap(address, (size_t)length, prot, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED) {
        Py_RETURN_NONE;
    }
    int error = errno;
    if (mmap(address, (size_t)length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
        MAP_FAILED) {
        size_t size = (size_t)(length - DATA_OFFSET);
        if (pread(fd, address + DATA_OFFSET, size, DATA_OFFSET) < (ssize_t)size) {
            error = errno ? errno : EIO;  // (the staged data is lost: say why the map failed)
        }
    }
    errno = error;
    return fail();
}

static PyMethodDef staging_methods[] = {
    {"stage", (PyCFunction)(void (*)(void))stage, METH_FASTCALL,
     "stage(at, length) -> address: private memory whose data is zeros (a kept range, or new)"},
    {"write_staged", (PyCFunction)(void (*)(void))write_staged, METH_FASTCALL,
     "write_staged(fd, address, length, zero) -> None: a staged map's data into the file"},
    {"attach_staged", (PyCFunction)(void (*)(void))attach_staged, METH_FASTCALL,
     "attach_staged(fd, address, length) -> None: its data written, the file mapped over it"},
    {NULL, NULL, 0, NULL},
};

int clara_add_staging(PyObject *module) {
    if (PyModule_AddIntConstant(module, "DATA_OFFSET", DATA_OFFSET) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, staging_methods);
}
