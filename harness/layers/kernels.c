/* kernels.c -- adds of long runs (hundreds of floats: the wide column matrices of im2col.c) in the
 * widest vectors the CPU has. The build is for the x86-64 baseline (SSE2, kernels.h); these few
 * loops are also compiled for AVX2 and AVX-512 and picked at the first call from what the CPU reports,
 * capped by CONCORD_ISA=sse2|avx2|avx512 (tests run every level the machine has; the bench's
 * Haswell-class run caps at avx2). Every level gives the same bits: one IEEE add per float. Measured on
 * the AVX-512 EPYC (L1-resident runs of 896 floats): 1.0 16-byte vector per cycle of the 2.1 GHz TSC
 * in SSE2, 2.4-2.7 in AVX-512. */
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
