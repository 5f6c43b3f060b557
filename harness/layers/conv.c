/* conv.c -- L_CONV: 2-d convolution, any kernel / stride / padding. Two paths, chosen per model by its
 * layout (layout.c): a layer whose output is channel-blocked runs oneDNN's direct kernels
 * (conv_dnnl.c, the default); an NCHW one runs im2col + gemm, here (the reference path, and what a model
 * takes when it cannot be blocked). The rule seam as for linear layers (linear.c): the input gradient
 * goes through B (col2im(B^T dy)), or D e for a direct rule; weight and bias gradients are exact.
 *
 * The im2col path:
 * Convolutions run one sample at a time: the sample's column matrix stays in the L2 cache (no
 * (KC, N*P) matrix travels through memory), and the product (OC, P) is already NCHW, so neither the
 * output nor the incoming gradient is reshuffled. Only layers with tiny outputs (P < 64 pixels, e.g.
 * the last stages of vgg16 at 32x32) group samples into chunks, so that each product still has >= 64
 * columns; chunks go through w->tmp. (perf, lenet5 training: one sample per product was as fast as or
 * faster than 4-sample chunks, the reshuffle costing what larger products saved.) Keeping the forward
 * column matrices for the backward pass instead of recomputing them was measured 15-20% slower on
 * lenet5 training (docs/performance.md): recomputing from an L2-resident sample beats streaming them.
 * The input gradient of one sample at stride 1 goes through the WIDE column matrix (KC, OH*PW), PW the
 * bordered input width: dy is spread to rows of PW with zeros after its OW values, so that col2im adds
 * each of the KC rows as one run of OH*PW floats (col2im_wide_add, in the CPU's widest vectors) instead
 * of OH runs of OW. It costs (PW/OW - 1) more product (14% for LeNet-5's conv1, 40% for conv2) and saves
 * more (perf, lenet5 PGD-10: conv2's col2im of 1500 10-float rows cost more than its product).
 *
 * On a CPU with AVX2 but not AVX-512, where the small products are half as wide, LeNet-5's two layers take
 * other routes (measured: docs/performance.md, sixth round): conv2's forward pass by Winograd
 * (wino_nchw_use), conv1's forward pass and input gradient as direct correlations (direct_fwd_ok,
 * direct_dx_ok), conv2's input gradient through the exact column matrix, not the wide one (narrow_dx). */
#include <string.h>

#include "harness/gemm.h"
#include "harness/layers/conv_direct.h"
#include "harness/layers/conv_dnnl.h"
#include "harness/layers/conv_wino.h"
#include "harness/layers/im2col.h"
#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

#define CHUNK_COLS 64
int conv_chunk(const Layer *L, int cap) {
    long P = (long)L->h * L->w;
    long s = (CHUNK_COLS + P - 1) / P;
    if (s > cap) s = cap;
    return (int)(s < 1 ? 1 : s);
}

/* floats of im2col_s1's zero-bordered copy of one sample (0: not used for this layer) */
static long im2col_pad_n(const Layer *L) {
    return L->stride == 1 && L->pad > 0 ? (long)L->ic * (L->ih + 2 * L->pad) * (L->iw + 2 * L->pad) : 0;
}

/* columns of one sample's wide column matrix at stride 1 (col2im_wide_add): OH rows of the bordered
 * width PW = IW + 2 pad; 0 at other strides */
static long wide_q(const Layer *L) { return L->stride == 1 ? (long)L->h * (L->iw + 2 * L->pad) : 0; }
static long max_l(long a, long b) { return a > b ? a : b; }

