/* Inside an operator of `clara run`: its declared shared-memory inputs and outputs, from
 * CLARA_FASTIO (one line per port: "input|output NAME ELEMENT_TYPE DIMS ALLOCATION"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int outside(const char *missing) {
    return cf_fail(CLARA_INVALID,
                   "not running inside `clara run` (%s not set): start this operator through "
                   "its pipeline, e.g. `clara run pipeline.yaml`",
                   missing);
}

/* Parse one line into `port`; false if it is not one clara run writes. */
static bool parse_line(const char *line, size_t length, clara_port *port) {
    char text[1200], direction[16], type[32], dims[300];
    if (length >= sizeof text) return false;
    memcpy(text, line, length);
    text[length] = '\0';
    memset(port, 0, sizeof *port);
    if (sscanf(text, "%15s %255s %31s %299s %255s", direction, port->name, type, dims,
               port->allocation) != 5)
        return false;
    if (strcmp(direction, "input") == 0) port->is_input = true;
    else if (strcmp(direction, "output") != 0) return false;
    if (!cf_valid_name(port->name) || !cf_valid_name(port->allocation)) return false;
    if (clara_element_type_parse(type, &port->type) != CLARA_OK) return false;
    char *cursor = dims;
    for (;;) {
        if (port->ndims == CLARA_MAX_DIMS) return false;
        char *end;
        long long value = strtoll(cursor, &end, 10);
        if (end == cursor || value < -1) return false;
        port->dims[port->ndims++] = value;
        if (*end == '\0') break;
        if (*end != ',') return false;
        cursor = end + 1;
    }
    return true;
}

int clara_operator_port(const char *name, clara_port *out) {
    cf_clear();
    if (name == NULL || out == NULL)
        return cf_fail(CLARA_INVALID, "clara_operator_port: %s is NULL", name ? "out" : "name");
    int status = cf_check_name(name, "variable name");
    if (status) return status;
    const char *ports = getenv("CLARA_FASTIO");
    if (getenv("CLARA_OPERATOR") == NULL) return outside("CLARA_OPERATOR");
    if (ports == NULL) return outside("CLARA_FASTIO");
    char declared[512] = "";
    for (const char *line = ports; *line;) {
        const char *end = strchr(line, '\n');
        size_t length = end ? (size_t)(end - line) : strlen(line);
        clara_port port;
        if (length > 0) {
            if (!parse_line(line, length, &port))
                return cf_fail(CLARA_INVALID,
                               "CLARA_FASTIO is not what clara run writes: '%.*s'",
                               (int)(length < 80 ? length : 80), line);
            if (cf_same_name(port.name, name)) {
                *out = port;
                return CLARA_OK;
            }
            size_t used = strlen(declared);
            snprintf(declared + used, sizeof declared - used, "%s%s", used ? ", " : "",
                     port.name);
        }
        line = end ? end + 1 : line + length;
    }
    return cf_fail(CLARA_NOT_FOUND,
                   "operator '%s' declares no shared-memory input or output '%s' (it declares: "
                   "%s)", getenv("CLARA_OPERATOR"), name, declared[0] ? declared : "nothing");
}

int clara_operator_context(clara_context **out) {
    cf_clear();
    if (out == NULL) return cf_fail(CLARA_INVALID, "clara_operator_context: out is NULL");
    *out = NULL;
    const char *name = getenv("CLARA_CONTEXT");
    if (name == NULL || name[0] == '\0') return outside("CLARA_CONTEXT");
    return clara_context_open(name, out);
}

int clara_operator_get(clara_context *ctx, const char *name, clara_allocation **out) {
    clara_port port;
    if (out != NULL) *out = NULL;
    int status = clara_operator_port(name, &port);
    if (status) return status;
    if (ctx == NULL || out == NULL)
        return cf_fail(CLARA_INVALID, "clara_operator_get: %s is NULL", ctx ? "out" : "ctx");
    /* `clara run` may have started this operator before its producers finished. */
    if ((status = cf_wait_for_producer(ctx, &port))) return status;
    /* Inputs are never writable (Clara's rule): the kernel enforces it. */
    status = clara_get(ctx, port.allocation, port.is_input ? CLARA_READ_ONLY : 0, out);
    if (status == CLARA_NOT_FOUND)
        cf_fail(status, "%s '%s' of operator '%s' is not allocated yet%s", port.is_input ?
                "input" : "output", port.name, getenv("CLARA_OPERATOR"), port.is_input ? "" :
                "; allocate it with clara_operator_allocate");
    return status;
}

int clara_operator_allocate(clara_context *ctx, const char *name, int ndims, const int64_t *dims,
                            clara_allocation **out) {
    clara_port port;
    if (out != NULL) *out = NULL;
    int status = clara_operator_port(name, &port);
    if (status) return status;
    if (ctx == NULL || out == NULL || dims == NULL)
        return cf_fail(CLARA_INVALID, "clara_operator_allocate: %s is NULL",
                       ctx ? out ? "dims" : "out" : "ctx");
    const char *operator = getenv("CLARA_OPERATOR");
    if (port.is_input)
        return cf_fail(CLARA_PERMISSION, "cannot allocate input '%s' of operator '%s': inputs "
                                         "are read-only", port.name, operator);
    bool dynamic = false;
    for (int i = 0; i < port.ndims; i++) dynamic |= port.dims[i] <= 0;
    if (!dynamic)
        return cf_fail(CLARA_INVALID, "output '%s' of operator '%s' is static: `clara run` "
                                      "pre-allocated it; use clara_operator_get", port.name,
                       operator);
    if (ndims != port.ndims)
        return cf_fail(CLARA_INVALID, "output '%s' of operator '%s' has %d dimensions, not %d",
                       port.name, operator, port.ndims, ndims);
    for (int i = 0; i < ndims; i++)
        if (port.dims[i] > 0 && dims[i] != port.dims[i])
            return cf_fail(CLARA_INVALID,
                           "dimension %d of output '%s' of operator '%s' is fixed at %lld; got "
                           "%lld", i, port.name, operator, (long long)port.dims[i],
                           (long long)dims[i]);
    clara_allocation *alloc;
    if ((status = clara_create(ctx, port.type, ndims, dims, &alloc))) return status;
    if ((status = clara_publish(alloc, port.allocation))) {
        if (status == CLARA_EXISTS)
            cf_fail(status, "output '%s' of operator '%s' is already allocated", port.name,
                    operator);
        int saved = clara_last_status();
        char message[768];
        snprintf(message, sizeof message, "%s", clara_last_error());
        clara_release(alloc);
        return cf_fail(saved, "%s", message);
    }
    *out = alloc;
    return CLARA_OK;
}
