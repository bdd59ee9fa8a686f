/* A map's usual steps in one C call each, with no Python frame between them (twins: the
 * Python each hands over to, which is also what runs without the extension):
 *
 * map_staged               Maps.map's staged case: the first write map of a fresh
 *                          private segment, in this process's memory (staged_map.c)
 * MappingFields.__enter__  Mapping._view of a mapped region: its Holder and numpy view
 * MappingFields.__exit__   unmap; a staged map's Reference._unmap here: its data written
 *                          into the file, its views cut off (staged_unmap.c)
 *
 * Each does only the usual case, checked field by field (fields.h), and leaves anything
 * else to that Python: map_staged returns None, __enter__ calls _view, __exit__ calls the
 * allocation's _unmap. Their steps are in the Python's order, so that a fork or a garbage
 * collection at any allocation here finds what it would find there; the Python
 * (staging.py, maps.py, reference.py, memory.py) says why each step is there.
 */
#include "mapped.h"

MapsSetUp clara_maps;

/* The view last made (mapping._view_of's _last_view): its layout, numpy dtype, element
 * count, shape to reshape to (or None), and numpy.frombuffer. */
static PyObject *view_layout, *view_dtype, *view_count, *view_shape, *frombuffer;

static PyObject *count_name, *lending_name, *acquire_name, *release_name;
static PyObject *view_name, *exit_name, *unmap_name, *reshape_name, *offset;

Py_ssize_t clara_index_in(PyObject *maps, PyObject *region) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(maps); i++) {
        if (PyList_GET_ITEM(maps, i) == region) {
            return i;
        }
    }
    return -1;
}

int clara_no_fork_since(PyObject **fields) {
    PyObject *count = PyDict_GetItemWithError(clara_maps.forks, count_name);
    if (count == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return PyObject_RichCompareBool(fields[SEEN], count, Py_EQ);
}

PyObject *clara_take_lending(void) {
    PyObject *lock = PyDict_GetItemWithError(clara_maps.memory, lending_name);
    if (lock == NULL) {
        return NULL;
    }
    Py_INCREF(lock);
    PyObject *taken = PyObject_CallMethodOneArg(lock, acquire_name, Py_False);
    if (taken != Py_True) {
        Py_CLEAR(lock);
    }
    Py_XDECREF(taken);
    return lock;
}

int clara_let_go(PyObject *lock) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *result = PyObject_CallMethodNoArgs(lock, release_name);
    Py_DECREF(lock);
    if (result == NULL && type == NULL) {
        return -1;
    }
    PyErr_Clear();  // (a release that failed while an exception was being raised)
    Py_XDECREF(result);
    PyErr_Restore(type, value, traceback);
    return type == NULL ? 0 : -1;
}

/* set_up_maps(Staged, Mapping, kept, owned, forks, processes, memory, keep, lengths,
 *             kept_up_to, staged_below) -> None: what the calls below work with (maps.py,
 * once): the classes, staging's dicts, three modules' globals and staging's limits. */
