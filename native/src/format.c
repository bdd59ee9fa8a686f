/* The segment header: parse with full validation, pack (docs/segment-format.md 2). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const struct {
    const char *name, *short_name;
    size_t size;
} TYPES[] = {
    {NULL, NULL, 0},         {"uint8", "u8", 1},      {"uint16", "u16", 2},
    {"uint32", "u32", 4},    {"uint64", "u64", 8},    {"int8", "i8", 1},
    {"int16", "i16", 2},     {"int32", "i32", 4},     {"int64", "i64", 8},
    {"float16", "f16", 2},   {"float32", "f32", 4},   {"float64", "f64", 8},
    {"bool", "bool", 1},     {"complex64", "c64", 8}, {"complex128", "c128", 16},
};
#define TYPE_COUNT 15

size_t clara_element_size(clara_element_type type) {
    return (int)type > 0 && (int)type < TYPE_COUNT ? TYPES[type].size : 0;
}

const char *clara_element_name(clara_element_type type) {
    return (int)type > 0 && (int)type < TYPE_COUNT ? TYPES[type].name : NULL;
}

int clara_element_type_parse(const char *text, clara_element_type *out) {
    cf_clear();
    if (text == NULL || out == NULL)
        return cf_fail(CLARA_INVALID, "clara_element_type_parse: NULL argument");
    for (int code = 1; code < TYPE_COUNT; code++) {
        if (strcasecmp(text, TYPES[code].name) == 0 ||
            strcasecmp(text, TYPES[code].short_name) == 0) {
            *out = (clara_element_type)code;
            return CLARA_OK;
        }
    }
    return cf_fail(CLARA_INVALID,
                   "unknown element type '%.40s': use one of uint8, uint16, uint32, uint64, "
                   "int8, int16, int32, int64, float16, float32, float64, bool, complex64, "
                   "complex128 (or u8..u64, i8..i64, f16, f32, f64, c64, c128)",
                   text);
}

uint64_t cf_load(const unsigned char *at, int size) {
    uint64_t value = 0;
    for (int i = size - 1; i >= 0; i--) value = value << 8 | at[i];
    return value;
}

void cf_store(unsigned char *at, uint64_t value, int size) {
    for (int i = 0; i < size; i++, value >>= 8) at[i] = (unsigned char)value;
}

static int corrupt(const char *what, const char *why) {
    return cf_fail(CLARA_CORRUPT, "%s is corrupt (%s); remove it with `clara leak-check --fix`",
                   what, why);
}

int cf_layout_of(clara_element_type type, int ndims, const int64_t *dims, const char *what,
                 cf_layout *out) {
    size_t size = clara_element_size(type);
    if (size == 0)
        return cf_fail(CLARA_INVALID, "%s: unknown element type code %d (use CLARA_UINT8 .. "
                                      "CLARA_COMPLEX128)", what, (int)type);
    if (ndims < 1 || ndims > CLARA_MAX_DIMS)
        return cf_fail(CLARA_INVALID, "%s: use 1 to %d dimensions, not %d", what,
                       CLARA_MAX_DIMS, ndims);
    if (dims == NULL) return cf_fail(CLARA_INVALID, "%s: dims is NULL", what);
    uint64_t total = size;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < ndims; i++) {
        if (dims[i] < 1)
            return cf_fail(CLARA_INVALID,
                           "%s: dimension %d is %lld: every dimension must be >= 1", what, i,
                           (long long)dims[i]);
        if ((uint64_t)dims[i] > CF_MAX_NBYTES / total)
            return cf_fail(CLARA_INVALID,
                           "%s: dimensions of %s need more than 2^62 bytes, more than any "
                           "machine has", what, TYPES[type].name);
        total *= (uint64_t)dims[i];
        out->dims[i] = dims[i];
    }
    out->type = type;
    out->ndim = ndims;
    out->nbytes = total;
    out->capacity = (total + CF_PAGE - 1) / CF_PAGE * CF_PAGE;
    return CLARA_OK;
}

int cf_parse_layout(const unsigned char *raw, uint64_t file_size, const char *what,
                    cf_layout *out) {
    char why[160];
    int code = raw[AT_layout_type], ndim = raw[AT_layout_ndim];
    size_t size = clara_element_size((clara_element_type)code);
    if (size == 0) {
        snprintf(why, sizeof why, "unknown element type code %d", code);
        return corrupt(what, why);
    }
    if (ndim < 1 || ndim > CLARA_MAX_DIMS) {
        snprintf(why, sizeof why, "%d dimensions", ndim);
        return corrupt(what, why);
    }
    uint64_t count = size;
    for (int i = 0; i < CLARA_MAX_DIMS; i++) {
        int64_t d = (int64_t)cf_load(raw + AT_layout_shape + 8 * i, 8);
        out->dims[i] = d;
        if (i < ndim ? d < 1 : d != 0) return corrupt(what, "shape");
        if (i < ndim) {
            if ((uint64_t)d > CF_MAX_NBYTES / count) return corrupt(what, "shape too large");
            count *= (uint64_t)d;
        }
    }
    uint64_t nbytes = cf_load(raw + AT_layout_nbytes, 8);
    uint64_t capacity = cf_load(raw + AT_layout_capacity, 8);
    uint64_t offset = cf_load(raw + AT_layout_offset, 8);
    if (count != nbytes) {
        snprintf(why, sizeof why, "shape of %s does not make %llu bytes", TYPES[code].name,
                 (unsigned long long)nbytes);
        return corrupt(what, why);
    }
    if (offset != CF_DATA_OFFSET || file_size < CF_DATA_OFFSET || nbytes > capacity ||
        capacity > file_size - CF_DATA_OFFSET) {
        snprintf(why, sizeof why, "%llu bytes of data do not fit in a file of %llu bytes",
                 (unsigned long long)nbytes, (unsigned long long)file_size);
        return corrupt(what, why);
    }
    out->type = (clara_element_type)code;
    out->ndim = ndim;
    out->nbytes = nbytes;
    out->capacity = capacity;
    return CLARA_OK;
}

static int name_of(const unsigned char *block, char *out, const char *what, const char *label) {
    int length = block[0];
    memcpy(out, block + 1, (size_t)length);
    out[length] = '\0';
    if (length > 0 && !cf_valid_name(out)) {
        char why[64];
        snprintf(why, sizeof why, "unreadable %s", label);
        return corrupt(what, why);
    }
    return CLARA_OK;
}

int cf_parse(const unsigned char *raw, uint64_t file_size, const char *what, cf_header *out) {
    char why[96];
    memset(out, 0, sizeof *out);
    if (file_size < CF_HEADER_SIZE) {
        snprintf(why, sizeof why, "only %llu bytes, too short for a header",
                 (unsigned long long)file_size);
        return corrupt(what, why);
    }
    if (memcmp(raw, CF_MAGIC, 8) != 0) return corrupt(what, "no clara header");
    unsigned version = (unsigned)cf_load(raw + AT_identity_version, 2);
    if (version != CF_VERSION) {
        snprintf(why, sizeof why, "format version %u, this clara reads %d", version, CF_VERSION);
        return corrupt(what, why);
    }
    out->kind = raw[AT_identity_kind];
    out->lifecycle = raw[AT_lifecycle];
    out->state = raw[AT_data_state];
    if (out->kind != CF_KIND_CONTEXT && out->kind != CF_KIND_ALLOCATION)
        return corrupt(what, "unknown kind");
    if (out->lifecycle > CF_POOLED) return corrupt(what, "unknown lifecycle");
    if (out->state > CF_COMPLETE) return corrupt(what, "unknown data state");
    out->writer_pid = (int32_t)cf_load(raw + AT_data_writer_pid, 4);
    out->writer_start = cf_load(raw + AT_data_writer_start, 8);
    out->generation = cf_load(raw + AT_data_generation, 8);
    if (out->kind == CF_KIND_ALLOCATION) {
        int status = cf_parse_layout(raw, file_size, what, &out->layout);
        if (status) return status;
    }
    out->owner_pid = (int32_t)cf_load(raw + AT_origin_owner_pid, 4);
    out->owner_start = cf_load(raw + AT_origin_owner_start, 8);
    out->created_ns = cf_load(raw + AT_origin_created, 8);
    out->context_created_ns = cf_load(raw + AT_origin_context_created, 8);
    out->mode = (uint32_t)cf_load(raw + AT_settings_mode, 4);
    out->capacity = cf_load(raw + AT_settings_capacity, 8);
    out->pool_cap = cf_load(raw + AT_settings_pool_cap, 8);
    if (out->mode > 0777) return corrupt(what, "mode is not a permission mode");
    if (name_of(raw + AT_context_length, out->context, what, "context name") ||
        name_of(raw + AT_name_length, out->name, what, "name"))
        return CLARA_CORRUPT;
    if (out->context[0] == '\0' || (out->kind == CF_KIND_CONTEXT && out->name[0] == '\0'))
        return corrupt(what, "a name is missing");
    return CLARA_OK;
}

void cf_pack_new(unsigned char *raw, int kind, int lifecycle) {
    int32_t pid;
    uint64_t start;
    cf_identity(&pid, &start);
    memcpy(raw, CF_MAGIC, 8);
    cf_store(raw + AT_identity_version, CF_VERSION, 2);
    raw[AT_identity_kind] = (unsigned char)kind;
    raw[AT_lifecycle] = (unsigned char)lifecycle;
    cf_store(raw + AT_origin_created, cf_now_ns(), 8);
    cf_store(raw + AT_origin_creator_pid, (uint32_t)pid, 4);
    cf_store(raw + AT_origin_creator_start, start, 8);
}

void cf_pack_layout(unsigned char *raw, const cf_layout *layout) {
    memset(raw + AT_layout_type, 0, LAYOUT_BLOCK_SIZE);
    raw[AT_layout_type] = (unsigned char)layout->type;
    raw[AT_layout_ndim] = (unsigned char)layout->ndim;
    for (int i = 0; i < layout->ndim; i++)
        cf_store(raw + AT_layout_shape + 8 * i, (uint64_t)layout->dims[i], 8);
    cf_store(raw + AT_layout_nbytes, layout->nbytes, 8);
    cf_store(raw + AT_layout_capacity, layout->capacity, 8);
    cf_store(raw + AT_layout_offset, CF_DATA_OFFSET, 8);
}

void cf_pack_name(unsigned char *block, const char *name) {
    size_t n = strlen(name);
    memset(block, 0, 256);
    block[0] = (unsigned char)n;
    memcpy(block + 1, name, n);
}