/* A layer with few output channels (LeNet-5's conv1: 6) takes its weight gradient as direct dot products
 * (conv_direct.c) on CPUs with AVX2 + FMA: as a product, dW^T = col dy^T has C = 6 columns, which libxsmm
 * vectorises over (a third of an AVX-512 vector), and it needs dy transposed and the column matrix
 * built (perf, lenet5 training: conv1's weight product 451, im2col 198, transpose 191 Mcycles of an
 * epoch's 4,880). With 16, 32, ... output channels on an AVX-512 CPU (LeNet-5's conv2: 16 channels of
 * 10x10) the weight gradient is the product's own sums, 16 channels to a vector, with each input value
 * broadcast from the sample (conv_direct.c: direct_dw16): the same bits as col dy^T through libxsmm
 * without building col (perf, lenet5 training natively: 7% faster, alternated runs; that column matrix
 * was a third of im2col's 15%). */
static int direct_dw_ok(const Layer *L) {
    return L->stride == 1 && L->c <= DIRECT_MAX_C && L->w <= DIRECT_MAX_W && direct_dw_k(L->k) && kernels_level() >= 1;
}
/* its scratch: the bordered input (head) and dy widened to rows of up to 32 (mid) */
static long direct_head_n(const Layer *L) { return direct_border_n(L->ic, L->ih, L->pad, L->iw + 2 * L->pad); }
static long direct_mid_n(const Layer *L) { return (long)direct_c_pad(L->c) * L->h * DIRECT_MAX_W; }

/* LeNet-5's conv1 (1 -> 6 channels, 5x5, 28x28 rows) on a CPU with AVX2 but not AVX-512: the forward pass
 * and the input gradient as direct correlations (conv_direct.c) instead of im2col + product + col2im.
 * Measured (docs/performance.md): im2col + libxsmm took 11.7k TSC cycles a sample there; with AVX-512
 * the products are twice as wide and the direct kernels gained nothing (the fourth round). The input
 * gradient is the correlation of dy, bordered by k - 1 - pad, with W turned 180 degrees and transposed. */
static int direct_fwd_ok(const Layer *L) {
    return kernels_level() == 1 && L->stride == 1 && L->c <= DIRECT_MAX_C && direct_conv_ok(L->k, L->c, L->w);
}
static int direct_dx_ok(const Layer *L) {
    return kernels_level() == 1 && L->stride == 1 && L->pad <= L->k - 1 && L->ic <= DIRECT_MAX_C &&
           direct_conv_ok(L->k, L->ic, L->iw);
}
/* the direct input gradient's dy, bordered by k - 1 - pad: in col */
static int dx_border(const Layer *L) { return L->k - 1 - L->pad; }
static long direct_dx_n(const Layer *L) {
    const int e = dx_border(L);
    return direct_border_n(L->c, L->h, e, L->w + 2 * e);
}

/* per-thread scratch: col (KC, S*P) or (KC, Q); tmp = [xpad, a chunk's dy (C, S*P) or the direct bordered
 * input] [dy^T (S*P, C), or dy widened: (C, Q) for the wide column matrix, rows of 16 or 32 for the
 * direct weight gradient] [dW^T (KC, C)] */
static long im2col_tmp_head(const Layer *L, int cap) {
    long S = conv_chunk(L, cap), P = (long)L->h * L->w;
    return max_l(max_l((long)L->c * S * P, im2col_pad_n(L)), L->stride == 1 ? direct_head_n(L) : 0);
}
static long im2col_tmp_mid(const Layer *L, int cap) {
    long S = conv_chunk(L, cap), P = (long)L->h * L->w;
    return max_l(max_l((long)L->c * S * P, (long)L->c * wide_q(L)), L->stride == 1 ? direct_mid_n(L) : 0);
}
/* The forward pass of a layer like LeNet-5's conv2 (6 -> 16 channels, 5x5, 14x14 -> 10x10) by Winograd
 * F(2x2, kxk) (conv_wino.c): a 2x2 output tile costs (k+1)^2 products per channel pair instead of 4 k^2
 * (36 instead of 100), and no column matrix is built. The samples go through conv_wino.c's channel-blocked
 * layout: NCHW -> (C/8, H, W, 8) with zero padding lanes, and back; a group of about WINO_TILES tiles
 * per call. U, the transformed weights ((k+1)^2, IC, C), is the layer's aux, made before a forward pass
 * (conv_prepare; once while an attack fixes the weights). Measured (docs/performance.md, sixth round):
 * on a CPU with AVX2 but not AVX-512 the layer's forward time fell 18-21%; with AVX-512, where libxsmm's
 * products are twice as wide, it rose 7-12%, so it is used at kernels_level() 1 only. Not for conv1-like
 * layers: with one input channel the transforms cost more than the products they save. Not for the input
 * gradient: as a Winograd convolution of dy bordered by k - 1, its tiles' transforms would cost more than
 * the products saved. CONCORD_WINO=0 turns it off. */
