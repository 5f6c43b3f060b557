/* conv_direct.c -- the direct weight gradient (conv_direct.h). For one input channel c and one column
 * offset kj, a block of RO output channels x all K row offsets ki keeps RO*K vector accumulators in
 * registers over the whole sum: per output row y and vector v, RO loads of dy and K loads of the input
 * row y + ki, RO*K fused multiply-adds; then each accumulator is summed across its lanes. */
#include "harness/layers/conv_direct.h"

#include <immintrin.h>
#include <string.h>

#include "harness/core.h"
#include "harness/layers/kernels.h"

int direct_dw_k(int k) { return k == 3 || k == 5; }
int direct_row(int ow) { return kernels_level() >= 2 ? (ow <= 16 ? 16 : 32) : (ow <= 8 ? 8 : ow <= 16 ? 16 : 32); }
/* rounded up to both block heights (3 channels in AVX-512, 2 in AVX2) */
int direct_c_pad(int oc) { return (oc + 2) / 3 * 3 > (oc + 1) / 2 * 2 ? (oc + 2) / 3 * 3 : (oc + 1) / 2 * 2; }

long direct_border_n(int C, int H, int pad, int PW) { return (long)C * (H + 2 * pad) * PW + DIRECT_SLACK; }
void direct_border(const float *src, int C, int H, int W, int pad, int PW, float *dst) {
    const int PH = H + 2 * pad;
    memset(dst, 0, sizeof(float) * direct_border_n(C, H, pad, PW));
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            row_copy(dst + ((long)c * PH + y + pad) * PW + pad, src + ((long)c * H + y) * W, W);
}

#define UNROLL _Pragma("GCC unroll 16")
/* NAME for one ISA (VEC, VW lanes, LD / FMA / ZERO / HSUM), RO channels, K = RK, NV vectors per row */
#define DW_KERNEL(NAME, TARGET, VEC, VW, LD, FMA, ZERO, HSUM, RO, RK, NV)                                       \
    TARGET static void NAME(const float *in, int IC, int H, int PW, const float *gw, int OC, int OH,             \
                            float *dWt, int acc) {                                                              \
        const long CH = (long)H * PW, GW = NV * VW;                                                             \
        for (int c = 0; c < IC; c++)                                                                            \
            for (int kj = 0; kj < RK; kj++)                                                                     \
                for (int o0 = 0; o0 < OC; o0 += RO) {                                                           \
                    VEC a[RO][RK];                                                                              \
                    UNROLL for (int o = 0; o < RO; o++)                                                         \
                        UNROLL for (int ki = 0; ki < RK; ki++) a[o][ki] = ZERO();                               \
                    const float *xc = in + c * CH + kj, *g0 = gw + (long)o0 * OH * GW;                          \
                    for (int y = 0; y < OH; y++)                                                                \
                        UNROLL for (int v = 0; v < NV; v++) {                                                   \
                            VEC gv[RO];                                                                         \
                            UNROLL for (int o = 0; o < RO; o++) gv[o] = LD(g0 + ((long)o * OH + y) * GW + v * VW); \
                            UNROLL for (int ki = 0; ki < RK; ki++) {                                            \
                                VEC xv = LD(xc + (long)(y + ki) * PW + v * VW);                                 \
                                __asm__("" : "+x"(xv)); /* one load for the RO products */                      \
                                UNROLL for (int o = 0; o < RO; o++) a[o][ki] = FMA(gv[o], xv, a[o][ki]);        \
                            }                                                                                   \
                        }                                                                                       \
                    for (int o = 0; o < RO && o0 + o < OC; o++)                                                 \
                        for (int ki = 0; ki < RK; ki++) {                                                       \
                            float *d = dWt + (((long)c * RK + ki) * RK + kj) * OC + o0 + o;                     \
                            const float sum = HSUM(a[o][ki]);                                                   \
                            *d = acc ? *d + sum : sum;                                                          \
                        }                                                                                       \
                }                                                                                               \
    }

#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
T256 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
T512 static float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* AVX-512: 3 channels x K row offsets (15 of its 32 registers for K = 5); AVX2: 2 x K (10 of 16) */
DW_KERNEL(dw512_k5_1, T512, __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps, hsum512, 3, 5, 1)
DW_KERNEL(dw512_k5_2, T512, __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps, hsum512, 3, 5, 2)
DW_KERNEL(dw512_k3_1, T512, __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps, hsum512, 3, 3, 1)
DW_KERNEL(dw512_k3_2, T512, __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps, hsum512, 3, 3, 2)
DW_KERNEL(dw256_k5_1, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 5, 1)
DW_KERNEL(dw256_k5_2, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 5, 2)
DW_KERNEL(dw256_k5_4, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 5, 4)
DW_KERNEL(dw256_k3_1, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 3, 1)
DW_KERNEL(dw256_k3_2, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 3, 2)
DW_KERNEL(dw256_k3_4, T256, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, hsum256, 2, 3, 4)

