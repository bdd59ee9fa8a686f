/*
 * clara_fastio.h - the C client of clara-fastio (C99, Linux, libc only).
 *
 * A C or C++ program that includes this header shares contexts, allocations and pipeline
 * variables with Python (`clara_core`) and shell (`clara`) programs: the same segments in
 * /dev/shm, the same header, the same locks (docs/segment-format.md).
 *
 *     clara_context *ctx;  clara_allocation *vol;  void *data;
 *     int64_t dims[3] = {64, 256, 256};
 *     if (clara_context_open("job", &ctx)
 *         || clara_create(ctx, CLARA_FLOAT32, 3, dims, &vol)
 *         || clara_map(vol, CLARA_WRITE, 0, &data))
 *         fprintf(stderr, "clara: error: %s\n", clara_last_error());
 *     ... fill data ...
 *     clara_unmap(vol, true);             // marks the data complete
 *     clara_publish(vol, "volume");       // any process: clara_get(ctx, "volume", ...)
 *     clara_release(vol);  clara_context_close(ctx);
 *
 * Return codes. Every function that can fail returns an int: 0 on success, else one of
 * the `clara` command line's exit codes (enum clara_status), and the calling thread's
 * clara_last_error() says what failed, on which name, and what to do. Bad arguments
 * (NULL pointers, invalid names or types, > 8 dimensions, sizes that overflow) return
 * CLARA_INVALID and never crash.
 *
 * Guarantees (as the Python core's): names follow Clara's rule (1-255 of [A-Za-z0-9_-],
 * case-insensitive); every file is opened O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC, must be a
 * regular file and pass the owner check (a context of this user or root, or of
 * $CLARA_CONTEXT_OWNER; a member made by one of its context's writers), and its header is
 * validated before any lock wait; a name is removed only under the file's lifecycle lock
 * while it still denotes that file; locks are OFD locks, so a killed process leaves nothing locked; memory is reserved
 * at create (posix_fallocate), so a full /dev/shm is CLARA_OUT_OF_SPACE, never a SIGBUS;
 * a new allocation is anonymous (O_TMPFILE) until published (linkat), so a crash before
 * leaves nothing; a write map that ends without clara_unmap(.., true) (a crash) leaves
 * the data incomplete for every reader. CLARA_NAMESPACE and CLARA_SHM_DIR are read when a
 * context is created or opened. The C library never recycles segments (Python's pool),
 * and never breaks what the pool relies on.
 *
 * Threads: objects are not shared between threads without a lock of your own; distinct
 * objects may be used from distinct threads. Each reference (clara_allocation) is one
 * open file: two references in one process exclude each other as two processes do.
 * Build: `make -C native`, then `cc prog.c $(pkg-config --cflags --libs clara_fastio)`.
 */
#ifndef CLARA_FASTIO_H
#define CLARA_FASTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define CLARA_FASTIO_VERSION "0.1.0"
#define CLARA_MAX_DIMS 8
#define CLARA_NAME_MAX 255
#define CLARA_DATA_OFFSET 4096 /* where the data starts in a segment file */

/* Return codes: the `clara` command line's exit codes. */
enum clara_status {
    CLARA_OK = 0,
    CLARA_ERROR = 1,         /* an unexpected system error */
    CLARA_INVALID = 2,       /* bad argument: NULL, name, type, dimensions, size, mode */
    CLARA_NOT_FOUND = 3,     /* no such context or allocation (any more) */
    CLARA_BUSY = 4,          /* mapped by another reference in a conflicting mode */
    CLARA_TIMEOUT = 5,       /* a map (or lock) waited its whole timeout */
    CLARA_INCOMPLETE = 6,    /* the last writer died or failed mid-write, or none wrote yet */
    CLARA_OUT_OF_SPACE = 7,  /* /dev/shm or the context's capacity is full */
    CLARA_PERMISSION = 8,    /* mode bits, another user, or a read-only reference */
    CLARA_CORRUPT = 9,       /* a damaged, foreign or non-regular file */
    CLARA_EXISTS = 10        /* the name is taken */
};

