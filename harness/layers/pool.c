/* pool.c -- L_MAXPOOL (k x k, stride s; the winner's index kept per output for the backward pass),
 * L_AVGPOOL (k x k, stride s) and L_GAP (global average to (C, 1, 1)). No parameters.
 * NCHW or channel-blocked (layout.c); a pool may read blocked and write NCHW (it converts, when what
 * reads it needs NCHW), GAP always writes NCHW. The winner index is the input offset within the sample,
 * in the input's layout (NCHW to NCHW: within the channel plane). Channels are looped to the stored count (cp): a blocked output's padding
 * lanes pool the input's zero padding lanes, so they stay zero. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

/* The max over a window: NaN wins (PyTorch propagates NaN), ties keep the first in row-major order.
 * With relu_in (fuse.c) the pool reads ReLU(x) = x > 0 ? x : 0 (NaN -> 0), exactly what a separate ReLU
 * layer would have written, and its gradient passes only where the pooled value is > 0 (where the
 * separate ReLU's backward would have passed it). */
static inline float relu_of(float v, int relu) { return relu ? (v > 0 ? v : 0.0f) : v; }
/* the gradient the pool sends to a window's winner */
static inline float keep_if(float v, int c) { /* c ? v : +0, with bit masks, not a branch: c is data */
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    b &= -(uint32_t)(c != 0);
    memcpy(&v, &b, sizeof v);
    return v;
}
static inline float pool_grad(float dy, float y, int relu) { return keep_if(dy, !relu || y > 0); }

/* The 2x2 tournament on 4 lanes at once, branch-free (the winner's position is data: branches on it
 * mispredict about half the time): window values v0 v1 (top row) v2 v3 (bottom), after relu_in's
 * x > 0 ? x : 0 when relu. Returns the max; *t1 (v1 beat v0), *t3 (v3 beat v2) and *tc (the bottom pair
 * beat the top) are lane masks. The same winner as the row-major scan: the first maximum, or the
 * first NaN. */
static inline v4f tourney4(v4f v0, v4f v1, v4f v2, v4f v3, int relu, v4i *t1, v4i *t3, v4i *tc) {
    const v4f z = {0, 0, 0, 0};
    if (relu) {
        v0 = (v4f)((v4i)v0 & (v0 > z)); v1 = (v4f)((v4i)v1 & (v1 > z));
        v2 = (v4f)((v4i)v2 & (v2 > z)); v3 = (v4f)((v4i)v3 & (v3 > z));
    }
    *t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0));
    *t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
    v4f a = (v4f)(((v4i)v1 & *t1) | ((v4i)v0 & ~*t1)), c = (v4f)(((v4i)v3 & *t3) | ((v4i)v2 & ~*t3));
    *tc = (c > a) | ((c != c) & (a == a));
    return (v4f)(((v4i)c & *tc) | ((v4i)a & ~*tc));
}
/* 0 + the gradient the pool sends to a window's winner, 4 lanes */
static inline v4f pool_grad4(v4f dy, v4f y, int relu) {
    const v4f z = {0, 0, 0, 0};
    if (relu) dy = (v4f)((v4i)dy & (y > z));
    return z + dy;
}
static inline v4f keep4(v4f v, v4i m) { return (v4f)((v4i)v & m); }
static inline v4i ld4i(const int32_t *p) { v4i v; memcpy(&v, p, sizeof v); return v; }
static inline void st4i(int32_t *p, v4i v) { memcpy(p, &v, sizeof v); }

/* 2x2 stride-2 max-pool whose windows cover its input exactly */
static int pool2_tiles(const Layer *L) {
    return L->k == 2 && L->stride == 2 && L->ih == 2 * L->h && L->iw == 2 * L->w;
}

static void maxpool_work_need(const Layer *L, int cap, WorkNeed *n) { n->iaux = out_n(L) * cap; /* winners */ }

/* 2x2 stride 2 on blocked input and output: one vector of V channels per pixel; the tournament of the
 * NCHW code, lane by lane */
static inline __attribute__((always_inline)) void maxpool2_blocked(const Layer *L, const float *x, float *y,
                                                                    int32_t *am, long nb, const int V) {
    const int IW = L->iw, OW = L->w, relu = L->relu_in;
    const long ihw = (long)L->ih * IW, ohw = (long)L->h * OW, inn = in_n(L), on = out_n(L);
    for (long b = 0; b < nb; b++)
        for (int k = 0; k < L->cp / V; k++) {
            const long xo = (long)k * ihw * V;
            const float *xp = x + b * inn + xo;
            float *yp = y + b * on + (long)k * ohw * V;
            int32_t *ap = am + b * on + (long)k * ohw * V;
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    const int p0 = (2 * oy * IW + 2 * ox) * V, p2 = p0 + IW * V;
                    float *yo = yp + ((long)oy * OW + ox) * V;
                    int32_t *ao = ap + ((long)oy * OW + ox) * V;
                    for (int v = 0; v < V; v += 4) {
                        v4i t1, t3, tc;
                        v4_st(yo + v, tourney4(v4_ld(xp + p0 + v), v4_ld(xp + p0 + V + v), v4_ld(xp + p2 + v),
                                               v4_ld(xp + p2 + V + v), relu, &t1, &t3, &tc));
                        const v4i lane = (v4i){0, 1, 2, 3} + (int)xo + v, vv = {V, V, V, V};
                        const v4i ia = lane + p0 + (t1 & vv), ic = lane + p2 + (t3 & vv);
                        st4i(ao + v, (ic & tc) | (ia & ~tc));
                    }
                }
        }
}

