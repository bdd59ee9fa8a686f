/* Bad input to every call of the C API: a clear code and message, never a crash. Built
 * plainly and with -fsanitize=address,undefined by test_bad_input.py; argv[1] is a context
 * that exists (with an allocation "vol" published in it). Prints "N checks, F failures". */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "clara_fastio.h"

static int checks, failures;

static void expect(int got, int want, const char *what) {
    checks++;
    const char *message = clara_last_error();
    if (got != want || (want != CLARA_OK && message[0] == '\0')) {
        printf("FAIL %s: got %d (%s), want %d\n", what, got, message, want);
        failures++;
    }
}

static void check(bool holds, const char *what) {
    checks++;
    if (!holds) {
        printf("FAIL %s\n", what);
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    clara_context *ctx = NULL;
    clara_allocation *alloc = NULL, *vol = NULL;
    void *data = NULL;
    int64_t dims[9] = {2, 2, 2, 2, 2, 2, 2, 2, 2};
    int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
    int64_t big[2] = {(int64_t)1 << 31, (int64_t)1 << 31};
    int64_t zero[2] = {4, 0}, negative[1] = {-3};
    char long_name[300];
    memset(long_name, 'a', 256);
    long_name[256] = '\0';
    clara_element_type type;

    /* contexts */
    expect(clara_context_open(NULL, &ctx), CLARA_INVALID, "open NULL name");
    expect(clara_context_open(argv[1], NULL), CLARA_INVALID, "open NULL out");
    expect(clara_context_open("", &ctx), CLARA_INVALID, "open empty name");
    expect(clara_context_open("a/b", &ctx), CLARA_INVALID, "open name with a slash");
    expect(clara_context_open("..", &ctx), CLARA_INVALID, "open ..");
    expect(clara_context_open(long_name, &ctx), CLARA_INVALID, "open 256 characters");
    expect(clara_context_open("caf\xc3\xa9", &ctx), CLARA_INVALID, "open non-ASCII name");
    expect(clara_context_open("no-such-context", &ctx), CLARA_NOT_FOUND, "open missing");
    expect(clara_context_create("x", 0, 0400, 0, &ctx), CLARA_INVALID, "create mode 400");
    expect(clara_context_create("x", 0, 01777, 0, &ctx), CLARA_INVALID, "create mode 1777");
    expect(clara_context_create("x", 0, 0600, -5, &ctx), CLARA_INVALID, "create owner -5");
    expect(clara_context_create("x", UINT64_MAX, 0600, 0, &ctx), CLARA_INVALID,
           "create capacity 2^64-1");
    expect(clara_context_create(argv[1], 0, 0600, 0, &ctx), CLARA_EXISTS, "create existing");
    expect(clara_context_destroy(NULL), CLARA_INVALID, "destroy NULL");
    expect(clara_context_destroy("no-such-context"), CLARA_NOT_FOUND, "destroy missing");
    clara_context_close(NULL);
    expect(clara_context_open(argv[1], &ctx), CLARA_OK, "open");

    /* creates */
    expect(clara_create(NULL, CLARA_UINT8, 1, dims, &alloc), CLARA_INVALID, "create NULL ctx");
    expect(clara_create(ctx, CLARA_UINT8, 1, dims, NULL), CLARA_INVALID, "create NULL out");
    expect(clara_create(ctx, CLARA_UINT8, 1, NULL, &alloc), CLARA_INVALID, "create NULL dims");
    expect(clara_create(ctx, (clara_element_type)0, 1, dims, &alloc), CLARA_INVALID, "type 0");
    expect(clara_create(ctx, (clara_element_type)15, 1, dims, &alloc), CLARA_INVALID, "type 15");
    expect(clara_create(ctx, (clara_element_type)-1, 1, dims, &alloc), CLARA_INVALID, "type -1");
    expect(clara_create(ctx, CLARA_UINT8, 0, dims, &alloc), CLARA_INVALID, "0 dims");
    expect(clara_create(ctx, CLARA_UINT8, 9, dims, &alloc), CLARA_INVALID, "9 dims");
    expect(clara_create(ctx, CLARA_UINT8, -1, dims, &alloc), CLARA_INVALID, "-1 dims");
    expect(clara_create(ctx, CLARA_UINT8, 2, zero, &alloc), CLARA_INVALID, "a 0 dimension");
    expect(clara_create(ctx, CLARA_UINT8, 1, negative, &alloc), CLARA_INVALID, "negative dim");
    expect(clara_create(ctx, CLARA_COMPLEX128, 3, huge, &alloc), CLARA_INVALID, "overflow");
    expect(clara_create(ctx, CLARA_FLOAT64, 2, big, &alloc), CLARA_INVALID, "2^65 bytes");
    check(alloc == NULL, "no allocation after failures");
    expect(clara_element_type_parse("float128", &type), CLARA_INVALID, "parse float128");
    expect(clara_element_type_parse(NULL, &type), CLARA_INVALID, "parse NULL");
    expect(clara_element_type_parse("F32", NULL), CLARA_INVALID, "parse NULL out");
    expect(clara_element_type_parse("F32", &type), CLARA_OK, "parse F32");
    check(type == CLARA_FLOAT32, "F32 is float32");
    check(clara_element_size((clara_element_type)99) == 0, "size of type 99");
    check(clara_element_name((clara_element_type)99) == NULL, "name of type 99");

    /* an allocation and its calls */
    expect(clara_create(ctx, CLARA_INT32, 2, dims, &alloc), CLARA_OK, "create");
    expect(clara_publish(alloc, NULL), CLARA_INVALID, "publish NULL name");
    expect(clara_publish(alloc, "bad name"), CLARA_INVALID, "publish bad name");
    expect(clara_publish(alloc, long_name), CLARA_INVALID, "publish 256 characters");
    expect(clara_publish(NULL, "x"), CLARA_INVALID, "publish NULL alloc");
    expect(clara_publish(alloc, "VOL"), CLARA_EXISTS, "publish a taken name (other case)");
    expect(clara_map(alloc, 0x8, 0, &data), CLARA_INVALID, "map mode 8");
    expect(clara_map(alloc, CLARA_READ, -2, &data), CLARA_INVALID, "map timeout -2");
    expect(clara_map(alloc, CLARA_READ, NAN, &data), CLARA_INVALID, "map timeout NaN");
    expect(clara_map(alloc, CLARA_READ, 0, NULL), CLARA_INVALID, "map NULL data");
    expect(clara_map(NULL, CLARA_READ, 0, &data), CLARA_INVALID, "map NULL alloc");
    expect(clara_map(alloc, CLARA_WRITE, 0, &data), CLARA_OK, "map");
    expect(clara_map(alloc, CLARA_READ, 0, &data), CLARA_BUSY, "map twice");
    expect(clara_set_type_and_dimensions(alloc, CLARA_UINT8, 1, dims), CLARA_BUSY,
           "retype while mapped");
    expect(clara_unmap(alloc, true), CLARA_OK, "unmap");
    expect(clara_unmap(alloc, true), CLARA_OK, "unmap twice");
    expect(clara_unmap(NULL, true), CLARA_INVALID, "unmap NULL");
    expect(clara_set_type_and_dimensions(alloc, CLARA_FLOAT64, 3, huge), CLARA_INVALID,
           "retype overflow");
    expect(clara_set_type_and_dimensions(alloc, CLARA_FLOAT64, 2, big), CLARA_INVALID,
           "retype beyond capacity");
    expect(clara_set_type_and_dimensions(alloc, CLARA_UINT8, 9, dims), CLARA_INVALID,
           "retype 9 dims");
    expect(clara_set_type_and_dimensions(alloc, CLARA_UINT8, 3, dims), CLARA_OK, "retype");
    check(clara_ndims(alloc) == 3 && clara_nbytes(alloc) == 8, "retyped layout");
    expect(clara_publish(alloc, "fresh"), CLARA_OK, "publish");
    expect(clara_publish(alloc, "again"), CLARA_INVALID, "publish twice");
    expect(clara_free(alloc), CLARA_OK, "free");

    /* getters of NULL, gets */
    check(clara_ndims(NULL) == 0 && clara_nbytes(NULL) == 0 && clara_name(NULL) == NULL, "getters of NULL");
    check(clara_dims(NULL, dims) == 0 && clara_data(NULL) == NULL, "dims of NULL");
    expect(clara_get(ctx, "fresh", 0, &vol), CLARA_NOT_FOUND, "get freed");
    expect(clara_get(ctx, "vol", 0x10, &vol), CLARA_INVALID, "get flags 0x10");
    expect(clara_get(ctx, "", 0, &vol), CLARA_INVALID, "get empty name");
    expect(clara_get(NULL, "vol", 0, &vol), CLARA_INVALID, "get NULL ctx");
    expect(clara_get(ctx, "vol", 0, NULL), CLARA_INVALID, "get NULL out");
    expect(clara_get(ctx, "vol", CLARA_READ_ONLY, &vol), CLARA_OK, "get read-only");
    expect(clara_map(vol, CLARA_WRITE, 0, &data), CLARA_PERMISSION, "write map read-only");
    expect(clara_set_type_and_dimensions(vol, CLARA_UINT8, 1, dims), CLARA_PERMISSION,
           "retype read-only");
    expect(clara_free(vol), CLARA_PERMISSION, "free read-only");
    expect(clara_free(NULL), CLARA_INVALID, "free NULL");
    expect(clara_release(NULL), CLARA_OK, "release NULL");

    /* operator calls outside clara run */
    clara_port port;
    expect(clara_operator_context(NULL), CLARA_INVALID, "operator context NULL out");
    expect(clara_operator_port("vol", &port), CLARA_INVALID, "operator port outside clara run");
    expect(clara_operator_port(NULL, &port), CLARA_INVALID, "operator port NULL");
    check(strlen(clara_status_name(CLARA_CORRUPT)) > 0 && !strcmp(clara_status_name(99), "unknown"), "status names");
    clara_context_close(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
