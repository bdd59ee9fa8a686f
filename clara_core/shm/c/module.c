/* clara_core.shm._calls: module definition; see calls.h. */
#include "calls.h"

/* Bumped when a function changes: native.py refuses a build of other sources. */
#define CLARA_CALLS_VERSION 15

static struct PyModuleDef calls_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clara_core.shm._calls",
    .m_doc = "The system-call sequences of clara's hot paths, in C (see clara_core/shm/native.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__calls(void) {
    PyObject *module = PyModule_Create(&calls_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "VERSION", CLARA_CALLS_VERSION) < 0 ||
        clara_add_access(module) < 0 || clara_add_holder(module) < 0 ||
        clara_add_making(module) < 0 || clara_add_staging(module) < 0 ||
        clara_add_fields(module) < 0 || clara_add_freeing(module) < 0 ||
        clara_add_creating(module) < 0 || clara_add_naming(module) < 0 ||
        clara_add_mapped(module) < 0 || clara_add_usual(module) < 0 ||
        clara_add_usual_methods(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
