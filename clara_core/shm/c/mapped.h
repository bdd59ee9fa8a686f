/* What the C calls of a map share (mapped.c sets it up, staged_map.c and staged_unmap.c
 * read it): the Python classes and module state whose steps they make, and the helpers. */
#ifndef CLARA_MAPPED_H
#define CLARA_MAPPED_H

#include "calls.h"
#include "fields.h"

/* The header's data-state block (header.py's _DATA, "<B3xiQQ": state, writer pid, writer
 * start, generation), and the data offset. */
#define DATA_AT 24
#define DATA_SIZE 24
#define DATA_OFFSET 4096
enum { EMPTY, WRITING, COMPLETE };

/* What set_up_maps gives (maps.py, once), NULL until then: the classes, staging's state
 * and limits, the globals of forks, processes and memory. */
typedef struct {
    PyTypeObject *staged_type;   // staging.Staged (a Region)
    PyTypeObject *mapping_type;  // mapping.Mapping
    PyObject *kept, *owned;      // staging._kept (length -> ranges), _owned (address -> thread)
    PyObject *forks, *processes, *memory;
    Py_ssize_t keep_per_length, kept_lengths, kept_up_to, staged_below;
    PyObject *self_identity;     // (names, interned: processes._self_identity,
    PyObject *public_meanwhile;  // the allocation's method _public_meanwhile)
} MapsSetUp;

extern MapsSetUp clara_maps;

/* Where `region` is in the list `maps` (by identity, as list.remove finds a Region), or -1. */
Py_ssize_t clara_index_in(PyObject *maps, PyObject *region);

/* forks.count equals the allocation's `_seen` (no fork since it last looked): 1, 0, -1. */
int clara_no_fork_since(PyObject **fields);

/* memory._lending taken without waiting: the lock (a new reference), or NULL: taken by
 * another thread (no exception: the Python, which waits, is left to do it) or an error. */
PyObject *clara_take_lending(void);

/* Let go of the lock clara_take_lending took, keeping any exception set. 0 or -1. */
int clara_let_go(PyObject *lock);

/* map_staged(allocation) (staged_map.c). */
PyObject *clara_map_staged(PyObject *module, PyObject *alloc);

/* create_usual(context, size), publish_usual(allocation, name), free_usual(allocation)
 * (usual.c). */
PyObject *clara_create_usual(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *clara_publish_usual(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *clara_free_usual(PyObject *module, PyObject *alloc);

/* Reference._unmap(region, complete) of a staged map (staged_unmap.c): 1 done, 0 not this
 * case (nothing done), -1 with an exception. */
int clara_unmap_staged(PyObject *alloc, PyObject *region, int complete);

#endif
