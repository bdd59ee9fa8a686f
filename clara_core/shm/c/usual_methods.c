/* UsualMethod: a method whose usual case is one C call with no Python frame at all
 * (Context.create, Allocation.map, publish and free), and whose Python function (its
 * twin, `__wrapped__`) runs for every other case.
 *
 * A method descriptor (as a C method is: Py_TPFLAGS_METHOD_DESCRIPTOR), so that
 * `alloc.free()` calls it with the allocation first and no bound method is made. Called
 * with the usual arguments (positional only, the usual count), it makes the call of its
 * kind (usual.c, staged_map.c); when that says the case is not its own (None, False:
 * nothing was done), the Python function is called with the same arguments. A free whose
 * call found something the Python must finish hands it to `finish` (the Python's own
 * continuation); a create whose file must be adopted too.
 */
#include "mapped.h"

#include <structmember.h>

enum { CREATE, MAP, PUBLISH, FREE, KINDS };

typedef struct {
    PyObject_HEAD
    int kind;
    char usual;        // False: always the Python (its twin, for tests)
    PyObject *python;  // the method's Python function
    PyObject *finish;  // what finishes a call the Python must go on with (or None)
    vectorcallfunc vectorcall;
} UsualMethod;

static PyObject *write_mode;  // "w"

/* The Python function with the same arguments. */
static PyObject *python_call(UsualMethod *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames) {
    return PyObject_Vectorcall(self->python, args, PyVectorcall_NARGS(nargsf), kwnames);
}

/* The call of its kind: what it returned (NULL: an exception, kept). */
static PyObject *usual_call(UsualMethod *self, PyObject *const *args) {
    switch (self->kind) {
        case CREATE:
            return clara_create_usual(NULL, args, 2);
        case MAP:
            return clara_map_staged(NULL, args[0]);
        case PUBLISH:
            return clara_publish_usual(NULL, args, 2);
        default:
            return clara_free_usual(NULL, args[0]);
    }
}

static PyObject *usual_vectorcall(UsualMethod *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t usual_count = self->kind == FREE ? 1 : 2;
    if (!self->usual || kwnames != NULL || nargs != usual_count ||
        (self->kind == MAP && (!PyUnicode_CheckExact(args[1]) ||
                               PyUnicode_Compare(args[1], write_mode) != 0))) {
        return python_call(self, args, nargsf, kwnames);
    }
    PyObject *done = usual_call(self, args);
    if (done == NULL) {
        // An OSError of a map or a free: their continuation raises it as the Python
        // does (translated); a create's call says None for its own (see usual.c).
        if (self->kind == PUBLISH || self->kind == CREATE ||
            !PyErr_ExceptionMatches(PyExc_OSError)) {
            return NULL;
        }
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL) {
            PyException_SetTraceback(value, traceback);
        }
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        done = value;
    }
    if (done == Py_None || done == Py_False) {  // (a free's None: its lock was busy)
        if (!(self->kind == FREE && done == Py_None)) {
            Py_DECREF(done);
            return python_call(self, args, nargsf, kwnames);
        }
    }
    switch (self->kind) {
        case PUBLISH:
            Py_DECREF(done);  // (True)
            Py_RETURN_NONE;
        case FREE:
            if (done == Py_True) {
                Py_DECREF(done);
                Py_RETURN_NONE;
            }
            break;
        case CREATE:
            if (!PyTuple_CheckExact(done)) {
                return done;  // (the allocation)
            }
            break;
        default:
            if (!PyExceptionInstance_Check(done)) {
                return done;  // (the Mapping)
            }
    }
    // A free the Python goes on with (`finish(allocation, found, None)`), a map's error
    // (`finish(allocation, error, None)`), or a create's file to adopt (`finish(context,
    // made)`).
    PyObject *call[3] = {args[0], done, Py_None};
    PyObject *result = PyObject_Vectorcall(self->finish, call, self->kind == CREATE ? 2 : 3, NULL);
    Py_DECREF(done);
    return result;
}

/* UsualMethod(kind, python, finish) */
static PyObject *usual_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    int kind;
    PyObject *python, *finish;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) ||
        !PyArg_ParseTuple(args, "iOO:UsualMethod", &kind, &python, &finish)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "UsualMethod() takes no keyword arguments");
        }
        return NULL;
    }
    if (kind < 0 || kind >= KINDS || !PyCallable_Check(python) ||
        (finish != Py_None && !PyCallable_Check(finish))) {
        PyErr_SetString(PyExc_ValueError, "UsualMethod(kind, python function, finish)");
        return NULL;
    }
    UsualMethod *self = (UsualMethod *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->kind = kind;
        self->usual = 1;
        self->python = Py_NewRef(python);
        self->finish = Py_NewRef(finish);
        self->vectorcall = (vectorcallfunc)usual_vectorcall;
    }
    return (PyObject *)self;
}

static int usual_traverse(UsualMethod *self, visitproc visit, void *arg) {
    Py_VISIT(self->python);
    Py_VISIT(self->finish);
    return 0;
}

static int usual_clear(UsualMethod *self) {
    Py_CLEAR(self->python);
    Py_CLEAR(self->finish);
    return 0;
}

static void usual_dealloc(UsualMethod *self) {
    PyObject_GC_UnTrack(self);
    usual_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* As a function is: itself from the class, a bound method from an instance. */
static PyObject *usual_get(PyObject *self, PyObject *instance, PyObject *owner) {
    (void)owner;
    return instance == NULL || instance == Py_None ? Py_NewRef(self)
                                                   : PyMethod_New(self, instance);
}

/* Its name, docstring, signature...: the Python function's (help(), inspect). */
static PyObject *usual_getattro(PyObject *self, PyObject *name) {
    PyObject *found = PyObject_GenericGetAttr(self, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return PyObject_GetAttr(((UsualMethod *)self)->python, name);
}

static PyObject *usual_doc(UsualMethod *self, void *closure) {
    (void)closure;
    return PyObject_GetAttrString(self->python, "__doc__");
}

static PyGetSetDef usual_getset[] = {
    {"__doc__", (getter)usual_doc, NULL, "the Python function's docstring", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef usual_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(UsualMethod, python), READONLY, "its Python function"},
    {"usual", T_BOOL, offsetof(UsualMethod, usual), 0, "False: always its Python function"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject UsualMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clara_core.shm._calls.UsualMethod",
    .tp_doc = "A method whose usual case is one C call (see usual_methods.c).",
    .tp_basicsize = sizeof(UsualMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = usual_new,
    .tp_dealloc = (destructor)usual_dealloc,
    .tp_traverse = (traverseproc)usual_traverse,
    .tp_clear = (inquiry)usual_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(UsualMethod, vectorcall),
    .tp_descr_get = usual_get,
    .tp_getattro = usual_getattro,
    .tp_getset = usual_getset,
    .tp_members = usual_members,
};

int clara_add_usual_methods(PyObject *module) {
    if ((write_mode = PyUnicode_InternFromString("w")) == NULL ||
        PyType_Ready(&UsualMethodType) < 0 ||
        PyModule_AddObjectRef(module, "UsualMethod", (PyObject *)&UsualMethodType) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "USUAL_CREATE", CREATE) < 0 ||
                   PyModule_AddIntConstant(module, "USUAL_MAP", MAP) < 0 ||
                   PyModule_AddIntConstant(module, "USUAL_PUBLISH", PUBLISH) < 0 ||
                   PyModule_AddIntConstant(module, "USUAL_FREE", FREE) < 0
               ? -1
               : 0;
}
