/* im2col.c -- the column matrices convolutions multiply (im2col) and their adjoints (col2im). See im2col.h. */
#include "harness/layers/im2col.h"

#include <immintrin.h>
#include <string.h>

#include "harness/layers/kernels.h"

/* im2col of ns consecutive samples starting at x, NP = ns*P:
 * col[(c*K + ki)*K + kj][b*P + oy*OW + ox] = x[b][c][oy*s - pad + ki][ox*s - pad + kj] (0 outside) */
void im2col(const Layer *L, int ns, const float *x, float *col) {
    const int K = L->k, OW = L->w, IW = L->iw, P = L->h * OW, NP = ns * P, s = L->stride;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + (long)((c * K + ki) * K + kj) * NP;
                const int x0 = kj - L->pad; /* ix = ox*s + x0 */
                /* valid ox: 0 <= ox*s + x0 < IW */
                int lo = x0 >= 0 ? 0 : (-x0 + s - 1) / s;
                int hi = IW - x0 <= 0 ? 0 : (IW - x0 + s - 1) / s;
                if (hi > OW) hi = OW;
                if (lo > hi) lo = hi;
                for (int b = 0; b < ns; b++) {
                    const float *xp = x + ((long)b * L->ic + c) * L->ih * IW;
                    float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * s - L->pad + ki;
                        float *ro = r + oy * OW;
                        if (iy < 0 || iy >= L->ih) { memset(ro, 0, sizeof(float) * OW); continue; }
                        const float *xr = xp + (long)iy * IW + x0;
                        for (int ox = 0; ox < lo; ox++) ro[ox] = 0.0f;
                        if (s == 1) row_copy(ro + lo, xr + lo, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++) ro[ox] = xr[ox * s];
                        for (int ox = hi; ox < OW; ox++) ro[ox] = 0.0f;
                    }
                }
            }
}

/* the column matrix (KC, OH*OW) of ONE sample at stride 1 from its (bordered) copy src (IC, PH, PW): every
 * row a copy of OW floats. Rows of up to 32 floats go in the CPU's wider vectors (perf, lenet5 training
 * on the AVX-512 EPYC: row_copy's 4-float loops were 13% of the epoch, their loop control as many
 * instructions as their moves; 2% of the epoch saved, alternated runs): with AVX-512 a row of OW <= 16
 * floats is one masked load and one store, of <= 32 two of each; with AVX2 (no masked stores: vmaskmovps is
 * microcoded on AMD) 8-float moves, the last one overlapping the one before (OW >= 8). Copies: the same
 * bits at every level. (Building the matrix in blocks of output rows small enough to stay in L1 for the
 * product was measured 4-6% slower on lenet5 training: the narrower products lost more.) */
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2")))
/* the rows are written in address order, so a row's last vector may be stored whole: its lanes past the
 * row land where the next row is stored next (a masked store costs more, perf: rows512 was 11% of lenet5
 * training, in its masked stores); only the matrix's last floats take the masked store */
T512 static inline void store_row(float *row, __m512 v, __mmask16 m, const float *end) {
    if (row <= end) _mm512_storeu_ps(row, v);
    else _mm512_mask_storeu_ps(row, m, v);
}
/* every row of the column matrix col (KC, OH*OW), `row`, with the row of OW floats of the bordered sample
 * img (IC, PH, PW) it holds, `sp` (im2col copies sp to row, col2im adds row into sp); RT and ST their types */
#define COL_ROWS(RT, ST, img, body)                                                \
    for (int c = 0; c < L->ic; c++)                                                \
        for (int ki = 0; ki < L->k; ki++)                                          \
            for (int kj = 0; kj < L->k; kj++) {                                    \
                RT *row = col + (long)((c * L->k + ki) * L->k + kj) * L->h * OW;   \
                ST *sp = (img) + ((long)c * PH + ki) * PW + kj;                    \
                for (int oy = 0; oy < L->h; oy++, row += OW, sp += PW) { body; }   \
            }
