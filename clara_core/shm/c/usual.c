/* An allocation's usual create, first publish and free, each in one call with no Python
 * frame (twins: members.new_allocation, Publishing.publish and Freeing.free, whose Python
 * runs whenever these say the case is not theirs):
 *
 * create_usual(context, size)      a small allocation of `size` bytes, the size of the
 *                                  last create of this process in this context
 * publish_usual(allocation, name)  the first publish of a fresh private segment nobody
 *                                  else has reached, in a context without a capacity,
 *                                  under a name published before by this process
 * free_usual(allocation)           the free of a published allocation nobody pools, in a
 *                                  context without a capacity, nothing mapped or kept
 *
 * Each reads the allocation's fields and the few module state the Python reads (set up
 * once by set_up_usual), checks that the case is the usual one (False: it is not, and
 * nothing was done), then makes the Python's steps in the Python's order through the
 * same C calls (making.c's create_private and publish, freeing.c's free_named). The
 * Python (members.py, publishing.py, freeing.py) says why each step is there.
 */
#include "mapped.h"

#include <string.h>

/* Where the lifecycle and the name are in a header (clara_core/shm/header.py). */
#define LIFECYCLE_AT 16
#define NAME_AT 512

/* What set_up_usual gives (NULL until then). */
static PyObject *create_call, *members_globals, *allocation_class;  // making.create_private
static PyObject *publish_call, *free_named_call;  // making.publish, making.free_named
static PyObject *directory_globals;                // shm/directory.py's: fd_by_setting, ...
static PyObject *shm_dir_setting, *packed_names, *private_ones;  // names', header's, forks'
static PyObject *private_state, *shared_state;     // lifecycle.PRIVATE, SHARED
static PyObject *published_number, *freed_number;  // header.PUBLISHED, FREED
static long long pool_min_bytes;

static PyObject *capacity_name, *writable_name, *fd_name, *names_name, *fds_name;
static PyObject *empty_path_name, *check_alive_name, *rest_name, *registry_name;
static PyObject *last_sized_name, *template_name, *private_what_name, *mode_name, *uid_name;
static PyObject *name_name, *incarnation_name, *count_key;
static long long small_capacity;

/* set_up_usual(create_private, members, Allocation, SMALL, publish, free_named,
 *              directory, shm_dir_setting, packed_names, private, PRIVATE, SHARED,
 *              PUBLISHED, FREED, POOL_MIN_BYTES) -> None (members.py, once) */
static PyObject *set_up_usual(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("set_up_usual", nargs, 15) < 0) {
        return NULL;
    }
    if (!PyDict_Check(args[1]) || !PyType_Check(args[2]) || !PyDict_Check(args[6]) ||
        !PyDict_CheckExact(args[8]) || !PyDict_CheckExact(args[9])) {
        PyErr_SetString(PyExc_TypeError, "set_up_usual: module globals, a class, two dicts");
        return NULL;
    }
    long long small = PyLong_AsLongLong(args[3]), limit = PyLong_AsLongLong(args[14]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject **kept[] = {&create_call,     &members_globals, &allocation_class, NULL,
                         &publish_call,    &free_named_call, &directory_globals,
                         &shm_dir_setting, &packed_names,    &private_ones,
                         &private_state,   &shared_state,    &published_number,
                         &freed_number};
    for (int i = 0; i < 14; i++) {
        if (kept[i] != NULL) {
            Py_XSETREF(*kept[i], Py_NewRef(args[i]));
        }
    }
    small_capacity = small;
    pool_min_bytes = limit;
    Py_RETURN_NONE;
}

/* The directory's fd as directory_fd() knows it (borrowed), or NULL (not known: the
 * Python opens it; or an error). */
static PyObject *known_directory(void) {
    PyObject *setting = PyObject_CallNoArgs(shm_dir_setting);
    if (setting == NULL) {
        return NULL;
    }
    PyObject *fds = PyDict_GetItemWithError(directory_globals, fds_name);
    PyObject *fd = NULL;
    if (fds != NULL && PyDict_CheckExact(fds)) {
        fd = PyDict_GetItemWithError(fds, setting);
    }
    Py_DECREF(setting);
    return fd != NULL && PyLong_CheckExact(fd) ? fd : NULL;
}