typedef void (*DwFn)(const float *, int, int, int, const float *, int, int, float *, int);

void direct_dw(const float *in, int IC, int H, int PW, const float *gw, int OC, int K, int OH, int OW, float *dWt,
               int acc) {
    const int lv = kernels_level(), nv = direct_row(OW) / (lv >= 2 ? 16 : 8);
    CHECK(lv >= 1 && direct_dw_k(K) && OW >= 1 && OW <= DIRECT_MAX_W && H >= OH + K - 1 && PW >= OW + K - 1);
    DwFn f;
    if (lv >= 2) f = K == 5 ? (nv == 1 ? dw512_k5_1 : dw512_k5_2) : (nv == 1 ? dw512_k3_1 : dw512_k3_2);
    else if (K == 5) f = nv == 1 ? dw256_k5_1 : nv == 2 ? dw256_k5_2 : dw256_k5_4;
    else f = nv == 1 ? dw256_k3_1 : nv == 2 ? dw256_k3_2 : dw256_k3_4;
    f(in, IC, H, PW, gw, OC, OH, dWt, acc);
}

/* ---- the weight gradient over 16 output channels at once (conv_direct.h: direct_dw16), AVX-512 ----
 * For one input channel c the K*K rows (ki, kj) of dWt, 16 channels each, stay in K*K registers (25 of
 * 32 for K = 5) over all P output pixels: per pixel one load of dy^T's 16 channels and K*K fused
 * multiply-adds, each with the input value it meets broadcast from the L1-resident sample. Per element
 * the chain is the product col x dy^T's, pixel by pixel from 0 (or the stored value), so the same bits
 * as libxsmm's kernel for that product, without building col. */
#define DW16_KERNEL(NAME, RK)                                                                                    \
    T512 static void NAME(const float *in, int IC, int H, int PW, const float *gT, int OC, int OH, int OW,       \
                          float *dWt, int acc) {                                                                \
        for (int o0 = 0; o0 < OC; o0 += 16)                                                                     \
            for (int c = 0; c < IC; c++) {                                                                      \
                __m512 a[RK * RK];                                                                              \
                float *d = dWt + (long)c * RK * RK * OC + o0;                                                   \
                UNROLL for (int r = 0; r < RK * RK; r++)                                                        \
                    a[r] = acc ? _mm512_loadu_ps(d + (long)r * OC) : _mm512_setzero_ps();                      \
                for (int y = 0; y < OH; y++) {                                                                  \
                    const float *q[RK], *g = gT + (long)y * OW * OC + o0; /* q: the K input rows pixel y meets */ \
                    UNROLL for (int ki = 0; ki < RK; ki++) q[ki] = in + ((long)c * H + y + ki) * PW;          \
                    for (int x = 0; x < OW; x++, g += OC) {                                                     \
                        const __m512 gv = _mm512_loadu_ps(g);                                                   \
                        UNROLL for (int ki = 0; ki < RK; ki++) {                                                \
                            /* each input value broadcast from memory in its FMA (GCC otherwise carries them \
                               across pixels in spilled registers), at an offset from its row's pointer */     \
                            __asm__("" : "+r"(q[ki]));                                                          \
                            UNROLL for (int kj = 0; kj < RK; kj++)                                              \
                                a[ki * RK + kj] = _mm512_fmadd_ps(_mm512_set1_ps(q[ki][kj]), gv, a[ki * RK + kj]); \
                            q[ki]++;                                                                            \
                        }                                                                                       \
                    }                                                                                           \
                }                                                                                               \
                UNROLL for (int r = 0; r < RK * RK; r++) _mm512_storeu_ps(d + (long)r * OC, a[r]);              \
            }                                                                                                   \
    }
DW16_KERNEL(dw16_k5, 5)
DW16_KERNEL(dw16_k3, 3)

int direct_dw16_ok(int K, int OC) { return kernels_level() >= 2 && (K == 3 || K == 5) && OC % 16 == 0; }
void direct_dw16(const float *in, int IC, int H, int PW, const float *gT, int OC, int K, int OH, int OW, float *dWt,
                 int acc) {
    CHECK(direct_dw16_ok(K, OC) && H >= OH + K - 1 && PW >= OW + K - 1);
    (K == 5 ? dw16_k5 : dw16_k3)(in, IC, H, PW, gT, OC, OH, OW, dWt, acc);
}

/* ---- the direct convolution (conv_direct.h: direct_conv), AVX2 + FMA ----
 * A block of RO output channels x RY output rows x 2 vectors of 8 columns keeps RO*RY*2 accumulators;
 * for each input channel c and column offset kj it walks the RY + K - 1 input rows the block reads, loads
 * each row's 2 vectors once and adds them into every (channel, row) they reach, with the weight of that
 * (ki = input row - output row, kj). A row of OW (24..32) columns is two such halves, at columns (0, 8)
 * and (16, OW - 8): the last vector overlaps the one before it and stores the same values again, so no
 * masked store is needed (see pool.c's AVX2 rows on vmaskmovps). With acc, every accumulator starts from
 * the stored y, all loaded before any is stored, so the overlap adds once. */
