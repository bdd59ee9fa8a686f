/* P11: the C library against raw POSIX shared memory, timed in C, trials interleaved.
 *
 *   native_p11 TRIALS WARMUP READ_BYTES CREATE_BYTES
 *
 * read:   clara_get + clara_map(read) + clara_unmap + clara_release
 *         vs shm_open + mmap(read) + munmap + close, of the same size;
 * create: clara_create + clara_publish + clara_free
 *         vs shm_open(O_CREAT) + ftruncate + mmap + munmap + shm_unlink + close.
 * Prints one line per series: NAME then each trial in nanoseconds. Segments live in
 * $CLARA_NAMESPACE (contexts) and /dev/shm/<namespace>-raw.p11-* (raw). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clara_fastio.h"

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "native_p11: %s: %s\n", what, clara_last_error());
    exit(1);
}

static clara_context *ctx;
static char raw_read[128], raw_create[128];
static size_t read_bytes, create_bytes;

static void ours_read(void) {
    clara_allocation *alloc;
    void *data;
    if (clara_get(ctx, "vol", 0, &alloc) || clara_map(alloc, CLARA_READ, 0, &data)) die("get");
    clara_unmap(alloc, true);
    clara_release(alloc);
}

static void raw_read_once(void) {
    int fd = shm_open(raw_read, O_RDWR, 0);
    void *p = mmap(NULL, read_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (fd < 0 || p == MAP_FAILED) die("raw read");
    munmap(p, read_bytes);
    close(fd);
}

static void ours_create(void) {
    clara_allocation *alloc;
    int64_t n = (int64_t)create_bytes;
    if (clara_create(ctx, CLARA_UINT8, 1, &n, &alloc) || clara_publish(alloc, "made") ||
        clara_free(alloc))
        die("create");
}

static void raw_create_once(void) {
    int fd = shm_open(raw_create, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)create_bytes) != 0) die("raw create");
    void *p = mmap(NULL, create_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("raw mmap");
    munmap(p, create_bytes);
    shm_unlink(raw_create);
    close(fd);
}

typedef void (*operation)(void);

static void series(const char *label_a, operation a, const char *label_b, operation b,
                   int trials, int warmup) {
    int64_t *times = malloc(sizeof(int64_t) * 2 * (size_t)trials);
    for (int t = 0; t < warmup + trials; t++) {
        for (int k = 0; k < 2; k++) {
            int which = (t + k) % 2; /* rotating order: a noisy neighbour slows both alike */
            int64_t start = now_ns();
            (which ? b : a)();
            int64_t took = now_ns() - start;
            if (t >= warmup) times[2 * (t - warmup) + which] = took;
        }
    }
    for (int which = 0; which < 2; which++) {
        printf("%s", which ? label_b : label_a);
        for (int t = 0; t < trials; t++) printf(" %lld", (long long)times[2 * t + which]);
        printf("\n");
    }
    free(times);
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int trials = atoi(argv[1]), warmup = atoi(argv[2]);
    read_bytes = (size_t)atoll(argv[3]);
    create_bytes = (size_t)atoll(argv[4]);
    const char *ns = getenv("CLARA_NAMESPACE");
    snprintf(raw_read, sizeof raw_read, "/%s-raw.p11-read", ns ? ns : "clara");
    snprintf(raw_create, sizeof raw_create, "/%s-raw.p11-create", ns ? ns : "clara");
    if (clara_context_create("p11", 0, 0600, 0, &ctx)) die("context");
    clara_allocation *vol;
    int64_t n = (int64_t)read_bytes;
    void *data;
    if (clara_create(ctx, CLARA_UINT8, 1, &n, &vol) || clara_map(vol, CLARA_WRITE, 0, &data))
        die("setup");
    clara_unmap(vol, true);
    if (clara_publish(vol, "vol")) die("publish");
    clara_release(vol);
    int fd = shm_open(raw_read, O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)read_bytes) != 0) die("raw setup");
    close(fd);
    series("clara-read", ours_read, "raw-read", raw_read_once, trials, warmup);
    series("clara-create", ours_create, "raw-create", raw_create_once, trials, warmup);
    shm_unlink(raw_read);
    clara_context_close(ctx);
    if (clara_context_destroy("p11")) die("destroy");
    return 0;
}