/* any window, any layouts in and out (pools that convert to NCHW, odd windows) */
static void maxpool_generic(const Layer *L, const float *x, float *y, int32_t *am, long nb) {
    const int IW = L->iw, OW = L->w, nc = L->blk ? L->cp : L->c, relu = L->relu_in;
    const long ihw = (long)L->ih * IW, ohw = (long)L->h * OW, inn = in_n(L), on = out_n(L);
    for (long b = 0; b < nb; b++)
        for (int c = 0; c < nc; c++)
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    int y0 = oy * L->stride, x0 = ox * L->stride;
                    int best = (int)blk_off(L->iblk, ihw, c, (long)y0 * IW + x0);
                    float bv = relu_of(x[b * inn + best], relu);
                    for (int ky = 0; ky < L->k; ky++)
                        for (int kx = 0; kx < L->k; kx++) {
                            int j = (int)blk_off(L->iblk, ihw, c, (long)(y0 + ky) * IW + x0 + kx);
                            float v = relu_of(x[b * inn + j], relu);
                            int take = (v > bv) | (isnan(v) & !isnan(bv));
                            bv = take ? v : bv;
                            best = take ? j : best;
                        }
                    long o = b * on + blk_off(L->blk, ohw, c, (long)oy * OW + ox);
                    y[o] = bv;
                    am[o] = best;
                }
}

/* The same tournament on one whole output row of up to 16 windows in AVX-512 (LeNet-5's rows are 14 and
 * 5 windows wide, under the 4-lane code's grain: 4 + 4 + 4 and a scalar-built tail for 14), with the
 * same lane operations, so the same bits: masked loads of the two input rows, even / odd lanes by
 * permutation, relu_in as a zeroing mask, the same comparisons (> ordered; NaN beats a number) and
 * blends. Used when kernels_level() says AVX-512 (kernels.c). */
#define T512 __attribute__((target("avx512f")))
T512 static inline __mmask16 beats512(__m512 v, __m512 u) { /* v > u, or v NaN and u not: where u is a number, */
    return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(u, u, _CMP_ORD_Q), v, u, _CMP_NLE_UQ); /* !(v <= u) */
}
T512 static inline __m512 relu512(__m512 v, int relu) {
    return relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), v) : v;
}
/* the first n lanes of a 16-lane vector (none for n <= 0, all for n >= 16) */
T512 static inline __mmask16 lanes512(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1); }
/* masks of the first n lanes of the two 16-lane halves of a 2n-float input row */
T512 static inline void row_masks(int n, __mmask16 *lo, __mmask16 *hi) {
    *lo = lanes512(2 * n);
    *hi = lanes512(2 * n - 16);
}
/* the tournament of the first n (out) windows' corners v0 v1 (top row) v2 v3 (bottom): the max to yo and
 * the winner's input offset to ao, from i0, the top-left corners' offsets */
T512 static inline void tourney512(__m512 v0, __m512 v1, __m512 v2, __m512 v3, __m512i i0, int IW, __mmask16 out,
                                   float *yo, int32_t *ao) {
    const __mmask16 t1 = beats512(v1, v0), t3 = beats512(v3, v2);
    const __m512 a = _mm512_mask_blend_ps(t1, v0, v1), c = _mm512_mask_blend_ps(t3, v2, v3);
    const __mmask16 tc = beats512(c, a);
    _mm512_mask_storeu_ps(yo, out, _mm512_mask_blend_ps(tc, a, c));
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i ia = _mm512_mask_add_epi32(i0, t1, i0, one), i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(IW));
    const __m512i ic = _mm512_mask_add_epi32(i2, t3, i2, one);
    _mm512_mask_storeu_epi32(ao, out, _mm512_mask_blend_epi32(tc, ia, ic));
}
/* the backward pass's gradient at each corner of the first n (in) windows: 0 + dy at the winner (relu_in:
 * only where the pooled value is > 0), +0 at the other three; i0 the top-left corners' offsets */