/* Element types: the codes stored in segment headers (Clara's 11 primitives + 3). */
typedef enum clara_element_type {
    CLARA_UINT8 = 1,
    CLARA_UINT16 = 2,
    CLARA_UINT32 = 3,
    CLARA_UINT64 = 4,
    CLARA_INT8 = 5,
    CLARA_INT16 = 6,
    CLARA_INT32 = 7,
    CLARA_INT64 = 8,
    CLARA_FLOAT16 = 9,
    CLARA_FLOAT32 = 10,
    CLARA_FLOAT64 = 11,
    CLARA_BOOL = 12,
    CLARA_COMPLEX64 = 13,
    CLARA_COMPLEX128 = 14
} clara_element_type;

/* Map modes (flags of clara_map). */
#define CLARA_READ 0x0            /* shared: many readers */
#define CLARA_WRITE 0x1           /* exclusive: one writer, no reader */
#define CLARA_ALLOW_INCOMPLETE 0x2 /* read data whose writer died, or never written (its
                                      zeros): else CLARA_INCOMPLETE */

/* Timeouts of clara_map, in seconds: 0 fails at once with CLARA_BUSY. */
#define CLARA_FOREVER (-1.0)

/* Flags of clara_get. */
#define CLARA_READ_ONLY 0x1 /* open read-only: no write map, no free, no retype */

typedef struct clara_context clara_context;
typedef struct clara_allocation clara_allocation;

/* ---- errors ------------------------------------------------------------------------- */

/* The message of this thread's last failure ("" if none); valid until its next call. */
const char *clara_last_error(void);
/* The last failure's code (CLARA_OK if none). */
int clara_last_status(void);
/* A short name for a status: "ok", "invalid", "not found", "busy", ... */
const char *clara_status_name(int status);

/* ---- element types ------------------------------------------------------------------ */

/* Size in bytes of one element (0 for an unknown type). */
size_t clara_element_size(clara_element_type type);
/* The long name ("float32"), or NULL for an unknown type. */
const char *clara_element_name(clara_element_type type);
/* Parse "float32", "f32", "uint8", ... (case-insensitive). CLARA_INVALID if unknown. */
int clara_element_type_parse(const char *text, clara_element_type *out);

/* ---- contexts ----------------------------------------------------------------------- */

/*
 * Create a context. `capacity` caps the bytes published in it (0: no cap); `mode` is the
 * permission of all its segments (0600..0777, owner needs rw; 0 means 0600); `owner_pid`
 * binds it to a live process (0: none): when that process dies, `clara leak-check`
 * reports the context as owner-dead and `--fix` reclaims it. Its recycling pool (used by
 * Python processes) is capped at a quarter of the file system.
 * CLARA_EXISTS if the name is taken.
 */
int clara_context_create(const char *name, uint64_t capacity, unsigned mode, int owner_pid,
                         clara_context **out);
/* Open an existing context; CLARA_NOT_FOUND if there is none of that name. */
int clara_context_open(const char *name, clara_context **out);
/* Close this handle (the context itself stays). NULL is allowed. */
void clara_context_close(clara_context *ctx);
/* Destroy a context and everything in it; held references and maps stay valid. */
int clara_context_destroy(const char *name);
/* The context's name, as created. */
const char *clara_context_name(const clara_context *ctx);

/* ---- allocations -------------------------------------------------------------------- */

/*
 * A new private allocation of `ndims` (1..8) dimensions `dims` (each >= 1) of `type`,
 * its memory reserved now (CLARA_OUT_OF_SPACE if it does not fit). Only this reference
 * knows it: it vanishes when released (or if the process dies) unless published.
 */
int clara_create(clara_context *ctx, clara_element_type type, int ndims, const int64_t *dims,
                 clara_allocation **out);
/* Change element type and dimensions (Clara's call); the bytes must fit the capacity,
 * and nobody may map it meanwhile (CLARA_BUSY). */
int clara_set_type_and_dimensions(clara_allocation *alloc, clara_element_type type, int ndims,
                                  const int64_t *dims);
