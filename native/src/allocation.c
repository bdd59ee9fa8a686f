/* Allocations: create, publish, get, map, unmap, set type, release, free
 * (docs/segment-format.md 5.3 - 5.8). The C library has no recycling pool. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"


struct clara_allocation {
    clara_context *ctx; /* must stay open while this reference is used */
    int fd;
    bool writable;
    bool published;
    cf_layout layout;
    unsigned char *map; /* the whole segment while mapped, else NULL */
    size_t map_length;
    bool map_writable;
    uint64_t generation; /* of a write map, read under its lock */
    char name[CLARA_NAME_MAX + 1];
    /* While private, only this reference can reach the file: it keeps the header as it
     * wrote it (data state and layout included), so publish writes it in one call. */
    bool header_known;
    unsigned char header[CF_HEADER_SIZE];
};

static void describe(const clara_allocation *alloc, char *out, size_t size) {
    if (alloc->published)
        snprintf(out, size, "allocation '%s' in context '%s'", alloc->name, alloc->ctx->name);
    else
        snprintf(out, size, "private allocation in context '%s'", alloc->ctx->name);
}

static int context_alive(const clara_context *ctx) {
    struct stat st;
    if (fstat(ctx->fd, &st) == 0 && st.st_nlink == 0)
        return cf_fail(CLARA_NOT_FOUND, "context '%s' was destroyed", ctx->name);
    return CLARA_OK;
}

/* ---- create --------------------------------------------------------------------------- */

int clara_create(clara_context *ctx, clara_element_type type, int ndims, const int64_t *dims,
                 clara_allocation **out) {
    cf_clear();
    if (out == NULL) return cf_fail(CLARA_INVALID, "clara_create: out is NULL");
    *out = NULL;
    if (ctx == NULL) return cf_fail(CLARA_INVALID, "clara_create: ctx is NULL");
    char what[640];
    snprintf(what, sizeof what, "new allocation in context '%s'", ctx->name);
    cf_layout layout;
    int status = cf_layout_of(type, ndims, dims, what, &layout);
    if (status) return status;
    clara_allocation *alloc = calloc(1, sizeof *alloc);
    if (alloc == NULL) return cf_fail(CLARA_ERROR, "out of memory");
    unsigned char header[CF_HEADER_SIZE] = {0};
    cf_pack_new(header, CF_KIND_ALLOCATION, CF_PRIVATE);
    header[AT_data_state] = CF_EMPTY;
    cf_pack_layout(header, &layout);
    cf_store(header + AT_origin_context_created, ctx->created_ns, 8); /* its context's stamp */
    cf_pack_name(header + AT_context_length, ctx->name);
    status = cf_create_anonymous(ctx->dirfd, CF_DATA_OFFSET + layout.capacity, ctx->mode, header,
                                 what, &alloc->fd);
    if (status == CLARA_OK && (status = cf_adopt_owner(ctx, alloc->fd, what)) != CLARA_OK)
        close(alloc->fd);
    if (status) {
        free(alloc);
        return status;
    }
    cf_try_lock(alloc->fd, CF_LOCK_REFERENCE, false); /* a fresh file: nobody else has it */
    memcpy(alloc->header, header, sizeof header);
    alloc->header_known = true;
    alloc->ctx = ctx;
    alloc->writable = true;
    alloc->layout = layout;
    *out = alloc;
    return CLARA_OK;
}

/* ---- publish -------------------------------------------------------------------------- */

/* Bytes published in the context, counted from the directory (a ledger never written):
 * its .a. members that are regular files its writers made. */
