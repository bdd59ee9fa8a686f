/* Maps.map's staged case in one call (twin: that Python, maps.py, which runs whenever
 * this returns None): the first write map of a fresh private segment, held in this
 * process's memory (shm/staging.py says why), its steps in the Python's order.
 */
#include "mapped.h"

#include <stdint.h>
#include <string.h>

/* The states a write map of this process writes, last made: for (pid, start, generation
 * found), the block found, *writing* and *complete* (header.own_write_states). */
static long cached_pid = -1;
static unsigned long long cached_start;
static PyObject *cached_found, *cached_writing, *cached_completed;

static void pack_state(unsigned char *block, int state, long pid, unsigned long long start,
                       unsigned long long generation) {
    memset(block, 0, DATA_SIZE);
    block[0] = (unsigned char)state;
    uint32_t wide = (uint32_t)(int32_t)pid;
    for (int i = 0; i < 4; i++) {
        block[4 + i] = (unsigned char)(wide >> (8 * i));
    }
    for (int i = 0; i < 8; i++) {
        block[8 + i] = (unsigned char)(start >> (8 * i));
        block[16 + i] = (unsigned char)(generation >> (8 * i));
    }
}

/* The cached states for this block found by (pid, start): 0, or -1 with an exception. */
static int own_states(const unsigned char *found, long pid, unsigned long long start) {
    unsigned long long generation = 0;
    for (int i = 0; i < 8; i++) {
        generation |= (unsigned long long)found[16 + i] << (8 * i);
    }
    if (cached_found != NULL && pid == cached_pid && start == cached_start &&
        memcmp(PyBytes_AS_STRING(cached_found), found, DATA_SIZE) == 0) {
        return 0;
    }
    unsigned char writing[DATA_SIZE], completed[DATA_SIZE];
    pack_state(writing, WRITING, pid, start, generation);
    pack_state(completed, COMPLETE, pid, start, generation + 1);  // (modulo 2**64)
    PyObject *made[3] = {PyBytes_FromStringAndSize((const char *)found, DATA_SIZE),
                         PyBytes_FromStringAndSize((const char *)writing, DATA_SIZE),
                         PyBytes_FromStringAndSize((const char *)completed, DATA_SIZE)};
    if (made[0] == NULL || made[1] == NULL || made[2] == NULL) {
        for (int i = 0; i < 3; i++) {
            Py_XDECREF(made[i]);
        }
        return -1;
    }
    Py_XSETREF(cached_found, made[0]);
    Py_XSETREF(cached_writing, made[1]);
    Py_XSETREF(cached_completed, made[2]);
    cached_pid = pid;
    cached_start = start;
    return 0;
}

/* A range of `length` bytes whose data is zeros for a staged map: a kept one (staging's
 * `_kept`) zeroed, or new private zeros. NULL with an exception (OSError of the mmap). */
static char *staged_range(PyObject *length_number, Py_ssize_t length) {
    PyObject *ranges = PyDict_GetItemWithError(clara_maps.kept, length_number);
    if (ranges == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (ranges != NULL && PyList_CheckExact(ranges) && PyList_GET_SIZE(ranges) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(ranges) - 1;
        char *at = PyLong_AsVoidPtr(PyList_GET_ITEM(ranges, last));
        if (at == NULL || PyList_SetSlice(ranges, last, last + 1, NULL) < 0) {
            return NULL;  // (never: only staging puts addresses there)
        }
        memset(at + DATA_OFFSET, 0, (size_t)(length - DATA_OFFSET));
        return at;
    }
    void *address = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address == MAP_FAILED) {
        fail();
        return NULL;
    }
    return address;
}

/* map_staged(allocation) -> Mapping, or None if its map is not the staged case
 *
 * allocation.map('w') (populate, no timeout, no wait) of a fresh private segment never
 * written, smaller than staged_below, nothing mapped or kept warm, no fork since it last
 * looked: the states of its write map (as own_write_states), a staged range (Staged.take:
 * a kept one zeroed or new private zeros, its Staged object, registered as this thread's
 * in `owned`), the data state *writing* in its pending header, the map in its maps, and
 * its Mapping. None: the allocation is in any other state (the Python map does it, and
 * raises what it raises). OSError: no memory for the range. */
