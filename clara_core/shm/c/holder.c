/* The Holder: the one object every view of a mapping is made from (twin: the ctypes array
 * of clara_core/shm/memory_calls.py).
 *
 * holder   a new Holder of a mapping (buffer protocol: read-only unless writable)
 * cut_off  replaces its range by private zeros; at its death the range is kept or unmapped
 * disown   the same for a range that is private memory already (a staged map's: no call)
 *
 * memory.Region lends every view through it and watches it with a weak reference: alive
 * at unmap, its views are cut off (see memory.py).
 */
#include "calls.h"

#include <structmember.h>

#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>

/* The one object every view of a mapping is made from: its bytes through the buffer
 * protocol (read-only unless writable), and `owner`, which lives as long as it does.
 * Once cut off, it owns its range of private zeros: at its death, the range goes to its
 * `spare` list if that holds fewer than `keep`, else it is unmapped. */
typedef struct {
    PyObject_HEAD
    char *address;
    Py_ssize_t length;
    int writable;
    int cut;
    Py_ssize_t keep;
    PyObject *owner;
    PyObject *spare;
    PyObject *weakrefs;
} Holder;

static int holder_buffer(Holder *self, Py_buffer *view, int flags) {
    if ((flags & PyBUF_WRITABLE) && !self->writable) {
        // numpy.frombuffer asks for a writable buffer first, then takes a read-only one:
        // refused without a message string to make and free (every view of a read map)
        PyErr_SetNone(PyExc_BufferError);
        view->obj = NULL;
        return -1;
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, self->address, self->length,
                             !self->writable, flags);
}

static int holder_traverse(Holder *self, visitproc visit, void *arg) {
    Py_VISIT(self->owner);
    Py_VISIT(self->spare);
    return 0;
}

static int holder_clear(Holder *self) {
    Py_CLEAR(self->owner);
    Py_CLEAR(self->spare);  // (a cut-off range is then unmapped at death, not kept)
    return 0;
}

/* Keep the cut-off range in `spare`, or unmap it: safe at interpreter exit and in a
 * forked child (the child has the same mappings); an exception being raised is kept. */
static void holder_let_go(Holder *self) {
    int kept = 0;
    if (self->spare != NULL && PyList_CheckExact(self->spare) &&
        PyList_GET_SIZE(self->spare) < self->keep) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyObject *address = PyLong_FromVoidPtr(self->address);
        kept = address != NULL && PyList_Append(self->spare, address) == 0;
        Py_XDECREF(address);
        PyErr_Clear();
        PyErr_Restore(type, value, traceback);
    }
    if (!kept) {  // (local copies: the GIL may go, and self is half-dead)
        char *address = self->address;
        size_t length = (size_t)self->length;
        unmap_range(address, length);
    }
}

static void holder_dealloc(Holder *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->cut) {
        holder_let_go(self);
    }
    holder_clear(self);
    PyObject_GC_Del(self);
}

static PyBufferProcs holder_buffers = {.bf_getbuffer = (getbufferproc)holder_buffer};

static PyMemberDef holder_members[] = {
    {"owner", T_OBJECT, offsetof(Holder, owner), 0, "what lives as long as the views"},
    {"length", T_PYSSIZET, offsetof(Holder, length), READONLY, "bytes"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HolderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clara_core.shm._calls.Holder",
    .tp_doc = "The one object every view of a mapping is made from (see memory.py).",
    .tp_basicsize = sizeof(Holder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)holder_dealloc,
    .tp_traverse = (traverseproc)holder_traverse,
    .tp_clear = (inquiry)holder_clear,
    .tp_as_buffer = &holder_buffers,
    .tp_members = holder_members,
    .tp_weaklistoffset = offsetof(Holder, weakrefs),
};

/* A new Holder of the mapping at `address` whose views keep `owner` alive (mapped.c makes
 * them too), or NULL with an exception. */
PyObject *clara_holder(void *address, Py_ssize_t length, int writable, PyObject *owner) {
    Holder *holder = PyObject_GC_New(Holder, &HolderType);
    if (holder == NULL) {
        return NULL;
    }
    holder->address = address;
    holder->length = length;
    holder->writable = writable;
    holder->cut = 0;
    holder->keep = 0;
    holder->owner = Py_NewRef(owner);
    holder->spare = NULL;
    holder->weakrefs = NULL;
    PyObject_GC_Track(holder);
    return (PyObject *)holder;
}

/* holder(address, length, writable, owner) -> Holder of the mapping there. */
static PyObject *new_holder(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("holder", nargs, 4) < 0) {
        return NULL;
    }
    void *address = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t length = PyLong_AsSsize_t(args[1]);
    int writable = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return clara_holder(address, length, writable, args[3]);
}

