/* kernels.h -- element-wise kernels the layer kinds share.
 * The build is plain -O2, where GCC 12 vectorises (almost) nothing, so the loops that dominate the
 * element-wise time (measured with perf: ReLU, im2col/col2im rows, bias adds) use GCC vector
 * extensions, 4 floats at a time (SSE2, the x86-64 baseline), with exactly the scalar semantics:
 * no reassociation, NaN handled as in the scalar code. */
#ifndef CONCORD_KERNELS_H
#define CONCORD_KERNELS_H

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias)); /* unaligned access */
static inline v4f v4_ld(const float *p) { return *(const v4u *)p; }
static inline void v4_st(float *p, v4f v) { *(v4u *)p = v; }

/* Copies of 10-32 floats (im2col rows): GCC would turn this loop into a memcpy call, whose call and
 * dispatch cost more than the copy (perf: 14% of lenet5 training in __memmove); the empty asm keeps
 * the loop a loop. */
static inline void row_copy(float *restrict d, const float *restrict s, long n) {
    if (n < 4) {
        for (long j = 0; j < n; j++) d[j] = s[j];
        return;
    }
    /* two vectors per iteration, then the last vector overlapping the previous ones (no scalar tail):
       callgrind, lenet5 training: the one-vector loop spent 3 branch/compare instructions per vector */
    long j = 0;
    for (; j + 8 < n; j += 8) {
        v4f a = v4_ld(s + j), b = v4_ld(s + j + 4);
        __asm__("" : "+x"(a));
        v4_st(d + j, a);
        v4_st(d + j + 4, b);
    }
    if (j + 4 < n) {
        v4f a = v4_ld(s + j);
        __asm__("" : "+x"(a));
        v4_st(d + j, a);
    }
    v4_st(d + n - 4, v4_ld(s + n - 4));
}
static inline void row_add(float *restrict d, const float *restrict s, long n) { /* d += s */
    long j = 0;
    for (; j + 4 <= n; j += 4) v4_st(d + j, v4_ld(d + j) + v4_ld(s + j));
    for (; j < n; j++) d[j] += s[j];
}
static inline void row_add_scalar(float *restrict d, const float *restrict s, float a, long n) { /* d = s + a */
    long j = 0;
    v4f av = {a, a, a, a};
    for (; j + 4 <= n; j += 4) v4_st(d + j, v4_ld(s + j) + av);
    for (; j < n; j++) d[j] = s[j] + a;
}
/* sum in double with four independent accumulators (the adds no longer wait on each other) */
static inline double sum_f64(const float *x, long n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    long j = 0;
    for (; j + 4 <= n; j += 4) { a0 += x[j]; a1 += x[j + 1]; a2 += x[j + 2]; a3 += x[j + 3]; }
    for (; j < n; j++) a0 += x[j];
    return (a0 + a1) + (a2 + a3);
}

/* kernels.c: d += s over runs of hundreds of floats, in the widest vectors the CPU has (the same bits at
 * every level); the level in use (0 sse2, 1 avx2, 2 avx512: the CPU's, capped by
 * CONCORD_ISA), the CPU's own, setting it (tests; -1: from the CPU and CONCORD_ISA again), its name */
void run_add(float *restrict d, const float *restrict s, long n);
/* gT (NP, C) = g (C, NP) transposed; d (CP, H, GW) = g (C, H, W) with each row followed by GW - W zeros
 * and channels C..CP-1 all zeros */
void transpose_rows(const float *g, int C, long NP, float *gT);
void widen_rows(const float *g, int C, int CP, int H, int W, int GW, float *d);
/* out[r] = sum_f64(x + r*ld, n) for r < rows, bit for bit, several rows at once */
void sums_f64(const float *x, int rows, long n, long ld, double *out);
int kernels_level(void);
int kernels_level_max(void);
void kernels_level_set(int level);
const char *kernels_level_name(int level);

#endif
