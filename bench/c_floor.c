/* The C floors of P1 and P2 (bench/floors.py): clara's system calls for get + map('r') +
 * unmap (P1), and for create + map('w') + write + unmap + publish + free of one allocation
 * (P2), in clara's order with clara's arguments, issued by one C function each. What clara spends above it is Python; what it spends above
 * raw posix_ipc is the calls clara's safety properties need.
 *
 * Built by the bench with the system compiler (bench/floors.py, c_floor); never installed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LIFECYCLE_AT 16
#define DATA_OFFSET 4096
#define HEADER_SIZE 768
#define ZEROS_SIZE (64 << 10)

static const char zeros[ZEROS_SIZE];

static int set_lock(int fd, short type, off_t byte) {
    struct flock request = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &request);
}

/* After a failed call: unmap `address` (unless MAP_FAILED), close `fd` (unless -1), and
 * raise the OSError of the call that failed. */
static PyObject *undo(void *address, Py_ssize_t length, int fd) {
    int saved = errno;
    if (address != MAP_FAILED) {
        munmap(address, (size_t)length);
    }
    if (fd >= 0) {
        close(fd);
    }
    errno = saved;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* p2(dir_fd, mode, header, tail, context_fd, name, length, nbytes, freed, staged) -> None
 *
 * openat(O_TMPFILE), fstat, pwritev2 (header + zeros); the write map staged in the
 * private memory at `staged` (its data zeroed, written, pwrite into the file at unmap,
 * zeroed again: clara_core/shm/staging.py); fstat of the context, the reference lock,
 * pwrite of `tail`, linkat(AT_EMPTY_PATH), the lifecycle lock, pread of the lifecycle,
 * fstatat of the name, pwrite of `freed`, unlinkat, the unlock, close. Stops at the first
 * failure (OSError). */
static PyObject *p2(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "p2() takes 10 positional arguments");
        return NULL;
    }
    int dir_fd = (int)PyLong_AsLong(args[0]), mode = (int)PyLong_AsLong(args[1]);
    int context_fd = (int)PyLong_AsLong(args[4]), freed = (int)PyLong_AsLong(args[8]);
    Py_ssize_t length = PyLong_AsSsize_t(args[6]), nbytes = PyLong_AsSsize_t(args[7]);
    char *staged = PyLong_AsVoidPtr(args[9]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(args[2]) || !PyBytes_Check(args[3]) || !PyBytes_Check(args[5]) ||
        length - PyBytes_GET_SIZE(args[2]) > ZEROS_SIZE || DATA_OFFSET + nbytes > length) {
        PyErr_SetString(PyExc_ValueError, "p2(): bad header, tail, name or sizes");
        return NULL;
    }
    const char *header = PyBytes_AS_STRING(args[2]), *tail = PyBytes_AS_STRING(args[3]);
    Py_ssize_t header_size = PyBytes_GET_SIZE(args[2]), tail_size = PyBytes_GET_SIZE(args[3]);
    const char *name = PyBytes_AS_STRING(args[5]);
    size_t data_size = (size_t)(length - DATA_OFFSET);
    struct stat found;
    unsigned char lifecycle = (unsigned char)freed, seen;
    int fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
    if (fd < 0 || fstat(fd, &found) < 0) {
        goto failed;
    }
    struct iovec parts[2] = {
        {.iov_base = (void *)header, .iov_len = (size_t)header_size},
        {.iov_base = (void *)zeros, .iov_len = (size_t)(length - header_size)},
    };
    if (pwritev2(fd, parts, 2, 0, 0) < length) {
        goto failed;
    }
    memset(staged + DATA_OFFSET, 0, data_size);
    memset(staged + DATA_OFFSET, 1, (size_t)nbytes);
    if (pwrite(fd, staged + DATA_OFFSET, data_size, DATA_OFFSET) < (ssize_t)data_size) {
        goto failed;
    }
    memset(staged + DATA_OFFSET, 0, data_size);
    if (fstat(context_fd, &found) < 0 || set_lock(fd, F_RDLCK, 0) < 0 ||
        pwrite(fd, tail, (size_t)tail_size, LIFECYCLE_AT) < 0 ||
        linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) < 0 || set_lock(fd, F_WRLCK, 2) < 0 ||
        pread(fd, &seen, 1, LIFECYCLE_AT) < 0 ||
        fstatat(dir_fd, name, &found, AT_SYMLINK_NOFOLLOW) < 0 ||
        pwrite(fd, &lifecycle, 1, LIFECYCLE_AT) < 0 || unlinkat(dir_fd, name, 0) < 0 ||
        set_lock(fd, F_UNLCK, 2) < 0) {
        goto failed;
    }
    close(fd);
    Py_RETURN_NONE;
failed:
    return undo(MAP_FAILED, 0, fd);
}

/* p1(dir_fd, name, length, layout_size, at, delete) -> the cut-off range's address, or 0
 *
 * openat, the reference lock, fstat, pread of the header, the map lock, mmap(shared, read)
 * (over the kept range `at`, MAP_FIXED, if not 0), pread of the last byte, pread of the
 * layout; then with the view alive: mmap(private zeros, fixed) over it (the cut-off), the
 * unlock, close, the range returned for the next call to map over; deleted: the unlock,
 * munmap, close. No numpy view is made. Stops at the first failure (OSError). */
static PyObject *p1(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "p1() takes 6 positional arguments, name as bytes");
        return NULL;
    }
    int dir_fd = (int)PyLong_AsLong(args[0]), delete = PyObject_IsTrue(args[5]);
    Py_ssize_t length = PyLong_AsSsize_t(args[2]), layout_size = PyLong_AsSsize_t(args[3]);
    void *at = PyLong_AsVoidPtr(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    char header[HEADER_SIZE];
    if (layout_size > HEADER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "p1(): the layout is within the header");
        return NULL;
    }
    struct stat found;
    char *address = MAP_FAILED;
    int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd = openat(dir_fd, PyBytes_AS_STRING(args[1]), flags);
    if (fd < 0 || set_lock(fd, F_RDLCK, 0) < 0 || fstat(fd, &found) < 0 ||
        pread(fd, header, HEADER_SIZE, 0) < 0 || set_lock(fd, F_RDLCK, 1) < 0) {
        goto failed;
    }
    if (at != NULL) {
        address = mmap(at, (size_t)length, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    }
    if (address == MAP_FAILED) {
        address = mmap(NULL, (size_t)length, PROT_READ, MAP_SHARED, fd, 0);
    }
    if (address == MAP_FAILED || pread(fd, header, 1, length - 1) < 0 ||
        pread(fd, header, (size_t)layout_size, 0) < 0) {
        goto failed;
    }
    if (delete) {
        if (set_lock(fd, F_UNLCK, 1) < 0) {
            goto failed;
        }
        munmap(address, (size_t)length);
        close(fd);
        return PyLong_FromLong(0);
    }
    if (mmap(address, (size_t)length, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
             0) == MAP_FAILED ||
        set_lock(fd, F_UNLCK, 1) < 0) {
        goto failed;
    }
    close(fd);
    return PyLong_FromVoidPtr(address);
failed:
    return undo(address, length, fd);
}

static PyMethodDef methods[] = {
    {"p1", (PyCFunction)(void (*)(void))p1, METH_FASTCALL, "P1's system calls, in one C call"},
    {"p2", (PyCFunction)(void (*)(void))p2, METH_FASTCALL, "P2's system calls, in one C call"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef c_floor_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "c_floor",
    .m_doc = "The C floors of the bench (bench/floors.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit_c_floor(void) { return PyModule_Create(&c_floor_module); }
