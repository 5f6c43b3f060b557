/* gemm.h -- the one seam every matrix product goes through (libxsmm's JIT kernels for the small
 * products they cover, OpenBLAS cblas_sgemm for the rest; convolutions of blocked models do not come
 * here: layers/conv_dnnl.c), plus the naive double-accumulation reference the tests compare it with.
 * Row-major: C = alpha*op(A)*op(B) + beta*C, op(A) is (M, K), op(B) is (K, N), C is (M, N). ta/tb: 0 = as
 * stored, 1 = transposed.
 */
#ifndef CONCORD_GEMM_H
#define CONCORD_GEMM_H
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc);
/* OpenBLAS alone, whatever the shape (the sgemm peak of concord bench) */
void gemm_blas(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);
void gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);
int blas_threads(void);
void blas_set_threads(int t);
const char *blas_core(void);
#endif
