/* The fields of the objects made on every get and map (twins: clara_core/shm/fields.py).
 *
 * AllocationFields  allocation.Allocation's (its reference's state: see reference.py)
 * RegionFields      memory.Region's: address, length, writable, _holder, _fd
 * MappingFields     mapping.Mapping's: allocation, _maps, _region, layout, _array, _written
 *
 * Each is a base class whose Python subclass holds the methods; all they do in C is make
 * the object and free it (and AllocationFields' finalizer calls `_close` if it was never
 * closed). A Python class's __init__ storing its slots one by one, and its generic
 * dealloc, cost two to three times as much, and a get + map makes one of each.
 */
#include "calls.h"
#include "fields.h"

#include <structmember.h>

#include <stddef.h>


/* Made by positional arguments only, as every function of the module is called. */
static int no_keywords(const char *name, PyObject *kwargs) {
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return -1;
    }
    return 0;
}

#define FIELD(name, index, doc) {name, T_OBJECT_EX, FIELDS_SIZE(index), 0, doc}

static int fields_traverse(Fields *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_VISIT(self->fields[i]);
    }
    return 0;
}

static int fields_clear(Fields *self) {
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_CLEAR(self->fields[i]);
    }
    return 0;
}

/* (A Python subclass's dealloc untracks, then calls this, then lets go of its type.) */
static void fields_dealloc(Fields *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    fields_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new object of `type` (the base or a subclass) with `count` fields from `values`. */
PyObject *clara_made(PyTypeObject *type, PyObject *const *values, Py_ssize_t count) {
    Fields *self = (Fields *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->count = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        self->fields[i] = Py_NewRef(values[i]);
    }
    return (PyObject *)self;
}

/* RegionFields(address, length, writable): _holder None, _fd -1. */
static PyObject *region_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *address, *length, *writable;
    if (no_keywords("RegionFields", kwargs) < 0 ||
        !PyArg_UnpackTuple(args, "RegionFields", 3, 3, &address, &length, &writable)) {
        return NULL;
    }
    PyObject *fd = PyLong_FromLong(-1);
    if (fd == NULL) {
        return NULL;
    }
    PyObject *values[] = {address, length, writable, Py_None, fd};
    PyObject *self = clara_made(type, values, 5);
    Py_DECREF(fd);
    return self;
}

static PyMemberDef region_members[] = {
    FIELD("address", 0, "where it is mapped (0: deferred, not mapped (yet))"),
    FIELD("length", 1, "bytes mapped"),
    FIELD("writable", 2, "whether its pages may be written"),
    FIELD("_holder", 3, "a weak reference to the holder of its views, or None"),
    FIELD("_fd", 4, "a deferred region's file, until it is mapped or released (else -1)"),
    {NULL, 0, 0, 0, NULL},
};

/* MappingFields(allocation, maps, region, layout): `maps` is allocation._maps (given:
 * a lookup by a name made in C would miss the type attribute cache), _array None,
 * _written False. */
static PyObject *mapping_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *values[6];
    if (no_keywords("MappingFields", kwargs) < 0 ||
        !PyArg_UnpackTuple(args, "MappingFields", 4, 4, &values[0], &values[1], &values[2],
                           &values[3])) {
        return NULL;
    }
    values[4] = Py_None;
    values[5] = Py_False;
    return clara_made(type, values, 6);
}

static PyMemberDef mapping_members[] = {
    FIELD("allocation", 0, "the allocation (reference) mapped"),
    FIELD("_maps", 1, "its reference's maps: this one's region, while it is mapped"),
    FIELD("_region", 2, "the memory.Region mapped"),
    FIELD("layout", 3, "the layout the map was made for"),
    FIELD("_array", 4, "a weak reference to its `array`, or None"),
    FIELD("_written", 5, "whether data went in through the fd (copy_from, write_from)"),
    {NULL, 0, 0, 0, NULL},
};

/* AllocationFields(context, registry, fd, writable, layout, created_ns, identity,
 * visibility, key, pool_name, description, born): those fields, then a reference not yet
 * closed, with no maps, nothing kept, nothing pending (what Allocation.__init__ stored). */

static PyObject *allocation_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (no_keywords("AllocationFields", kwargs) < 0) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) != GIVEN) {
        PyErr_Format(PyExc_TypeError, "AllocationFields() takes %d arguments (%zd given)",
                     GIVEN, PyTuple_GET_SIZE(args));
        return NULL;
    }
    PyObject *maps = PyList_New(0);
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    PyObject *values[ALLOCATION_FIELDS];
    PyObject *self = NULL;
    if (maps != NULL && empty != NULL) {
        for (int i = 0; i < GIVEN; i++) {
            values[i] = PyTuple_GET_ITEM(args, i);
        }
        values[SEEN] = values[GIVEN - 1];  // born: forks.count when it was made
        values[CLOSED] = Py_False;
        values[PARENTS] = values[WARM] = values[WARM_READ] = Py_None;
        values[PENDING] = values[RECYCLE] = Py_None;
        values[MAPS] = maps;
        values[COMPLETED] = values[UNDONE] = empty;
        self = clara_made(type, values, ALLOCATION_FIELDS);
    }
    Py_XDECREF(maps);
    Py_XDECREF(empty);
    return self;
}

