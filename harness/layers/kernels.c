/* kernels.c -- adds of long runs (hundreds of floats: the wide column matrices of im2col.c) in the
 * widest vectors the CPU has. The build is for the x86-64 baseline (SSE2, kernels.h); these few
 * loops are also compiled for AVX2 and AVX-512 and picked at the first call from what the CPU reports,
 * capped by CONCORD_ISA=sse2|avx2|avx512 (tests run every level the machine has; the bench's
 * Haswell-class run caps at avx2). Every level gives the same bits: one IEEE add per float. Measured on
 * the AVX-512 EPYC (L1-resident runs of 896 floats): 1.0 16-byte vector per cycle of the 2.1 GHz TSC
 * in SSE2, 2.4-2.7 in AVX-512. */
#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "harness/core.h"
#include "harness/model.h"
#include "harness/layers/kernels.h"

typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef void (*RunFn)(float *restrict d, const float *restrict s, long n);

static void add_sse2(float *restrict d, const float *restrict s, long n) { row_add(d, s, n); }

__attribute__((target("avx2,fma"))) static void add_avx2(float *restrict d, const float *restrict s, long n) {
    long j = 0;
    for (; j + 8 <= n; j += 8) *(v8u *)(d + j) = *(v8u *)(d + j) + *(const v8u *)(s + j);
    for (; j < n; j++) d[j] += s[j];
}
__attribute__((target("avx512f"))) static void add_avx512(float *restrict d, const float *restrict s, long n) {
    long j = 0;
    for (; j + 16 <= n; j += 16) *(v16u *)(d + j) = *(v16u *)(d + j) + *(const v16u *)(s + j);
    for (; j < n; j++) d[j] += s[j];
}

/* sums_f64: sum_f64 of each of `rows` rows, four rows at a time. sum_f64's four accumulators are the four
 * lanes of one double vector (lane i adds x[j + i], the tail goes to lane 0, then (a0 + a1) + (a2 + a3)),
 * so the bits are sum_f64's; its chain of dependent adds is the cost (perf, lenet5 training: the
 * convolutions' bias gradients, 6,300 floats a sample, waited on it), and four rows give the CPU four
 * independent chains. Compiled for the baseline and AVX2 (one vector convert and add per 4 floats). */
typedef double v4d __attribute__((vector_size(32)));
#define SUMS_BODY                                                                                      \
    int r = 0;                                                                                         \
    for (; r + 4 <= rows; r += 4) {                                                                    \
        const float *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;                     \
        v4d a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;                                              \
        long j = 0;                                                                                    \
        for (; j + 4 <= n; j += 4) {                                                                   \
            a0 += __builtin_convertvector(v4_ld(x0 + j), v4d);                                         \
            a1 += __builtin_convertvector(v4_ld(x1 + j), v4d);                                         \
            a2 += __builtin_convertvector(v4_ld(x2 + j), v4d);                                         \
            a3 += __builtin_convertvector(v4_ld(x3 + j), v4d);                                         \
        }                                                                                              \
        for (; j < n; j++) { a0[0] += x0[j]; a1[0] += x1[j]; a2[0] += x2[j]; a3[0] += x3[j]; }         \
        out[r] = (a0[0] + a0[1]) + (a0[2] + a0[3]);                                                    \
        out[r + 1] = (a1[0] + a1[1]) + (a1[2] + a1[3]);                                                \
        out[r + 2] = (a2[0] + a2[1]) + (a2[2] + a2[3]);                                                \
        out[r + 3] = (a3[0] + a3[1]) + (a3[2] + a3[3]);                                                \
    }                                                                                                  \
    for (; r < rows; r++) out[r] = sum_f64(x + r * ld, n);
static void sums_base(const float *x, int rows, long n, long ld, double *out) { SUMS_BODY }
__attribute__((target("avx2"))) static void sums_avx2(const float *x, int rows, long n, long ld, double *out) {
    SUMS_BODY
}
#undef SUMS_BODY