T512 static inline void corner_grads512(const float *gp, const float *yp, const int32_t *ap, __mmask16 in, __m512i i0,
                                        int IW, int relu, __m512 e[4]) {
    const __m512 z = _mm512_setzero_ps();
    __m512 g = _mm512_maskz_loadu_ps(in, gp);
    if (relu) g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(in, yp), z, _CMP_GT_OQ), g);
    g = _mm512_add_ps(z, g);
    const __m512i k = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(in, ap), i0);
    e[0] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(0)), g);
    e[1] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(1)), g);
    e[2] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(IW)), g);
    e[3] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(IW + 1)), g);
}
T512 static inline void maxpool2_row512(const float *r0, const float *r1, int n, int base, int IW, int relu, float *yo,
                                 int32_t *ao) {
    __mmask16 lo, hi;
    row_masks(n, &lo, &hi);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0), a1 = _mm512_maskz_loadu_ps(hi, r0 + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1), b1 = _mm512_maskz_loadu_ps(hi, r1 + 16);
    const __m512 v0 = relu512(_mm512_permutex2var_ps(a0, ev, a1), relu), v1 = relu512(_mm512_permutex2var_ps(a0, od, a1), relu);
    const __m512 v2 = relu512(_mm512_permutex2var_ps(b0, ev, b1), relu), v3 = relu512(_mm512_permutex2var_ps(b0, od, b1), relu);
    tourney512(v0, v1, v2, v3, _mm512_add_epi32(_mm512_set1_epi32(base), ev), IW, lanes512(n), yo, ao);
}
/* the backward pass's store of one row of windows (corner_grads512), as the 4-lane code */
T512 static inline void maxpool2_grad_row512(const float *gp, const float *yp, const int32_t *ap, int n, int base, int IW,
                                      int relu, float *r0, float *r1) {
    __mmask16 lo, hi;
    row_masks(n, &lo, &hi);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __m512 e[4];
    corner_grads512(gp, yp, ap, lanes512(n), _mm512_add_epi32(_mm512_set1_epi32(base), ev), IW, relu, e);
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
                  ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
    _mm512_mask_storeu_ps(r0, lo, _mm512_permutex2var_ps(e[0], il, e[1]));
    if (hi) _mm512_mask_storeu_ps(r0 + 16, hi, _mm512_permutex2var_ps(e[0], ih, e[1]));
    _mm512_mask_storeu_ps(r1, lo, _mm512_permutex2var_ps(e[2], il, e[3]));
    if (hi) _mm512_mask_storeu_ps(r1 + 16, hi, _mm512_permutex2var_ps(e[2], ih, e[3]));
}

/* Rows of at most 8 windows that tile their input rows (IW = 2 OW; LeNet-5's second pool: 5 windows of
 * 10 inputs) leave most of a vector idle, one row at a time. R = 16 / OW rows of windows go at once
 * instead: their 2R input rows are 4 n <= 64 consecutive floats (n = R OW windows), four masked loads;
 * each of the four window corners is two permutations of them (lanes 0-31, 32-63) and a blend on the
 * index's bit 5; the backward pass builds the 4 n input gradients back from the four corners the same
 * way. The lane operations are the row kernel's, so the same bits. Window lane j is row j / OW, column
 * j % OW of the group; its top-left input is t[j] = (j / OW) 2 IW + 2 (j % OW) from the group's start. */
typedef struct {
    __m512i t;        /* top-left input offsets in the group */
    __m512i src[4];   /* backward: input 16 q + p takes lane src[q][p] & 15 of corner 0/1 (or 2/3) ... */
    __mmask16 low[4]; /* ... corner 2 or 3 (its lower row) where set; bit 4 of src: corner 1 or 3 */
    int R;            /* rows of windows a group */
} Group512;
T512 static void group512_make(int IW, int OW, Group512 *g) {
    int32_t t[16], src[4][16];
    g->R = 16 / OW;
    const int n = g->R * OW;
    for (int j = 0; j < 16; j++) t[j] = j < n ? (j / OW) * 2 * IW + 2 * (j % OW) : 0;
    for (int q = 0; q < 4; q++) {
        g->low[q] = 0;
        for (int p = 0; p < 16; p++) {
            const int P = 16 * q + p, rem = P % (2 * IW), col = rem % IW;
            src[q][p] = P < 4 * n ? P / (2 * IW) * OW + col / 2 + 16 * (col % 2) : 0;
            if (P < 4 * n && rem >= IW) g->low[q] |= (__mmask16)(1u << p);
        }
        g->src[q] = _mm512_loadu_si512(src[q]);
    }
    g->t = _mm512_loadu_si512(t);
}
/* the corner at offset d of every window: from the four vectors of the group's inputs */
T512 static inline __m512 corner512(__m512 x0, __m512 x1, __m512 x2, __m512 x3, __m512i t, int d, int relu) {
    const __m512i i = _mm512_add_epi32(t, _mm512_set1_epi32(d));
    const __mmask16 h = _mm512_test_epi32_mask(i, _mm512_set1_epi32(32));
    return relu512(_mm512_mask_blend_ps(h, _mm512_permutex2var_ps(x0, i, x1), _mm512_permutex2var_ps(x2, i, x3)), relu);
}
T512 static void maxpool2_groups512(const float *x, long nbc, int IH, int IW, int OH, int OW, int relu, float *y,
                                    int32_t *am) {
    Group512 g;
    group512_make(IW, OW, &g);
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy += g.R) {
            const int n = (OH - oy < g.R ? OH - oy : g.R) * OW, base = 2 * oy * IW;
            const float *r0 = x + bc * IH * IW + base;
            const __m512 x0 = _mm512_maskz_loadu_ps(lanes512(4 * n), r0), x1 = _mm512_maskz_loadu_ps(lanes512(4 * n - 16), r0 + 16);
            const __m512 x2 = _mm512_maskz_loadu_ps(lanes512(4 * n - 32), r0 + 32), x3 = _mm512_maskz_loadu_ps(lanes512(4 * n - 48), r0 + 48);
            const __m512 v0 = corner512(x0, x1, x2, x3, g.t, 0, relu), v1 = corner512(x0, x1, x2, x3, g.t, 1, relu);
            const __m512 v2 = corner512(x0, x1, x2, x3, g.t, IW, relu), v3 = corner512(x0, x1, x2, x3, g.t, IW + 1, relu);
            const long o = (bc * OH + oy) * OW;
            tourney512(v0, v1, v2, v3, _mm512_add_epi32(_mm512_set1_epi32(base), g.t), IW, lanes512(n), y + o, am + o);
        }
}
T512 static void maxpool2_grad_groups512(const float *dy, const float *yv, const int32_t *am, long nbc, int IH, int IW,
                                         int OH, int OW, int relu, float *dx) {
    Group512 g;
    group512_make(IW, OW, &g);
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy += g.R) {
            const int n = (OH - oy < g.R ? OH - oy : g.R) * OW, base = 2 * oy * IW;
            const long o = (bc * OH + oy) * OW;
            __m512 e[4];
            corner_grads512(dy + o, yv + o, am + o, lanes512(n), _mm512_add_epi32(_mm512_set1_epi32(base), g.t), IW, relu, e);
            float *r0 = dx + bc * IH * IW + base;
            for (int q = 0; q < 4 && 16 * q < 4 * n; q++)
                _mm512_mask_storeu_ps(r0 + 16 * q, lanes512(4 * n - 16 * q),
                                      _mm512_mask_blend_ps(g.low[q], _mm512_permutex2var_ps(e[0], g.src[q], e[1]),
                                                           _mm512_permutex2var_ps(e[2], g.src[q], e[3])));
        }
}

