/* The layout of the objects fields.c makes (Allocation, Region, Mapping), for the C calls
 * that read and change them directly (mapped.c): a field is a pointer at a fixed index. */
#ifndef CLARA_FIELDS_H
#define CLARA_FIELDS_H

#include <Python.h>

/* Object fields only (what the Python slots held): their attribute reads give back the
 * objects stored, as slots do. `count` of them, after the header. */
typedef struct {
    PyObject_HEAD
    PyObject *weakrefs;
    Py_ssize_t count;
    PyObject *fields[];
} Fields;

#define FIELDS_SIZE(count) (sizeof(Fields) + (count) * sizeof(PyObject *))
#define FIELD_OF(object, index) (((Fields *)(object))->fields[index])

/* An Allocation's fields: the twelve given to AllocationFields, then its reference's. */
enum { CONTEXT, REGISTRY, FD, WRITABLE, LAYOUT, CREATED_NS, IDENTITY, VISIBILITY, KEY,
       POOL_NAME, DESCRIPTION, BORN, GIVEN, SEEN = GIVEN, CLOSED, PARENTS, MAPS, COMPLETED,
       UNDONE, WARM, WARM_READ, PENDING, RECYCLE, ALLOCATION_FIELDS };

/* A Region's, and a Mapping's. */
enum { R_ADDRESS, R_LENGTH, R_WRITABLE, R_HOLDER, R_FD, REGION_FIELDS };
enum { M_ALLOCATION, M_MAPS, M_REGION, M_LAYOUT, M_ARRAY, M_WRITTEN, MAPPING_FIELDS };

/* The three types (their Python subclasses hold the methods). */
extern PyTypeObject clara_allocation_fields, clara_region_fields, clara_mapping_fields;

/* A new object of `type` (the base or a subclass) with `count` fields from `values`. */
PyObject *clara_made(PyTypeObject *type, PyObject *const *values, Py_ssize_t count);

/* MappingFields' methods (mapped.c): __enter__, __exit__. */
extern PyMethodDef clara_mapping_methods[];

#endif
