/* pool.c -- L_MAXPOOL (k x k, stride s; the winner's index kept per output for the backward pass),
 * L_AVGPOOL (k x k, stride s) and L_GAP (global average to (C, 1, 1)). No parameters.
 * NCHW or channel-blocked (layout.c); a pool may read blocked and write NCHW (it converts, when what
 * reads it needs NCHW), GAP always writes NCHW. The winner index is the input offset within the sample,
 * in the input's layout (NCHW to NCHW: within the channel plane). Channels are looped to the stored count (cp): a blocked output's padding
 * lanes pool the input's zero padding lanes, so they stay zero. */
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
static inline float pool_grad(float dy, float y, int relu) { return relu && !(y > 0) ? 0.0f : dy; }

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
                    for (int v = 0; v < V; v++) {
                        float v0 = relu_of(xp[p0 + v], relu), v1 = relu_of(xp[p0 + V + v], relu);
                        float v2 = relu_of(xp[p2 + v], relu), v3 = relu_of(xp[p2 + V + v], relu);
                        int t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                        float a = t1 ? v1 : v0, c = t3 ? v3 : v2;
                        int ia = p0 + (t1 ? V : 0) + v, ic = p2 + (t3 ? V : 0) + v;
                        int tc = (c > a) | ((c != c) & (a == a));
                        yo[v] = tc ? c : a;
                        ao[v] = (int32_t)xo + (tc ? ic : ia);
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

/* NCHW 2x2 stride 2 as a tournament, (0 vs 1) and (2 vs 3) then the winners: the same winner as the
 * row-major scan (first maximum; first NaN), with shorter chains; 4 outputs at once (masks 0 / -1) */
static void maxpool2_plain(const Layer *L, const float *x, float *y, int32_t *am, long nb) {
    const int IW = L->iw, OW = L->w, relu = L->relu_in;
    const v4f z = {0, 0, 0, 0};
    for (long bc = 0; bc < nb * L->c; bc++) {
        const float *xp = x + bc * L->ih * IW;
        long ob = bc * L->h * OW;
        for (int oy = 0; oy < L->h; oy++) {
            const float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
            float *yo = y + ob + oy * OW;
            int32_t *ao = am + ob + oy * OW, base = 2 * oy * IW;
            int ox = 0;
            for (; ox + 4 <= OW; ox += 4) {
                const float *p0 = r0 + 2 * ox, *p1 = r1 + 2 * ox;
                v4f v0 = {p0[0], p0[2], p0[4], p0[6]}, v1 = {p0[1], p0[3], p0[5], p0[7]};
                v4f v2 = {p1[0], p1[2], p1[4], p1[6]}, v3 = {p1[1], p1[3], p1[5], p1[7]};
                if (relu) { /* x > 0 ? x : 0, NaN -> 0 */
                    v0 = (v4f)((v4i)v0 & (v0 > z)); v1 = (v4f)((v4i)v1 & (v1 > z));
                    v2 = (v4f)((v4i)v2 & (v2 > z)); v3 = (v4f)((v4i)v3 & (v3 > z));
                }
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
                float v0 = relu_of(r0[2 * ox], relu), v1 = relu_of(r0[2 * ox + 1], relu);
                float v2 = relu_of(r1[2 * ox], relu), v3 = relu_of(r1[2 * ox + 1], relu);
                int t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                float a = t1 ? v1 : v0, c = t3 ? v3 : v2;
                int ia = base + 2 * ox + t1, ic = base + 2 * ox + IW + t3;
                int tc = (c > a) | ((c != c) & (a == a));
                yo[ox] = tc ? c : a;
                ao[ox] = tc ? ic : ia;
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
    int32_t *am = w->iaux[i] + b0 * s.on;
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
                        for (int v = 0; v < V; v++) {
                            const long win = ap[oo + v];
                            const float g = 0.0f + pool_grad(gp[oo + v], yp[oo + v], relu);
                            xp[p0 + v] = win == p0 + v ? g : 0.0f;
                            xp[p0 + V + v] = win == p0 + V + v ? g : 0.0f;
                            xp[p2 + v] = win == p2 + v ? g : 0.0f;
                            xp[p2 + V + v] = win == p2 + V + v ? g : 0.0f;
                        }
                    }
        }
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
                for (int ox = 0; ox < OW; ox++) {
                    const int k = ap[oy * OW + ox] - base - 2 * ox; /* 0, 1, IW, IW + 1 */
                    const float g = 0.0f + pool_grad(gp[oy * OW + ox], yp[oy * OW + ox], relu);
                    r0[2 * ox] = k == 0 ? g : 0.0f;
                    r0[2 * ox + 1] = k == 1 ? g : 0.0f;
                    r1[2 * ox] = k == IW ? g : 0.0f;
                    r1[2 * ox + 1] = k == IW + 1 ? g : 0.0f;
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