/* the rows above over NBC planes (samples x channels) of a 2x2 pool, in one AVX-512 function: the row
 * kernels inline, their constants stay in registers and the SSE code around them is not re-entered
 * (perf, lenet5 training: the per-row calls' entry, constants and vzeroupper were a third of their time) */
T512 static void maxpool2_rows512(const float *x, long nbc, int IH, int IW, int OH, int OW, int relu, float *y,
                                  int32_t *am) {
    if (IW == 2 * OW && OW <= 8) { maxpool2_groups512(x, nbc, IH, IW, OH, OW, relu, y, am); return; }
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy++) {
            const float *r0 = x + bc * IH * IW + 2L * oy * IW;
            const long o = (bc * OH + oy) * OW;
            maxpool2_row512(r0, r0 + IW, OW, 2 * oy * IW, IW, relu, y + o, am + o);
        }
}
T512 static void maxpool2_grad_rows512(const float *dy, const float *yv, const int32_t *am, long nbc, int IH, int IW,
                                       int OH, int OW, int relu, float *dx) {
    if (IW == 2 * OW && OW <= 8) {
        maxpool2_grad_groups512(dy, yv, am, nbc, IH, IW, OH, OW, relu, dx);
        return;
    }
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy++) {
            const long o = (bc * OH + oy) * OW;
            float *r0 = dx + bc * IH * IW + 2L * oy * IW;
            maxpool2_grad_row512(dy + o, yv + o, am + o, OW, 2 * oy * IW, IW, relu, r0, r0 + IW);
        }
}

/* The same two rows in AVX2, 8 windows a step, with no masked stores (an earlier version with AVX2's
 * vmaskmovps stores gained nothing on this project's AMD machine, where LLVM's scheduling models have
 * them microcoded; not measured alone). Rows of 8 to 16 windows (LeNet-5's
 * 14): a second step at n - 8 overlaps the first (it stores the same values again). Rows of 4 to 7
 * (LeNet-5's 5): one step of 8 that reads 16 inputs from each row and spills its last 8 - n windows into
 * the next row of windows, which the callers then store over, in order; with n >= 4 (rows of >= 8
 * inputs) what it reads and writes stays within that next row (fewer windows take the 4-lane code). The
 * callers send the last row of their range, which has nothing after it, through short copies
 * (row256_last). Same lane operations as the AVX-512 rows, so the same bits. */
