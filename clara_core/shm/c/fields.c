/* The fields of the objects made on every map (twins: clara_core/shm/fields.py).
 *
 * RegionFields   memory.Region's: address, length, writable, _holder, _fd
 * MappingFields  mapping.Mapping's: allocation, _maps, _region, layout, _array, _written
 *
 * Each is a base class whose Python subclass holds the methods; all they do in C is make
 * the object and free it. A Python class's __init__ storing its slots one by one, and its
 * generic dealloc, cost about three times as much (~2,000 instructions an object), and a
 * map makes two of them.
 */
#include "calls.h"

#include <structmember.h>

#include <stddef.h>

#define MOST_FIELDS 6

/* Object fields only (what the Python slots held): their attribute reads give back the
 * objects stored, as slots do. */
typedef struct {
    PyObject_HEAD
    PyObject *weakrefs;
    PyObject *fields[MOST_FIELDS];
} Fields;

/* Made by positional arguments only, as every function of the module is called. */
static int no_keywords(const char *name, PyObject *kwargs) {
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return -1;
    }
    return 0;
}

#define FIELD(name, index, doc) \
    {name, T_OBJECT_EX, offsetof(Fields, fields) + (index) * sizeof(PyObject *), 0, doc}

static int fields_traverse(Fields *self, visitproc visit, void *arg) {
    for (int i = 0; i < MOST_FIELDS; i++) {
        Py_VISIT(self->fields[i]);
    }
    return 0;
}

static int fields_clear(Fields *self) {
    for (int i = 0; i < MOST_FIELDS; i++) {
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
static PyObject *made(PyTypeObject *type, PyObject *const *values, int count) {
    Fields *self = (Fields *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    for (int i = 0; i < count; i++) {
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
    PyObject *self = made(type, values, 5);
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
    return made(type, values, 6);
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

#define FIELDS_TYPE(python_name, doc_text, new_function, members)                    \
    {                                                                              \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clara_core.shm._calls." python_name, \
        .tp_doc = doc_text, .tp_basicsize = sizeof(Fields),                        \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
        .tp_new = new_function, .tp_dealloc = (destructor)fields_dealloc,          \
        .tp_traverse = (traverseproc)fields_traverse,                              \
        .tp_clear = (inquiry)fields_clear, .tp_members = members,                  \
        .tp_weaklistoffset = offsetof(Fields, weakrefs),                           \
    }

static PyTypeObject RegionFieldsType = FIELDS_TYPE(
    "RegionFields", "memory.Region's fields (see fields.c).", region_new, region_members);
static PyTypeObject MappingFieldsType = FIELDS_TYPE(
    "MappingFields", "mapping.Mapping's fields (see fields.c).", mapping_new, mapping_members);

int clara_add_fields(PyObject *module) {
    if (PyType_Ready(&RegionFieldsType) < 0 || PyType_Ready(&MappingFieldsType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "RegionFields", (PyObject *)&RegionFieldsType) < 0 ||
        PyModule_AddObjectRef(module, "MappingFields", (PyObject *)&MappingFieldsType) < 0) {
        return -1;
    }
    return 0;
}