#define ROWS_FOR(body) COL_ROWS(float, const float, src, body)
T512 static void rows512(const Layer *L, const float *src, int PH, int PW, float *col) {
    const int OW = L->w;
    const float *end = col + (long)L->ic * L->k * L->k * L->h * OW - 16;
    const __mmask16 m0 = (__mmask16)(OW >= 16 ? 0xFFFFu : (1u << OW) - 1);
    if (OW <= 16) ROWS_FOR(store_row(row, _mm512_maskz_loadu_ps(m0, sp), m0, end))
    else {
        const __mmask16 m1 = (__mmask16)((1u << (OW - 16)) - 1);
        ROWS_FOR(_mm512_storeu_ps(row, _mm512_loadu_ps(sp));
                 store_row(row + 16, _mm512_maskz_loadu_ps(m1, sp + 16), m1, end))
    }
}
T256 static void rows256(const Layer *L, const float *src, int PH, int PW, float *col) {
    const int OW = L->w;
    ROWS_FOR(for (int j = 0; j + 8 < OW; j += 8) _mm256_storeu_ps(row + j, _mm256_loadu_ps(sp + j));
             _mm256_storeu_ps(row + OW - 8, _mm256_loadu_ps(sp + OW - 8)))
}
static void im2col_rows(const Layer *L, const float *src, int PH, int PW, float *col) {
    const int OW = L->w, lv = kernels_level();
    if (lv >= 2 && OW <= 32) rows512(L, src, PH, PW, col);
    else if (lv == 1 && OW >= 8 && OW <= 32) rows256(L, src, PH, PW, col);
    else ROWS_FOR(row_copy(row, sp, OW))
}
/* im2col of ONE sample for stride 1: with pad > 0 the sample is first copied into a zero-bordered
 * buffer xpad (IC, IH+2pad, IW+2pad), so every column-matrix row is a plain copy of OW floats with no
 * bounds logic (perf: im2col was 19% of lenet5 PGD, mostly the per-row clipping of the padded conv1). */
void im2col_s1(const Layer *L, const float *x, float *xpad, float *col) {
    const int pad = L->pad, PH = L->ih + 2 * pad, PW = L->iw + 2 * pad;
    if (pad == 0) { im2col_rows(L, x, L->ih, L->iw, col); return; }
    memset(xpad, 0, sizeof(float) * L->ic * PH * PW);
    for (int c = 0; c < L->ic; c++)
        for (int iy = 0; iy < L->ih; iy++)
            row_copy(xpad + ((long)c * PH + iy + pad) * PW + pad, x + ((long)c * L->ih + iy) * L->iw, L->iw);
    im2col_rows(L, xpad, PH, PW, col);
}

/* dx += col2im(dcol) for ONE sample, stride 1: the adjoint of im2col_s1 (full-row adds into the
 * zero-bordered buffer xpad, then its interior into dx; no per-row clipping) */
/* the two ends of a stride-1 col2im of ONE sample: the buffer to add into (xpad zeroed when pad > 0, else
 * dx itself, zeroed when assign), then xpad's interior into dx */
static float *s1_begin(const Layer *L, float *xpad, float *dx, int assign) {
    const int pad = L->pad;
    if (pad) memset(xpad, 0, sizeof(float) * L->ic * (L->ih + 2 * pad) * (L->iw + 2 * pad));
    else if (assign) memset(dx, 0, sizeof(float) * L->ic * L->ih * L->iw);
    return pad ? xpad : dx;
}
static void s1_end(const Layer *L, const float *xpad, float *dx, int assign) {
    const int pad = L->pad, PH = L->ih + 2 * pad, PW = L->iw + 2 * pad;
    if (!pad) return;
    for (int c = 0; c < L->ic; c++)
        for (int iy = 0; iy < L->ih; iy++) {
            float *d = dx + ((long)c * L->ih + iy) * L->iw;
            const float *sp = xpad + ((long)c * PH + iy + pad) * PW + pad;
            if (assign) row_add_scalar(d, sp, 0.0f, L->iw); /* = 0 + v, as adding into a zeroed dx */
            else row_add(d, sp, L->iw);
        }
}
/* col2im_s1_add's rows, OW floats each, added in the CPU's wider vectors as im2col_rows copies them: with
 * AVX-512 a row of up to 16 floats is one masked load of each operand, one add and one masked store (two
 * of each for up to 32); with AVX2 8-float adds, the last overlapping the one before, its sum taken before
 * any of the row is stored (the overlapping lanes are stored twice with the same value). One add per
 * float in the same order at every level: the same bits. */
