/* Inside `clara run`: wait until the producer of a declared input has completed it, on its
 * ready lock in the job's tally (docs/segment-format.md 5.11). `clara run` may start an
 * operator before the operators it reads from in shared memory have finished; it exports
 * CLARA_READY, one line per such input: "ALLOCATION INDEX PRODUCER", INDEX being the
 * producer's place in the job's plan (its status in the tally, its lock byte 64 + INDEX). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define READY_BASE 64
#define WAITING 0
#define FAILED 2
#define SLICE 0.5 /* seconds between two looks at the tally while the lock stays busy */

/* The producer of `allocation` from CLARA_READY: its index (-1: none to wait for). */
static int producer_of(const char *allocation, char producer[CLARA_NAME_MAX + 1]) {
    const char *lines = getenv("CLARA_READY");
    if (lines == NULL) return -1;
    while (*lines) {
        const char *end = strchr(lines, '\n');
        size_t length = end ? (size_t)(end - lines) : strlen(lines);
        char text[600], name[CLARA_NAME_MAX + 1];
        int index;
        if (length < sizeof text) {
            memcpy(text, lines, length);
            text[length] = '\0';
            if (sscanf(text, "%255s %d %255s", name, &index, producer) == 3 && index >= 0 &&
                cf_same_name(name, allocation))
                return index;
        }
        lines = end ? end + 1 : lines + length;
    }
    return -1;
}

static int status_of(clara_allocation *tally, int index, int64_t *status) {
    void *data;
    int rc = clara_map(tally, CLARA_READ, cf_lock_wait(), &data);
    if (rc) return rc;
    memcpy(status, (const unsigned char *)data + 8 * (size_t)index, sizeof *status);
    clara_unmap(tally, true);
    return CLARA_OK;
}

/* Whether the job's runner (the context's creator, origin 168..179) is alive. */
static bool runner_alive(const clara_context *ctx) {
    unsigned char origin[12];
    if (pread(ctx->fd, origin, sizeof origin, 168) != (ssize_t)sizeof origin) return false;
    return cf_is_alive((int32_t)cf_load(origin, 4), cf_load(origin + 4, 8));
}

static int wait_on_lock(clara_context *ctx, clara_allocation *tally, int index,
                        const clara_port *port, const char *producer, int64_t *status) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", cf_fd_of(tally));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_errno(errno, "the job's tally");
    const char *operator = getenv("CLARA_OPERATOR");
    double bound = cf_lock_wait(), waited = 0;
    int rc;
    for (;;) {
        rc = cf_lock(fd, READY_BASE + index, false, SLICE);
        if (rc == CLARA_OK) {
            cf_unlock(fd, READY_BASE + index);
            if ((rc = status_of(tally, index, status)) == CLARA_OK && *status == WAITING)
                rc = cf_fail(CLARA_ERROR,
                             "input '%s' of operator '%s' will never be complete: operator '%s' "
                             "did not finish (the job's runner stopped or died)",
                             port->name, operator, producer);
            break;
        }
        if (rc != CLARA_TIMEOUT) break;
        if ((rc = status_of(tally, index, status)) || *status != WAITING) break;
        waited += SLICE;
        if (waited >= bound) {
            waited = 0;
            /* While the status is waiting only the runner can hold the lock exclusively; a
             * lock busy once it is gone is another process's. */
            if (!runner_alive(ctx)) {
                rc = cf_fail(CLARA_TIMEOUT,
                             "waited %g s to read input '%s' of operator '%s': its ready lock "
                             "is held by a process other than the job's runner",
                             bound, port->name, operator);
                break;
            }
        }
    }
    close(fd);
    return rc;
}

int cf_wait_for_producer(clara_context *ctx, const clara_port *port) {
    char producer[CLARA_NAME_MAX + 1];
    int index = producer_of(port->allocation, producer);
    if (!port->is_input || index < 0) return CLARA_OK;
    clara_allocation *tally;
    int rc = clara_get(ctx, "clara-tally", CLARA_READ_ONLY, &tally);
    if (rc == CLARA_NOT_FOUND) { /* no job's tally: nothing to wait for */
        cf_clear();
        return CLARA_OK;
    }
    if (rc) return rc;
    int64_t status = WAITING;
    if ((uint64_t)(index + 1) * 8 > clara_nbytes(tally))
        rc = cf_fail(CLARA_INVALID, "CLARA_READY names operator %d, past the job's tally", index);
    else if ((rc = status_of(tally, index, &status)) == CLARA_OK && status == WAITING)
        rc = wait_on_lock(ctx, tally, index, port, producer, &status);
    clara_release(tally);
    if (rc == CLARA_OK && status == FAILED)
        rc = cf_fail(CLARA_ERROR,
                     "input '%s' of operator '%s' will never be complete: operator '%s' failed",
                     port->name, getenv("CLARA_OPERATOR"), producer);
    return rc;
}