PyObject *clara_map_staged(PyObject *module, PyObject *alloc) {
    (void)module;
    if (clara_maps.staged_type == NULL || !PyObject_TypeCheck(alloc, &clara_allocation_fields)) {
        Py_RETURN_NONE;
    }
    // Each field read is held (a reference of our own) until the end: an allocation below
    // may run a collection, whose finalizers may run any code, another thread's too, and
    // change the allocation's fields (what it then drops must stay valid here).
    PyObject **fields = ((Fields *)alloc)->fields;
    PyObject *pending = Py_XNewRef(fields[PENDING]), *maps = Py_XNewRef(fields[MAPS]);
    PyObject *layout = Py_XNewRef(fields[LAYOUT]), *fd = Py_XNewRef(fields[FD]);
    PyObject *found = NULL, *writing = NULL, *completed = NULL, *length_number = NULL;
    PyObject *region = NULL, *address = NULL, *thread = NULL, *now = NULL;
    PyObject *result = Py_None;  // (not the usual case, unless made below)
    if (pending == NULL || maps == NULL || layout == NULL || fd == NULL ||  // (cleared)
        fields[CLOSED] != Py_False || fields[WRITABLE] != Py_True || fields[WARM] != Py_None ||
        !PyList_CheckExact(maps) || PyList_GET_SIZE(maps) != 0 ||
        !PyByteArray_CheckExact(pending) || PyByteArray_GET_SIZE(pending) < DATA_AT + DATA_SIZE ||
        PyByteArray_AS_STRING(pending)[DATA_AT] != EMPTY || !PyTuple_Check(layout) ||
        PyTuple_GET_SIZE(layout) < 4 || !PyLong_CheckExact(fd)) {
        goto done;
    }
    int same = clara_no_fork_since(fields);
    if (same <= 0) {
        result = same < 0 ? NULL : Py_None;
        goto done;
    }
    PyObject *identity = PyDict_GetItemWithError(clara_maps.processes, clara_maps.self_identity);
    if (identity == NULL || !PyTuple_CheckExact(identity) || PyTuple_GET_SIZE(identity) != 2) {
        result = PyErr_Occurred() ? NULL : Py_None;  // (None: not known yet)
        goto done;
    }
    long pid = PyLong_AsLong(PyTuple_GET_ITEM(identity, 0));
    unsigned long long start = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(identity, 1));
    Py_ssize_t capacity = PyLong_AsSsize_t(PyTuple_GET_ITEM(layout, 3));
    Py_ssize_t length = DATA_OFFSET + capacity;
    if (PyErr_Occurred()) {
        result = NULL;
        goto done;
    }
    if (capacity <= 0 || length >= clara_maps.staged_below) {
        goto done;
    }
    result = NULL;
    if (own_states((unsigned char *)PyByteArray_AS_STRING(pending) + DATA_AT, pid, start) < 0) {
        goto done;
    }
    found = Py_NewRef(cached_found);
    writing = Py_NewRef(cached_writing);
    completed = Py_NewRef(cached_completed);
    length_number = PyLong_FromSsize_t(length);
    char *at = length_number == NULL ? NULL : staged_range(length_number, length);
    if (at == NULL) {
        goto done;
    }
    // Staged.take: its Region (a collection may run here: the range is not kept yet).
    PyObject *values[REGION_FIELDS] = {NULL, length_number, Py_True, Py_None, fd};
    values[R_ADDRESS] = address = PyLong_FromVoidPtr(at);
    if (address == NULL ||
        (region = clara_made(clara_maps.staged_type, values, REGION_FIELDS)) == NULL ||
        (thread = PyLong_FromUnsignedLong(PyThread_get_thread_ident())) == NULL ||
        PyDict_SetItem(clara_maps.owned, address, thread) < 0) {
        if (region == NULL) {  // (else the Region holds it: released when it is)
            munmap(at, (size_t)length);
        }
        goto done;
    }
    // Maps.map's staged case, from `self._undone = undone` on.
    Py_SETREF(fields[UNDONE], Py_NewRef(found));
    memcpy(PyByteArray_AS_STRING(pending) + DATA_AT, PyBytes_AS_STRING(writing), DATA_SIZE);
    Py_SETREF(fields[COMPLETED], Py_NewRef(completed));
    if (PyList_Append(maps, region) < 0) {
        goto done;
    }
    if (fields[PENDING] != pending) {  // another thread forked meanwhile
        PyObject *meanwhile =
            PyObject_CallMethodOneArg(alloc, clara_maps.public_meanwhile, pending);
        if (meanwhile == NULL) {
            goto done;
        }
        Py_DECREF(meanwhile);
    }
    now = Py_NewRef(fields[LAYOUT]);  // (self._layout as it is now, as the Python's)
    PyObject *made[MAPPING_FIELDS] = {alloc, maps, region, now, Py_None, Py_False};
    result = clara_made(clara_maps.mapping_type, made, MAPPING_FIELDS);
done:
    Py_XINCREF(result == Py_None ? result : NULL);
    PyObject *held[] = {pending, maps,   layout,  fd,     found, writing,
                        completed, length_number, address, thread, region, now};
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
        Py_XDECREF(held[i]);
    }
    return result;
}