/* At its death: `_close()` unless it was closed (released, freed) already; as Python's
 * __del__, an exception is reported, not raised. */
static void allocation_finalize(PyObject *self) {
    PyObject *closed = ((Fields *)self)->fields[CLOSED];  // (NULL: never made)
    if (closed == NULL || closed == Py_True) {
        return;  // (the usual case: released)
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int truth = PyObject_IsTrue(closed);
    if (truth == 0) {
        PyObject *result = PyObject_CallMethod(self, "_close", NULL);
        truth = result == NULL ? -1 : 1;
        Py_XDECREF(result);
    }
    if (truth < 0) {
        PyErr_WriteUnraisable(self);
    }
    PyErr_Restore(type, value, traceback);
}

static PyMemberDef allocation_members[] = {
    FIELD("context", 0, "the Context it belongs to"),
    FIELD("_registry", 1, "the context as its allocations see it"),
    FIELD("_fd", 2, "the reference's open file"),
    FIELD("_writable", 3, "whether it was opened for writing"),
    FIELD("_layout", 4, "its layout (as last seen)"),
    FIELD("_created_ns", 5, "when it was made (ns since the epoch)"),
    FIELD("_identity", 6, "(st_dev, st_ino), or None until asked"),
    FIELD("_visibility", 7, "private, handled or shared (published)"),
    FIELD("_key", 8, "its published name or handle"),
    FIELD("_pool_name", 9, "its name in the pool (a recycled one), or None"),
    FIELD("_description", 10, "what describe() makes of it, if known"),
    FIELD("_born", 11, "forks.count when it was made"),
    FIELD("_seen", SEEN, "forks.count when it last looked"),
    FIELD("_closed", CLOSED, "whether it was released"),
    FIELD("_parents", PARENTS, "maps of a parent process (see forks.py), or None"),
    FIELD("_maps", MAPS, "its maps (Regions)"),
    FIELD("_completed", COMPLETED, "what a write map's unmap writes"),
    FIELD("_undone", UNDONE, "what a failed write map puts back"),
    FIELD("_warm", WARM, "a write mapping kept for the next map, or None"),
    FIELD("_warm_read", WARM_READ, "a read mapping kept for the next map, or None"),
    FIELD("_pending", PENDING, "the header of a segment nobody else can reach, or None"),
    FIELD("_recycle", RECYCLE, "what offers it to the pool at release, or None"),
    {NULL, 0, 0, 0, NULL},
};

#define FIELDS_TYPE(python_name, doc_text, count, new_function, members)             \
    {                                                                              \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clara_core.shm._calls." python_name, \
        .tp_doc = doc_text, .tp_basicsize = FIELDS_SIZE(count),                    \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
        .tp_new = new_function, .tp_dealloc = (destructor)fields_dealloc,          \
        .tp_traverse = (traverseproc)fields_traverse,                              \
        .tp_clear = (inquiry)fields_clear, .tp_members = members,                  \
        .tp_weaklistoffset = offsetof(Fields, weakrefs),                           \
    }

PyTypeObject clara_allocation_fields =
    FIELDS_TYPE("AllocationFields", "allocation.Allocation's fields (see fields.c).",
                ALLOCATION_FIELDS, allocation_new, allocation_members);
PyTypeObject clara_region_fields =
    FIELDS_TYPE("RegionFields", "memory.Region's fields (see fields.c).", REGION_FIELDS,
                region_new, region_members);
PyTypeObject clara_mapping_fields =
    FIELDS_TYPE("MappingFields", "mapping.Mapping's fields (see fields.c).", MAPPING_FIELDS,
                mapping_new, mapping_members);

int clara_add_fields(PyObject *module) {
    clara_allocation_fields.tp_finalize = allocation_finalize;
    clara_mapping_fields.tp_methods = clara_mapping_methods;
    if (PyType_Ready(&clara_allocation_fields) < 0 || PyType_Ready(&clara_region_fields) < 0 ||
        PyType_Ready(&clara_mapping_fields) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "AllocationFields", (PyObject *)&clara_allocation_fields) <
            0 ||
        PyModule_AddObjectRef(module, "RegionFields", (PyObject *)&clara_region_fields) < 0 ||
        PyModule_AddObjectRef(module, "MappingFields", (PyObject *)&clara_mapping_fields) < 0) {
        return -1;
    }
    return 0;
}
