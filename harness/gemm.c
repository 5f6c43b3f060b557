/* gemm.c -- libxsmm and OpenBLAS behind one function; a naive reference for tests. See gemm.h. */
#include "harness/gemm.h"

#include <cblas.h>
#include <libxsmm.h>
#include <pthread.h>

#include "harness/core.h"

/* libxsmm: JIT kernels for small products (no packing), measured on this AVX-512 EPYC at 110-210 GFLOP/s
 * for LeNet-5's per-sample convolution products and the MLP's layers where OpenBLAS's Haswell kernels
 * (the core it picks here) ran at 20-100 (docs/performance.md). Its column-major kernels see the
 * row-major C = op(A) B as C^T = B^T op(A)^T; they exist for op(A) = A or A^T with B as stored (not B^T,
 * which goes to OpenBLAS), alpha 1, beta 0 or 1. Above XSMM_MAX multiply-adds (no cache blocking) and
 * for everything else: OpenBLAS. */
#define XSMM_MAX (1L << 25)
static pthread_once_t xsmm_once = PTHREAD_ONCE_INIT;
static int xsmm_avx; /* its kernels use AVX registers */
static void xsmm_init(void) {
    libxsmm_init();
    xsmm_avx = libxsmm_get_target_archid() >= LIBXSMM_X86_AVX;
}

static int gemm_xsmm(int ta, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc) {
    if ((long)M * N * K > XSMM_MAX || K == 0 || (beta != 0.0f && beta != 1.0f)) return 0;
    pthread_once(&xsmm_once, xsmm_init);
    const int flags = ta ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
    const float one = 1.0f;
    const libxsmm_blasint m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
    libxsmm_smmfunction f = libxsmm_smmdispatch(m, n, k, &la, &lb, &lc, &one, &beta, &flags, NULL);
    if (!f) return 0;
    f(B, A, C);
    /* the kernels return with the upper halves of the vector registers dirty: the SSE code after them
       (this build is SSE2) then pays a false dependency per instruction (perf, lenet5 PGD: col2im 2.4x
       slower after a libxsmm call than after OpenBLAS's); vzeroupper clears that state */
    if (xsmm_avx) __asm__ volatile("vzeroupper" ::: "memory");
    return 1;
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc) {
    CHECK(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return;
    if (!tb && alpha == 1.0f && gemm_xsmm(ta, M, N, K, A, lda, B, ldb, beta, C, ldc)) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

void gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                double b = tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                s += a * b;
            }
            double c = beta == 0 ? 0 : (double)beta * C[(long)i * ldc + j];
            C[(long)i * ldc + j] = (float)(alpha * s + c);
        }
}

/* OpenBLAS alone (the sgemm peak concord bench reports) */
void gemm_blas(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

int blas_threads(void) { return openblas_get_num_threads(); }
const char *blas_core(void) { return openblas_get_corename(); }
void blas_set_threads(int t) { openblas_set_num_threads(t); }
