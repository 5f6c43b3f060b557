/* layout.c -- where each node's values are stored in a Work: NCHW, or channel-blocked nChwVc for the
 * convolutional part of a network (see layer.h's Layer fields blk, cp). Decided once per model, at
 * model_finalize, from the convolution path in use (conv_block): with oneDNN's direct kernels
 * (conv_dnnl.c), V = the ISA's vector width in floats (16 with AVX-512, 8 with AVX2), and the
 * convolutions, batch-norm, ReLU, pools and residual adds between them all work on blocked tensors,
 * one vector of V channels per pixel, with no reordering between layers. Measured (docs/performance.md):
 * oneDNN's direct kernels run at 150-200 GFLOP/s on one AVX-512 core on blocked tensors, its NCHW path
 * at 25-120.
 *
 * The plan: a conv's output is blocked; a kind that keeps its input's layout (batch-norm, ReLU, tanh,
 * dropout, pools, add) follows its input; global average pooling, and a pool whose output is
 * flattened, write NCHW (they convert). A node that must be NCHW for its consumer (linear, flatten with
 * spatial extent, normalisation) and is not produced by a converting kind, or an add of two layouts,
 * makes the whole model NCHW: correct everywhere, and the convolutions then take the im2col path.
 *
 * A convolution for which oneDNN has only reference loops in these layouts (channel counts that are
 * small and not a multiple of V, as LeNet-5's; with AVX2 only, the weight gradient of vgg16's 512-channel
 * convolutions on 2x2 maps: conv_dnnl_supported) runs on the im2col path, and so does every convolution
 * after it: the pool feeding the first such convolution converts to NCHW (vgg16 keeps its first four
 * stages, 91% of its multiply-adds, on oneDNN). When no pool feeds it (through batch-norm / ReLU /
 * dropout), or when the NCHW part would do most of the work (LeNet-5), the model is NCHW. */
#include <immintrin.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"


static int keeps_layout(LayerKind k) {
    return k == L_BN || k == L_RELU || k == L_TANH || k == L_DROPOUT || k == L_MAXPOOL || k == L_AVGPOOL || k == L_ADD;
}

/* 1 when consumer j can read a blocked input */
static int reads_blocked(const Model *m, int j) {
    const Layer *L = &m->L[j];
    if (L->kind == L_CONV || L->kind == L_GAP || keeps_layout(L->kind)) return 1;
    return 0;
}

static void set_plain(Model *m) {
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        L->blk = L->iblk = 0;
        L->cp = L->c;
        L->icp = L->ic;
    }
}

/* one forward sweep: conv outputs blocked unless to_plain, layout-keeping kinds follow their input
 * (a pool in to_plain converts), GAP converts; 0, or -1 when the two inputs of an add differ */
static int propagate(Model *m, int V, const unsigned char *to_plain, int plain_from) {
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        int ib = L->in < 0 ? 0 : m->L[L->in].blk;
        L->iblk = ib;
        L->blk = L->kind == L_CONV ? (i < plain_from ? V : 0) : keeps_layout(L->kind) && !to_plain[i] ? ib : 0;
        if (L->kind == L_ADD && (L->in2 < 0 ? 0 : m->L[L->in2].blk) != ib) return -1;
    }
    return 0;
}

static int g_refuse_hw; /* tests: convolutions with outputs of at most this many pixels count as unsupported */
void layout_refuse_set(int max_hw) { g_refuse_hw = max_hw; }

static int supported(const Layer *L) {
    return (long)L->h * L->w > g_refuse_hw && conv_dnnl_supported(L);
}

/* the pool that feeds conv j through layout-keeping one-input kinds, or -1 */
static int feeding_pool(const Model *m, int j) {
    for (int i = m->L[j].in; i >= 0; i = m->L[i].in) {
        const LayerKind k = m->L[i].kind;
        if (k == L_MAXPOOL || k == L_AVGPOOL) return i;
        if (!keeps_layout(k) || k == L_ADD) return -1;
    }
    return -1;
}

/* the sweeps: 0, or -1 when the model must be NCHW */
static int plan(Model *m, int V, unsigned char *to_plain, int plain_from) {
    for (;;) {
        if (propagate(m, V, to_plain, plain_from) < 0) return -1;
        /* a blocked node read by a kind that needs NCHW (linear, flatten, normalisation): a pool converts
           (and the sweep runs again), anything else makes the model NCHW */
        int again = 0;
        for (int j = 0; j < m->nl; j++) {
            int i = m->L[j].in;
            if (i < 0 || !m->L[i].blk || reads_blocked(m, j)) continue;
            if (m->L[i].kind != L_MAXPOOL && m->L[i].kind != L_AVGPOOL) return -1;
            to_plain[i] = 1;
            again = 1;
        }
        if (!again) break;
    }
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        L->cp = round_up_blk(L->c, L->blk);
        L->icp = round_up_blk(L->ic, L->iblk);
    }
    return 0;
}

