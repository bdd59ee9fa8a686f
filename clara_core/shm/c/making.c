/* Making and ending segments: create, publish, free. */
#include "calls.h"

static PyMethodDef making_methods[] = {
    {NULL, NULL, 0, NULL},
};

int clara_add_making(PyObject *module) { return PyModule_AddFunctions(module, making_methods); }