static int count_published(const clara_context *ctx, uint64_t *total) {
    char prefix[200];
    snprintf(prefix, sizeof prefix, "%s.a.", ctx->file);
    size_t length = strlen(prefix);
    int listing = dup(ctx->dirfd);
    DIR *dir = listing >= 0 ? fdopendir(listing) : NULL;
    if (dir == NULL) {
        if (listing >= 0) close(listing);
        return cf_errno(errno, "shared-memory directory");
    }
    rewinddir(dir);
    *total = 0;
    struct dirent *entry;
    struct stat st;
    while ((entry = readdir(dir)) != NULL)
        if (strncmp(entry->d_name, prefix, length) == 0 &&
            fstatat(ctx->dirfd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && cf_admits(ctx, &st))
            *total += (uint64_t)st.st_size;
    closedir(dir);
    return CLARA_OK;
}

/* The published bytes of the context's ledger (section 2.5), counted again from the
 * directory if it was never written; the caller holds the quota lock. */
static int ledger_published(const clara_context *ctx, uint64_t *used) {
    unsigned char raw[CF_LEDGER_TOTALS];
    int status = cf_pread_all(ctx->fd, raw, sizeof raw, CF_LEDGER_AT, "the context's ledger");
    if (status) return status;
    if (memcmp(raw, CF_LEDGER_MAGIC, 8) == 0) {
        *used = cf_load(raw + 8, 8);
        return CLARA_OK;
    }
    return count_published(ctx, used);
}

static int ledger_write(const clara_context *ctx, uint64_t published) {
    unsigned char raw[16];
    memcpy(raw, CF_LEDGER_MAGIC, 8);
    cf_store(raw + 8, published, 8);
    return cf_pwrite_all(ctx->fd, raw, sizeof raw, CF_LEDGER_AT, "the context's ledger");
}

static int link_as(clara_allocation *alloc, const char *name, const char *file,
                   const char *what) {
    unsigned char *header = alloc->header;
    int status;
    if (alloc->header_known) { /* name and lifecycle in one write */
        header[AT_lifecycle] = CF_PUBLISHED;
        cf_pack_name(header + AT_name_length, name);
        status = cf_pwrite_all(alloc->fd, header + AT_lifecycle, CF_HEADER_SIZE - AT_lifecycle,
                               AT_lifecycle, what);
    } else {
        unsigned char block[256];
        unsigned char lifecycle = CF_PUBLISHED;
        cf_pack_name(block, name);
        status = cf_pwrite_all(alloc->fd, block, sizeof block, AT_name_length, what);
        if (status == CLARA_OK)
            status = cf_pwrite_all(alloc->fd, &lifecycle, 1, AT_lifecycle, what);
    }
    if (status == CLARA_OK) status = cf_link(alloc->fd, alloc->ctx->dirfd, file, what);
    if (status) { /* back to private, unnamed */
        int saved = clara_last_status();
        char message[768];
        unsigned char block[256];
        unsigned char lifecycle = CF_PRIVATE;
        snprintf(message, sizeof message, "%s", clara_last_error());
        header[AT_lifecycle] = CF_PRIVATE;
        cf_pack_name(header + AT_name_length, "");
        cf_pack_name(block, "");
        cf_pwrite_all(alloc->fd, &lifecycle, 1, AT_lifecycle, what);
        cf_pwrite_all(alloc->fd, block, sizeof block, AT_name_length, what);
        cf_fail(saved, "%s", message);
    }
    return status;
}

int clara_publish(clara_allocation *alloc, const char *name) {
    cf_clear();
    if (alloc == NULL) return cf_fail(CLARA_INVALID, "clara_publish: alloc is NULL");
    int status = cf_check_name(name, "allocation name");
    if (status) return status;
    clara_context *ctx = alloc->ctx;
    char what[640];
    if (alloc->published) {
        describe(alloc, what, sizeof what);
        return cf_fail(CLARA_INVALID, "%s is already published", what);
    }
    if (!alloc->writable || !ctx->writable)
        return cf_fail(CLARA_PERMISSION,
                       "cannot publish into context '%s': this user may only read it (mode %o)",
                       ctx->name, ctx->mode);
    if ((status = context_alive(ctx))) return status;
    char file[200];
    cf_member_file(ctx, 'a', name, file, sizeof file);
    snprintf(what, sizeof what, "allocation '%s' in context '%s'", name, ctx->name);
    if (ctx->capacity == 0) {
        status = link_as(alloc, name, file, what);
    } else {
        status = cf_lock(ctx->fd, CF_LOCK_QUOTA, true, cf_lock_wait());
        if (status == CLARA_TIMEOUT)
            return cf_fail(status, "%s: the capacity check of context '%s' stayed locked for "
                                   "%g s", what, ctx->name, cf_lock_wait());
        if (status) return status;
        uint64_t used = 0, size = CF_DATA_OFFSET + alloc->layout.capacity;
        status = ledger_published(ctx, &used);
        if (status == CLARA_OK && used + size > ctx->capacity)
            status = cf_fail(CLARA_OUT_OF_SPACE,
                             "%s does not fit: context '%s' holds %llu of its %llu bytes; free "
                             "something first",
                             what, ctx->name, (unsigned long long)used,
                             (unsigned long long)ctx->capacity);
        /* Counted before it is linked: a crash in between overcounts, never lets the
         * context exceed its capacity. */
        if (status == CLARA_OK) status = ledger_write(ctx, used + size);
        if (status == CLARA_OK && (status = link_as(alloc, name, file, what)) != CLARA_OK) {
            int saved = clara_last_status();
            char message[768];
            snprintf(message, sizeof message, "%s", clara_last_error());
            ledger_write(ctx, used);
            cf_fail(saved, "%s", message);
        }
        cf_unlock(ctx->fd, CF_LOCK_QUOTA);
    }
    if (status == CLARA_OK) {
        alloc->published = true;
        alloc->header_known = false; /* others may change it from now on */
        strcpy(alloc->name, name);
    }
    return status;
}

/* ---- get ------------------------------------------------------------------------------ */

static int check_reference(clara_allocation *alloc, const char *name, const char *what,
                           bool locked) {
    struct stat st;
    unsigned char raw[CF_HEADER_SIZE];
    cf_header header;
    const clara_context *ctx = alloc->ctx;
    int status = cf_check_file(alloc->fd, what, &st);
    if (status == CLARA_OK && !cf_admits(ctx, &st))
        /* Only the context's writers publish into it: this one was put there behind
         * clara's back. */
        return cf_fail(CLARA_PERMISSION,
                       "%s belongs to another user (uid %u) or grants more (mode %o) than "
                       "context '%s' lets its writers (uid %u, mode %o); it is ignored",
                       what, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777), ctx->name,
                       (unsigned)ctx->uid, ctx->file_mode);
    if (status == CLARA_OK) status = cf_pread_all(alloc->fd, raw, sizeof raw, 0, what);
    if (status == CLARA_OK) status = cf_parse(raw, (uint64_t)st.st_size, what, &header);
    if (status) return status;
    if (header.kind != CF_KIND_ALLOCATION)
        return cf_fail(CLARA_CORRUPT, "%s is corrupt (it is not an allocation)", what);
    if (header.context_created_ns != 0 && header.context_created_ns != ctx->created_ns)
        /* Left by an earlier context of that name, destroyed half-way. */
        return cf_fail(CLARA_NOT_FOUND, "%s was made in an earlier context of that name (a "
                                        "leftover: `clara leak-check --fix` removes it)", what);
    if (locked && (st.st_nlink == 0 || header.lifecycle != CF_PUBLISHED ||
                   !cf_same_name(header.name, name)))
        /* Between the open and the lock it may have been freed, recycled and published
         * again under another name: it must still be the one named. */
        return cf_fail(CLARA_NOT_FOUND, "%s was freed", what);
    alloc->layout = header.layout;
    snprintf(alloc->name, sizeof alloc->name, "%s", header.name);
    return CLARA_OK;
}

