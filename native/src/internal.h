/* Internal declarations of the C library: the format (docs/segment-format.md), errors,
 * names, and the kernel calls shared by contexts and allocations. */
#ifndef CLARA_INTERNAL_H
#define CLARA_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "clara_fastio.h"

/* ---- the format: offsets and sizes of docs/segment-format.md, section 2 ---------------- */
#define CF_MAGIC "CLARAFIO"
#define CF_VERSION 1
#define CF_HEADER_SIZE 768
#define CF_DATA_OFFSET 4096
#define CF_PAGE 4096
#define CF_KIND_CONTEXT 1
#define CF_KIND_ALLOCATION 2
#define CF_PRIVATE 0
#define CF_PUBLISHED 1
#define CF_FREED 2
#define CF_POOLED 3
#define CF_EMPTY 0
#define CF_WRITING 1
#define CF_COMPLETE 2
#define CF_LOCK_REFERENCE 0
#define CF_LOCK_MAP 1
#define CF_LOCK_LIFECYCLE 2
#define CF_LOCK_QUOTA 2
#define CF_LOCK_POOL 3
#define CF_LOCK_CONTEXT_LIFECYCLE 4
#define CF_POOL_WAIT 0.5 /* seconds: the pool lock is never worth a long wait (5.9) */
#define CF_LEDGER_AT 1024 /* a context's ledger (section 2.5): magic, published bytes, slots */
#define CF_LEDGER_MAGIC "CLARALDG"
#define CF_LEDGER_TOTALS 24
#define CF_MAX_NBYTES (UINT64_C(1) << 62)
#define CF_CONTEXT_TOKEN 80
#define CF_MEMBER_TOKEN 100

/* One row per header field: the table tests/native/test_spec.py checks against the spec. */
#define CF_FIELDS(X)                                 \
    X(identity_magic, "identity.magic", 0, 8)        \
    X(identity_version, "identity.version", 8, 2)    \
    X(identity_kind, "identity.kind", 10, 1)         \
    X(lifecycle, "lifecycle.lifecycle", 16, 1)       \
    X(data_state, "data.state", 24, 1)               \
    X(data_writer_pid, "data.writer_pid", 28, 4)     \
    X(data_writer_start, "data.writer_start", 32, 8) \
    X(data_generation, "data.generation", 40, 8)     \
    X(layout_type, "layout.element_type", 64, 1)     \
    X(layout_ndim, "layout.ndim", 65, 1)             \
    X(layout_shape, "layout.shape", 72, 64)          \
    X(layout_nbytes, "layout.nbytes", 136, 8)        \
    X(layout_capacity, "layout.capacity", 144, 8)    \
    X(layout_offset, "layout.data_offset", 152, 8)   \
    X(origin_created, "origin.created_ns", 160, 8)   \
    X(origin_creator_pid, "origin.creator_pid", 168, 4) \
    X(origin_creator_start, "origin.creator_start", 172, 8) \
    X(origin_owner_pid, "origin.owner_pid", 180, 4)  \
    X(origin_owner_start, "origin.owner_start", 184, 8) \
    X(origin_context_created, "origin.context_created_ns", 192, 8) \
    X(settings_mode, "settings.mode", 208, 4)        \
    X(settings_capacity, "settings.capacity", 212, 8) \
    X(settings_pool_cap, "settings.pool_cap", 220, 8) \
    X(context_length, "context.length", 256, 1)      \
    X(context_name, "context.name", 257, 255)        \
    X(name_length, "name.length", 512, 1)            \
    X(name_name, "name.name", 513, 255)

#define CF_ENUM_AT(id, label, offset, size) AT_##id = offset,
enum { CF_FIELDS(CF_ENUM_AT) AT_END_ = CF_HEADER_SIZE };
#undef CF_ENUM_AT
#define DATA_BLOCK_SIZE 24   /* data state block: 24..47 */
#define LAYOUT_BLOCK_SIZE 96 /* layout block: 64..159 */
#define ORIGIN_BLOCK_SIZE 32 /* origin block: 160..191 */

/* A parsed, validated header (docs/segment-format.md 2.4). */
typedef struct cf_layout {
    clara_element_type type;
    int ndim;
    int64_t dims[CLARA_MAX_DIMS];
    uint64_t nbytes;
    uint64_t capacity;
} cf_layout;

typedef struct cf_header {
    int kind;
    int lifecycle;
    int state;
    int32_t writer_pid;
    uint64_t writer_start;
    uint64_t generation;
    cf_layout layout;
    int32_t owner_pid;
    uint64_t owner_start;
    uint64_t created_ns;         /* origin.created_ns */
    uint64_t context_created_ns; /* allocation: its context's created_ns (0: not stamped) */
    uint32_t mode;
    uint64_t capacity; /* context: quota */
    uint64_t pool_cap;
    char context[CLARA_NAME_MAX + 1];
    char name[CLARA_NAME_MAX + 1];
} cf_header;

/* Little-endian loads and stores at any offset (fields are not aligned). */
uint64_t cf_load(const unsigned char *at, int size);
void cf_store(unsigned char *at, uint64_t value, int size);

/* Parse `raw` (CF_HEADER_SIZE bytes) of a file of `file_size` bytes; CLARA_CORRUPT (with
 * the message naming `what`) if anything is inconsistent. */