#define T256 __attribute__((target("avx2")))
T256 static inline __m256 beats256(__m256 v, __m256 u) { /* as beats512 */
    return _mm256_and_ps(_mm256_cmp_ps(v, u, _CMP_NLE_UQ), _mm256_cmp_ps(u, u, _CMP_ORD_Q));
}
T256 static inline __m256 relu256(__m256 v, int relu) {
    return relu ? _mm256_and_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ), v) : v;
}
/* lanes 0 2 4 ... 14 (sel 0x88) or 1 3 ... 15 (0xDD) of the 16 floats a, b */
T256 static inline __m256 pick256(__m256 a, __m256 b, const int sel) {
    const __m256 s = sel == 0x88 ? _mm256_shuffle_ps(a, b, 0x88) : _mm256_shuffle_ps(a, b, 0xDD);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
}
T256 static inline void maxpool2_row256(const float *r0, const float *r1, int n, int base, int IW, int relu, float *yo,
                                 int32_t *ao) {
    const __m256i ev = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for (int ox = 0;; ox = n - 8) {
        const __m256 a0 = _mm256_loadu_ps(r0 + 2 * ox), a1 = _mm256_loadu_ps(r0 + 2 * ox + 8);
        const __m256 b0 = _mm256_loadu_ps(r1 + 2 * ox), b1 = _mm256_loadu_ps(r1 + 2 * ox + 8);
        const __m256 v0 = relu256(pick256(a0, a1, 0x88), relu), v1 = relu256(pick256(a0, a1, 0xDD), relu);
        const __m256 v2 = relu256(pick256(b0, b1, 0x88), relu), v3 = relu256(pick256(b0, b1, 0xDD), relu);
        const __m256 t1 = beats256(v1, v0), t3 = beats256(v3, v2);
        const __m256 a = _mm256_blendv_ps(v0, v1, t1), c = _mm256_blendv_ps(v2, v3, t3);
        const __m256 tc = beats256(c, a);
        _mm256_storeu_ps(yo + ox, _mm256_blendv_ps(a, c, tc));
        const __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32(base + 2 * ox), ev);
        const __m256i ia = _mm256_sub_epi32(i0, _mm256_castps_si256(t1)); /* + 1 where t1 (-1) */
        const __m256i ic = _mm256_sub_epi32(_mm256_add_epi32(i0, _mm256_set1_epi32(IW)), _mm256_castps_si256(t3));
        _mm256_storeu_si256((__m256i *)(ao + ox), _mm256_castps_si256(_mm256_blendv_ps(
                                                      _mm256_castsi256_ps(ia), _mm256_castsi256_ps(ic), tc)));
        if (n <= 8 || ox == n - 8) break;
    }
}
T256 static inline void maxpool2_grad_row256(const float *gp, const float *yp, const int32_t *ap, int n, int base, int IW,
                                      int relu, float *r0, float *r1) {
    const __m256 z = _mm256_setzero_ps();
    const __m256i ev = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for (int ox = 0;; ox = n - 8) {
        __m256 g = _mm256_loadu_ps(gp + ox);
        if (relu) g = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(yp + ox), z, _CMP_GT_OQ), g);
        g = _mm256_add_ps(z, g);
        const __m256i k = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(ap + ox)),
                                           _mm256_add_epi32(_mm256_set1_epi32(base + 2 * ox), ev));
#define WIN(d) _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(d))), g)
        const __m256 e0 = WIN(0), e1 = WIN(1), e2 = WIN(IW), e3 = WIN(IW + 1);
#undef WIN
        const __m256 l01 = _mm256_unpacklo_ps(e0, e1), h01 = _mm256_unpackhi_ps(e0, e1);
        const __m256 l23 = _mm256_unpacklo_ps(e2, e3), h23 = _mm256_unpackhi_ps(e2, e3);
        _mm256_storeu_ps(r0 + 2 * ox, _mm256_permute2f128_ps(l01, h01, 0x20));
        _mm256_storeu_ps(r0 + 2 * ox + 8, _mm256_permute2f128_ps(l01, h01, 0x31));
        _mm256_storeu_ps(r1 + 2 * ox, _mm256_permute2f128_ps(l23, h23, 0x20));
        _mm256_storeu_ps(r1 + 2 * ox + 8, _mm256_permute2f128_ps(l23, h23, 0x31));
        if (n <= 8 || ox == n - 8) break;
    }
}

/* a last row of fewer than 8 windows, through 16-float copies (nothing may be read or written past it) */
/* the rows above over NBC planes in one AVX2 function, as maxpool2_rows512 (PGD-10 on Haswell-class:
 * the per-row calls and their callers were 2% of the epoch); with rows of fewer than 8 windows the
 * range's last row goes through the short copies (maxpool2_row256_last, below) */
static void maxpool2_row256_last(const float *r0, const float *r1, int n, int base, int IW, int relu, float *yo,
                                 int32_t *ao);
static void maxpool2_grad_row256_last(const float *gp, const float *yp, const int32_t *ap, int n, int base, int IW,
                                      int relu, float *r0, float *r1);