int clara_get(clara_context *ctx, const char *name, int flags, clara_allocation **out) {
    cf_clear();
    if (out == NULL) return cf_fail(CLARA_INVALID, "clara_get: out is NULL");
    *out = NULL;
    if (ctx == NULL) return cf_fail(CLARA_INVALID, "clara_get: ctx is NULL");
    int status = cf_check_name(name, "allocation name");
    if (status) return status;
    if (flags & ~CLARA_READ_ONLY)
        return cf_fail(CLARA_INVALID, "clara_get: unknown flags 0x%x (use CLARA_READ_ONLY)",
                       (unsigned)flags);
    char file[200], what[640];
    cf_member_file(ctx, 'a', name, file, sizeof file);
    snprintf(what, sizeof what, "allocation '%s' in context '%s'", name, ctx->name);
    clara_allocation *alloc = calloc(1, sizeof *alloc);
    if (alloc == NULL) return cf_fail(CLARA_ERROR, "out of memory");
    alloc->ctx = ctx;
    status = cf_open_fd(ctx->dirfd, file, flags & CLARA_READ_ONLY, what, &alloc->fd,
                        &alloc->writable);
    if (status == CLARA_NOT_FOUND) {
        free(alloc);
        if (context_alive(ctx)) return CLARA_NOT_FOUND;
        return cf_fail(status, "%s does not exist; publish it first or check the name", what);
    }
    if (status) {
        free(alloc);
        return status;
    }
    int busy = cf_try_lock(alloc->fd, CF_LOCK_REFERENCE, false);
    if (busy == 0) { /* the usual case: nobody reclaims it right now */
        status = check_reference(alloc, name, what, true);
    } else if (busy < 0) {
        status = cf_errno(errno, what);
    } else if ((status = check_reference(alloc, name, what, false)) == CLARA_OK) {
        /* The file and its header are checked before any wait: a planted file never
         * makes us wait. */
        status = cf_lock(alloc->fd, CF_LOCK_REFERENCE, false, cf_lock_wait());
        if (status == CLARA_TIMEOUT)
            cf_fail(status, "%s stayed locked by a freer or reclaimer for %g s", what,
                    cf_lock_wait());
        if (status == CLARA_OK) status = check_reference(alloc, name, what, true);
    }
    if (status) {
        close(alloc->fd);
        free(alloc);
        return status;
    }
    alloc->published = true;
    *out = alloc;
    return CLARA_OK;
}