/* The Holder `object`'s range replaced by private zeros of protection `prot` (one mmap
 * MAP_FIXED), so that its views can never again reach the segment; from then on it owns
 * that range (kept in `spare`, a list or NULL, if it holds fewer than `keep` at its death,
 * else unmapped) and no longer its owner. 0, or -1 with an exception. */
int clara_cut_off(PyObject *object, int prot, PyObject *spare, Py_ssize_t keep) {
    if (!PyObject_TypeCheck(object, &HolderType)) {
        PyErr_SetString(PyExc_TypeError, "cut_off: not a Holder");
        return -1;
    }
    Holder *holder = (Holder *)object;
    if (holder->cut) {
        PyErr_SetString(PyExc_ValueError, "cut_off: this holder is cut off already");
        return -1;
    }
    // Without the GIL from UNLOCKED_FROM bytes (the shared pages' teardown grows with
    // them): the caller holds the holder and memory's _lending, so none can cut it meanwhile.
    size_t length = (size_t)holder->length;
    PyThreadState *state = length >= UNLOCKED_FROM ? PyEval_SaveThread() : NULL;
    void *zeros =
        mmap(holder->address, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (state != NULL) {
        int error = errno;
        PyEval_RestoreThread(state);
        errno = error;
    }
    if (zeros == MAP_FAILED) {
        fail();
        return -1;
    }
    holder->cut = 1;
    holder->keep = keep;
    Py_XSETREF(holder->spare, Py_XNewRef(spare));
    Py_CLEAR(holder->owner);
    return 0;
}

/* cut_off(holder, prot, spare, keep): replace the holder's range by private zeros of
 * protection `prot` (one mmap MAP_FIXED), so that its views can never again reach the
 * segment; from then on it owns that range (see Holder) and no longer its owner. */
static PyObject *cut_off(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int prot;
    if (arguments("cut_off", nargs, 4) < 0 || int_of(args[1], &prot) < 0) {
        return NULL;
    }
    Py_ssize_t keep = PyLong_AsSsize_t(args[3]);
    if (keep == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *spare = args[2] == Py_None ? NULL : args[2];
    if (clara_cut_off(args[0], prot, spare, keep) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* As clara_cut_off, for a Holder whose range is this process's private memory already (a
 * staged write map's, shm/staging.py, whose data has gone to the file): nothing to map;
 * from now on it owns the range (kept in `spare` or unmapped at its death) and no longer
 * its owner. 0, or -1 with an exception. */
int clara_disown(PyObject *object, PyObject *spare, Py_ssize_t keep) {
    if (!PyObject_TypeCheck(object, &HolderType)) {
        PyErr_SetString(PyExc_TypeError, "disown: not a Holder");
        return -1;
    }
    Holder *holder = (Holder *)object;
    if (holder->cut) {
        PyErr_SetString(PyExc_ValueError, "disown: this holder owns its range already");
        return -1;
    }
    holder->cut = 1;
    holder->keep = keep;
    Py_XSETREF(holder->spare, Py_XNewRef(spare));
    Py_CLEAR(holder->owner);
    return 0;
}

/* disown(holder, spare, keep): clara_disown (`spare` None: unmapped at its death). */
static PyObject *disown(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (arguments("disown", nargs, 3) < 0) {
        return NULL;
    }
    Py_ssize_t keep = PyLong_AsSsize_t(args[2]);
    if (keep == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (clara_disown(args[0], args[1] == Py_None ? NULL : args[1], keep) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef holder_methods[] = {
    {"holder", (PyCFunction)(void (*)(void))new_holder, METH_FASTCALL,
     "holder(address, length, writable, owner): the views' Holder of a mapping."},
    {"cut_off", (PyCFunction)(void (*)(void))cut_off, METH_FASTCALL,
     "cut_off(holder, prot, spare, keep): replace its range by private zeros."},
    {"disown", (PyCFunction)(void (*)(void))disown, METH_FASTCALL,
     "disown(holder, spare, keep): it owns its range, private memory already."},
    {NULL, NULL, 0, NULL},
};

int clara_add_holder(PyObject *module) {
    if (PyType_Ready(&HolderType) < 0 ||
        PyModule_AddObjectRef(module, "Holder", (PyObject *)&HolderType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, holder_methods);
}