#define DC_KERNEL(NAME, RO, RY, K)                                                                               \
    T256 static void NAME(float *y, const float *in, int IC, int H, int PW, const float *W, const float *bias,      \
                          int OH, int OW, int acc, int o0, int oy0, int x0, int x1) {                              \
        const int xo[2] = {x0, x1};                                                                              \
        __m256 a[RO][RY][2];                                                                                     \
        UNROLL for (int o = 0; o < RO; o++) UNROLL for (int ry = 0; ry < RY; ry++) UNROLL for (int v = 0; v < 2; v++) \
            a[o][ry][v] = acc ? _mm256_loadu_ps(y + ((long)(o0 + o) * OH + oy0 + ry) * OW + xo[v])               \
                              : _mm256_set1_ps(bias ? bias[o0 + o] : 0.0f);                                      \
        for (int c = 0; c < IC; c++)                                                                             \
            for (int kj = 0; kj < K; kj++) {                                                                     \
                const float *row = in + ((long)c * H + oy0) * PW + kj, *w = W + ((long)o0 * IC + c) * K * K + kj; \
                UNROLL for (int r = 0; r < RY + K - 1; r++) {                                                    \
                    __m256 xv[2];                                                                                \
                    UNROLL for (int v = 0; v < 2; v++) {                                                         \
                        xv[v] = _mm256_loadu_ps(row + (long)r * PW + xo[v]);                                     \
                        __asm__("" : "+x"(xv[v])); /* one load for every product it feeds */                    \
                    }                                                                                            \
                    UNROLL for (int ry = 0; ry < RY; ry++) {                                                     \
                        const int ki = r - ry;                                                                   \
                        if (ki < 0 || ki >= K) continue;                                                         \
                        UNROLL for (int o = 0; o < RO; o++) {                                                    \
                            const __m256 wv = _mm256_broadcast_ss(w + (long)o * IC * K * K + ki * K);           \
                            UNROLL for (int v = 0; v < 2; v++) a[o][ry][v] = _mm256_fmadd_ps(wv, xv[v], a[o][ry][v]); \
                        }                                                                                        \
                    }                                                                                            \
                }                                                                                                \
            }                                                                                                    \
        UNROLL for (int o = 0; o < RO; o++) UNROLL for (int ry = 0; ry < RY; ry++) UNROLL for (int v = 0; v < 2; v++) \
            _mm256_storeu_ps(y + ((long)(o0 + o) * OH + oy0 + ry) * OW + xo[v], a[o][ry][v]);                     \
    }
typedef void (*DcFn)(float *, const float *, int, int, int, const float *, const float *, int, int, int, int, int,
                     int, int);
/* at most 15 of AVX2's 16 registers (accumulators, 2 input vectors, a weight; the input gradient's block
 * may keep its 5 weights of a column offset too): GCC spilled accumulators of a 3 x 2-row block to the
 * stack and ran at half speed. LeNet-5's conv1 forward: its 6 channels, one row at a time; its input
 * gradient: 1 channel, 4 rows at a time */
DC_KERNEL(dc_r6y1, 6, 1, 5)
DC_KERNEL(dc_r3y1, 3, 1, 5)
DC_KERNEL(dc_r1y4, 1, 4, 5)
DC_KERNEL(dc_r1y1, 1, 1, 5)

int direct_conv_ok(int K, int OC, int OW) { return K == 5 && OW >= 24 && OW <= DIRECT_MAX_W && OC >= 1; }

void direct_conv(float *y, const float *in, int IC, int H, int PW, const float *W, const float *bias, int OC, int K,
                 int OH, int OW, int acc) {
    CHECK(kernels_level() >= 1 && direct_conv_ok(K, OC, OW) && H >= OH + K - 1 && PW >= OW + K - 1);
    const int RO = OC % 6 == 0 ? 6 : OC % 3 == 0 ? 3 : 1, RY = RO == 1 ? 4 : 1;
    const DcFn big = RO == 6 ? dc_r6y1 : RO == 3 ? dc_r3y1 : dc_r1y4, one = RO == 6 ? dc_r6y1 : RO == 3 ? dc_r3y1 : dc_r1y1;
    for (int o0 = 0; o0 < OC; o0 += RO)
        for (int h = 0; h < 2; h++) {
            const int x0 = h ? 16 : 0, x1 = h ? OW - 8 : 8;
            int oy = 0;
            for (; oy + RY <= OH; oy += RY) big(y, in, IC, H, PW, W, bias, OH, OW, acc, o0, oy, x0, x1);
            for (; oy < OH; oy++) one(y, in, IC, H, PW, W, bias, OH, OW, acc, o0, oy, x0, x1);
        }
}