/* The (file name, description) registry.published(name) would give, if it knows `name`
 * (borrowed: the registry's published_names holds it), else NULL (no exception: the
 * Python validates it) or NULL with an exception. */
static PyObject *known_name(PyObject *registry, PyObject *name) {
    PyObject *names = PyObject_GetAttr(registry, names_name);
    PyObject *found = NULL;
    if (names != NULL && PyDict_CheckExact(names)) {
        found = PyDict_GetItemWithError(names, name);
    }
    Py_XDECREF(names);  // (the registry keeps it, and what it holds)
    if (found == NULL || !PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 2 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(found, 0))) {
        return NULL;
    }
    return found;
}

/* Whether the registry's `attribute` is `expected`: 1, 0, -1 (an exception). */
static int attribute_is(PyObject *registry, PyObject *attribute, PyObject *expected) {
    PyObject *value = PyObject_GetAttr(registry, attribute);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value == expected;
}

/* create_usual(context, size) -> an Allocation, (allocation, uid, mode) if its file was
 * not made with the context's owner and mode (the caller adopts it), or None (not the
 * usual case, or its call failed: nothing was made, the Python makes it)
 *
 * members.new_allocation's small case, with the layout of the last create (`size` the
 * very object it was given, no dtype, no shape), the header template known for it in
 * this context, the directory open: making.create_private with the Python's arguments. */
