/* Access to existing segments: get, map, unmap, release. */
#include "calls.h"

static PyMethodDef access_methods[] = {
    {NULL, NULL, 0, NULL},
};

int clara_add_access(PyObject *module) { return PyModule_AddFunctions(module, access_methods); }