#define WN_V 8
#define WN_MIN_IC 4
static int wino_nchw_use(const Layer *L) {
    return wino_enabled() && kernels_level() == 1 && L->stride == 1 && L->k == 5 && L->c % WN_V == 0 &&
           L->ic >= WN_MIN_IC;
}
static int wn_icp(const Layer *L) { return (L->ic + WN_V - 1) / WN_V * WN_V; }
/* samples per wino_conv call: about one round of WINO_TILES tiles */
static int wn_group(const Layer *L) {
    const long tiles = (long)((L->h + 1) / 2) * ((L->w + 1) / 2);
    return tiles >= WINO_TILES ? 1 : (int)(WINO_TILES / tiles);
}
/* floats of its per-thread scratch: the group's input and output, blocked, and conv_wino.c's */
static long wn_tmp_n(const Layer *L) {
    const long G = wn_group(L);
    return G * wn_icp(L) * L->ih * L->iw + G * L->c * L->h * L->w + wino_buf_n(wn_icp(L), L->c, L->k, 2);
}

/* the layer's aux: [U of the Winograd forward pass] [the direct input gradient's weights, B (or W) turned
 * 180 degrees and transposed: (ic, c, k, k)], each made in conv_prepare */
static long wn_u_n(const Layer *L) { return wino_nchw_use(L) ? (long)(L->k + 1) * (L->k + 1) * L->ic * L->c : 0; }
static long turned_n(const Layer *L) { return direct_dx_ok(L) ? (long)L->ic * L->c * L->k * L->k : 0; }

static void im2col_work_need(const Layer *L, int cap, WorkNeed *n) {
    long S = conv_chunk(L, cap), P = (long)L->h * L->w, KC = (long)L->ic * L->k * L->k;
    n->col = max_l(KC * S * P, KC * wide_q(L));
    if (direct_dx_ok(L)) n->col = max_l(n->col, direct_dx_n(L));
    n->tmp = im2col_tmp_head(L, cap) + im2col_tmp_mid(L, cap) + KC * L->c;
    if (wino_nchw_use(L)) {
        n->tmp = max_l(n->tmp, wn_tmp_n(L));
        n->iaux = 2; /* U made (1), under the Work's weight promise wgen */
    }
    n->aux = wn_u_n(L) + turned_n(L);
}

static void wn_forward(const Layer *L, const Span *sp, const float *U, float *tmp) {
    const int G = wn_group(L), CP = wn_icp(L);
    const long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
    float *xb = tmp /* (G, CP/8, IH, IW, 8) */, *yb = xb + G * CP * ihw /* (G, C/8, H, W, 8) */, *buf = yb + G * L->c * ohw;
    const WinoGeom g = {CP, L->ic, L->c, L->ih, L->iw, L->h, L->w, L->pad, L->k, WN_V, 2};
    for (long s = 0; s < sp->nb; s += G) {
        const int ns = (int)(sp->nb - s < G ? sp->nb - s : G);
        layout_move(xb, WN_V, CP, sp->x + s * sp->inn, 0, L->ic, L->ic, ihw, ns, 1);
        wino_conv(yb, xb, U, L->bias ? L->b : NULL, 0, ns, &g, buf);
        layout_move(sp->y + s * sp->on, 0, L->c, yb, WN_V, L->c, L->c, ohw, ns, 1);
    }
}