PyObject *clara_create_usual(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("create_usual", nargs, 2) < 0) {
        return NULL;
    }
    PyObject *context = args[0], *size = args[1];
    if (create_call == NULL || publish_call == NULL || clara_maps.forks == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *last = PyDict_GetItemWithError(members_globals, last_sized_name);
    PyObject *known = PyDict_GetItemWithError(members_globals, template_name);
    if (last == NULL || known == NULL || !PyTuple_CheckExact(last) ||
        PyTuple_GET_SIZE(last) != 3 || PyTuple_GET_ITEM(last, 0) != size ||
        PyTuple_GET_ITEM(last, 1) != Py_None || !PyTuple_CheckExact(known) ||
        PyTuple_GET_SIZE(known) != 4 || PyTuple_GET_ITEM(known, 0) != PyTuple_GET_ITEM(last, 2)) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    PyObject *layout = PyTuple_GET_ITEM(last, 2);
    if (!PyTuple_Check(layout) || PyTuple_GET_SIZE(layout) < 4) {
        Py_RETURN_NONE;
    }
    long long capacity = PyLong_AsLongLong(PyTuple_GET_ITEM(layout, 3));
    if ((capacity == -1 && PyErr_Occurred()) || capacity > small_capacity) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    // (references of our own from here: a collection may run code that replaces these)
    PyObject *held[7] = {Py_NewRef(known), Py_NewRef(layout), NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL, *registry = held[2] = PyObject_GetAttr(context, registry_name);
    PyObject *values[4] = {NULL, NULL, NULL, NULL};  // name, incarnation, mode, what
    PyObject **attributes[] = {&name_name, &incarnation_name, &mode_name, &private_what_name};
    for (int i = 0; registry != NULL && i < 4; i++) {
        if ((values[i] = PyObject_GetAttr(registry, *attributes[i])) == NULL) {
            goto done;
        }
    }
    if (registry == NULL) {
        goto done;
    }
    int same = PyObject_RichCompareBool(values[0], PyTuple_GET_ITEM(known, 1), Py_EQ);
    same = same == 1 ? PyObject_RichCompareBool(values[1], PyTuple_GET_ITEM(known, 2), Py_EQ)
                     : same;
    PyObject *directory = same == 1 ? Py_XNewRef(known_directory()) : NULL;
    PyObject *count = directory == NULL
                          ? NULL
                          : Py_XNewRef(PyDict_GetItemWithError(clara_maps.forks, count_key));
    held[5] = directory;
    held[6] = count;
    PyObject *length = count == NULL ? NULL : PyLong_FromLongLong(4096 + capacity);
    if (length == NULL) {
        result = same < 0 || PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
        goto done;
    }
    held[3] = length;
    PyObject *call[12] = {allocation_class, directory,  values[2],    PyTuple_GET_ITEM(known, 3),
                          length,           context,    registry,     layout,
                          private_state,    values[3],  count,        private_ones};
    PyObject *made = PyObject_Vectorcall(create_call, call, 12, NULL);
    if (made == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {  // (made again, and said why, by the
            PyErr_Clear();                             // Python: nothing was left)
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    held[4] = made;
    PyObject *uid = PyObject_GetAttr(registry, uid_name);
    if (uid == NULL || !PyTuple_CheckExact(made) || PyTuple_GET_SIZE(made) != 3) {
        Py_XDECREF(uid);
        result = uid == NULL ? NULL : Py_NewRef(made);
        goto done;
    }
    long made_mode = PyLong_AsLong(PyTuple_GET_ITEM(made, 2));
    int owner = PyObject_RichCompareBool(PyTuple_GET_ITEM(made, 1), uid, Py_EQ);
    Py_DECREF(uid);
    long mode = PyLong_AsLong(values[2]);
    if (PyErr_Occurred()) {
        result = Py_NewRef(made);  // (the caller checks them itself)
        PyErr_Clear();
        goto done;
    }
    // Made by the context's owner with its mode (the usual case): nothing to adopt.
    result = Py_NewRef(owner == 1 && (made_mode & 07777) == mode ? PyTuple_GET_ITEM(made, 0)
                                                                  : made);
done:
    for (int i = 0; i < 7; i++) {
        Py_XDECREF(held[i]);
    }
    for (int i = 0; i < 4; i++) {
        Py_XDECREF(values[i]);
    }
    return result;
}

/* publish_usual(allocation, name) -> True (published), or False (not the usual case:
 * nothing was done, the Python publishes it). Errors as the Python raises them. */
PyObject *clara_publish_usual(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("publish_usual", nargs, 2) < 0) {
        return NULL;
    }
    PyObject *alloc = args[0], *name = args[1];
    if (publish_call == NULL || !PyObject_TypeCheck(alloc, &clara_allocation_fields) ||
        !PyUnicode_CheckExact(name)) {
        Py_RETURN_FALSE;
    }
    // Each field read is held until the end (see staged_map.c: a collection may run
    // code that changes them).
    PyObject **fields = ((Fields *)alloc)->fields;
    PyObject *pending = Py_NewRef(fields[PENDING]), *registry = Py_NewRef(fields[REGISTRY]);
    PyObject *fd = Py_NewRef(fields[FD]), *maps = fields[MAPS];
    PyObject *found = NULL, *packed = NULL, *directory = NULL, *context_fd = NULL;
    PyObject *tail = NULL, *links = NULL, *result = Py_False;
    if (fields[CLOSED] != Py_False || fields[WRITABLE] != Py_True ||
        fields[VISIBILITY] != private_state || !PyByteArray_CheckExact(pending) ||
        PyByteArray_GET_SIZE(pending) < NAME_AT || !PyList_CheckExact(maps) ||
        PyList_GET_SIZE(maps) != 0) {
        goto done;
    }
    found = Py_XNewRef(known_name(registry, name));
    packed = found == NULL ? NULL : Py_XNewRef(PyDict_GetItemWithError(packed_names, name));
    PyObject *empty_path = packed == NULL ? NULL
                                          : PyDict_GetItemWithError(directory_globals,
                                                                    empty_path_name);
    directory = empty_path == Py_True ? Py_XNewRef(known_directory()) : NULL;
    if (directory == NULL || !PyBytes_CheckExact(packed)) {
        result = PyErr_Occurred() ? NULL : Py_False;
        goto done;
    }
    int usual = attribute_is(registry, capacity_name, Py_None);
    usual = usual == 1 ? attribute_is(registry, writable_name, Py_True) : usual;
    context_fd = usual == 1 ? PyObject_GetAttr(registry, fd_name) : NULL;
    if (context_fd == NULL) {
        result = usual < 0 || PyErr_Occurred() ? NULL : Py_False;
        goto done;
    }
    result = NULL;
    // The tail written from the lifecycle on: lifecycle (published), data state, ... and
    // the name block (as `tail[_NAME_IN_TAIL:] = packed`).
    Py_ssize_t before = NAME_AT - LIFECYCLE_AT, size = PyBytes_GET_SIZE(packed);
    PyObject *file_name = PyTuple_GET_ITEM(found, 0), *what = PyTuple_GET_ITEM(found, 1);
    if ((tail = PyByteArray_FromStringAndSize(NULL, before + size)) == NULL) {
        goto done;
    }
    char *bytes = PyByteArray_AS_STRING(tail);
    memcpy(bytes, PyByteArray_AS_STRING(pending) + LIFECYCLE_AT, (size_t)before);
    memcpy(bytes + before, PyBytes_AS_STRING(packed), (size_t)size);
    bytes[0] = (char)PyLong_AsLong(published_number);
    PyObject *call[5] = {context_fd, fd, tail, directory, file_name};
    links = PyObject_Vectorcall(publish_call, call, 5, NULL);
    if (links == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_OSError)) {
            goto done;
        }
        PyErr_Clear();  // (the calls stopped on the way: made again, by the Python)
        links = PyLong_FromLong(-1);
    }
    long count = links == NULL ? -1 : PyLong_AsLong(links);
    if (links == NULL || (count == -1 && PyErr_Occurred())) {
        goto done;
    }
    if (count == 0) {  // destroyed: NotFound, and nothing was done
        PyObject *alive = PyObject_CallMethodNoArgs(registry, check_alive_name);
        if (alive == NULL) {
            goto done;
        }
        Py_DECREF(alive);
    }
    // Gone public (as _go_public), whether or not every call was made.
    Py_SETREF(fields[PENDING], Py_NewRef(Py_None));
    PyObject *key = PyLong_FromVoidPtr(alloc);  // (id(self))
    if (key == NULL || (PyDict_DelItem(private_ones, key) < 0 &&
                        !PyErr_ExceptionMatches(PyExc_KeyError))) {
        Py_XDECREF(key);
        goto done;
    }
    PyErr_Clear();
    Py_DECREF(key);
    if (count <= 0) {
        PyObject *rest[6] = {alloc, links, file_name, what, tail, Py_None};
        PyObject *done_rest = PyObject_VectorcallMethod(rest_name, rest, 6, NULL);
        if (done_rest == NULL) {
            goto done;
        }
        Py_DECREF(done_rest);
    }
    Py_SETREF(fields[VISIBILITY], Py_NewRef(shared_state));
    Py_SETREF(fields[KEY], Py_NewRef(name));
    Py_SETREF(fields[DESCRIPTION], Py_NewRef(what));
    Py_SETREF(fields[RECYCLE], Py_NewRef(Py_None));
    result = Py_True;
done:
    Py_XINCREF(result);
    PyObject *held[] = {pending, registry, fd, found, packed, directory, context_fd, tail, links};
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
        Py_XDECREF(held[i]);
    }
    return result;
}

