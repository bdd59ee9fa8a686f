/* A C operator for `clara run`: thresholds the float32 input `volume` into the dynamic
 * uint8 output `mask` (sized like the volume) and counts the voxels above the level in
 * the static output `voxels` (uint64). The level comes from $LEVEL (default 0.5).
 *
 *   make -C native examples && clara run examples/ct-native.yaml   (with the C++ one) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "clara_fastio.h"

static int fail(int code) {
    fprintf(stderr, "threshold: error: %s\n", clara_last_error());
    return code;
}

int main(void) {
    const char *text = getenv("LEVEL");
    float level = text ? strtof(text, NULL) : 0.5f;
    clara_context *ctx;
    clara_allocation *volume, *mask, *voxels;
    const float *in;
    uint8_t *out;
    uint64_t *count;
    int64_t dims[CLARA_MAX_DIMS];
    int code;
    if ((code = clara_operator_context(&ctx))) return fail(code);
    if ((code = clara_operator_get(ctx, "volume", &volume)) ||
        (code = clara_map(volume, CLARA_READ, 0, (void **)&in)))
        return fail(code);
    int ndims = clara_dims(volume, dims);
    if ((code = clara_operator_allocate(ctx, "mask", ndims, dims, &mask)) ||
        (code = clara_map(mask, CLARA_WRITE, 0, (void **)&out)))
        return fail(code);
    uint64_t above = 0, n = clara_nbytes(volume) / sizeof(float);
    for (uint64_t i = 0; i < n; i++) above += out[i] = in[i] > level;
    clara_unmap(mask, true); /* marks the mask complete */
    if ((code = clara_operator_get(ctx, "voxels", &voxels)) ||
        (code = clara_map(voxels, CLARA_WRITE, 0, (void **)&count)))
        return fail(code);
    *count = above;
    clara_release(voxels); /* unmaps (complete) and drops the reference */
    clara_release(mask);
    clara_release(volume);
    clara_context_close(ctx);
    printf("threshold (C): %llu of %llu voxels above %g\n", (unsigned long long)above,
           (unsigned long long)n, level);
    return 0;
}
