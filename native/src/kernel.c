/* Every system call on segments: safe opens, anonymous creation, links, OFD locks, and
 * process identity from /proc (docs/segment-format.md 3, 4, 5.1). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- process identity ---------------------------------------------------------------- */

/* Fields 3.. of /proc/<pid>/stat (state first), split after the last ')'. */
static bool stat_fields(int pid, char *state, uint64_t *start) {
    char path[64], text[1024];
    if (pid <= 0) return false;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return false;
    text[n] = '\0';
    char *p = strrchr(text, ')');
    if (p == NULL || p[1] == '\0') return false;
    p += 2;
    *state = *p;
    for (int field = 3; field < 22; field++) { /* field 22: start time */
        p = strchr(p, ' ');
        if (p == NULL) return false;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return true;
}

uint64_t cf_start_time(int pid) {
    char state;
    uint64_t start;
    return stat_fields(pid, &state, &start) ? start : 0;
}

bool cf_is_alive(int pid, uint64_t start) {
    char state;
    uint64_t found;
    if (!stat_fields(pid, &state, &found) || state == 'Z' || state == 'X') return false;
    return start == 0 || found == start;
}

/* This process's identity, computed once and again in a forked child (no getpid per call). */
static int32_t self_pid;
static uint64_t self_start;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void forget_identity(void) { __atomic_store_n(&self_pid, 0, __ATOMIC_RELEASE); }

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forget_identity); }

void cf_identity(int32_t *pid, uint64_t *start) {
    pthread_once(&self_once, register_fork_handler);
    if (__atomic_load_n(&self_pid, __ATOMIC_ACQUIRE) == 0) {
        int32_t now = (int32_t)getpid();
        __atomic_store_n(&self_start, cf_start_time(now), __ATOMIC_RELAXED);
        __atomic_store_n(&self_pid, now, __ATOMIC_RELEASE);
    }
    *pid = __atomic_load_n(&self_pid, __ATOMIC_ACQUIRE);
    *start = __atomic_load_n(&self_start, __ATOMIC_RELAXED);
}

double cf_lock_wait(void) {
    const char *text = getenv("CLARA_LOCK_TIMEOUT");
    char *end;
    double seconds = text && *text ? strtod(text, &end) : 10.0;
    return text && *text && (*end != '\0' || !(seconds >= 0)) ? 10.0 : seconds;
}

uint64_t cf_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* ---- files --------------------------------------------------------------------------- */

/* A name that is not a regular file: permission if another user's, else corrupt. */
static int refuse_type(const struct stat *st, const char *what) {
    const char *kind = S_ISLNK(st->st_mode)    ? "a symbolic link"
                       : S_ISFIFO(st->st_mode) ? "a FIFO"
                       : S_ISDIR(st->st_mode)  ? "a directory"
                       : S_ISSOCK(st->st_mode) ? "a socket"
                                               : "a device";
    if (st->st_uid != geteuid())
        return cf_fail(CLARA_PERMISSION, "%s is %s of uid %u, not a clara segment; it is never "
                                         "used", what, kind, (unsigned)st->st_uid);
    return cf_fail(CLARA_CORRUPT, "%s is %s, not a clara segment; remove it", what, kind);
}

static int refuse_name(int dirfd, const char *file, const char *what, int error) {
    struct stat st;
    if ((error == ELOOP || error == ENXIO) &&
        fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return refuse_type(&st, what);
    return cf_errno(error, what);
}

int cf_open_fd(int dirfd, const char *file, bool read_only, const char *what, int *fd,
               bool *writable) {
    const int flags = O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    *fd = -1;
    if (!read_only) {
        *fd = openat(dirfd, file, flags | O_RDWR);
        if (*fd < 0 && errno != EACCES && errno != EPERM && errno != EISDIR)
            return refuse_name(dirfd, file, what, errno);
    }
    *writable = *fd >= 0;
    if (*fd < 0) {
        *fd = openat(dirfd, file, flags | O_RDONLY);
        if (*fd < 0) return refuse_name(dirfd, file, what, errno);
    }
    return CLARA_OK;
}

int cf_check_file(int fd, const char *what, struct stat *st) {
    if (fstat(fd, st) != 0) return cf_errno(errno, what);
    if (!S_ISREG(st->st_mode)) return refuse_type(st, what);
    return CLARA_OK;
}

int cf_open_named(int dirfd, const char *file, bool read_only, const char *what, int *fd,
                  bool *writable, struct stat *st) {
    int status = cf_open_fd(dirfd, file, read_only, what, fd, writable);
    if (status == CLARA_OK && (status = cf_check_file(*fd, what, st)) != CLARA_OK) {
        close(*fd);
        *fd = -1;
    }
    return status;
}

int cf_pread_all(int fd, void *buffer, size_t size, off_t offset, const char *what) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buffer + done, size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return cf_errno(errno, what);
        if (n == 0) break;
        done += (size_t)n;
    }
    if (done < size) memset((char *)buffer + done, 0, size - done);
    return CLARA_OK;
}

int cf_pwrite_all(int fd, const void *buffer, size_t size, off_t offset, const char *what) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, (const char *)buffer + done, size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return cf_errno(errno, what);
        if (n == 0) return cf_errno(ENOSPC, what);
        done += (size_t)n;
    }
    return CLARA_OK;
}

