/* synthetic.c -- a seeded dataset that needs no files: synthetic[:N[:CxHxW[:K]]]
 * (defaults N = 2000 samples in the requested split, 1x28x28, K = 10 classes).
 * Class k has a fixed prototype: a Gaussian blob on a circle at angle 2*pi*k/K plus a sinusoidal
 * stripe pattern whose orientation and frequency depend on k, and (for C > 1) a per-class colour
 * balance. A sample is its class prototype shifted by up to +-3 pixels, scaled by a random contrast in
 * [0.5, 1], plus N(0, 0.3^2) noise, clipped to [0,1]. A nearest-class-mean classifier gets about 83% on
 * the default test split (chance 10%), so a small net learns it quickly but not trivially.
 * Determinism: prototypes come from RNG stream (SYNTH_SEED, RNG_DATA, 1000000 + k); sample i of split s
 * from stream (SYNTH_SEED + 1 + s, RNG_DATA, i), so train and test differ, and each sample does not
 * depend on N.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "datasets/formats.h"

#define SYNTH_SEED 0x5EEDC0DEULL

static int parse_shape(const char *s, long *c, long *h, long *w) {
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    char *x1 = strchr(buf, 'x');
    if (!x1) return -1;
    char *x2 = strchr(x1 + 1, 'x');
    if (!x2) return -1;
    *x1 = *x2 = 0;
    if (parse_int(buf, 1, 16, c) || parse_int(x1 + 1, 1, 4096, h) || parse_int(x2 + 1, 1, 4096, w)) return -1;
    return 0;
}

int synthetic_open(const char *spec, int split, Dataset *out) {
    memset(out, 0, sizeof *out);
    long n = 2000, c = 1, h = 28, w = 28, k = 10;
    char buf[128];
    if (strlen(spec) >= sizeof buf) return err_set("synthetic%.40s...: spec too long; use synthetic[:N[:CxHxW[:K]]]", spec);
    snprintf(buf, sizeof buf, "%s", spec);
    char *fields[4] = {0};
    int nf = 0;
    if (buf[0] == ':') {
        char *p = buf + 1;
        while (p && nf < 3) {
            fields[nf++] = p;
            char *q = strchr(p, ':');
            if (q) *q++ = 0;
            p = q;
        }
        if (p) return err_set("synthetic%s: too many fields; use synthetic[:N[:CxHxW[:K]]]", spec);
    }
    if (nf >= 1 && parse_int(fields[0], 1, DATASET_MAX_SAMPLES, &n) != 0)
        return err_set("synthetic%s: N must be a whole number in 1..%lld; use synthetic[:N[:CxHxW[:K]]]", spec,
                       (long long)DATASET_MAX_SAMPLES);
    if (nf >= 2 && parse_shape(fields[1], &c, &h, &w) != 0)
        return err_set("synthetic%s: shape '%s' must be CxHxW with C in 1..16 and H, W in 1..4096, e.g. 3x32x32",
                       spec, fields[1]);
    if (nf >= 3 && parse_int(fields[2], 2, DATASET_MAX_CLASSES, &k) != 0)
        return err_set("synthetic%s: K (classes) must be in 2..%d", spec, DATASET_MAX_CLASSES);
    int64_t vals;
    if (mul_capped(n, c * h * w, DATASET_MAX_VALUES, &vals) != 0)
        return err_set("synthetic%s: %ld samples of %ldx%ldx%ld is more than %lld values; ask for fewer", spec, n,
                       c, h, w, (long long)DATASET_MAX_VALUES);
    dataset_alloc(out, (int)n, (int)c, (int)h, (int)w, (int)k);
    size_t hw = (size_t)h * w, dim = (size_t)c * hw;
    /* prototypes (k, c, h, w) */
    float *proto = xmalloc((size_t)k * dim * sizeof(float));
    for (long cl = 0; cl < k; cl++) {
        Rng r;
        rng_seed(&r, SYNTH_SEED, RNG_DATA, 1000000 + (uint64_t)cl);
        double ang = 6.283185307179586 * (double)cl / (double)k;
        double cy = 0.5 * (h - 1) + 0.28 * h * sin(ang), cx = 0.5 * (w - 1) + 0.28 * w * cos(ang);
        double sig = 0.13 * (h < w ? h : w) + 0.5;
        double th = 3.141592653589793 * (double)cl / (double)k, freq = 6.283185307179586 * (1.5 + cl % 3) / w;
        double phase = 6.283185307179586 * rng_uniform_d(&r);
        for (long ch = 0; ch < c; ch++) {
            double tint = c == 1 ? 1.0 : 0.35 + 0.65 * rng_uniform_d(&r);
            float *p = proto + (size_t)cl * dim + (size_t)ch * hw;
            for (long y = 0; y < h; y++)
                for (long x = 0; x < w; x++) {
                    double dy = y - cy, dx = x - cx;
                    double blob = exp(-(dx * dx + dy * dy) / (2 * sig * sig));
                    double stripe = 0.5 + 0.5 * sin(freq * (x * cos(th) + y * sin(th)) + phase);
                    p[y * w + x] = (float)(tint * (0.65 * blob + 0.35 * stripe));
                }
        }
    }
    for (long i = 0; i < n; i++) {
        Rng r;
        rng_seed(&r, SYNTH_SEED + 1 + (uint64_t)split, RNG_DATA, (uint64_t)i);
        int cl = (int)rng_below(&r, (uint32_t)k);
        int sy = (int)rng_below(&r, 7) - 3, sx = (int)rng_below(&r, 7) - 3;
        float contrast = 0.5f + 0.5f * rng_uniform(&r);
        const float *p = proto + (size_t)cl * dim;
        float *dst = out->x + (size_t)i * dim;
        for (long ch = 0; ch < c; ch++)
            for (long y = 0; y < h; y++)
                for (long x = 0; x < w; x++) {
                    long yy = y - sy, xx = x - sx;
                    float v = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? p[(size_t)ch * hw + yy * w + xx] : 0.0f;
                    v = contrast * v + 0.3f * rng_normal(&r);
                    dst[(size_t)ch * hw + y * w + x] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                }
        out->y[i] = cl;
    }
    free(proto);
    for (long cl = 0; cl < k; cl++) snprintf(out->class_names[cl], 32, "class%ld", cl);
    snprintf(out->source, sizeof out->source, "built-in generator (seed 0x%llx, %s split)",
             (unsigned long long)SYNTH_SEED, split == SPLIT_TRAIN ? "train" : "test");
    return 0;
}