int cf_parse(const unsigned char *raw, uint64_t file_size, const char *what, cf_header *out);
/* Validate just the layout block of `raw` against `file_size`. */
int cf_parse_layout(const unsigned char *raw, uint64_t file_size, const char *what,
                    cf_layout *out);
/* Begin a fresh header page (zeros elsewhere): magic, version, kind, lifecycle, and the
 * origin's creation time and creator (this process). */
void cf_pack_new(unsigned char *raw, int kind, int lifecycle);
/* Fill the layout block of a header page. */
void cf_pack_layout(unsigned char *raw, const cf_layout *layout);
void cf_pack_name(unsigned char *block, const char *name); /* 256-byte name block */
/* Check type and dims, compute nbytes (CLARA_INVALID on anything wrong). */
int cf_layout_of(clara_element_type type, int ndims, const int64_t *dims, const char *what,
                 cf_layout *out);

/* ---- errors ------------------------------------------------------------------------------ */
int cf_fail(int status, const char *format, ...) __attribute__((format(printf, 2, 3)));
int cf_errno(int error, const char *what); /* the status and message for an errno */
void cf_clear(void);

/* ---- names ------------------------------------------------------------------------------- */
bool cf_valid_name(const char *name);
int cf_check_name(const char *name, const char *what);
bool cf_same_name(const char *a, const char *b);
/* Token of a user name: lower-cased, hashed past `limit` characters (section 1.2). */
void cf_token(const char *name, int limit, char *out); /* out: limit + 1 bytes */
/* The namespace from the environment (CLARA_INVALID if invalid). */
int cf_namespace(char *out, size_t size);
const char *cf_shm_dir(void);
void cf_sha256_hex(const unsigned char *data, size_t size, char out[65]);

/* ---- process identity (section 3) ------------------------------------------------------ */
uint64_t cf_start_time(int pid); /* 0 if there is no such process */
bool cf_is_alive(int pid, uint64_t start);
void cf_identity(int32_t *pid, uint64_t *start); /* this process */
uint64_t cf_now_ns(void);
/* How long a lock wait may last: $CLARA_LOCK_TIMEOUT seconds, default 10 (section 4). */
double cf_lock_wait(void);

/* ---- the kernel ------------------------------------------------------------------------- */
/* Open a name (O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC; read-only if asked or if only readable). */
int cf_open_fd(int dirfd, const char *file, bool read_only, const char *what, int *fd,
               bool *writable);
/* fstat an open segment: regular files only. */
int cf_check_file(int fd, const char *what, struct stat *st);
/* Open a name safely (section 5.1): O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC, regular file only. */
int cf_open_named(int dirfd, const char *file, bool read_only, const char *what, int *fd,
                  bool *writable, struct stat *st);
/* A new anonymous segment of `size` bytes starting with `header`, memory reserved. */
int cf_create_anonymous(int dirfd, uint64_t size, unsigned mode, const unsigned char *header,
                        const char *what, int *fd);
int cf_link(int fd, int dirfd, const char *file, const char *what);
int cf_pread_all(int fd, void *buffer, size_t size, off_t offset, const char *what);
int cf_pwrite_all(int fd, const void *buffer, size_t size, off_t offset, const char *what);
/* OFD locks: 0 taken, 1 busy (try only), -1 error (errno). */
int cf_try_lock(int fd, int byte, bool exclusive);
int cf_unlock(int fd, int byte);
/* Take a lock waiting up to `timeout` s (< 0: forever): CLARA_OK, or CLARA_TIMEOUT (no
 * message set), or an error. */
int cf_lock(int fd, int byte, bool exclusive, double timeout);

/* ---- objects ---------------------------------------------------------------------------- */
struct clara_context {
    int fd;    /* the context's own segment */
    int dirfd; /* the shared-memory directory */
    bool writable;
    uid_t uid;          /* owner of the context's file */
    gid_t gid;          /* and its group */
    uint32_t file_mode; /* its permission bits: who may write members (not the header's) */
    uint32_t mode;
    uint64_t capacity;
    uint64_t created_ns; /* its creation stamp: members made in it carry it */
    char name[CLARA_NAME_MAX + 1];
    char file[160]; /* <ns>.<context token> */
};

/* Whether one of the context's writers made this member (docs/segment-format.md 5.1):
 * its bits grant no more than the context's; its owner is the context's, or anyone if the
 * context lets others write, or a member of its group if it lets the group write. */
bool cf_admits(const clara_context *ctx, const struct stat *member);

/* The descriptor of a reference (for locks taken through a descriptor of one's own). */
int cf_fd_of(const clara_allocation *alloc);
/* Inside `clara run`: return once the producer of input `port` has completed it (ready.c). */
struct clara_port;
int cf_wait_for_producer(clara_context *ctx, const struct clara_port *port);
/* Give a new segment the owner/group it needs to be admitted in `ctx`. */
int cf_adopt_owner(const clara_context *ctx, int fd, const char *what);
/* Whether the name `file` still denotes the file `st` (same device and inode). */
bool cf_names_file(int dirfd, const char *file, const struct stat *st);

/* The file name of a member of kind 'a', 'h' or 'p'. */
void cf_member_file(const clara_context *ctx, char kind, const char *name, char *out,
                    size_t size);

#endif