T256 static void maxpool2_rows256(const float *x, long nbc, int IH, int IW, int OH, int OW, int relu, float *y,
                                  int32_t *am) {
    const long last = nbc * OH - 1;
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy++) {
            const float *r0 = x + bc * IH * IW + 2L * oy * IW;
            const long o = (bc * OH + oy) * OW;
            if (OW < 8 && bc * OH + oy == last)
                maxpool2_row256_last(r0, r0 + IW, OW, 2 * oy * IW, IW, relu, y + o, am + o);
            else maxpool2_row256(r0, r0 + IW, OW, 2 * oy * IW, IW, relu, y + o, am + o);
        }
}
T256 static void maxpool2_grad_rows256(const float *dy, const float *yv, const int32_t *am, long nbc, int IH, int IW,
                                       int OH, int OW, int relu, float *dx) {
    const long last = nbc * OH - 1;
    for (long bc = 0; bc < nbc; bc++)
        for (int oy = 0; oy < OH; oy++) {
            const long o = (bc * OH + oy) * OW;
            float *r0 = dx + bc * IH * IW + 2L * oy * IW;
            if (OW < 8 && bc * OH + oy == last)
                maxpool2_grad_row256_last(dy + o, yv + o, am + o, OW, 2 * oy * IW, IW, relu, r0, r0 + IW);
            else maxpool2_grad_row256(dy + o, yv + o, am + o, OW, 2 * oy * IW, IW, relu, r0, r0 + IW);
        }
}
static void maxpool2_row256_last(const float *r0, const float *r1, int n, int base, int IW, int relu, float *yo,
                                 int32_t *ao) {
    float a[16] = {0}, b[16] = {0}, y8[8];
    int32_t a8[8];
    memcpy(a, r0, sizeof(float) * 2 * n);
    memcpy(b, r1, sizeof(float) * 2 * n);
    maxpool2_row256(a, b, n, base, IW, relu, y8, a8);
    memcpy(yo, y8, sizeof(float) * n);
    memcpy(ao, a8, sizeof(int32_t) * n);
}
static void maxpool2_grad_row256_last(const float *gp, const float *yp, const int32_t *ap, int n, int base, int IW,
                                      int relu, float *r0, float *r1) {
    float g[8] = {0}, y[8] = {0}, a[16], b[16];
    int32_t w[8] = {0};
    memcpy(g, gp, sizeof(float) * n);
    memcpy(y, yp, sizeof(float) * n);
    memcpy(w, ap, sizeof(int32_t) * n);
    maxpool2_grad_row256(g, y, w, n, base, IW, relu, a, b);
    memcpy(r0, a, sizeof(float) * 2 * n);
    memcpy(r1, b, sizeof(float) * 2 * n);
}

/* NCHW 2x2 stride 2 as a tournament, (0 vs 1) and (2 vs 3) then the winners: the same winner as the
 * row-major scan (first maximum; first NaN), with shorter chains; 4 outputs at once (masks 0 / -1) */
static void maxpool2_plain(const Layer *L, const float *x, float *y, int32_t *am, long nb) {
    const int IW = L->iw, OW = L->w, relu = L->relu_in;
    const int lv = kernels_level();
    if (OW <= 16 && (lv >= 2 || (lv == 1 && OW >= 4))) { /* a row of windows at once */
        (lv >= 2 ? maxpool2_rows512 : maxpool2_rows256)(x, nb * L->c, L->ih, IW, L->h, OW, relu, y, am);
        return;
    }
    for (long bc = 0; bc < nb * L->c; bc++) {
        const float *xp = x + bc * L->ih * IW;
        long ob = bc * L->h * OW;
        for (int oy = 0; oy < L->h; oy++) {
            const float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
            float *yo = y + ob + oy * OW;
            int32_t *ao = am + ob + oy * OW, base = 2 * oy * IW;
            for (int ox = 0; ox < OW; ox += 4) {
                const int n = OW - ox < 4 ? OW - ox : 4;
                v4f a0, a1, b0, b1; /* the 8 inputs of 4 windows in each row */
                if (n == 4) {
                    a0 = v4_ld(r0 + 2 * ox); a1 = v4_ld(r0 + 2 * ox + 4);
                    b0 = v4_ld(r1 + 2 * ox); b1 = v4_ld(r1 + 2 * ox + 4);
                } else { /* the row's last 1-3 windows: the lanes past it are 0s */
                    const float *p = r0 + 2 * ox, *q = r1 + 2 * ox;
                    a0 = (v4f){p[0], p[1], n > 1 ? p[2] : 0, n > 1 ? p[3] : 0};
                    a1 = (v4f){n > 2 ? p[4] : 0, n > 2 ? p[5] : 0, 0, 0};
                    b0 = (v4f){q[0], q[1], n > 1 ? q[2] : 0, n > 1 ? q[3] : 0};
                    b1 = (v4f){n > 2 ? q[4] : 0, n > 2 ? q[5] : 0, 0, 0};
                }
                const v4i ev = {0, 2, 4, 6};
                v4i t1, t3, tc; /* even and odd lanes of each pair of rows (GCC >= 12 and clang spell it alike) */
                const v4f y4 = tourney4(__builtin_shufflevector(a0, a1, 0, 2, 4, 6), __builtin_shufflevector(a0, a1, 1, 3, 5, 7),
                                        __builtin_shufflevector(b0, b1, 0, 2, 4, 6), __builtin_shufflevector(b0, b1, 1, 3, 5, 7),
                                        relu, &t1, &t3, &tc);
                const v4i i0 = ev + base + 2 * ox;
                const v4i ia = i0 - t1, ic = i0 + IW - t3, best = (ic & tc) | (ia & ~tc);
                if (n == 4) { v4_st(yo + ox, y4); st4i(ao + ox, best); continue; }
                for (int j = 0; j < n; j++) { yo[ox + j] = y4[j]; ao[ox + j] = best[j]; }
            }
        }
    }
}