void layout_plan(Model *m) {
    set_plain(m);
    const int V = conv_block();
    if (!V) return;
    unsigned char to_plain[MAX_LAYERS] = {0};
    int plain_from = MAX_LAYERS; /* convolutions from this node on are NCHW (im2col) */
    if (plan(m, V, to_plain, plain_from) < 0) { set_plain(m); return; }
    /* oneDNN must have real kernels for every blocked convolution in these layouts; from the first that
       has none, the convolutions go NCHW behind a converting pool, else the whole model does */
    for (int i = 0; i < m->nl; i++) {
        if (m->L[i].kind != L_CONV || !m->L[i].blk || supported(&m->L[i])) continue;
        const int p = feeding_pool(m, i);
        double before = 0, after = 0; /* multiply-adds of the convolutions either side */
        for (int j = 0; j < m->nl; j++)
            if (m->L[j].kind == L_CONV) {
                const Layer *C = &m->L[j];
                *(j < i ? &before : &after) += (double)C->c * C->h * C->w * C->ic * C->k * C->k;
            }
        /* once, behind a pool, and only when most of the work stays on oneDNN (LeNet-5's conv2 is 2/3) */
        if (plain_from != MAX_LAYERS || p < 0 || after >= before) { set_plain(m); return; }
        plain_from = i;
        to_plain[p] = 1;
        if (plan(m, V, to_plain, plain_from) < 0) { set_plain(m); return; }
        i = -1; /* check the blocked ones again in the new plan */
    }
}

/* 8 x 8 floats turned over: rows i < ns of s (ss apart; zeros past ns) become the columns of rows
 * j < nd of d (ds apart), each value stored as 0 + v (layout_move's assign) */
#define T256 __attribute__((target("avx2")))
T256 static void turn8(float *d, long ds, int nd, const float *s, long ss, int ns) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = i < ns ? _mm256_loadu_ps(s + i * ss) : _mm256_setzero_ps();
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);     /* 0 8 1 9 | 4 12 5 13 of rows i, i+1 */
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]); /* 2 10 3 11 | 6 14 7 15 */
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    const __m256 z = _mm256_setzero_ps();
    for (int j = 0; j < nd; j++) {
        const __m256 o = j < 4 ? _mm256_permute2f128_ps(u[j], u[j + 4], 0x20) : _mm256_permute2f128_ps(u[j - 4], u[j], 0x31);
        _mm256_storeu_ps(d + j * ds, _mm256_add_ps(z, o));
    }
}

/* dst (+)= src for nb samples of C channels x HW pixels, src stored with block sv (0: NCHW) and scp
 * channels, dst with dv and dcp; assign: dst = 0 + src, padding lanes of a blocked dst set to 0. The
 * assigning moves between NCHW and blocks of 8 (the im2col path's Winograd layers, conv.c) go 8 pixels
 * x 8 channels at a time with AVX2; the same values. */
void layout_move(float *dst, int dv, int dcp, const float *src, int sv, int scp, int C, long HW, long nb, int assign) {
    const int turn = assign && kernels_level() >= 1 && ((sv == 0 && dv == 8) || (sv == 8 && dv == 0));
    const long H8 = turn ? HW / 8 * 8 : 0; /* pixels [0, H8) turned, the rest one by one */
    for (long b = 0; b < nb; b++) {
        float *db = dst + b * dcp * HW;
        const float *sb = src + b * scp * HW;
        if (assign && dcp > C && (!turn || !dv)) memset(db, 0, sizeof(float) * dcp * HW);
        for (int c0 = 0; c0 < C && H8 > 0; c0 += 8) {
            const int n = C - c0 < 8 ? C - c0 : 8;
            for (long q = 0; q < H8; q += 8)
                if (dv) turn8(db + (c0 / 8 * HW + q) * 8, 8, 8, sb + (long)c0 * HW + q, HW, n);
                else turn8(db + (long)c0 * HW + q, HW, n, sb + (c0 / 8 * HW + q) * 8, 8, 8);
        }
        if (turn && dv && dcp > C) /* the padding lanes of the last pixels, and of the blocks past C */
            for (int c = C; c < dcp; c++)
                for (long q = c < (C + 7) / 8 * 8 ? H8 : 0; q < HW; q++) db[blk_off(dv, HW, c, q)] = 0.0f;
        for (int c = 0; c < C; c++)
            for (long q = H8; q < HW; q++) {
                float *o = db + blk_off(dv, HW, c, q);
                float v = sb[blk_off(sv, HW, c, q)];
                *o = assign ? 0.0f + v : *o + v;
            }
    }
}
