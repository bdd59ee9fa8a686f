/* A command-line driver of the C library for the tests: one subcommand per scenario, the
 * C return code as exit status, clara_last_error() on stderr. Built by conftest.py. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clara_fastio.h"
#include "internal.h" /* the format tables, for the specification test */

static int fail(int code) {
    fprintf(stderr, "clara: error: %s\n", clara_last_error());
    return code;
}

static int parse_dims(const char *text, int64_t *dims) {
    int n = 0;
    for (const char *p = text; *p && n <= CLARA_MAX_DIMS; n++) {
        char *end;
        long long value = strtoll(p, &end, 10);
        if (n < CLARA_MAX_DIMS) dims[n] = value;
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) break;
    }
    return n;
}

static void print_hex(const unsigned char *data, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) printf("%02x", data[i]);
    printf("\n");
}

static int hex_in(const char *hex, unsigned char *out, uint64_t n) {
    if (strlen(hex) != 2 * n) return -1;
    for (uint64_t i = 0; i < n; i++) {
        unsigned value;
        if (sscanf(hex + 2 * i, "%2x", &value) != 1) return -1;
        out[i] = (unsigned char)value;
    }
    return 0;
}

/* read CTX NAME [allow-incomplete]: type, dims, nbytes, then the data as hex. */
static int cmd_read(char **argv, int argc) {
    clara_context *ctx;
    clara_allocation *alloc;
    void *data;
    int code, mode = argc > 4 ? CLARA_ALLOW_INCOMPLETE : CLARA_READ;
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_get(ctx, argv[3], CLARA_READ_ONLY, &alloc))) return fail(code);
    if ((code = clara_map(alloc, mode, 0, &data))) return fail(code);
    int64_t dims[CLARA_MAX_DIMS];
    int ndims = clara_dims(alloc, dims);
    printf("%s", clara_element_name(clara_type(alloc)));
    for (int i = 0; i < ndims; i++) printf("%s%lld", i ? "," : " ", (long long)dims[i]);
    printf(" %llu %s\n", (unsigned long long)clara_nbytes(alloc), clara_name(alloc));
    print_hex(data, clara_nbytes(alloc));
    clara_release(alloc);
    clara_context_close(ctx);
    return 0;
}

/* write CTX NAME TYPE DIMS HEX: create, fill, publish. */
static int cmd_write(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    clara_element_type type;
    void *data;
    int64_t dims[CLARA_MAX_DIMS];
    int code, ndims = parse_dims(argv[5], dims);
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_element_type_parse(argv[4], &type))) return fail(code);
    if ((code = clara_create(ctx, type, ndims, dims, &alloc))) return fail(code);
    if ((code = clara_map(alloc, CLARA_WRITE, 0, &data))) return fail(code);
    if (hex_in(argv[6], data, clara_nbytes(alloc))) {
        fprintf(stderr, "tool: bad hex for %llu bytes\n", (unsigned long long)clara_nbytes(alloc));
        return 2;
    }
    if ((code = clara_unmap(alloc, true))) return fail(code);
    if ((code = clara_publish(alloc, argv[3]))) return fail(code);
    clara_release(alloc);
    clara_context_close(ctx);
    printf("published\n");
    return 0;
}

/* map CTX NAME r|w TIMEOUT: one map attempt, its code as exit status. */
static int cmd_map(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    void *data;
    int code;
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_get(ctx, argv[3], 0, &alloc))) return fail(code);
    code = clara_map(alloc, argv[4][0] == 'w' ? CLARA_WRITE : CLARA_READ, atof(argv[5]), &data);
    if (code) return fail(code);
    printf("mapped\n");
    clara_release(alloc);
    clara_context_close(ctx);
    return 0;
}

/* free CTX NAME */
static int cmd_free(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    int code;
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_get(ctx, argv[3], 0, &alloc))) return fail(code);
    if ((code = clara_free(alloc))) return fail(code);
    clara_context_close(ctx);
    return 0;
}

/* crash-writer CTX NAME NBYTES: a context owned by this process, an allocation published
 * and mapped for writing, half written; then wait to be killed. */
static int cmd_crash_writer(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    unsigned char *data;
    int64_t n = atoll(argv[4]);
    int code;
    if ((code = clara_context_create(argv[2], 0, 0600, getpid(), &ctx))) return fail(code);
    if ((code = clara_create(ctx, CLARA_UINT8, 1, &n, &alloc))) return fail(code);
    if ((code = clara_publish(alloc, argv[3]))) return fail(code);
    if ((code = clara_map(alloc, CLARA_WRITE, 0, (void **)&data))) return fail(code);
    memset(data, 0xab, (size_t)n / 2);
    printf("mapped\n");
    fflush(stdout);
    for (;;) pause();
}

/* hold CTX NAME r|w: map and wait for a line on stdin, then unmap complete. */
static int cmd_hold(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    void *data;
    int code;
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_get(ctx, argv[3], 0, &alloc))) return fail(code);
    if ((code = clara_map(alloc, argv[4][0] == 'w' ? CLARA_WRITE : CLARA_READ, 0, &data)))
        return fail(code);
    printf("mapped\n");
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) return 1;
    clara_release(alloc);
    clara_context_close(ctx);
    return 0;
}

/* hold-free CTX NAME: get, say "got", wait for a line on stdin, then free. */
static int cmd_hold_free(char **argv) {
    clara_context *ctx;
    clara_allocation *alloc;
    int code;
    if ((code = clara_context_open(argv[2], &ctx))) return fail(code);
    if ((code = clara_get(ctx, argv[3], 0, &alloc))) return fail(code);
    printf("got\n");
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) return 1;
    if ((code = clara_free(alloc))) return fail(code);
    clara_context_close(ctx);
    return 0;
}