static PyObject *set_up_maps(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("set_up_maps", nargs, 11) < 0) {
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyDict_CheckExact(args[2]) ||
        !PyDict_CheckExact(args[3]) || !PyDict_Check(args[4]) || !PyDict_Check(args[5]) ||
        !PyDict_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "set_up_maps: two classes, then five dicts");
        return NULL;
    }
    Py_ssize_t limits[4];
    for (int i = 0; i < 4; i++) {
        if ((limits[i] = PyLong_AsSsize_t(args[7 + i])) == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_XSETREF(clara_maps.staged_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(clara_maps.mapping_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(clara_maps.kept, Py_NewRef(args[2]));
    Py_XSETREF(clara_maps.owned, Py_NewRef(args[3]));
    Py_XSETREF(clara_maps.forks, Py_NewRef(args[4]));
    Py_XSETREF(clara_maps.processes, Py_NewRef(args[5]));
    Py_XSETREF(clara_maps.memory, Py_NewRef(args[6]));
    clara_maps.keep_per_length = limits[0];
    clara_maps.kept_lengths = limits[1];
    clara_maps.kept_up_to = limits[2];
    clara_maps.staged_below = limits[3];
    Py_RETURN_NONE;
}

/* view_known(layout, dtype, count, shape, frombuffer) -> None: the view made for
 * `layout` (mapping._view_of's, the last one), which __enter__ makes from then on. */
static PyObject *view_known(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("view_known", nargs, 5) < 0) {
        return NULL;
    }
    Py_XSETREF(view_layout, Py_NewRef(args[0]));
    Py_XSETREF(view_dtype, Py_NewRef(args[1]));
    Py_XSETREF(view_count, Py_NewRef(args[2]));
    Py_XSETREF(view_shape, Py_NewRef(args[3]));
    Py_XSETREF(frombuffer, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

/* MappingFields.__enter__(): a new numpy view of the data, as Mapping._view makes it: for
 * a region mapped and not lent from yet, whose layout is the one last viewed, its Holder
 * (owned by this Mapping) is made and registered under memory._lending, then
 * numpy.frombuffer is called on it; anything else is _view's. */
static PyObject *mapping_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    PyObject **fields = ((Fields *)self)->fields;
    PyObject *region = fields[M_REGION];
    if (frombuffer == NULL || fields[M_LAYOUT] != view_layout ||
        !PyObject_TypeCheck(region, &clara_region_fields) || !PyList_CheckExact(fields[M_MAPS])) {
        return PyObject_CallMethodNoArgs(self, view_name);
    }
    PyObject **seen = ((Fields *)region)->fields;
    PyObject *address_number = seen[R_ADDRESS];
    if (seen[R_HOLDER] != Py_None || clara_index_in(fields[M_MAPS], region) < 0 ||
        !PyLong_CheckExact(address_number) || !PyLong_CheckExact(seen[R_LENGTH]) ||
        (seen[R_WRITABLE] != Py_True && seen[R_WRITABLE] != Py_False)) {
        return PyObject_CallMethodNoArgs(self, view_name);
    }
    void *address = PyLong_AsVoidPtr(address_number);
    Py_ssize_t length = PyLong_AsSsize_t(seen[R_LENGTH]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (address == NULL) {  // deferred: mapped by _view (Region.holder)
        return PyObject_CallMethodNoArgs(self, view_name);
    }
    // What the view is made with, as seen now (a collection below may run code that
    // views another layout), and the address, compared below (the same object: the
    // same mapping).
    PyObject *view[5] = {view_dtype, view_count, view_shape, frombuffer, address_number};
    for (int i = 0; i < 5; i++) {
        Py_INCREF(view[i]);
    }
    Py_INCREF(region);
    PyObject *holder = clara_holder(address, length, seen[R_WRITABLE] == Py_True, self);
    PyObject *weak = holder == NULL ? NULL : PyWeakref_NewRef(holder, NULL);
    PyObject *lock = weak == NULL ? NULL : clara_take_lending();
    PyObject *array = NULL;
    if (lock == NULL || seen[R_HOLDER] != Py_None || seen[R_ADDRESS] != address_number) {
        // (an error; the lock is another thread's; or the region changed meanwhile)
        int failed = PyErr_Occurred() != NULL || (lock != NULL && clara_let_go(lock) < 0);
        Py_XDECREF(weak);
        if (!failed) {
            array = PyObject_CallMethodNoArgs(self, view_name);
        }
        goto done;
    }
    Py_SETREF(seen[R_HOLDER], weak);  // (was None)
    if (clara_let_go(lock) < 0) {
        goto done;
    }
    PyObject *arguments[4] = {holder, view[0], view[1], offset};
    array = PyObject_Vectorcall(view[3], arguments, 4, NULL);
    if (array != NULL && view[2] != Py_None) {
        Py_SETREF(array, PyObject_CallMethodOneArg(array, reshape_name, view[2]));
    }
done:
    Py_XDECREF(holder);
    Py_DECREF(region);
    for (int i = 0; i < 5; i++) {
        Py_DECREF(view[i]);
    }
    return array;
}

/* MappingFields.__exit__(exc_type, exc, tb): unmap if still mapped (Mapping._exit, the
 * twin), the data marked complete unless the block raised: a staged map by
 * clara_unmap_staged, any other by the allocation's _unmap (no frame of _exit's). */
static PyObject *mapping_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (arguments("__exit__", nargs, 3) < 0) {
        return NULL;
    }
    PyObject **fields = ((Fields *)self)->fields;
    PyObject *region = fields[M_REGION], *maps = fields[M_MAPS], *alloc = fields[M_ALLOCATION];
    if (!PyList_CheckExact(maps)) {  // (never: made by map)
        PyObject *call[4] = {self, args[0], args[1], args[2]};
        return PyObject_VectorcallMethod(exit_name, call, 4, NULL);
    }
    if (clara_index_in(maps, region) < 0) {
        Py_RETURN_NONE;  // (unmapped already)
    }
    Py_INCREF(region);
    Py_INCREF(alloc);
    int complete = args[0] == Py_None;
    int done = clara_unmap_staged(alloc, region, complete);
    PyObject *result = NULL;
    if (done == 0) {
        PyObject *call[3] = {alloc, region, complete ? Py_True : Py_False};
        result = PyObject_VectorcallMethod(unmap_name, call, 3, NULL);
    }
    Py_DECREF(region);
    Py_DECREF(alloc);
    if (done == 0 && result == NULL) {
        return NULL;
    }
    Py_XDECREF(result);
    return done < 0 ? NULL : Py_NewRef(Py_None);
}

PyMethodDef clara_mapping_methods[] = {
    {"__enter__", (PyCFunction)mapping_enter, METH_NOARGS,
     "A new numpy view of the data (``with alloc.map(...) as array``)."},
    {"__exit__", (PyCFunction)(void (*)(void))mapping_exit, METH_FASTCALL,
     "Unmap, if mapped: the data marked complete, or incomplete if the block raised."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef mapped_methods[] = {
    {"set_up_maps", (PyCFunction)(void (*)(void))set_up_maps, METH_FASTCALL,
     "set_up_maps(Staged, Mapping, kept, owned, forks, processes, memory, keep, lengths, "
     "kept_up_to, staged_below) -> None: what map_staged and a Mapping's unmap work with"},
    {"view_known", (PyCFunction)(void (*)(void))view_known, METH_FASTCALL,
     "view_known(layout, dtype, count, shape, frombuffer) -> None: the view of a layout"},
    {"map_staged", (PyCFunction)clara_map_staged, METH_O,
     "map_staged(allocation) -> Mapping, or None if its write map is not the staged case"},
    {NULL, NULL, 0, NULL},
};

int clara_add_mapped(PyObject *module) {
    const char *names[] = {"count",   "_lending",       "acquire",          "release",
                           "_view",   "_exit",          "_unmap",           "reshape",
                           "_self_identity", "_public_meanwhile"};
    PyObject **interned[] = {&count_name,   &lending_name, &acquire_name,
                             &release_name, &view_name,    &exit_name,
                             &unmap_name,   &reshape_name, &clara_maps.self_identity,
                             &clara_maps.public_meanwhile};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((*interned[i] = PyUnicode_InternFromString(names[i])) == NULL) {
            return -1;
        }
    }
    if ((offset = PyLong_FromLong(DATA_OFFSET)) == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, mapped_methods);
}