/* free_usual(allocation) -> True (freed, its reference closed), False (not the usual
 * case: nothing was done, the Python frees it), or what free_named found when the
 * Python must go on (None: the lifecycle lock was busy; -1: the file was cut short; the
 * reference is then marked closed, as the Python marks it before its call). OSError as
 * free_named raises it (the reference then open again: the call closes nothing it fails
 * on). */
PyObject *clara_free_usual(PyObject *module, PyObject *alloc) {
    (void)module;
    if (free_named_call == NULL || clara_maps.forks == NULL ||
        !PyObject_TypeCheck(alloc, &clara_allocation_fields)) {
        Py_RETURN_FALSE;
    }
    // Each field read is held until the end (see staged_map.c).
    PyObject **fields = ((Fields *)alloc)->fields;
    PyObject *maps = fields[MAPS], *layout = fields[LAYOUT];
    PyObject *identity = Py_NewRef(fields[IDENTITY]), *registry = Py_NewRef(fields[REGISTRY]);
    PyObject *key = Py_NewRef(fields[KEY]), *fd = Py_NewRef(fields[FD]);
    PyObject *found = NULL, *directory = NULL, *lifecycle = NULL, *result = Py_False;
    if (fields[CLOSED] != Py_False || fields[WRITABLE] != Py_True ||
        fields[VISIBILITY] != shared_state || !PyUnicode_CheckExact(key) ||
        !PyList_CheckExact(maps) || PyList_GET_SIZE(maps) != 0 || fields[PENDING] != Py_None ||
        fields[WARM] != Py_None || fields[WARM_READ] != Py_None ||
        !PyTuple_CheckExact(identity) || PyTuple_GET_SIZE(identity) != 2 ||
        !PyTuple_Check(layout) || PyTuple_GET_SIZE(layout) < 4) {
        goto done;
    }
    long long capacity = PyLong_AsLongLong(PyTuple_GET_ITEM(layout, 3));
    if (capacity == -1 && PyErr_Occurred()) {
        result = NULL;
        goto done;
    }
    // Not a parent's open file: made since the last fork (_born == _seen == forks.count).
    int usual = capacity < pool_min_bytes ? clara_no_fork_since(fields) : 0;
    usual = usual == 1 ? PyObject_RichCompareBool(fields[BORN], fields[SEEN], Py_EQ) : usual;
    if (usual == 1 && (found = Py_XNewRef(known_name(registry, key))) != NULL &&
        (directory = Py_XNewRef(known_directory())) != NULL) {
        usual = attribute_is(registry, capacity_name, Py_None);
    } else if (usual == 1) {
        usual = PyErr_Occurred() ? -1 : 0;
    }
    if (usual <= 0) {
        result = usual < 0 ? NULL : Py_False;
        goto done;
    }
    // Marked closed first (the call closes the fd: an interrupt after it must never find
    // it open), its recycler dropped (published: nothing to offer the pool).
    Py_SETREF(fields[RECYCLE], Py_NewRef(Py_None));
    Py_SETREF(fields[CLOSED], Py_NewRef(Py_True));
    PyObject *call[8] = {fd,
                         directory,
                         PyTuple_GET_ITEM(found, 0),
                         published_number,
                         PyTuple_GET_ITEM(identity, 0),
                         PyTuple_GET_ITEM(identity, 1),
                         freed_number,
                         Py_True};
    lifecycle = PyObject_Vectorcall(free_named_call, call, 8, NULL);
    if (lifecycle == NULL) {
        Py_SETREF(fields[CLOSED], Py_NewRef(Py_False));  // (it closed nothing)
        result = NULL;
    } else if (lifecycle == Py_None || PyLong_AsLong(lifecycle) < 0) {
        result = PyErr_Occurred() ? NULL : lifecycle;  // (busy; -1: cut short, not closed)
    } else {
        result = Py_True;
    }
done:
    Py_XINCREF(result);
    PyObject *held[] = {identity, registry, key, fd, found, directory, lifecycle};
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
        Py_XDECREF(held[i]);
    }
    return result;
}

