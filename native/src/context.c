/* Contexts: create, open, close, destroy (docs/segment-format.md 5.2). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

/* The directory and the context's file name, from the environment as it is now. */
static int locate(const char *name, int *dirfd, char *file, size_t size) {
    char ns[65], token[CF_CONTEXT_TOKEN + 1];
    int status = cf_namespace(ns, sizeof ns);
    if (status) return status;
    cf_token(name, CF_CONTEXT_TOKEN, token);
    snprintf(file, size, "%s.%s", ns, token);
    const char *dir = cf_shm_dir();
    *dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0) {
        char what[640];
        snprintf(what, sizeof what, "shared-memory directory %s", dir);
        return cf_errno(errno, what);
    }
    return CLARA_OK;
}

static int adopt(int dirfd, int fd, bool writable, const struct stat *st, const cf_header *h,
                 const char *file, clara_context **out) {
    clara_context *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) return cf_fail(CLARA_ERROR, "out of memory");
    ctx->fd = fd;
    ctx->dirfd = dirfd;
    ctx->writable = writable;
    ctx->uid = st->st_uid;
    ctx->mode = h->mode;
    ctx->capacity = h->capacity;
    strcpy(ctx->name, h->name);
    snprintf(ctx->file, sizeof ctx->file, "%s", file);
    *out = ctx;
    return CLARA_OK;
}

int clara_context_create(const char *name, uint64_t capacity, unsigned mode, int owner_pid,
                         clara_context **out) {
    cf_clear();
    if (out == NULL) return cf_fail(CLARA_INVALID, "clara_context_create: out is NULL");
    *out = NULL;
    int status = cf_check_name(name, "context name");
    if (status) return status;
    if (mode == 0) mode = 0600;
    if (mode > 0777 || (mode & 0600) != 0600)
        return cf_fail(CLARA_INVALID,
                       "invalid mode %o: use permission bits 600..777 (the owner needs rw)", mode);
    if (capacity > CF_MAX_NBYTES)
        return cf_fail(CLARA_INVALID, "invalid capacity %llu: more than any machine has",
                       (unsigned long long)capacity);
    uint64_t owner_start = 0;
    if (owner_pid < 0) return cf_fail(CLARA_INVALID, "invalid owner pid %d", owner_pid);
    if (owner_pid > 0 && (owner_start = cf_start_time(owner_pid)) == 0)
        return cf_fail(CLARA_INVALID, "owner pid %d is not a running process", owner_pid);
    int dirfd, fd;
    char file[160], what[640];
    if ((status = locate(name, &dirfd, file, sizeof file))) return status;
    snprintf(what, sizeof what, "context '%s'", name);
    struct statvfs fs;
    uint64_t pool_cap = fstatvfs(dirfd, &fs) == 0 ? (uint64_t)fs.f_blocks * fs.f_frsize / 4 : 0;
    unsigned char header[CF_HEADER_SIZE] = {0};
    int32_t pid;
    uint64_t start;
    cf_identity(&pid, &start);
    memcpy(header, CF_MAGIC, 8);
    cf_store(header + AT_identity_version, CF_VERSION, 2);
    header[AT_identity_kind] = CF_KIND_CONTEXT;
    header[AT_lifecycle] = CF_PUBLISHED;
    cf_store(header + AT_origin_created, cf_now_ns(), 8);
    cf_store(header + AT_origin_creator_pid, (uint32_t)pid, 4);
    cf_store(header + AT_origin_creator_start, start, 8);
    cf_store(header + AT_origin_owner_pid, (uint32_t)owner_pid, 4);
    cf_store(header + AT_origin_owner_start, owner_start, 8);
    cf_store(header + AT_settings_mode, mode, 4);
    cf_store(header + AT_settings_capacity, capacity, 8);
    cf_store(header + AT_settings_pool_cap, pool_cap, 8);
    cf_pack_name(header + AT_context_length, name);
    cf_pack_name(header + AT_name_length, name);
    status = cf_create_anonymous(dirfd, CF_PAGE, mode, header, what, &fd);
    if (status == CLARA_OK) {
        status = cf_link(fd, dirfd, file, what);
        if (status == CLARA_EXISTS)
            cf_fail(status, "%s already exists; open it, or destroy it first", what);
    }
    if (status == CLARA_OK) {
        struct stat st;
        cf_header parsed;
        if (fstat(fd, &st) != 0) status = cf_errno(errno, what);
        else if ((status = cf_parse(header, CF_PAGE, what, &parsed)) == CLARA_OK)
            status = adopt(dirfd, fd, true, &st, &parsed, file, out);
    }
    if (status) {
        if (fd >= 0) close(fd);
        close(dirfd);
    }
    return status;
}

