/* Reference._unmap of a staged map in one call (twin: that Python, reference.py, and the
 * Staged region's release, shm/staging.py): its data written into the file, its views
 * cut off (they read zeros), its range kept or unmapped, the data state marked, in the
 * Python's order. mapped.c's __exit__ calls it; anything else is left to the Python.
 */
#include "mapped.h"

#include <string.h>

/* The list of kept staged ranges of `length` (staging._kept_for): borrowed, or NULL if
 * none is kept (then no exception) or on an error. */
static PyObject *kept_for(PyObject *length_number, Py_ssize_t length) {
    PyObject *ranges = PyDict_GetItemWithError(clara_maps.kept, length_number);
    if (ranges != NULL || PyErr_Occurred()) {
        return ranges;
    }
    if (PyDict_GET_SIZE(clara_maps.kept) >= clara_maps.kept_lengths || length > clara_maps.kept_up_to) {
        return NULL;
    }
    PyObject *made = PyList_New(0);
    if (made == NULL) {
        return NULL;
    }
    ranges = PyDict_SetDefault(clara_maps.kept, length_number, made);
    Py_DECREF(made);
    return ranges;
}

/* Whether `address` was in `owned` (now taken out of it): 1, 0, or -1 with an exception. */
static int owned_here(PyObject *address) {
    int found = PyDict_Contains(clara_maps.owned, address);
    if (found > 0 && PyDict_DelItem(clara_maps.owned, address) < 0) {
        return -1;
    }
    return found;
}

/* Region.release of a Staged region (under _lending): with no view alive, its data written
 * into the file (if this process's) and the range kept or unmapped (_unmap_range); with
 * views alive, the data written (zeroed after, if kept) and the holder made the owner of
 * the range (_cut_off). 0, or -1 with an exception. */
static int release_staged(PyObject *region) {
    PyObject **fields = ((Fields *)region)->fields;
    PyObject *address = fields[R_ADDRESS], *fd_number = fields[R_FD];
    PyObject *length_number = fields[R_LENGTH], *holder = NULL;
    if (PyWeakref_CheckRef(fields[R_HOLDER])) {
        holder = PyWeakref_GetObject(fields[R_HOLDER]);
        holder = holder == Py_None ? NULL : holder;
    }
    char *at = PyLong_AsVoidPtr(address);
    Py_ssize_t length = PyLong_AsSsize_t(length_number);
    int fd = (int)PyLong_AsLong(fd_number);
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0), *none = PyLong_FromLong(-1);
    int result = -1;
    Py_INCREF(address);
    Py_INCREF(length_number);
    Py_XINCREF(holder);
    if (zero == NULL || none == NULL) {
        goto done;
    }
    if (holder == NULL) {  // (Region.release, then Staged._unmap_range)
        Py_SETREF(fields[R_ADDRESS], Py_NewRef(zero));
        Py_SETREF(fields[R_FD], Py_NewRef(none));
        if (at == NULL) {
            result = 0;
            goto done;
        }
        int mine = owned_here(address);
        if (mine < 0 || (mine && clara_write_staged(fd, at, length) < 0)) {
            goto done;
        }
        PyObject *ranges = kept_for(length_number, length);  // (_give_back)
        if (ranges == NULL && PyErr_Occurred()) {
            goto done;
        }
        if (ranges != NULL && PyList_GET_SIZE(ranges) < clara_maps.keep_per_length) {
            result = PyList_Append(ranges, address);
        } else {
            result = unmap_range(at, (size_t)length);
            if (result < 0) {
                fail();
            }
        }
        goto done;
    }
    // Staged._cut_off
    int keep = length <= clara_maps.kept_up_to;
    int mine = owned_here(address);
    if (mine < 0 || (mine && clara_write_staged(fd, at, length) < 0)) {
        goto done;
    }
    if (keep) {  // (zeroed: its views read zeros, the next staged map finds zeros)
        memset(at + DATA_OFFSET, 0, (size_t)(length - DATA_OFFSET));
        PyObject *ranges = kept_for(length_number, length);
        if ((ranges == NULL && PyErr_Occurred()) ||
            clara_disown(holder, ranges, clara_maps.keep_per_length) < 0) {
            goto done;
        }
    } else if (clara_cut_off(holder, PROT_READ | PROT_WRITE, NULL, 0) < 0) {
        goto done;
    }
    Py_SETREF(fields[R_HOLDER], Py_NewRef(Py_None));
    Py_SETREF(fields[R_ADDRESS], Py_NewRef(zero));
    Py_SETREF(fields[R_FD], Py_NewRef(none));
    result = 0;
done:
    Py_XDECREF(zero);
    Py_XDECREF(none);
    Py_DECREF(address);
    Py_DECREF(length_number);
    Py_XDECREF(holder);
    return result;
}

/* Reference._unmap(region, complete) of a staged map of a private segment (pending),
 * nothing kept warm, no fork since it last looked: 1 done, 0 not this case (nothing was
 * done: the Python's), -1 with an exception (as the Python leaves it). */
int clara_unmap_staged(PyObject *alloc, PyObject *region, int complete) {
    if (clara_maps.staged_type == NULL || Py_TYPE(region) != clara_maps.staged_type ||
        !PyObject_TypeCheck(alloc, &clara_allocation_fields)) {
        return 0;
    }
    PyObject **fields = ((Fields *)alloc)->fields;
    PyObject *pending = fields[PENDING], *completed = fields[COMPLETED];
    PyObject **seen = ((Fields *)region)->fields;
    if (fields[PARENTS] != Py_None || fields[WARM] != Py_None || seen[R_WRITABLE] != Py_True ||
        !PyByteArray_CheckExact(pending) || PyByteArray_GET_SIZE(pending) < DATA_AT + DATA_SIZE ||
        !PyBytes_CheckExact(completed) || PyBytes_GET_SIZE(completed) != DATA_SIZE ||
        !PyLong_CheckExact(seen[R_ADDRESS]) || !PyLong_CheckExact(seen[R_FD]) ||
        !PyLong_CheckExact(seen[R_LENGTH])) {
        return 0;
    }
    // What is read is held until the end (see staged_map.c).
    PyObject *maps = Py_NewRef(fields[MAPS]);
    Py_INCREF(pending);
    Py_INCREF(completed);
    int result = clara_no_fork_since(fields);
    PyObject *lock = result == 1 ? clara_take_lending() : NULL;
    Py_ssize_t index = lock != NULL && PyList_CheckExact(maps) ? clara_index_in(maps, region) : -1;
    if (lock == NULL || index < 0) {  // (index: unmapped meanwhile by another thread, which
        result = result < 0 || PyErr_Occurred() ? -1 : 0;  // the Python says)
        if (lock != NULL && clara_let_go(lock) < 0) {
            result = -1;
        }
        goto done;
    }
    result = -1;
    if (PyList_SetSlice(maps, index, index + 1, NULL) == 0 &&
        release_staged(region) == 0) {
        result = 1;
    }
    if (clara_let_go(lock) < 0) {
        result = -1;
    }
    if (result == 1 && complete) {
        memcpy(PyByteArray_AS_STRING(pending) + DATA_AT, PyBytes_AS_STRING(completed),
               DATA_SIZE);
    }
    if (result == 1 && fields[PENDING] != pending) {  // (see _map_private)
        PyObject *meanwhile =
            PyObject_CallMethodOneArg(alloc, clara_maps.public_meanwhile, pending);
        result = meanwhile == NULL ? -1 : 1;
        Py_XDECREF(meanwhile);
    }
done:
    Py_DECREF(maps);
    Py_DECREF(pending);
    Py_DECREF(completed);
    return result;
}