#define WRITE_WHOLE_BELOW (64u << 10)
#define CHECK_FREE_FROM (1u << 20)

int cf_create_anonymous(int dirfd, uint64_t size, unsigned mode, const unsigned char *header,
                        const char *what, int *fd) {
    *fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
    if (*fd < 0) return cf_errno(errno, what);
    int status = CLARA_OK;
    char where[320];
    snprintf(where, sizeof where, "%s of %llu bytes", what, (unsigned long long)size);
    if (fchmod(*fd, (mode_t)mode) != 0) { /* exact mode, whatever the umask */
        status = cf_errno(errno, where);
        goto fail;
    }
    if (size >= CHECK_FREE_FROM) {
        /* tmpfs fills page by page up to its total size before failing, which on a
         * RAM-sized /dev/shm can wake the out-of-memory killer: refuse at once. */
        struct statvfs fs;
        if (fstatvfs(*fd, &fs) == 0 && size > (uint64_t)fs.f_bavail * fs.f_frsize) {
            status = cf_errno(ENOSPC, where);
            goto fail;
        }
    }
    if (size <= WRITE_WHOLE_BELOW) {
        /* Small files are reserved by writing them whole: one call, header and zeros. */
        static const unsigned char zeros[CF_PAGE];
        struct iovec parts[WRITE_WHOLE_BELOW / CF_PAGE + 1];
        int count = 0;
        parts[count++] = (struct iovec){(void *)header, CF_HEADER_SIZE};
        for (uint64_t at = CF_HEADER_SIZE; at < size; count++) {
            size_t chunk = size - at < CF_PAGE ? (size_t)(size - at) : CF_PAGE;
            parts[count] = (struct iovec){(void *)zeros, chunk};
            at += chunk;
        }
        ssize_t written = pwritev(*fd, parts, count, 0);
        if (written < 0) status = cf_errno(errno, where);
        else if ((uint64_t)written < size) status = cf_errno(ENOSPC, where);
    } else {
        int error = posix_fallocate(*fd, 0, (off_t)size);
        status = error ? cf_errno(error, where)
                       : cf_pwrite_all(*fd, header, CF_HEADER_SIZE, 0, where);
    }
    if (status == CLARA_OK) return CLARA_OK;
fail:
    close(*fd); /* an anonymous file vanishes with its last descriptor */
    *fd = -1;
    return status;
}

int cf_link(int fd, int dirfd, const char *file, const char *what) {
    /* linkat(AT_EMPTY_PATH) names the open file directly, but only with
     * CAP_DAC_READ_SEARCH; everyone else goes through /proc/self/fd (the same inode). */
    static int empty_path = 1;
    if (empty_path) {
        if (linkat(fd, "", dirfd, file, AT_EMPTY_PATH) == 0) return CLARA_OK;
        if (errno != ENOENT && errno != EPERM && errno != EINVAL) return cf_errno(errno, what);
        empty_path = 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, path, dirfd, file, AT_SYMLINK_FOLLOW) == 0) return CLARA_OK;
    return cf_errno(errno, what);
}

/* ---- OFD locks ----------------------------------------------------------------------- */

static int set_lock(int fd, int byte, short type, int command) {
    struct flock request;
    memset(&request, 0, sizeof request);
    request.l_type = type;
    request.l_whence = SEEK_SET;
    request.l_start = byte;
    request.l_len = 1;
    return fcntl(fd, command, &request);
}

int cf_try_lock(int fd, int byte, bool exclusive) {
    if (set_lock(fd, byte, exclusive ? F_WRLCK : F_RDLCK, F_OFD_SETLK) == 0) return 0;
    return errno == EAGAIN || errno == EACCES ? 1 : -1;
}

int cf_unlock(int fd, int byte) { return set_lock(fd, byte, F_UNLCK, F_OFD_SETLK); }

int cf_lock(int fd, int byte, bool exclusive, double timeout) {
    int got = cf_try_lock(fd, byte, exclusive);
    if (got <= 0) return got == 0 ? CLARA_OK : cf_errno(errno, "lock");
    if (timeout < 0) {
        while (set_lock(fd, byte, exclusive ? F_WRLCK : F_RDLCK, F_OFD_SETLKW) != 0)
            if (errno != EINTR) return cf_errno(errno, "lock");
        return CLARA_OK;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double deadline = (double)now.tv_sec + now.tv_nsec / 1e9 + timeout;
    double pause = 50e-6;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = deadline - ((double)now.tv_sec + now.tv_nsec / 1e9);
        if (left <= 0) return CLARA_TIMEOUT;
        double sleep = pause < left ? pause : left;
        struct timespec nap = {(time_t)sleep, (long)((sleep - (double)(time_t)sleep) * 1e9)};
        nanosleep(&nap, NULL);
        pause = pause * 2 < 5e-3 ? pause * 2 : 5e-3;
        got = cf_try_lock(fd, byte, exclusive);
        if (got == 0) return CLARA_OK;
        if (got < 0) return cf_errno(errno, "lock");
    }
}