static void im2col_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span sp = span_of(m, w, i, b0, b1);
    const Layer *L = sp.L;
    if (sp.nb <= 0) return;
    const int P = L->h * L->w, KC = L->ic * L->k * L->k, S = conv_chunk(L, w->cap);
    float *col = w->col + t * w->col_n, *tmp = w->tmp + t * w->tmp_n;
    if (wino_nchw_use(L)) { wn_forward(L, &sp, w->aux[i], tmp); return; }
    if (direct_fwd_ok(L)) { /* one sample at a time, through its bordered copy */
        const int PW = L->iw + 2 * L->pad;
        for (long s = 0; s < sp.nb; s++) {
            direct_border(sp.x + s * sp.inn, L->ic, L->ih, L->iw, L->pad, PW, tmp);
            direct_conv(sp.y + s * sp.on, tmp, L->ic, L->ih + 2 * L->pad, PW, L->W, L->bias ? L->b : NULL, L->c, L->k,
                        L->h, L->w, 0);
        }
        return;
    }
    for (long s = 0; s < sp.nb; s += S) {
        int ns = (int)(sp.nb - s < S ? sp.nb - s : S), NP = ns * P;
        float *ys = sp.y + s * sp.on;
        if (ns == 1 && L->stride == 1) im2col_s1(L, sp.x + s * sp.inn, tmp, col);
        else im2col(L, ns, sp.x + s * sp.inn, col);
        if (ns == 1) { /* one sample: the product is already NCHW */
            for (int c = 0; c < L->c; c++) {
                float bias = L->bias ? L->b[c] : 0.0f, *yc = ys + (long)c * P;
                const v4f bv = {bias, bias, bias, bias};
                int p = 0;
                for (; p + 4 <= P; p += 4) v4_st(yc + p, bv);
                for (; p < P; p++) yc[p] = bias;
            }
            gemm(0, 0, L->c, P, KC, 1.0f, L->W, KC, col, P, 1.0f, ys, P);
            continue;
        }
        gemm(0, 0, L->c, NP, KC, 1.0f, L->W, KC, col, NP, 0.0f, tmp, NP);
        for (int b = 0; b < ns; b++)
            for (int c = 0; c < L->c; c++) {
                const float *tp = tmp + (long)c * NP + (long)b * P;
                float *yp = ys + ((long)b * L->c + c) * P, bias = L->bias ? L->b[c] : 0.0f;
                row_add_scalar(yp, tp, bias, P);
            }
    }
}

/* On a CPU with AVX2 but not AVX-512, an input gradient with output rows of 8-16 floats (LeNet-5's conv2: 10)
 * goes through the exact column matrix (KC, OH*OW) and col2im_s1_add's vector rows instead of the wide one:
 * 29% less product for conv2 (its PW = 14 against OW = 10), and 8-float adds of its rows (perf, lenet5
 * on Haswell-class, alternated runs: training and PGD-10 5.8% faster). With AVX-512 the wide matrix stays
 * (the same change there was 21% slower on lenet5 PGD-10). With libxsmm's AVX2 kernels (LIBXSMM_TARGET=hsw,
 * as on such a CPU) the exact product has the wide one's bits (scripts/same_behaviour.sh unchanged); its
 * AVX-512 kernels round the two widths differently, so CONCORD_ISA=avx2 alone on an AVX-512 CPU moves them. */