/* NCHW, any window: winners are offsets within the channel plane */
static void maxpool_plain(const Layer *L, const float *x, float *y, int32_t *am, long nb) {
    const int IW = L->iw, OW = L->w, relu = L->relu_in;
    for (long bc = 0; bc < nb * L->c; bc++) {
        const float *xp = x + bc * L->ih * IW;
        long ob = bc * L->h * OW;
        for (int oy = 0; oy < L->h; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int y0 = oy * L->stride, x0 = ox * L->stride;
                int best = y0 * IW + x0;
                float bv = relu_of(xp[best], relu);
                for (int ky = 0; ky < L->k; ky++)
                    for (int kx = 0; kx < L->k; kx++) {
                        int j = (y0 + ky) * IW + x0 + kx;
                        float v = relu_of(xp[j], relu);
                        int take = (v > bv) | (isnan(v) & !isnan(bv));
                        bv = take ? v : bv;
                        best = take ? j : best;
                    }
                y[ob + oy * OW + ox] = bv;
                am[ob + oy * OW + ox] = best;
            }
    }
}

static void maxpool_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    int32_t *am = w->iaux[i] + act_row(i, b0) * s.on; /* the winners' rows are its output's (a predict pass: layer.h) */
    if (L->iblk || L->blk) {
        if (L->iblk == L->blk && L->k == 2 && L->stride == 2) {
            if (L->blk == 16) maxpool2_blocked(L, s.x, s.y, am, s.nb, 16);
            else maxpool2_blocked(L, s.x, s.y, am, s.nb, 8);
        } else maxpool_generic(L, s.x, s.y, am, s.nb);
    } else if (L->k == 2 && L->stride == 2) maxpool2_plain(L, s.x, s.y, am, s.nb);
    else maxpool_plain(L, s.x, s.y, am, s.nb);
}

static void maxpool_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    const int32_t *am = w->iaux[i] + b0 * s.on;
    const float *yv = w->act[i] + b0 * s.on; /* the pooled values: relu_in's gate */
    const int relu = L->relu_in;
    long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
    if (assign && !(pool2_tiles(L) && L->blk == L->iblk)) { memset(s.dx, 0, sizeof(float) * s.nb * s.inn); assign = 0; }
    if (assign && L->blk) { /* blocked tiles: each window's 4 vectors get 0 + dy at the winner, 0 elsewhere */
        const int IW = L->iw, V = L->blk;
        for (long b = 0; b < s.nb; b++) {
            float *xp = s.dx + b * s.inn;
            const float *gp = s.dy + b * s.on, *yp = yv + b * s.on;
            const int32_t *ap = am + b * s.on;
            for (int k = 0; k < L->cp / V; k++)
                for (int oy = 0; oy < L->h; oy++)
                    for (int ox = 0; ox < L->w; ox++) {
                        const long oo = ((long)k * ohw + (long)oy * L->w + ox) * V;
                        const long p0 = ((long)k * ihw + 2L * oy * IW + 2 * ox) * V, p2 = p0 + (long)IW * V;
                        for (int v = 0; v < V; v += 4) {
                            const v4i win = ld4i(ap + oo + v), q0 = (v4i){0, 1, 2, 3} + (int)p0 + v,
                                      q2 = (v4i){0, 1, 2, 3} + (int)p2 + v;
                            const v4f g = pool_grad4(v4_ld(gp + oo + v), v4_ld(yp + oo + v), relu);
                            v4_st(xp + p0 + v, keep4(g, win == q0));
                            v4_st(xp + p0 + V + v, keep4(g, win == q0 + V));
                            v4_st(xp + p2 + v, keep4(g, win == q2));
                            v4_st(xp + p2 + V + v, keep4(g, win == q2 + V));
                        }
                    }
        }
        return;
    }
    const int lv = kernels_level();
    if (assign && L->w <= 16 && (lv >= 2 || (lv == 1 && L->w >= 4))) { /* as below, a row of windows at once */
        (lv >= 2 ? maxpool2_grad_rows512 : maxpool2_grad_rows256)(s.dy, yv, am, s.nb * L->c, L->ih, L->iw, L->h, L->w,
                                                                  relu, s.dx);
        return;
    }
    if (assign) { /* 2x2 windows tile the input: each window stores 0 + dy at its winner, 0 elsewhere */
        const int IW = L->iw, OW = L->w;
        for (long bc = 0; bc < s.nb * L->c; bc++) {
            float *xp = s.dx + bc * ihw;
            const float *gp = s.dy + bc * ohw, *yp = yv + bc * ohw;
            const int32_t *ap = am + bc * ohw;
            for (int oy = 0; oy < L->h; oy++) {
                float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
                const int base = 2 * oy * IW;
                int ox = 0;
                for (; ox + 4 <= OW; ox += 4) {
                    const v4i i0 = {base + 2 * ox, base + 2 * ox + 2, base + 2 * ox + 4, base + 2 * ox + 6};
                    const v4i k = ld4i(ap + oy * OW + ox) - i0; /* 0, 1, IW, IW + 1 */
                    const v4f g = pool_grad4(v4_ld(gp + oy * OW + ox), v4_ld(yp + oy * OW + ox), relu);
                    const v4i c0 = {0, 0, 0, 0}, c1 = {1, 1, 1, 1}, c2 = c0 + IW, c3 = c1 + IW;
                    const v4f e0 = keep4(g, k == c0), e1 = keep4(g, k == c1), e2 = keep4(g, k == c2), e3 = keep4(g, k == c3);
                    v4_st(r0 + 2 * ox, __builtin_shufflevector(e0, e1, 0, 4, 1, 5));
                    v4_st(r0 + 2 * ox + 4, __builtin_shufflevector(e0, e1, 2, 6, 3, 7));
                    v4_st(r1 + 2 * ox, __builtin_shufflevector(e2, e3, 0, 4, 1, 5));
                    v4_st(r1 + 2 * ox + 4, __builtin_shufflevector(e2, e3, 2, 6, 3, 7));
                }
                for (; ox < OW; ox++) {
                    const int k = ap[oy * OW + ox] - base - 2 * ox;
                    const float g = 0.0f + pool_grad(gp[oy * OW + ox], yp[oy * OW + ox], relu);
                    r0[2 * ox] = keep_if(g, k == 0);
                    r0[2 * ox + 1] = keep_if(g, k == 1);
                    r1[2 * ox] = keep_if(g, k == IW);
                    r1[2 * ox + 1] = keep_if(g, k == IW + 1);
                }
            }
        }
        return;
    }
    if (!L->iblk && !L->blk) { /* NCHW: winners are offsets within the channel plane */
        for (long bc = 0; bc < s.nb * L->c; bc++)
            for (long j = 0; j < ohw; j++)
                s.dx[bc * ihw + am[bc * ohw + j]] += pool_grad(s.dy[bc * ohw + j], yv[bc * ohw + j], relu);
        return;
    }
    for (long b = 0; b < s.nb; b++) /* blocked: offsets within the sample; dy in the output's layout */
        for (long j = 0; j < s.on; j++)
            s.dx[b * s.inn + am[b * s.on + j]] += pool_grad(s.dy[b * s.on + j], yv[b * s.on + j], relu);
}

