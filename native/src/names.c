/* Clara's name rule, and how user names become file names (docs/segment-format.md 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

static bool valid(const char *name, size_t max) {
    if (name == NULL) return false;
    size_t n = 0;
    for (; name[n] != '\0'; n++)
        if (n >= max || !name_char(name[n])) return false;
    return n >= 1;
}

bool cf_valid_name(const char *name) { return valid(name, CLARA_NAME_MAX); }

int cf_check_name(const char *name, const char *what) {
    if (name == NULL) return cf_fail(CLARA_INVALID, "%s is NULL", what);
    if (cf_valid_name(name)) return CLARA_OK;
    char shown[64];
    size_t n = strnlen(name, 300);
    snprintf(shown, sizeof shown, "%.56s%s", name, n > 56 ? "..." : "");
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) *c = '?';
    return cf_fail(CLARA_INVALID,
                   "invalid %s '%s': use 1-%d characters of A-Z, a-z, 0-9, '_' and '-'", what,
                   shown, CLARA_NAME_MAX);
}

bool cf_same_name(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

void cf_token(const char *name, int limit, char *out) {
    size_t n = strlen(name);
    char lower[CLARA_NAME_MAX + 1];
    for (size_t i = 0; i <= n && i <= CLARA_NAME_MAX; i++) {
        char c = name[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    if (n <= (size_t)limit) {
        memcpy(out, lower, n + 1);
        return;
    }
    char digest[65];
    cf_sha256_hex((const unsigned char *)lower, n, digest);
    memcpy(out, lower, (size_t)limit - 17);
    out[limit - 17] = '~';
    memcpy(out + limit - 16, digest, 16);
    out[limit] = '\0';
}

int cf_namespace(char *out, size_t size) {
    const char *value = getenv("CLARA_NAMESPACE");
    if (value == NULL || value[0] == '\0') value = "clara";
    if (!valid(value, 64) || strlen(value) >= size)
        return cf_fail(CLARA_INVALID,
                       "invalid CLARA_NAMESPACE '%.64s': use 1-64 characters of A-Z, a-z, 0-9, "
                       "'_' and '-'",
                       value);
    strcpy(out, value);
    return CLARA_OK;
}

const char *cf_shm_dir(void) {
    const char *value = getenv("CLARA_SHM_DIR");
    return value != NULL && value[0] != '\0' ? value : "/dev/shm";
}

void cf_member_file(const clara_context *ctx, char kind, const char *name, char *out,
                    size_t size) {
    char token[CF_MEMBER_TOKEN + 1];
    cf_token(name, CF_MEMBER_TOKEN, token);
    snprintf(out, size, "%s.%c.%s", ctx->file, kind, token);
}
