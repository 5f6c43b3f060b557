/* pool.c -- L_MAXPOOL (k x k, stride s; the winner's index kept per output for the backward pass),
 * L_AVGPOOL (k x k, stride s) and L_GAP (global average to (C, 1, 1)). No parameters. */
#include <math.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

/* max over a k x k window; NaN wins (PyTorch propagates NaN); ties keep the first in row-major order */
#define POOL_TAKE(idx) do { float v_ = xp[idx]; int k_ = (v_ > bv) | (isnan(v_) & !isnan(bv)); \
                            bv = k_ ? v_ : bv; best = k_ ? (idx) : best; } while (0)

/* 2x2 stride-2 max-pool whose windows cover its input exactly */
static int pool2_tiles(const Layer *L) {
    return L->k == 2 && L->stride == 2 && L->ih == 2 * L->h && L->iw == 2 * L->w;
}

static void maxpool_work_need(const Layer *L, int cap, WorkNeed *n) { n->iaux = out_n(L) * cap; /* winners */ }

static void maxpool_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    int32_t *am = w->iaux[i] + b0 * s.on;
    const int IW = L->iw, OW = L->w;
    for (long bc = 0; bc < s.nb * L->c; bc++) {
        const float *xp = s.x + bc * L->ih * IW;
        long ob = bc * L->h * OW;
        if (L->k == 2 && L->stride == 2) {
            /* the common case as a tournament, (0 vs 1) and (2 vs 3) then the winners: the same
               winner as the row-major scan below (first maximum; first NaN), with shorter chains */
            for (int oy = 0; oy < L->h; oy++) {
                const float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
                float *yo = s.y + ob + oy * OW;
                int32_t *ao = am + ob + oy * OW, base = 2 * oy * IW;
                int ox = 0;
                for (; ox + 4 <= OW; ox += 4) { /* 4 outputs at once; masks are 0 / -1 */
                    const float *p0 = r0 + 2 * ox, *p1 = r1 + 2 * ox;
                    v4f v0 = {p0[0], p0[2], p0[4], p0[6]}, v1 = {p0[1], p0[3], p0[5], p0[7]};
                    v4f v2 = {p1[0], p1[2], p1[4], p1[6]}, v3 = {p1[1], p1[3], p1[5], p1[7]};
                    v4i t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                    v4f a = (v4f)(((v4i)v1 & t1) | ((v4i)v0 & ~t1)), c = (v4f)(((v4i)v3 & t3) | ((v4i)v2 & ~t3));
                    v4i i0 = {base + 2 * ox, base + 2 * ox + 2, base + 2 * ox + 4, base + 2 * ox + 6};
                    v4i ia = i0 - t1, ic = i0 + IW - t3;
                    v4i tc = (c > a) | ((c != c) & (a == a));
                    v4_st(yo + ox, (v4f)(((v4i)c & tc) | ((v4i)a & ~tc)));
                    v4i best = (ic & tc) | (ia & ~tc);
                    memcpy(ao + ox, &best, sizeof best);
                }
                for (; ox < OW; ox++) {
                    float v0 = r0[2 * ox], v1 = r0[2 * ox + 1], v2 = r1[2 * ox], v3 = r1[2 * ox + 1];
                    int t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                    float a = t1 ? v1 : v0, c = t3 ? v3 : v2;
                    int ia = base + 2 * ox + t1, ic = base + 2 * ox + IW + t3;
                    int tc = (c > a) | ((c != c) & (a == a));
                    yo[ox] = tc ? c : a;
                    ao[ox] = tc ? ic : ia;
                }
            }
            continue;
        }
        for (int oy = 0; oy < L->h; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int y0 = oy * L->stride, x0 = ox * L->stride;
                int best = y0 * IW + x0;
                float bv = xp[best];
                for (int ky = 0; ky < L->k; ky++)
                    for (int kx = 0; kx < L->k; kx++) POOL_TAKE((y0 + ky) * IW + x0 + kx);
                s.y[ob + oy * OW + ox] = bv;
                am[ob + oy * OW + ox] = best;
            }
    }
}

static void maxpool_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    const int32_t *am = w->iaux[i] + b0 * s.on;
    long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
    if (assign && !pool2_tiles(L)) { memset(s.dx, 0, sizeof(float) * s.nb * s.inn); assign = 0; }
    if (assign) { /* 2x2 windows tile the input: each window stores 0 + dy at its winner, 0 elsewhere */
        const int IW = L->iw, OW = L->w;
        for (long bc = 0; bc < s.nb * L->c; bc++) {
            float *xp = s.dx + bc * ihw;
            const float *gp = s.dy + bc * ohw;
            const int32_t *ap = am + bc * ohw;
            for (int oy = 0; oy < L->h; oy++) {
                float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
                const int base = 2 * oy * IW;
                for (int ox = 0; ox < OW; ox++) {
                    const int k = ap[oy * OW + ox] - base - 2 * ox; /* 0, 1, IW, IW + 1 */
                    const float g = 0.0f + gp[oy * OW + ox];
                    r0[2 * ox] = k == 0 ? g : 0.0f;
                    r0[2 * ox + 1] = k == 1 ? g : 0.0f;
                    r1[2 * ox] = k == IW ? g : 0.0f;
                    r1[2 * ox + 1] = k == IW + 1 ? g : 0.0f;
                }
            }
        }
        return;
    }
    for (long bc = 0; bc < s.nb * L->c; bc++)
        for (long j = 0; j < ohw; j++) s.dx[bc * ihw + am[bc * ohw + j]] += s.dy[bc * ohw + j];
}

static void avgpool_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    const int IW = L->iw, OW = L->w;
    float inv = 1.0f / (float)(L->k * L->k);
    for (long bc = 0; bc < s.nb * L->c; bc++) {
        const float *xp = s.x + bc * L->ih * IW;
        long ob = bc * L->h * OW;
        for (int oy = 0; oy < L->h; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int y0 = oy * L->stride, x0 = ox * L->stride;
                float sum = 0;
                for (int ky = 0; ky < L->k; ky++)
                    for (int kx = 0; kx < L->k; kx++) sum += xp[(y0 + ky) * IW + x0 + kx];
                s.y[ob + oy * OW + ox] = sum * inv;
            }
    }
}

static void avgpool_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    float inv = 1.0f / (float)(L->k * L->k);
    for (long bc = 0; bc < s.nb * L->c; bc++) {
        float *xp = s.dx + bc * L->ih * L->iw;
        const float *yp = s.dy + bc * L->h * L->w;
        for (int oy = 0; oy < L->h; oy++)
            for (int ox = 0; ox < L->w; ox++) {
                float g = yp[oy * L->w + ox] * inv;
                for (int ky = 0; ky < L->k; ky++)
                    for (int kx = 0; kx < L->k; kx++) xp[(oy * L->stride + ky) * L->iw + ox * L->stride + kx] += g;
            }
    }
}

static void gap_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    long hw = (long)L->ih * L->iw;
    for (long j = 0; j < s.nb * L->c; j++) {
        double sum = 0;
        for (long q = 0; q < hw; q++) sum += s.x[j * hw + q];
        s.y[j] = (float)(sum / hw);
    }
}

static void gap_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                         long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    long hw = (long)L->ih * L->iw;
    for (long j = 0; j < s.nb * L->c; j++) {
        float g = s.dy[j] / (float)hw;
        for (long q = 0; q < hw; q++) s.dx[j * hw + q] += g;
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
