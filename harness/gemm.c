/* gemm.c -- OpenBLAS behind one function; a naive reference for tests. See gemm.h. */
#include "harness/gemm.h"

#include <cblas.h>

#include "harness/core.h"

unsigned long long gemm_flops; /* atomic adds: the batch-splitting threads of model.c call gemm() concurrently */

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc) {
    CHECK(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return;
    __atomic_fetch_add(&gemm_flops, 2ULL * (unsigned long long)M * N * K, __ATOMIC_RELAXED);
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

int blas_threads(void) { return openblas_get_num_threads(); }
const char *blas_core(void) { return openblas_get_corename(); }
void blas_set_threads(int t) { openblas_set_num_threads(t); }