static PyMethodDef usual_methods[] = {
    {"create_usual", (PyCFunction)(void (*)(void))clara_create_usual, METH_FASTCALL,
     "create_usual(context, size) -> Allocation, (allocation, uid, mode), or None"},
    {"set_up_usual", (PyCFunction)(void (*)(void))set_up_usual, METH_FASTCALL,
     "set_up_usual(create_private, members, Allocation, SMALL, publish, free_named, "
     "directory, shm_dir_setting, packed_names, private, PRIVATE, SHARED, PUBLISHED, "
     "FREED, POOL_MIN_BYTES) -> None"},
    {"publish_usual", (PyCFunction)(void (*)(void))clara_publish_usual, METH_FASTCALL,
     "publish_usual(allocation, name) -> True, or False if not the usual first publish"},
    {"free_usual", (PyCFunction)clara_free_usual, METH_O,
     "free_usual(allocation) -> True, False if not the usual free, or None/-1 (go on)"},
    {NULL, NULL, 0, NULL},
};

int clara_add_usual(PyObject *module) {
    const char *names[] = {"capacity",      "writable",    "fd",           "published_names",
                           "fd_by_setting", "_empty_path", "check_alive",  "_publish_rest",
                           "_registry",     "_last_sized", "_template",    "private_what",
                           "mode",          "uid",         "name",         "incarnation",
                           "count"};
    PyObject **interned[] = {&capacity_name,    &writable_name,     &fd_name,
                             &names_name,       &fds_name,          &empty_path_name,
                             &check_alive_name, &rest_name,         &registry_name,
                             &last_sized_name,  &template_name,     &private_what_name,
                             &mode_name,        &uid_name,          &name_name,
                             &incarnation_name, &count_key};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((*interned[i] = PyUnicode_InternFromString(names[i])) == NULL) {
            return -1;
        }
    }
    return PyModule_AddFunctions(module, usual_methods);
}