/* ---- map and unmap -------------------------------------------------------------------- */

static void store_data_state(unsigned char *block, int state, int32_t pid, uint64_t start,
                             uint64_t generation) {
    memset(block, 0, DATA_BLOCK_SIZE);
    block[0] = (unsigned char)state;
    cf_store(block + AT_data_writer_pid - AT_data_state, (uint32_t)pid, 4);
    cf_store(block + AT_data_writer_start - AT_data_state, start, 8);
    cf_store(block + AT_data_generation - AT_data_state, generation, 8);
}

/* Under the map lock: the file still holds the mapping, the layout is valid, the data
 * state allows this map (a write map marks it writing). */
static int check_locked(clara_allocation *alloc, int mode, const char *what) {
    struct stat st;
    unsigned char raw[AT_layout_offset + 8];
    if (fstat(alloc->fd, &st) != 0) return cf_errno(errno, what);
    if ((uint64_t)st.st_size < alloc->map_length)
        return cf_fail(CLARA_CORRUPT,
                       "%s is corrupt (its file was cut to %lld bytes, it needs %zu); remove it "
                       "with `clara leak-check --fix`",
                       what, (long long)st.st_size, alloc->map_length);
    int status = cf_pread_all(alloc->fd, raw, sizeof raw, 0, what);
    cf_layout layout;
    if (status == CLARA_OK) status = cf_parse_layout(raw, alloc->map_length, what, &layout);
    if (status) return status;
    int state = raw[AT_data_state];
    if (state > CF_COMPLETE) return cf_fail(CLARA_CORRUPT, "%s is corrupt (data state %d)", what,
                                            state);
    if (mode & CLARA_WRITE) {
        int32_t pid;
        uint64_t start;
        unsigned char block[DATA_BLOCK_SIZE];
        cf_identity(&pid, &start);
        alloc->generation = cf_load(raw + AT_data_generation, 8);
        store_data_state(block, CF_WRITING, pid, start, alloc->generation);
        status = cf_pwrite_all(alloc->fd, block, sizeof block, AT_data_state, what);
        if (status) return status;
        memcpy(alloc->header + AT_data_state, block, sizeof block);
    } else if (state == CF_WRITING && !(mode & CLARA_ALLOW_INCOMPLETE)) {
        return cf_fail(CLARA_INCOMPLETE,
                       "%s is incomplete: its writer (pid %d) died or failed mid-write; write it "
                       "again, or read anyway with CLARA_ALLOW_INCOMPLETE",
                       what, (int)(int32_t)cf_load(raw + AT_data_writer_pid, 4));
    } else if (state == CF_EMPTY && !(mode & CLARA_ALLOW_INCOMPLETE)) {
        return cf_fail(CLARA_INCOMPLETE,
                       "%s was never written; write it first, or read its zeros anyway with "
                       "CLARA_ALLOW_INCOMPLETE", what);
    }
    alloc->layout = layout;
    return CLARA_OK;
}

