/* The thread-local last error: every failing call sets a code and a one-line message. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread char last_message[768];
static __thread int last_status;

const char *clara_last_error(void) { return last_message; }

int clara_last_status(void) { return last_status; }

void cf_clear(void) {
    last_message[0] = '\0';
    last_status = CLARA_OK;
}

int cf_fail(int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_message, sizeof last_message, format, args);
    va_end(args);
    last_status = status;
    return status;
}

int cf_errno(int error, const char *what) {
    switch (error) {
    case ENOENT:
        return cf_fail(CLARA_NOT_FOUND, "%s does not exist", what);
    case EEXIST:
        return cf_fail(CLARA_EXISTS, "%s already exists; choose another name or free it first",
                       what);
    case EACCES:
    case EPERM:
    case EROFS:
        return cf_fail(CLARA_PERMISSION,
                       "%s: permission denied (it belongs to another user or mode)", what);
    case ENOSPC:
    case EFBIG:
    case ENOMEM:
    case EDQUOT:
        return cf_fail(CLARA_OUT_OF_SPACE,
                       "%s: not enough shared memory (%s); free some, or check `df -h %s`", what,
                       strerror(error), cf_shm_dir());
    case ELOOP:
        return cf_fail(CLARA_CORRUPT,
                       "%s is a symbolic link, not a clara segment; remove it", what);
    case ENOTDIR:
        return cf_fail(CLARA_INVALID, "%s is not a directory (check CLARA_SHM_DIR)", what);
    case EMFILE:
    case ENFILE:
        return cf_fail(CLARA_ERROR,
                       "%s: too many open files; release allocations you no longer use", what);
    default:
        return cf_fail(CLARA_ERROR, "%s: %s", what, strerror(error));
    }
}

const char *clara_status_name(int status) {
    static const char *const names[] = {
        "ok",   "error",      "invalid",     "not found",  "busy",          "timeout",
        "incomplete", "out of space", "permission", "corrupt", "already exists",
    };
    if (status < 0 || status > CLARA_EXISTS) return "unknown";
    return names[status];
}