/* Make a private allocation visible to the whole context under `name`. */
int clara_publish(clara_allocation *alloc, const char *name);
/* A new reference to the allocation published under `name` (flags: CLARA_READ_ONLY). */
int clara_get(clara_context *ctx, const char *name, int flags, clara_allocation **out);

/*
 * Map for reading (CLARA_READ) or writing (CLARA_WRITE), optionally | CLARA_ALLOW_INCOMPLETE.
 * Many readers or one writer at a time, across all processes and references. A
 * conflicting map fails at once with CLARA_BUSY if `timeout` is 0, else waits up to
 * `timeout` seconds (CLARA_FOREVER: as long as it takes) and fails with CLARA_TIMEOUT.
 * `*data` receives the first byte of the data (clara_nbytes() bytes), read-only pages for
 * a read map. One map per reference at a time.
 */
int clara_map(clara_allocation *alloc, int mode, double timeout, void **data);
/* End the map. A write map marks the data complete if `complete`, else incomplete (as a
 * writer that dies does). The pointer from clara_map is invalid afterwards. */
int clara_unmap(clara_allocation *alloc, bool complete);
/* Drop this reference (a map still held ends complete). A private allocation is then
 * gone. NULL is allowed. */
int clara_release(clara_allocation *alloc);
/* Forbid new gets job-wide and drop this reference; references and maps others hold stay
 * valid until they let go. The reference is gone whatever the result. */
int clara_free(clara_allocation *alloc);

/* Getters (as last seen by this reference: a map always uses the current layout). */
clara_element_type clara_type(const clara_allocation *alloc);
int clara_ndims(const clara_allocation *alloc);
/* Copies the dimensions into dims[0 .. ndims-1]; returns ndims (0 if alloc is NULL). */
int clara_dims(const clara_allocation *alloc, int64_t dims[CLARA_MAX_DIMS]);
uint64_t clara_nbytes(const clara_allocation *alloc);
uint64_t clara_capacity(const clara_allocation *alloc);
/* The published name, or NULL while private. */
const char *clara_name(const clara_allocation *alloc);
bool clara_is_read_only(const clara_allocation *alloc);
/* Whether a map is held, and its data (NULL if none). */
void *clara_data(const clara_allocation *alloc);

/* ---- inside an operator of `clara run` ---------------------------------------------- */

/*
 * `clara run` exports, besides CLARA_CONTEXT and CLARA_OPERATOR, CLARA_FASTIO: one line per
 * shared-memory input or output, "input|output NAME ELEMENT_TYPE DIMS ALLOCATION", DIMS
 * comma-separated with -1 (or 0) for a dynamic dimension, e.g.
 *     input volume float32 -1,128,128 acquire--volume
 * so a C program needs no JSON. These calls read it.
 */
typedef struct clara_port {
    bool is_input;
    char name[CLARA_NAME_MAX + 1];       /* as declared */
    char allocation[CLARA_NAME_MAX + 1]; /* its name in the job's context */
    clara_element_type type;
    int ndims;
    int64_t dims[CLARA_MAX_DIMS]; /* as declared: -1 or 0 for dynamic */
} clara_port;

/* Open the job's context ($CLARA_CONTEXT); CLARA_INVALID outside `clara run`. */
int clara_operator_context(clara_context **out);
/* The declared input or output `name` (case-insensitive); CLARA_NOT_FOUND if undeclared. */
int clara_operator_port(const char *name, clara_port *out);
/*
 * The allocation behind input or output `name`: inputs are opened read-only (no write
 * map), outputs read-write. An input is first waited for until its producer has completed
 * it (`clara run` may start this operator before its producers end; CLARA_READY): a failed
 * producer is CLARA_ERROR naming it. A dynamic output not allocated yet is CLARA_NOT_FOUND: size
 * it with clara_operator_allocate.
 */
int clara_operator_get(clara_context *ctx, const char *name, clara_allocation **out);
/*
 * Allocate the dynamic output `name` with its full dimensions (only the declared-dynamic
 * ones may differ from the declaration) and publish it, of its declared element type.
 */
int clara_operator_allocate(clara_context *ctx, const char *name, int ndims,
                            const int64_t *dims, clara_allocation **out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* CLARA_FASTIO_H */