int clara_map(clara_allocation *alloc, int mode, double timeout, void **data) {
    cf_clear();
    if (alloc == NULL || data == NULL)
        return cf_fail(CLARA_INVALID, "clara_map: %s is NULL", alloc ? "data" : "alloc");
    *data = NULL;
    char what[640];
    describe(alloc, what, sizeof what);
    if (mode & ~(CLARA_WRITE | CLARA_ALLOW_INCOMPLETE))
        return cf_fail(CLARA_INVALID, "invalid map mode 0x%x: use CLARA_READ or CLARA_WRITE "
                                      "(| CLARA_ALLOW_INCOMPLETE)", (unsigned)mode);
    if (isnan(timeout) || (timeout < 0 && timeout != CLARA_FOREVER))
        return cf_fail(CLARA_INVALID, "invalid timeout %g: use seconds >= 0, or CLARA_FOREVER",
                       timeout);
    bool writing = mode & CLARA_WRITE;
    if (writing && !alloc->writable)
        return cf_fail(CLARA_PERMISSION,
                       "%s is read-only here; it cannot be mapped for writing", what);
    if (alloc->map != NULL)
        return cf_fail(CLARA_BUSY, "%s is already mapped by this reference; unmap it first",
                       what);
    int busy = cf_try_lock(alloc->fd, CF_LOCK_MAP, writing);
    if (busy < 0) return cf_errno(errno, what);
    if (busy && timeout == 0)
        return cf_fail(CLARA_BUSY,
                       "%s is mapped%s by another process; try again later, or wait with a "
                       "timeout", what, writing ? "" : " for writing");
    /* Mapping touches no data, so it may come before the lock: a map that had to wait is
     * then ready the moment the holder lets go. */
    size_t length = CF_DATA_OFFSET + alloc->layout.capacity;
    void *base = mmap(NULL, length, PROT_READ | (writing ? PROT_WRITE : 0), MAP_SHARED, alloc->fd,
                      0);
    if (base == MAP_FAILED) {
        int status = cf_errno(errno, what);
        if (!busy) cf_unlock(alloc->fd, CF_LOCK_MAP);
        return status;
    }
    int status = CLARA_OK;
    if (busy) {
        status = cf_lock(alloc->fd, CF_LOCK_MAP, writing, isinf(timeout) ? -1 : timeout);
        if (status == CLARA_TIMEOUT)
            cf_fail(status, "%s stayed mapped by another process for %g s", what, timeout);
        if (status) {
            munmap(base, length);
            return status;
        }
    }
    alloc->map = base;
    alloc->map_length = length;
    alloc->map_writable = writing;
    if ((status = check_locked(alloc, mode, what))) {
        cf_unlock(alloc->fd, CF_LOCK_MAP);
        munmap(base, length);
        alloc->map = NULL;
        return status;
    }
    *data = alloc->map + CF_DATA_OFFSET;
    return CLARA_OK;
}