static void avgpool_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    const int IW = L->iw, OW = L->w, nc = L->blk ? L->cp : L->c;
    const long ihw = (long)L->ih * IW, ohw = (long)L->h * OW;
    float inv = 1.0f / (float)(L->k * L->k);
    for (long b = 0; b < s.nb; b++)
        for (int c = 0; c < nc; c++)
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    int y0 = oy * L->stride, x0 = ox * L->stride;
                    float sum = 0;
                    for (int ky = 0; ky < L->k; ky++)
                        for (int kx = 0; kx < L->k; kx++)
                            sum += s.x[b * s.inn + blk_off(L->iblk, ihw, c, (long)(y0 + ky) * IW + x0 + kx)];
                    s.y[b * s.on + blk_off(L->blk, ohw, c, (long)oy * OW + ox)] = sum * inv;
                }
}

static void avgpool_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    const int IW = L->iw, OW = L->w;
    const long ihw = (long)L->ih * IW, ohw = (long)L->h * OW;
    float inv = 1.0f / (float)(L->k * L->k);
    for (long b = 0; b < s.nb; b++)
        for (int c = 0; c < L->c; c++)
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    float g = s.dy[b * s.on + blk_off(L->blk, ohw, c, (long)oy * OW + ox)] * inv;
                    for (int ky = 0; ky < L->k; ky++)
                        for (int kx = 0; kx < L->k; kx++)
                            s.dx[b * s.inn + blk_off(L->iblk, ihw, c, (long)(oy * L->stride + ky) * IW + ox * L->stride + kx)] += g;
                }
}

/* GAP reads NCHW or blocked and writes NCHW (C, 1, 1); sums in double, pixel by pixel */
static void gap_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    const long hw = (long)L->ih * L->iw;
    const int V = L->iblk ? L->iblk : 1;
    for (long b = 0; b < s.nb; b++)
        for (int k = 0; k < L->icp / V; k++) {
            const float *xp = s.x + b * s.inn + (long)k * hw * V;
            double sum[16] = {0};
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) sum[v] += xp[q * V + v];
            for (int v = 0; v < V && k * V + v < L->c; v++) s.y[b * s.on + k * V + v] = (float)(sum[v] / hw);
        }
}

static void gap_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                         long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    const long hw = (long)L->ih * L->iw;
    const int V = L->iblk ? L->iblk : 1;
    for (long b = 0; b < s.nb; b++)
        for (int k = 0; k < L->icp / V; k++) {
            float *xp = s.dx + b * s.inn + (long)k * hw * V;
            float g[16];
            for (int v = 0; v < V; v++) g[v] = k * V + v < L->c ? s.dy[b * s.on + k * V + v] / (float)hw : 0.0f;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) xp[q * V + v] += g[v];
        }
}

const LayerOps LAYER_MAXPOOL = {
    .name = "maxpool",
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .stores_dx = 1,
    .work_need = maxpool_work_need,
};
const LayerOps LAYER_AVGPOOL = {.name = "avgpool", .forward = avgpool_forward, .backward = avgpool_backward};
const LayerOps LAYER_GAP = {.name = "gap", .forward = gap_forward, .backward = gap_backward};
