/* The C half of clara_core.shm._calls: the system-call sequences of the hot paths.
 *
 * Each C file adds its own functions to the module (module.c calls its add_* function),
 * so that the files stay independent. Every function mirrors a pure-Python fallback with
 * the same arguments, results and errors (OSError with the errno), which runs when the
 * extension is not built or CLARA_PURE_PYTHON=1 is set.
 */
#ifndef CLARA_CALLS_H
#define CLARA_CALLS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Access to existing segments: get, map, unmap, release (access.c). */
int clara_add_access(PyObject *module);

/* Making and ending segments: create, publish, free (making.c). */
int clara_add_making(PyObject *module);

#endif