/* context create|destroy NAME [OWNER] */
static int cmd_context(char **argv, int argc) {
    clara_context *ctx;
    int code;
    if (strcmp(argv[2], "create") == 0) {
        if ((code = clara_context_create(argv[3], 0, 0600, argc > 4 ? atoi(argv[4]) : 0, &ctx)))
            return fail(code);
        clara_context_close(ctx);
        return 0;
    }
    if ((code = clara_context_destroy(argv[3]))) return fail(code);
    return 0;
}

#define PRINT_FIELD(id, label, offset, size) printf("%s %d %d\n", label, offset, size);

/* spec: the format tables as this library knows them. */
static int cmd_spec(void) {
    CF_FIELDS(PRINT_FIELD)
    printf("constant MAGIC %s\n", CF_MAGIC);
    printf("constant VERSION %d\nconstant HEADER_SIZE %d\nconstant DATA_OFFSET %d\n", CF_VERSION,
           CF_HEADER_SIZE, CF_DATA_OFFSET);
    printf("constant MAX_DIMS %d\nconstant KIND_CONTEXT %d\nconstant KIND_ALLOCATION %d\n",
           CLARA_MAX_DIMS, CF_KIND_CONTEXT, CF_KIND_ALLOCATION);
    printf("constant LIFECYCLE_PRIVATE %d\nconstant LIFECYCLE_PUBLISHED %d\n", CF_PRIVATE,
           CF_PUBLISHED);
    printf("constant LIFECYCLE_FREED %d\nconstant LIFECYCLE_POOLED %d\n", CF_FREED, CF_POOLED);
    printf("constant DATA_EMPTY %d\nconstant DATA_WRITING %d\nconstant DATA_COMPLETE %d\n",
           CF_EMPTY, CF_WRITING, CF_COMPLETE);
    printf("constant LOCK_REFERENCE %d\nconstant LOCK_MAP %d\nconstant LOCK_LIFECYCLE %d\n",
           CF_LOCK_REFERENCE, CF_LOCK_MAP, CF_LOCK_LIFECYCLE);
    printf("constant LOCK_QUOTA %d\nconstant LOCK_POOL %d\n", CF_LOCK_QUOTA, CF_LOCK_POOL);
    printf("constant LOCK_CONTEXT_LIFECYCLE %d\n", CF_LOCK_CONTEXT_LIFECYCLE);
    printf("limit context %d\nlimit member %d\n", CF_CONTEXT_TOKEN, CF_MEMBER_TOKEN);
    for (int code = 1; code < 16; code++)
        if (clara_element_name((clara_element_type)code))
            printf("type %d %s %zu\n", code, clara_element_name((clara_element_type)code),
                   clara_element_size((clara_element_type)code));
    return 0;
}

/* file CONTEXT [KIND NAME]: the file name this library derives (namespace from env). */
static int cmd_file(char **argv, int argc) {
    clara_context ctx;
    char ns[65], token[CF_CONTEXT_TOKEN + 1], file[300];
    if (cf_namespace(ns, sizeof ns)) return fail(2);
    cf_token(argv[2], CF_CONTEXT_TOKEN, token);
    snprintf(ctx.file, sizeof ctx.file, "%s.%s", ns, token);
    if (argc < 5) {
        printf("%s\n", ctx.file);
        return 0;
    }
    cf_member_file(&ctx, argv[3][0], argv[4], file, sizeof file);
    printf("%s\n", file);
    return 0;
}

/* operator get NAME | operator allocate NAME DIMS: the operator calls, from the environment;
 * prints the allocation's type, dims and whether it is read-only. */
static int cmd_operator(char **argv, int argc) {
    clara_context *ctx;
    clara_allocation *alloc;
    clara_port port;
    int64_t dims[CLARA_MAX_DIMS];
    int code;
    if ((code = clara_operator_port(argv[3], &port))) return fail(code);
    if ((code = clara_operator_context(&ctx))) return fail(code);
    if (!strcmp(argv[2], "allocate") && argc == 5) {
        int ndims = parse_dims(argv[4], dims);
        if ((code = clara_operator_allocate(ctx, argv[3], ndims, dims, &alloc))) return fail(code);
    } else if ((code = clara_operator_get(ctx, argv[3], &alloc))) {
        return fail(code);
    }
    int ndims = clara_dims(alloc, dims);
    printf("%s %s %s", port.allocation, clara_element_name(clara_type(alloc)),
           clara_is_read_only(alloc) ? "read-only" : "read-write");
    for (int i = 0; i < ndims; i++) printf("%s%lld", i ? "," : " ", (long long)dims[i]);
    printf("\n");
    clara_release(alloc);
    clara_context_close(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *command = argv[1];
    if (!strcmp(command, "read") && argc >= 4) return cmd_read(argv, argc);
    if (!strcmp(command, "write") && argc == 7) return cmd_write(argv);
    if (!strcmp(command, "map") && argc == 6) return cmd_map(argv);
    if (!strcmp(command, "free") && argc == 4) return cmd_free(argv);
    if (!strcmp(command, "crash-writer") && argc == 5) return cmd_crash_writer(argv);
    if (!strcmp(command, "hold") && argc == 5) return cmd_hold(argv);
    if (!strcmp(command, "hold-free") && argc == 4) return cmd_hold_free(argv);
    if (!strcmp(command, "context") && argc >= 4) return cmd_context(argv, argc);
    if (!strcmp(command, "spec")) return cmd_spec();
    if (!strcmp(command, "operator") && argc >= 4) return cmd_operator(argv, argc);
    if (!strcmp(command, "file") && argc >= 3) return cmd_file(argv, argc);
    fprintf(stderr, "tool: unknown command or arguments\n");
    return 2;
}