int clara_unmap(clara_allocation *alloc, bool complete) {
    cf_clear();
    if (alloc == NULL) return cf_fail(CLARA_INVALID, "clara_unmap: alloc is NULL");
    if (alloc->map == NULL) return CLARA_OK;
    int status = CLARA_OK;
    if (alloc->map_writable && complete) {
        int32_t pid;
        uint64_t start;
        unsigned char block[DATA_BLOCK_SIZE];
        char what[640];
        describe(alloc, what, sizeof what);
        cf_identity(&pid, &start);
        store_data_state(block, CF_COMPLETE, pid, start, alloc->generation + 1);
        status = cf_pwrite_all(alloc->fd, block, sizeof block, AT_data_state, what);
        if (status == CLARA_OK) memcpy(alloc->header + AT_data_state, block, sizeof block);
    }
    cf_unlock(alloc->fd, CF_LOCK_MAP); /* nothing reaches this memory: let waiters in first */
    munmap(alloc->map, alloc->map_length);
    alloc->map = NULL;
    return status;
}

/* ---- set type ------------------------------------------------------------------------- */

int clara_set_type_and_dimensions(clara_allocation *alloc, clara_element_type type, int ndims,
                                  const int64_t *dims) {
    cf_clear();
    if (alloc == NULL)
        return cf_fail(CLARA_INVALID, "clara_set_type_and_dimensions: alloc is NULL");
    char what[640];
    describe(alloc, what, sizeof what);
    cf_layout layout;
    int status = cf_layout_of(type, ndims, dims, what, &layout);
    if (status) return status;
    if (layout.nbytes > alloc->layout.capacity)
        return cf_fail(CLARA_INVALID, "%s needs %llu bytes, but %s holds %llu",
                       clara_element_name(type), (unsigned long long)layout.nbytes, what,
                       (unsigned long long)alloc->layout.capacity);
    if (!alloc->writable)
        return cf_fail(CLARA_PERMISSION, "cannot retype %s: this reference may only read it",
                       what);
    if (alloc->map != NULL || cf_try_lock(alloc->fd, CF_LOCK_MAP, true) != 0)
        return cf_fail(CLARA_BUSY, "%s is mapped; unmap it first", what);
    layout.capacity = alloc->layout.capacity;
    unsigned char raw[CF_HEADER_SIZE];
    cf_pack_layout(raw, &layout);
    status = cf_pwrite_all(alloc->fd, raw + AT_layout_type, LAYOUT_BLOCK_SIZE, AT_layout_type,
                           what);
    if (status == CLARA_OK) {
        alloc->layout = layout;
        memcpy(alloc->header + AT_layout_type, raw + AT_layout_type, LAYOUT_BLOCK_SIZE);
    }
    cf_unlock(alloc->fd, CF_LOCK_MAP);
    return status;
}

/* ---- release and free ----------------------------------------------------------------- */

int clara_release(clara_allocation *alloc) {
    if (alloc == NULL) return CLARA_OK;
    int status = clara_unmap(alloc, true);
    close(alloc->fd); /* drops every lock; a private segment is gone with it */
    free(alloc);
    return status;
}

/* Under the file's lifecycle lock: mark it freed and remove its published name if that
 * still denotes it; in a context with a capacity under the quota lock, then uncounted (a
 * crash in between overcounts, never undercounts). */