#define ADDS_FOR(body) COL_ROWS(const float, float, dst, body)
T512 static inline void add_masked(float *d, const float *s, __mmask16 m) {
    _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
}
T512 static void adds512(const Layer *L, const float *col, float *dst, int PH, int PW) {
    const int OW = L->w;
    const __mmask16 m0 = (__mmask16)(OW >= 16 ? 0xFFFFu : (1u << OW) - 1);
    if (OW <= 16) ADDS_FOR(add_masked(sp, row, m0))
    else {
        const __mmask16 m1 = (__mmask16)((1u << (OW - 16)) - 1);
        ADDS_FOR(_mm512_storeu_ps(sp, _mm512_add_ps(_mm512_loadu_ps(sp), _mm512_loadu_ps(row)));
                 add_masked(sp + 16, row + 16, m1))
    }
}
T256 static void adds256(const Layer *L, const float *col, float *dst, int PH, int PW) {
    const int OW = L->w;
    ADDS_FOR(const __m256 last = _mm256_add_ps(_mm256_loadu_ps(sp + OW - 8), _mm256_loadu_ps(row + OW - 8));
             for (int j = 0; j + 8 < OW; j += 8)
                 _mm256_storeu_ps(sp + j, _mm256_add_ps(_mm256_loadu_ps(sp + j), _mm256_loadu_ps(row + j)));
             _mm256_storeu_ps(sp + OW - 8, last))
}
int col2im_s1_vectors(const Layer *L) {
    const int lv = kernels_level();
    return (lv >= 2 && L->w <= 32) || (lv == 1 && L->w >= 8);
}
void col2im_s1_add(const Layer *L, const float *col, float *xpad, float *dx, int assign) {
    const int PH = L->ih + 2 * L->pad, PW = L->iw + 2 * L->pad, OW = L->w;
    float *dst = s1_begin(L, xpad, dx, assign);
    if (!col2im_s1_vectors(L)) ADDS_FOR(row_add(sp, row, OW))
    else if (kernels_level() >= 2) adds512(L, col, dst, PH, PW);
    else adds256(L, col, dst, PH, PW);
    s1_end(L, xpad, dx, assign);
}
/* dx (+)= col2im of ONE sample at stride 1 from its wide column matrix dcol (KC, Q), Q = OH*PW: column
 * q = oy*PW + ox holds output pixel (oy, ox) for ox < OW and 0 for the PW - OW others, so row (c, ki, kj)
 * is added to the bordered gradient as ONE run of Q floats from (c, ki, kj): a pixel's contributions
 * arrive in the same order as from col2im_s1_add, and the extra columns add zeros (perf, lenet5 PGD:
 * conv2's 1500 adds of 10-float rows cost more than its product, in loop overhead). */
void col2im_wide_add(const Layer *L, const float *dcol, float *xpad, float *dx, int assign) {
    const int K = L->k, PH = L->ih + 2 * L->pad, PW = L->iw + 2 * L->pad, Q = L->h * PW;
    float *dst = s1_begin(L, xpad, dx, assign);
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const long at = (long)ki * PW + kj, room = (long)PH * PW - at; /* the run stops at the channel's end: */
                run_add(dst + (long)c * PH * PW + at, dcol + (long)((c * K + ki) * K + kj) * Q, room < Q ? room : Q);
            } /* what it drops are extra columns */
    s1_end(L, xpad, dx, assign);
}
/* dx += col2im(dcol) for ns samples: the adjoint of im2col */
void col2im_add(const Layer *L, int ns, const float *col, float *dx) {
    const int K = L->k, OW = L->w, IW = L->iw, P = L->h * OW, NP = ns * P, s = L->stride;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = col + (long)((c * K + ki) * K + kj) * NP;
                const int x0 = kj - L->pad;
                int lo = x0 >= 0 ? 0 : (-x0 + s - 1) / s;
                int hi = IW - x0 <= 0 ? 0 : (IW - x0 + s - 1) / s;
                if (hi > OW) hi = OW;
                if (lo > hi) lo = hi;
                for (int b = 0; b < ns; b++) {
                    float *xp = dx + ((long)b * L->ic + c) * L->ih * IW;
                    const float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * s - L->pad + ki;
                        if (iy < 0 || iy >= L->ih) continue;
                        float *xr = xp + (long)iy * IW + x0;
                        const float *ro = r + oy * OW;
                        if (s == 1)
                            row_add(xr + lo, ro + lo, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++) xr[ox * s] += ro[ox];
                    }
                }
            }
}