static int narrow_dx(const Layer *L) { return kernels_level() == 1 && L->w <= 16 && col2im_s1_vectors(L); }
static void im2col_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                            long bstart, int t) {
    Span sp = span_of(m, w, i, b0, b1);
    const Layer *L = sp.L;
    const int need_dx = need_dx_of(m, L, flags), want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const int direct = !(flags & BW_TRUE) && L->fb_direct;
    const float *B = (flags & BW_TRUE) ? L->W : L->B;
    float *dW, *db;
    layer_grads(m, w, L, t, want_params && sp.nb == 0 && b0 == bstart, &dW, &db);
    if (sp.nb == 0) return;
    const int P = L->h * L->w, KC = L->ic * L->k * L->k, S = conv_chunk(L, w->cap);
    float *col = w->col + t * w->col_n, *tmp = w->tmp + t * w->tmp_n;
    float *gT = tmp + im2col_tmp_head(L, w->cap), *dWt = gT + im2col_tmp_mid(L, w->cap);
    for (long s = 0; s < sp.nb; s += S) {
        int ns = (int)(sp.nb - s < S ? sp.nb - s : S), NP = ns * P;
        const float *g = sp.dy + s * sp.on; /* (OC, NP) layout needed: one sample already is */
        if (ns > 1) {
            for (int b = 0; b < ns; b++)
                for (int c = 0; c < L->c; c++) row_copy(tmp + (long)c * NP + (long)b * P, g + ((long)b * L->c + c) * P, P);
            g = tmp;
        }
        if (want_params && ns == 1 && direct_dw_ok(L)) { /* dW^T (+)= the direct sums, as the product would */
            const int PW = L->iw + 2 * L->pad;
            widen_rows(g, L->c, direct_c_pad(L->c), L->h, L->w, direct_row(L->w), gT);
            direct_border(sp.x + s * sp.inn, L->ic, L->ih, L->iw, L->pad, PW, tmp);
            direct_dw(tmp, L->ic, L->ih + 2 * L->pad, PW, gT, L->c, L->k, L->h, L->w, dWt, s > 0);
        } else if (want_params) {
            /* dW^T (+)= col dy^T, both as stored for libxsmm (gemm.c, which takes B untransposed); the
               call's sum goes into dW once, below */
            transpose_rows(g, L->c, NP, gT);
            if (ns == 1 && L->stride == 1 && direct_dw16_ok(L->k, L->c)) { /* the same sums without col */
                const int PW = L->iw + 2 * L->pad;
                const float *in = sp.x + s * sp.inn;
                if (L->pad) { direct_border(in, L->ic, L->ih, L->iw, L->pad, PW, tmp); in = tmp; }
                direct_dw16(in, L->ic, L->ih + 2 * L->pad, PW, gT, L->c, L->k, L->h, L->w, dWt, s > 0);
            } else {
                if (ns == 1 && L->stride == 1) im2col_s1(L, sp.x + s * sp.inn, tmp, col);
                else im2col(L, ns, sp.x + s * sp.inn, col);
                gemm(0, 0, KC, L->c, NP, 1.0f, col, NP, gT, L->c, s == 0 ? 0.0f : 1.0f, dWt, L->c);
            }
        }
        if (want_params) {
            const int first = b0 + s == bstart;
            double sum[64];
            for (int c0 = 0; db && c0 < L->c; c0 += 64) {
                const int nc = L->c - c0 < 64 ? L->c - c0 : 64;
                sums_f64(g + (long)c0 * NP, nc, NP, NP, sum);
                for (int c = 0; c < nc; c++) db[c0 + c] = (first ? 0.0f : db[c0 + c]) + (float)sum[c];
            }
        }
        if (need_dx && !direct && ns == 1 && direct_dx_ok(L)) { /* dx (+)= dy bordered (x) W turned */
            const int e = dx_border(L), PW = L->w + 2 * e;
            direct_border(g, L->c, L->h, L->w, e, PW, col);
            direct_conv(sp.dx + s * sp.inn, col, L->c, L->h + 2 * e, PW, w->aux[i] + wn_u_n(L), NULL, L->ic, L->k, L->ih,
                        L->iw, !assign);
        } else if (need_dx && !direct && ns == 1 && L->stride == 1 && narrow_dx(L)) { /* exact col, vector rows */
            gemm(1, 0, KC, P, L->c, 1.0f, B, KC, g, P, 0.0f, col, P);
            col2im_s1_add(L, col, tmp, sp.dx + s * sp.inn, assign);
        } else if (need_dx && !direct && ns == 1 && L->stride == 1) { /* through the wide column matrix */
            const int PW = L->iw + 2 * L->pad, Q = L->h * PW;
            widen_rows(g, L->c, L->c, L->h, L->w, PW, gT); /* dy in the wide layout */
            gemm(1, 0, KC, Q, L->c, 1.0f, B, KC, gT, Q, 0.0f, col, Q);
            col2im_wide_add(L, col, tmp, sp.dx + s * sp.inn, assign);
        } else if (need_dx && !direct) {
            gemm(1, 0, KC, NP, L->c, 1.0f, B, KC, g, NP, 0.0f, col, NP);
            if (assign) memset(sp.dx + s * sp.inn, 0, sizeof(float) * ns * sp.inn);
            col2im_add(L, ns, col, sp.dx + s * sp.inn);
        }
    }
    if (want_params) { /* dW = dW^T^T for the thread's first samples, dW += after */
        const int first = b0 == bstart;
        for (int c = 0; c < L->c; c++)
            for (int r = 0; r < KC; r++) {
                float v = dWt[(long)r * L->c + c];
                dW[(long)c * KC + r] = first ? v : dW[(long)c * KC + r] + v;
            }
    }
    if (need_dx && direct) layer_direct_dx(m, L, dout, sp.dx, assign, b0, sp.nb);
}