static int remove_name(clara_allocation *alloc, const char *file, const char *what) {
    clara_context *ctx = alloc->ctx;
    struct stat st;
    if (fstat(alloc->fd, &st) != 0) return cf_errno(errno, what);
    if (!cf_names_file(ctx->dirfd, file, &st)) return CLARA_OK; /* not ours any more */
    int status = CLARA_OK;
    if (ctx->capacity != 0) {
        status = cf_lock(ctx->fd, CF_LOCK_QUOTA, true, cf_lock_wait());
        if (status == CLARA_TIMEOUT)
            return cf_fail(status, "%s: the capacity count of context '%s' stayed locked for "
                                   "%g s", what, ctx->name, cf_lock_wait());
        if (status) return status;
    }
    unsigned char lifecycle = CF_FREED;
    status = cf_pwrite_all(alloc->fd, &lifecycle, 1, AT_lifecycle, what);
    bool removed = status == CLARA_OK && unlinkat(ctx->dirfd, file, 0) == 0;
    if (status == CLARA_OK && !removed && errno != ENOENT) status = cf_errno(errno, what);
    if (ctx->capacity != 0) {
        uint64_t used = 0;
        if (removed && ledger_published(ctx, &used) == CLARA_OK)
            ledger_write(ctx, used > (uint64_t)st.st_size ? used - (uint64_t)st.st_size : 0);
        cf_unlock(ctx->fd, CF_LOCK_QUOTA);
    }
    return status;
}

int clara_free(clara_allocation *alloc) {
    cf_clear();
    if (alloc == NULL) return cf_fail(CLARA_INVALID, "clara_free: alloc is NULL");
    if (!alloc->published) return clara_release(alloc);
    char what[640], file[200];
    describe(alloc, what, sizeof what);
    cf_member_file(alloc->ctx, 'a', alloc->name, file, sizeof file);
    int status = CLARA_OK;
    unsigned char lifecycle = 0;
    clara_unmap(alloc, true);
    if (!alloc->writable) {
        status = cf_fail(CLARA_PERMISSION, "cannot free %s: this reference may only read it",
                         what);
    } else {
        /* All under the lifecycle lock, which every remover of a name takes: of several
         * freeing one allocation exactly one removes the name, and a name given since to
         * a newer allocation is never touched (docs/segment-format.md 5.8). */
        status = cf_lock(alloc->fd, CF_LOCK_LIFECYCLE, true, cf_lock_wait());
        if (status == CLARA_TIMEOUT)
            cf_fail(status, "%s: its lifecycle stayed locked for %g s", what, cf_lock_wait());
        if (status == CLARA_OK)
            status = cf_pread_all(alloc->fd, &lifecycle, 1, AT_lifecycle, what);
        if (status == CLARA_OK && lifecycle == CF_PUBLISHED)
            status = remove_name(alloc, file, what);
    }
    close(alloc->fd); /* drops the locks */
    free(alloc);
    return status;
}

/* ---- getters -------------------------------------------------------------------------- */

clara_element_type clara_type(const clara_allocation *alloc) {
    return alloc ? alloc->layout.type : (clara_element_type)0;
}

int clara_ndims(const clara_allocation *alloc) { return alloc ? alloc->layout.ndim : 0; }

int clara_dims(const clara_allocation *alloc, int64_t dims[CLARA_MAX_DIMS]) {
    if (alloc == NULL || dims == NULL) return 0;
    memcpy(dims, alloc->layout.dims, sizeof alloc->layout.dims);
    return alloc->layout.ndim;
}

uint64_t clara_nbytes(const clara_allocation *alloc) { return alloc ? alloc->layout.nbytes : 0; }

uint64_t clara_capacity(const clara_allocation *alloc) {
    return alloc ? alloc->layout.capacity : 0;
}

const char *clara_name(const clara_allocation *alloc) {
    return alloc && alloc->published ? alloc->name : NULL;
}

bool clara_is_read_only(const clara_allocation *alloc) { return alloc && !alloc->writable; }

void *clara_data(const clara_allocation *alloc) {
    return alloc && alloc->map ? alloc->map + CF_DATA_OFFSET : NULL;
}

int cf_fd_of(const clara_allocation *alloc) { return alloc->fd; }