int clara_context_open(const char *name, clara_context **out) {
    cf_clear();
    if (out == NULL) return cf_fail(CLARA_INVALID, "clara_context_open: out is NULL");
    *out = NULL;
    int status = cf_check_name(name, "context name");
    if (status) return status;
    int dirfd, fd;
    char file[160], what[640];
    if ((status = locate(name, &dirfd, file, sizeof file))) return status;
    snprintf(what, sizeof what, "context '%s'", name);
    bool writable;
    struct stat st;
    status = cf_open_named(dirfd, file, false, what, &fd, &writable, &st);
    if (status == CLARA_NOT_FOUND) {
        close(dirfd);
        return cf_fail(status, "%s does not exist; create it first", what);
    }
    if (status) {
        close(dirfd);
        return status;
    }
    unsigned char raw[CF_HEADER_SIZE];
    cf_header header;
    if ((status = cf_pread_all(fd, raw, sizeof raw, 0, what)) == CLARA_OK &&
        (status = cf_parse(raw, (uint64_t)st.st_size, what, &header)) == CLARA_OK) {
        if (header.kind != CF_KIND_CONTEXT || !cf_same_name(header.name, name))
            status = cf_fail(CLARA_CORRUPT, "%s is corrupt (its segment names another object)",
                             what);
        else
            status = adopt(dirfd, fd, writable, &st, &header, file, out);
    }
    if (status) {
        close(fd);
        close(dirfd);
    }
    return status;
}

void clara_context_close(clara_context *ctx) {
    if (ctx == NULL) return;
    close(ctx->fd);
    close(ctx->dirfd);
    free(ctx);
}

const char *clara_context_name(const clara_context *ctx) { return ctx ? ctx->name : ""; }

int clara_context_destroy(const char *name) {
    cf_clear();
    int status = cf_check_name(name, "context name");
    if (status) return status;
    int dirfd;
    char file[160], what[640];
    if ((status = locate(name, &dirfd, file, sizeof file))) return status;
    snprintf(what, sizeof what, "context '%s'", name);
    int listing = dup(dirfd);
    DIR *dir = listing >= 0 ? fdopendir(listing) : NULL;
    if (dir == NULL) {
        status = cf_errno(errno, what);
        if (listing >= 0) close(listing);
        close(dirfd);
        return status;
    }
    size_t prefix = strlen(file);
    char **members = NULL;
    size_t count = 0, room = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, file, prefix) != 0 || entry->d_name[prefix] != '.') continue;
        struct stat st;
        if (fstatat(dirfd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_uid != geteuid() && geteuid() != 0 && status == CLARA_OK)
            /* In the sticky directory only a file's owner may remove it: refuse before
             * removing anything rather than stop half-way. */
            status = cf_fail(CLARA_PERMISSION,
                             "%s holds %s, which belongs to uid %u: only that user (or root) "
                             "can remove it; nothing was destroyed",
                             what, entry->d_name, (unsigned)st.st_uid);
        if (count == room) {
            room = room ? 2 * room : 16;
            char **grown = realloc(members, room * sizeof *members);
            if (grown == NULL) {
                status = cf_fail(CLARA_ERROR, "out of memory");
                break;
            }
            members = grown;
        }
        members[count++] = strdup(entry->d_name);
    }
    closedir(dir);
    if (status == CLARA_OK) {
        bool had_context = unlinkat(dirfd, file, 0) == 0;
        if (!had_context && errno != ENOENT) status = cf_errno(errno, what);
        for (size_t i = 0; i < count && status == CLARA_OK; i++)
            if (members[i] && unlinkat(dirfd, members[i], 0) != 0 && errno != ENOENT)
                status = cf_errno(errno, members[i]);
        if (status == CLARA_OK && !had_context && count == 0)
            status = cf_fail(CLARA_NOT_FOUND, "%s does not exist", what);
    }
    for (size_t i = 0; i < count; i++) free(members[i]);
    free(members);
    close(dirfd);
    return status;
}