/* one sample per product runs in sample groups; chunked products, and a direct rule's projection (one
 * product over the slice), need the whole slice */
static int im2col_grouped(const Layer *L, int cap, int backward, int flags) {
    return conv_chunk(L, cap) == 1 && !(backward && L->fb_direct);
}

/* ---- the kind: each op goes to the layer's path ---- */

static void conv_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    if (m->L[i].blk) conv_dnnl_forward(m, w, i, b0, b1, t);
    else im2col_forward(m, w, i, b0, b1, t);
}
static void conv_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                          long bstart, int t) {
    if (m->L[i].blk) conv_dnnl_backward(m, w, i, dout, flags, assign, b0, b1, bstart, t);
    else im2col_backward(m, w, i, dout, flags, assign, b0, b1, bstart, t);
}
static int conv_grouped(const Model *m, const Layer *L, int cap, int backward, int flags) {
    return L->blk ? conv_dnnl_grouped(m, L, cap, backward, flags) : im2col_grouped(L, cap, backward, flags);
}
static void conv_work_need(const Layer *L, int cap, WorkNeed *n) {
    if (L->blk) conv_dnnl_work_need(L, cap, n);
    else im2col_work_need(L, cap, n);
}
static void conv_work_init(const Model *m, Work *w, int i) {
    if (m->L[i].blk) conv_dnnl_init(m, w, i);
}
static void conv_prepare(Model *m, Work *w, int i, int backward, int flags, int t) {
    const Layer *L = &m->L[i];
    if (L->blk) conv_dnnl_prepare(m, w, i, backward, flags, t);
    else if (backward && turned_n(L) && need_dx_of(m, L, flags) && ((flags & BW_TRUE) || !L->fb_direct)) {
        const float *B = (flags & BW_TRUE) ? L->W : L->B; /* the direct input gradient's weights */
        float *Wt = w->aux[i] + wn_u_n(L);
        const int kk = L->k * L->k;
        for (int o = 0; o < L->c; o++)
            for (int c = 0; c < L->ic; c++)
                for (int q = 0; q < kk; q++) Wt[((long)c * L->c + o) * kk + q] = B[((long)o * L->ic + c) * kk + kk - 1 - q];
    } else if (!backward && wino_nchw_use(L)) { /* U, kept while an attack fixes the weights */
        int32_t *st = w->iaux[i];
        if (w->weights_fixed && st[0] && (unsigned)st[1] == w->wgen) return;
        wino_weights(w->aux[i], L->W, L->c, L->ic, L->k, 2, 0);
        st[0] = 1;
        st[1] = (int32_t)w->wgen;
    }
}

const LayerOps LAYER_CONV = {
    .name = "conv",
    .forward = conv_forward,
    .backward = conv_backward,
    .stores_dx = 1,
    .grouped = conv_grouped,
    .work_need = conv_work_need,
    .work_init = conv_work_init,
    .work_fini = conv_dnnl_fini,
    .prepare = conv_prepare,
};