/* dy (C, NP) -> dy^T (NP, C) (the weight products' operand), and dy's rows widened (zeros after W). In
 * AVX-512: for C a multiple of 16, a pixel's 16 channels are one gather (the scalar loop stores one
 * float at a time, each a cache line from the last); a widened row of up to 16 floats is one masked load and one
 * masked store (two of each for up to 32). Copies: the same bits at every level. */
__attribute__((target("avx512f"))) static void transpose512(const float *g, int C, long NP, float *gT) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)NP));
    for (int c0 = 0; c0 < C; c0 += 16)
        for (long p = 0; p < NP; p++)
            _mm512_storeu_ps(gT + p * C + c0, _mm512_i32gather_ps(idx, g + (long)c0 * NP + p, 4));
}
void transpose_rows(const float *g, int C, long NP, float *gT) {
    if (kernels_level() >= 2 && C % 16 == 0 && (long)16 * NP < (1L << 31)) { transpose512(g, C, NP, gT); return; }
    for (int c = 0; c < C; c++)
        for (long p = 0; p < NP; p++) gT[p * C + c] = g[(long)c * NP + p];
}
/* lanes lo..hi-1 of a 16-lane vector (none when hi <= lo) */
static __mmask16 lanes(int lo, int hi) {
    lo = lo < 0 ? 0 : lo > 16 ? 16 : lo;
    hi = hi < lo ? lo : hi > 16 ? 16 : hi;
    return (__mmask16)((0xFFFFu >> (16 - (hi - lo))) << lo & 0xFFFFu);
}
__attribute__((target("avx512f"))) static void widen512(const float *g, int C, int CP, int H, int W, int GW, float *d) {
    const __mmask16 i0 = lanes(0, W), i1 = lanes(0, W - 16), o0 = lanes(0, GW), o1 = lanes(0, GW - 16);
    for (int c = 0; c < CP; c++)
        for (int y = 0; y < H; y++) {
            const float *s = g + ((long)c * H + y) * W;
            float *r = d + ((long)c * H + y) * GW;
            const int in = c < C;
            _mm512_mask_storeu_ps(r, o0, in ? _mm512_maskz_loadu_ps(i0, s) : _mm512_setzero_ps());
            if (o1) _mm512_mask_storeu_ps(r + 16, o1, in ? _mm512_maskz_loadu_ps(i1, s + 16) : _mm512_setzero_ps());
        }
}
void widen_rows(const float *g, int C, int CP, int H, int W, int GW, float *d) {
    if (kernels_level() >= 2 && GW <= 32) { widen512(g, C, CP, H, W, GW, d); return; }
    for (int c = 0; c < CP; c++)
        for (int y = 0; y < H; y++) {
            float *r = d + ((long)c * H + y) * GW;
            if (c < C) row_copy(r, g + ((long)c * H + y) * W, W);
            for (int x = c < C ? W : 0; x < GW; x++) r[x] = 0.0f;
        }
}

static const struct { const char *name; RunFn add; } LEVELS[] = {{"sse2", add_sse2}, {"avx2", add_avx2}, {"avx512", add_avx512}};
static _Atomic int g_level = -1;

static int cpu_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
}
int kernels_level(void) {
    int l = atomic_load_explicit(&g_level, memory_order_relaxed);
    if (l >= 0) return l;
    l = cpu_level();
    const char *e = getenv("CONCORD_ISA");
    for (int k = 0; e && k < l; k++)
        if (str_eq(e, LEVELS[k].name)) l = k;
    atomic_store_explicit(&g_level, l, memory_order_relaxed);
    return l;
}
int kernels_level_max(void) { return cpu_level(); }
void kernels_level_set(int l) { atomic_store_explicit(&g_level, l < 0 ? -1 : l > cpu_level() ? cpu_level() : l, memory_order_relaxed); }
const char *kernels_level_name(int l) { return LEVELS[l].name; }
const char *kernels_isa_name(void) { return LEVELS[kernels_level()].name; }

void run_add(float *restrict d, const float *restrict s, long n) { LEVELS[kernels_level()].add(d, s, n); }
void sums_f64(const float *x, int rows, long n, long ld, double *out) {
    if (kernels_level() >= 1) sums_avx2(x, rows, n, ld, out);
    else sums_base(x, rows, n, ld, out);
}
