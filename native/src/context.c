/* Contexts: create, open, close, destroy (docs/segment-format.md 5.2). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
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
    char what[640];
    snprintf(what, sizeof what, "shared-memory directory %s", dir);
    if (*dirfd < 0) return cf_errno(errno, what);
    /* Section 5.1, step 0: a directory another user owns, or that anyone may write but
     * is not sticky, lets others replace our files under us. */
    struct stat st;
    if (fstat(*dirfd, &st) != 0) {
        status = cf_errno(errno, what);
        close(*dirfd);
        return status;
    }
    if ((st.st_uid != 0 && st.st_uid != geteuid()) ||
        ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX))) {
        close(*dirfd);
        return cf_fail(CLARA_INVALID,
                       "%s belongs to uid %u with mode %o: use a directory of root or yours "
                       "(sticky if others may write in it), e.g. unset CLARA_SHM_DIR",
                       what, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
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
    ctx->gid = st->st_gid;
    ctx->file_mode = st->st_mode & 0777;
    ctx->mode = h->mode;
    ctx->capacity = h->capacity;
    ctx->created_ns = h->created_ns;
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
    cf_pack_new(header, CF_KIND_CONTEXT, CF_PUBLISHED);
    cf_store(header + AT_origin_owner_pid, (uint32_t)owner_pid, 4);
    cf_store(header + AT_origin_owner_start, owner_start, 8);
    cf_store(header + AT_settings_mode, mode, 4);
    cf_store(header + AT_settings_capacity, capacity, 8);
    cf_store(header + AT_settings_pool_cap, pool_cap, 8);
    cf_pack_name(header + AT_context_length, name);
    cf_pack_name(header + AT_name_length, name);
    status = cf_create_anonymous(dirfd, CF_PAGE, mode, header, what, &fd);
    if (status == CLARA_OK) { /* an empty ledger (section 2.5): nothing published, no pool */
        unsigned char ledger[CF_LEDGER_TOTALS] = {0};
        memcpy(ledger, CF_LEDGER_MAGIC, 8);
        status = cf_pwrite_all(fd, ledger, sizeof ledger, CF_LEDGER_AT, what);
    }
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

/* A context is used only if it belongs to this user or root, or to the user named by
 * $CLARA_CONTEXT_OWNER (a uid or a user name): anyone can create a name first. */
static int check_owner(const struct stat *st, const char *what) {
    const char *wanted = getenv("CLARA_CONTEXT_OWNER");
    if (wanted != NULL && wanted[0] != '\0') {
        char *end;
        unsigned long uid = strtoul(wanted, &end, 10);
        if (*end != '\0') {
            struct passwd *user = getpwnam(wanted);
            if (user == NULL)
                return cf_fail(CLARA_INVALID, "CLARA_CONTEXT_OWNER=%.64s is no user here", wanted);
            uid = user->pw_uid;
        }
        if (st->st_uid == (uid_t)uid) return CLARA_OK;
        return cf_fail(CLARA_PERMISSION, "%s belongs to uid %u, not to uid %lu as asked", what,
                       (unsigned)st->st_uid, uid);
    }
    if (st->st_uid == geteuid() || st->st_uid == 0) return CLARA_OK;
    return cf_fail(CLARA_PERMISSION,
                   "%s belongs to uid %u: if you mean to use that user's context, say so with "
                   "CLARA_CONTEXT_OWNER=%u", what, (unsigned)st->st_uid, (unsigned)st->st_uid);
}

bool cf_admits(const clara_context *ctx, const struct stat *member) {
    if ((member->st_mode & 0777) & ~ctx->file_mode) return false;
    if (member->st_uid == ctx->uid || (ctx->file_mode & 002)) return true;
    return (ctx->file_mode & 020) && member->st_gid == ctx->gid;
}

int cf_adopt_owner(const clara_context *ctx, int fd, const char *what) {
    uid_t me = geteuid();
    if (me == ctx->uid || (ctx->file_mode & 002)) return CLARA_OK;
    uid_t uid = me == 0 ? ctx->uid : (uid_t)-1;
    if (fchown(fd, uid, ctx->gid) != 0) return cf_errno(errno, what);
    return CLARA_OK;
}

bool cf_names_file(int dirfd, const char *file, const struct stat *st) {
    struct stat named;
    return fstatat(dirfd, file, &named, AT_SYMLINK_NOFOLLOW) == 0 && named.st_dev == st->st_dev &&
           named.st_ino == st->st_ino;
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
    if ((status = check_owner(&st, what)) == CLARA_OK &&
        (status = cf_pread_all(fd, raw, sizeof raw, 0, what)) == CLARA_OK &&
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


/* Under its lifecycle lock (which a claimer takes to rewrite the header, 5.9): whether a
 * pooled segment is claimed by another context than `ctx` (its lifecycle private, or
 * published while the claimer links its name) and still referenced. Its pool name is
 * then the only name its claimer can publish it from: left to the claimer. */
static bool claimed_by_other(const clara_context *ctx, int fd, const struct stat *st) {
    if (cf_try_lock(fd, CF_LOCK_REFERENCE, true) != 1) return false; /* nobody holds it */
    unsigned char raw[CF_HEADER_SIZE];
    cf_header header;
    if (cf_pread_all(fd, raw, sizeof raw, 0, "pooled segment") != CLARA_OK ||
        cf_parse(raw, (uint64_t)st->st_size, "pooled segment", &header) != CLARA_OK) {
        cf_clear();
        return false;
    }
    return !cf_same_name(header.context, ctx->name);
}

/* Remove one member listed by destroy: only if it is still that file, ours to remove,
 * and under its lifecycle lock (which every remover takes). */
static bool remove_member(clara_context *ctx, const char *file, ino_t inode) {
    struct stat st;
    int fd;
    bool writable;
    uid_t me = geteuid();
    if (fstatat(ctx->dirfd, file, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_ino != inode) return false;
    if (st.st_uid != me && !(me == 0 && cf_admits(ctx, &st))) return false; /* theirs */
    if (cf_open_named(ctx->dirfd, file, false, file, &fd, &writable, &st) != CLARA_OK) return false;
    bool pooled = strstr(file + strlen(ctx->file), ".p.") != NULL;
    bool removed = st.st_ino == inode &&
                   cf_lock(fd, CF_LOCK_LIFECYCLE, true, cf_lock_wait()) == CLARA_OK &&
                   !(pooled && claimed_by_other(ctx, fd, &st)) &&
                   cf_names_file(ctx->dirfd, file, &st) && unlinkat(ctx->dirfd, file, 0) == 0;
    close(fd);
    return removed;
}

int clara_context_destroy(const char *name) {
    cf_clear();
    int status = cf_check_name(name, "context name");
    if (status) return status;
    clara_context *ctx;
    if ((status = clara_context_open(name, &ctx))) return status;
    char what[640];
    snprintf(what, sizeof what, "context '%s'", name);
    struct stat st;
    status = cf_lock(ctx->fd, CF_LOCK_CONTEXT_LIFECYCLE, true, cf_lock_wait());
    if (status == CLARA_TIMEOUT)
        cf_fail(status, "%s: its lifecycle stayed locked for %g s", what, cf_lock_wait());
    if (status == CLARA_OK && fstat(ctx->fd, &st) != 0) status = cf_errno(errno, what);
    if (status == CLARA_OK && !cf_names_file(ctx->dirfd, ctx->file, &st))
        status = cf_fail(CLARA_NOT_FOUND, "%s does not exist (destroyed meanwhile)", what);
    /* Listed and unlinked under the pool lock (held until the context is closed): a free
     * moving a segment into its pool meanwhile (another implementation's, 5.9) either
     * named it before we list, or finds the context destroyed. Waited for briefly, as by
     * every pool user, and never failed for (a reader of the context can hold it). */
    if (status == CLARA_OK) (void)cf_lock(ctx->fd, CF_LOCK_POOL, true, CF_POOL_WAIT);
    /* Listed while the name is still ours: no newer context of that name can exist yet,
     * so every member listed is ours or an orphan of an older one. */
    int listing = status == CLARA_OK ? dup(ctx->dirfd) : -1;
    DIR *dir = listing >= 0 ? fdopendir(listing) : NULL;
    if (status == CLARA_OK && dir == NULL) {
        status = cf_errno(errno, what);
        if (listing >= 0) close(listing);
    }
    size_t prefix = strlen(ctx->file), count = 0, room = 0;
    struct member {
        char *file;
        ino_t inode;
    } *members = NULL;
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, ctx->file, prefix) != 0 || entry->d_name[prefix] != '.') continue;
        if (count == room) {
            room = room ? 2 * room : 16;
            struct member *grown = realloc(members, room * sizeof *members);
            if (grown == NULL) {
                status = cf_fail(CLARA_ERROR, "out of memory");
                break;
            }
            members = grown;
        }
        members[count].file = strdup(entry->d_name);
        members[count++].inode = entry->d_ino;
    }
    if (dir != NULL) closedir(dir);
    if (status == CLARA_OK && unlinkat(ctx->dirfd, ctx->file, 0) != 0)
        status = cf_errno(errno, what);
    for (size_t i = 0; i < count; i++) {
        if (status == CLARA_OK && members[i].file) remove_member(ctx, members[i].file, members[i].inode);
        free(members[i].file);
    }
    free(members);
    clara_context_close(ctx);
    return status;
}
