/* conv_dnnl.c -- L_CONV through oneDNN (Debian libdnnl 2.6): its direct convolution kernels on
 * channel-blocked tensors (layout.c) for the forward pass, the input gradient (backward data) and the
 * weight gradient (backward weights). conv.c sends a layer here when its output is blocked. A stride-1
 * "same" 3x3 or 5x5 layer with at least 64 channels in and out (16 on AVX2) does its forward pass and input
 * gradient by Winograd instead (conv_wino.c, on the same blocked tensors; wino_use), and its weight
 * gradient too (wino_dw).
 *
 * The rule seam as in linear.c: the input gradient is backward-data with the rule's B as its weights
 * (W with BW_TRUE), or D e for a direct rule; weight and bias gradients are oneDNN's backward-weights
 * (or wino_dw), exact: the true gradient, whatever the rule. Measured on one AVX-512 core (docs/performance.md): 150-200 GFLOP/s on blocked tensors against
 * 25-120 for oneDNN's own NCHW path and ~90 for OpenBLAS's sgemm (Haswell kernels) under im2col.
 *
 * Threads: the Work's threads split the batch (pass.c); each runs oneDNN single-threaded (its OpenMP
 * thread count is set to 1 on every thread that calls it), with its own stream and scratchpad
 * (user-managed scratchpads let one primitive run on several threads at once).
 * Batch sizes: a primitive is made for one mini-batch size; every call is cut into power-of-two pieces
 * of at most MB_MAX samples, so a layer has at most MB_LOG sizes of primitives, each made the first
 * time it is needed (oneDNN's primitive cache makes re-making one for the next Work cheap).
 * Weights: the kernels read blocked weight formats. prepare() reorders W (forward) and B or W
 * (backward data) once per pass, or once per attack while the Work's weights are fixed (work_fix_weights:
 * the copies are kept between passes, B's keyed by its draw); the weight gradient comes out blocked and is reordered into the
 * thread's gradient block (the pieces after the first with the reorder's sum post-op: dW += piece). */
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness/layers/conv_dnnl.h"
#include "harness/layers/conv_wino.h"
#include "harness/layers/kernels.h"
#include "harness/threads.h"

void omp_set_num_threads(int n); /* libgomp, oneDNN's threading runtime in Debian's build */

/* Pieces of up to 128 samples: a 1-thread training batch's weight gradient is one primitive, not two
 * 64-sample ones summed by a reorder (vgg16 training on the direct kernels, CONCORD_WINO=0, 1 thread,
 * alternated three times: 64.5-67.3 -> 77.3-77.9 samples/s; its 4x4 and 2x2 stages' weight gradients had
 * run at 29-47% of the sgemm peak in 64-sample pieces). Its bits differ from 64-sample pieces': the
 * gradient's sum order. */
#define MB_LOG 8
#define MB_MAX (1 << (MB_LOG - 1)) /* 128 */

#define DN(call)                                                                                       \
    do {                                                                                               \
        dnnl_status_t st_ = (call);                                                                    \
        if (st_ != dnnl_success) {                                                                     \
            fprintf(stderr, "concord: internal error: oneDNN %s failed (status %d) at %s:%d\n", #call, \
                    (int)st_, __FILE__, __LINE__);                                                     \
            abort();                                                                                   \
        }                                                                                              \
    } while (0)

/* ------------------------------------------------------------------ the path switch */

static int g_path = -1;
int conv_path(void) {
    if (g_path < 0) {
        const char *e = getenv("CONCORD_CONV");
        g_path = e && str_eq(e, "im2col") ? CONV_IM2COL : CONV_DNNL;
    }
    return g_path;
}
void conv_path_set(int path) { g_path = path; }

static dnnl_engine_t g_eng;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void engine_init(void) {
    omp_set_num_threads(1);
    DN(dnnl_engine_create(&g_eng, dnnl_cpu, 0));
}
static dnnl_engine_t engine(void) {
    pthread_once(&g_once, engine_init);
    return g_eng;
}
/* oneDNN sizes its kernels' blocking and parallelism from the caller's OpenMP thread count: one */
static void omp_one(void) {
    static __thread int done;
    if (!done) { omp_set_num_threads(1); done = 1; }
}

int conv_block(void) {
    if (conv_path() != CONV_DNNL) return 0;
    engine();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((int)isa & (int)dnnl_cpu_isa_avx512_core) == (int)dnnl_cpu_isa_avx512_core ? 16 : 8;
}

const char *conv_isa_name(void) {
    engine();
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* ------------------------------------------------------------------ per-Work state */

typedef struct DnnlWork {
    int T;
    dnnl_stream_t st[POOL_MAX];
    void *scr[POOL_MAX];         /* scratchpad of thread t, grown by thread t only */
    size_t scr_n[POOL_MAX];
    void *wbuf[POOL_MAX];        /* thread t's Winograd transforms (conv_wino.c), grown by thread t only */
    size_t wbuf_n[POOL_MAX];
} DnnlWork;

static DnnlWork *dnnl_work(Work *w) {
    if (!w->dnnl) {
        DnnlWork *d = xcalloc(1, sizeof *d);
        d->T = w->threads;
        for (int t = 0; t < d->T; t++) DN(dnnl_stream_create(&d->st[t], engine(), dnnl_stream_default_flags));
        w->dnnl = d;
    }
    return w->dnnl;
}
void conv_dnnl_work_free(Work *w) {
    DnnlWork *d = w->dnnl;
    if (!d) return;
    for (int t = 0; t < d->T; t++) {
        dnnl_stream_destroy(d->st[t]);
        big_free(d->scr[t], d->scr_n[t]);
        big_free(d->wbuf[t], d->wbuf_n[t]);
    }
    free(d);
    w->dnnl = NULL;
}
static void *grow(void **p, size_t *pn, size_t n) {
    if (n > *pn) { /* on huge pages, as the weights' copies (below) */
        big_free(*p, *pn);
        *pn = (n + 4095) & ~(size_t)4095;
        *p = big_alloc(*pn);
        CHECK(*p);
    }
    return *p;
}
static void *scratch(DnnlWork *d, int t, size_t n) { return grow(&d->scr[t], &d->scr_n[t], n); }
/* The Winograd tiles of layer L (outputs per side). The forward pass and the input gradient: F(4x4, 3x3)
 * for 3x3 layers on maps of at least 4x4, F(2x2, k x k) otherwise. Input gradient: 1.2-1.7x faster than
 * F(2x2, 3x3) on vgg16's layers on the AVX2 Zen 3; on an AVX-512 Zen 5, vgg16 PGD-10 +5-8%.
 * Forward (docs/performance.md, fourteenth round): PGD-10 alexnet +4-15% on AVX-512, vgg16 +10-12% and
 * resnet20 +8% Haswell-class, the rest flat. Its larger rounding puts other ReLU inputs within rounding
 * of zero on the other side than the im2col path does; test_conv_paths' reference takes the tested
 * model's decisions there (forward_following), asserting they are within rounding of zero.
 * The weight gradient: F(4x4, 3x3) from 16x16 maps only (on 8x8 and 4x4 maps its 36 products of K x C,
 * each summed over few tiles, and its larger transform of Z lost to F(2x2, 3x3): vgg16's 512-channel 4x4
 * layer 60 -> 153 ms a batch; on 16x16, 67 -> 53), on AVX2 only: on AVX-512 F(4x4, 3x3) there cost vgg16
 * training 1-10%, so blocks of 16 keep F(2x2, 3x3). */
static int wino_m(const Layer *L) { return L->k == 3 && L->h >= 4 && L->w >= 4 ? 4 : 2; } /* forward and input gradient */
static int wino_m_dw(const Layer *L) { return L->blk == 8 && L->h >= 16 && L->w >= 16 ? wino_m(L) : 2; }

/* thread t's scratch for a Winograd convolution of C channels into K (conv_wino.c) */
static float *wino_scratch(Work *w, int t, const Layer *L, int C, int K, int m) {
    DnnlWork *d = dnnl_work(w);
    return grow(&d->wbuf[t], &d->wbuf_n[t], sizeof(float) * wino_buf_n(C, K, L->k, m));
}
/* the same, for its weight gradient (wino_dw) */
static float *wino_dw_scratch(Work *w, int t, const Layer *L) {
    DnnlWork *d = dnnl_work(w);
    return grow(&d->wbuf[t], &d->wbuf_n[t], sizeof(float) * wino_dw_buf_n(L->ic, L->c, L->k, wino_m_dw(L)));
}

/* ------------------------------------------------------------------ per-layer state */

enum { P_FWD, P_BWD, P_WU, P_N };               /* forward, backward data, backward weights */
enum { A_SRC, A_WEI, A_BIA, A_DST, A_SCR, A_N }; /* the arguments of one primitive */

typedef struct Prim {
    dnnl_primitive_t p;
    int nargs;
    int which[A_N];                      /* the handle (A_*) each argument takes */
    dnnl_exec_arg_t args[POOL_MAX][A_N]; /* per thread: memory objects whose handles are set per call */
    size_t scr;                          /* scratchpad bytes */
} Prim;

typedef struct DConv {
    pthread_mutex_t mu;
    int T;
    dnnl_memory_desc_t wf_md, wb_md, dw_md, plain_w; /* weights: forward, backward data, gradient; oihw */
    float *wf, *wb;                                  /* W reordered for forward, B (or W) for backward data */
    size_t wf_n, wb_n;                               /* their bytes */
    dnnl_primitive_t r_wf, r_wb, r_dw, r_dw_sum;     /* oihw -> wf, oihw -> wb, dw -> oihw (+ dst) */
    dnnl_memory_t m_w, m_wf, m_wb;                   /* prepare's reorders (one thread per layer and pass) */
    /* while the Work's weights are fixed (an attack): wf holds W of promise wf_gen, wb the weights of
       promise wb_gen keyed by wb_key (W: ~0; B: its draw m->fb_count), so they are not reordered again */
    unsigned wf_gen, wb_gen;
    int wf_ok, wb_ok;
    uint64_t wb_key;
    dnnl_memory_t m_dw[POOL_MAX], m_dwo[POOL_MAX];   /* per thread: blocked gradient piece, oihw destination */
    int wino;                                        /* forward and gradients by conv_wino.c */
    float *uf, *ub;                                  /* then: W and B (or W) transformed, (n^2, ic, c) and (n^2, c, ic) */
    size_t u_n, ub_n;                                /* their bytes */
    Prim *prim[MB_LOG][P_N];                         /* by log2(mini-batch) and kind; NULL until needed */
} DConv;

static void md4(dnnl_memory_desc_t *md, int n, int c, int h, int w, dnnl_format_tag_t tag) {
    dnnl_dims_t d = {n, c, h, w};
    DN(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, tag));
}
static dnnl_format_tag_t act_tag(int blk) { return blk == 16 ? dnnl_nChw16c : blk == 8 ? dnnl_nChw8c : dnnl_nchw; }

/* the operation descriptors of layer L at mini-batch mb, weights in wmd (format_tag_any allowed) */
typedef struct Descs {
    dnnl_memory_desc_t src, dsrc, wei, bia, dst;
    dnnl_convolution_desc_t fwd, bwd, wu;
} Descs;
static void descs(const Layer *L, int mb, int V, const dnnl_memory_desc_t *wmd, const dnnl_memory_desc_t *bwmd,
                  const dnnl_memory_desc_t *dwmd, Descs *d) {
    md4(&d->src, mb, L->ic, L->ih, L->iw, act_tag(L->iblk));
    md4(&d->dsrc, mb, L->ic, L->ih, L->iw, act_tag(V)); /* a plain input's gradient is made blocked, then converted */
    md4(&d->dst, mb, L->c, L->h, L->w, act_tag(V));
    dnnl_dims_t bd = {L->c};
    if (L->bias) DN(dnnl_memory_desc_init_by_tag(&d->bia, 1, bd, dnnl_f32, dnnl_x));
    dnnl_dims_t s = {L->stride, L->stride}, p = {L->pad, L->pad};
    /* padding_r as PyTorch: what makes (ih + pl + pr - k) / s + 1 == h with floor division */
    dnnl_dims_t pr = {(L->h - 1) * L->stride + L->k - L->ih - L->pad, (L->w - 1) * L->stride + L->k - L->iw - L->pad};
    DN(dnnl_convolution_forward_desc_init(&d->fwd, dnnl_forward_training, dnnl_convolution_direct, &d->src, wmd,
                                          L->bias ? &d->bia : NULL, &d->dst, s, p, pr));
    DN(dnnl_convolution_backward_data_desc_init(&d->bwd, dnnl_convolution_direct, &d->dsrc, bwmd, &d->dst, s, p, pr));
    DN(dnnl_convolution_backward_weights_desc_init(&d->wu, dnnl_convolution_direct, &d->src, dwmd,
                                                   L->bias ? &d->bia : NULL, &d->dst, s, p, pr));
}

static dnnl_primitive_attr_t user_scratchpad(void) {
    dnnl_primitive_attr_t a;
    DN(dnnl_primitive_attr_create(&a));
    DN(dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user));
    return a;
}
/* the forward's attributes: a fused ReLU (fuse.c) is an eltwise post-op */
static dnnl_primitive_attr_t fwd_attr(const Layer *L) {
    dnnl_primitive_attr_t a = user_scratchpad();
    if (L->relu_out) {
        dnnl_post_ops_t po;
        DN(dnnl_post_ops_create(&po));
        DN(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        DN(dnnl_primitive_attr_set_post_ops(a, po));
        dnnl_post_ops_destroy(po);
    }
    return a;
}

static dnnl_primitive_t reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, int sum) {
    dnnl_primitive_attr_t a;
    DN(dnnl_primitive_attr_create(&a));
    if (sum) {
        dnnl_post_ops_t po;
        DN(dnnl_post_ops_create(&po));
        DN(dnnl_post_ops_append_sum(po, 1.0f));
        DN(dnnl_primitive_attr_set_post_ops(a, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    DN(dnnl_reorder_primitive_desc_create(&pd, from, engine(), to, engine(), a));
    dnnl_primitive_t p;
    DN(dnnl_primitive_create(&p, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(a);
    return p;
}

static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    DN(dnnl_memory_create(&m, md, engine(), DNNL_MEMORY_NONE));
    return m;
}

/* make primitive `kind` of layer i for mini-batch 2^lg (called under d->mu) */
static Prim *prim_make(const Layer *L, DConv *d, int lg, int kind) {
    const int V = L->blk, mb = 1 << lg;
    Descs ds;
    descs(L, mb, V, &d->wf_md, &d->wb_md, &d->dw_md, &ds);
    dnnl_primitive_attr_t a = user_scratchpad(), fa = fwd_attr(L);
    dnnl_primitive_desc_t fpd, pd;
    DN(dnnl_primitive_desc_create(&fpd, &ds.fwd, fa, engine(), NULL));
    if (kind == P_FWD) pd = fpd;
    else DN(dnnl_primitive_desc_create(&pd, kind == P_BWD ? (const void *)&ds.bwd : (const void *)&ds.wu, a, engine(), fpd));
    Prim *p = xcalloc(1, sizeof *p);
    DN(dnnl_primitive_create(&p->p, pd));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scr = dnnl_memory_desc_get_size(smd);
    static const int args[P_N][A_N] = {
        {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD},
        {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, 0, DNNL_ARG_DIFF_DST, DNNL_ARG_SCRATCHPAD},
        {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS, DNNL_ARG_DIFF_DST, DNNL_ARG_SCRATCHPAD},
    };
    const dnnl_memory_desc_t *mds[A_N] = {
        kind == P_BWD ? &ds.dsrc : &ds.src, kind == P_FWD ? &d->wf_md : kind == P_BWD ? &d->wb_md : &d->dw_md,
        &ds.bia, &ds.dst, smd};
    for (int u = 0; u < A_N; u++) {
        if (!args[kind][u] || (u == A_BIA && !L->bias) || (u == A_SCR && p->scr == 0)) continue;
        p->which[p->nargs] = u;
        for (int t = 0; t < d->T; t++) {
            p->args[t][p->nargs].arg = args[kind][u];
            p->args[t][p->nargs].memory = mem(mds[u]);
        }
        p->nargs++;
    }
    if (pd != fpd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_attr_destroy(a);
    dnnl_primitive_attr_destroy(fa);
    return p;
}

static Prim *prim_get(const Layer *L, DConv *d, int lg, int kind) {
    Prim *p = __atomic_load_n(&d->prim[lg][kind], __ATOMIC_ACQUIRE);
    if (p) return p;
    pthread_mutex_lock(&d->mu);
    p = d->prim[lg][kind];
    if (!p) {
        p = prim_make(L, d, lg, kind);
        __atomic_store_n(&d->prim[lg][kind], p, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&d->mu);
    return p;
}

/* run p on thread t with the handles h[A_SRC..A_DST] (the scratchpad is the thread's) */
static void prim_run(Work *w, Prim *p, int t, void *const h[A_N]) {
    DnnlWork *dw = w->dnnl;
    for (int n = 0; n < p->nargs; n++) {
        int u = p->which[n];
        DN(dnnl_memory_set_data_handle(p->args[t][n].memory, u == A_SCR ? scratch(dw, t, p->scr) : h[u]));
    }
    DN(dnnl_primitive_execute(p->p, dw->st[t], p->nargs, p->args[t]));
}

/* 1 when oneDNN has optimised kernels (not its reference loops) for all three passes of layer L with the
 * layouts the plan gave it: small channel counts that are not a multiple of the block (LeNet-5's 6
 * channels) get only reference loops on blocked tensors, ~1000x slower (measured). */
int conv_dnnl_supported(const Layer *L) {
    omp_one();
    dnnl_memory_desc_t any;
    md4(&any, L->c, L->ic, L->k, L->k, dnnl_format_tag_any);
    Descs ds;
    descs(L, MB_MAX, L->blk, &any, &any, &any, &ds);
    dnnl_primitive_attr_t a = user_scratchpad();
    dnnl_primitive_desc_t pd[P_N] = {NULL, NULL, NULL};
    int ok = dnnl_primitive_desc_create(&pd[P_FWD], &ds.fwd, a, engine(), NULL) == dnnl_success &&
             dnnl_primitive_desc_create(&pd[P_BWD], &ds.bwd, a, engine(), pd[P_FWD]) == dnnl_success &&
             dnnl_primitive_desc_create(&pd[P_WU], &ds.wu, a, engine(), pd[P_FWD]) == dnnl_success;
    for (int k = 0; k < P_N; k++) {
        const char *impl = NULL;
        if (ok && dnnl_primitive_desc_query(pd[k], dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
            strncmp(impl, "ref", 3) == 0)
            ok = 0;
        if (pd[k]) dnnl_primitive_desc_destroy(pd[k]);
    }
    dnnl_primitive_attr_destroy(a);
    return ok;
}

/* 1 when layer L's forward pass and gradients go through conv_wino.c: 3x3 or 5x5, stride 1, "same", input
 * and output blocked alike with whole blocks of channels, at least wino_min_c of each; CONCORD_WINO=0 turns
 * it off (for measuring). The threshold, measured (docs/performance.md): on AVX-512 (blocks of 16) oneDNN's
 * direct kernels win below 64 channels; on AVX2 (blocks of 8; the Zen 3) Winograd wins down to 16:
 * ResNet-20's 16- and 32-channel stages through it took its training from 299-302 to 324-335 samples/s and
 * PGD-10 from 40-43 to 52 images/s (alternated twice; 32 alone did as well within the noise) */
static int wino_min_c(int blk) { return blk == 8 ? 16 : 64; }
static int wino_use(const Layer *L) {
    const int mc = wino_min_c(L->blk);
    return wino_enabled() && (L->k == 3 || L->k == 5) && L->stride == 1 && L->pad == L->k / 2 && L->h == L->ih && L->w == L->iw &&
           L->iblk == L->blk && L->ic % L->blk == 0 && L->c % L->blk == 0 && L->ic >= mc && L->c >= mc;
}

void conv_dnnl_init(const Model *m, Work *w, int i) {
    const Layer *L = &m->L[i];
    omp_one();
    dnnl_work(w);
    DConv *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->T = w->threads;
    /* the weight formats the kernels choose at the largest mini-batch, fixed for every other size */
    dnnl_memory_desc_t any;
    md4(&any, L->c, L->ic, L->k, L->k, dnnl_format_tag_any);
    md4(&d->plain_w, L->c, L->ic, L->k, L->k, dnnl_oihw);
    Descs ds;
    descs(L, MB_MAX, L->blk, &any, &any, &any, &ds);
    dnnl_primitive_attr_t a = user_scratchpad(), fa = fwd_attr(L);
    dnnl_primitive_desc_t fpd, bpd, wpd;
    DN(dnnl_primitive_desc_create(&fpd, &ds.fwd, fa, engine(), NULL));
    DN(dnnl_primitive_desc_create(&bpd, &ds.bwd, a, engine(), fpd));
    DN(dnnl_primitive_desc_create(&wpd, &ds.wu, a, engine(), fpd));
    d->wf_md = *dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
    d->wb_md = *dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 0);
    d->dw_md = *dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(bpd);
    dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(a);
    dnnl_primitive_attr_destroy(fa);
    CHECK(dnnl_memory_desc_get_size(&d->dw_md) <= sizeof(float) * (size_t)conv_dnnl_dw_n(L));
    /* on huge pages (big_alloc): a reorder's scattered stores into 4 KiB pages miss the TLB */
    d->wf_n = dnnl_memory_desc_get_size(&d->wf_md);
    d->wb_n = dnnl_memory_desc_get_size(&d->wb_md);
    d->wf = big_alloc(d->wf_n);
    d->wb = big_alloc(d->wb_n);
    CHECK(d->wf && d->wb);
    d->r_wf = reorder(&d->plain_w, &d->wf_md, 0);
    d->r_wb = reorder(&d->plain_w, &d->wb_md, 0);
    d->r_dw = reorder(&d->dw_md, &d->plain_w, 0);
    d->r_dw_sum = reorder(&d->dw_md, &d->plain_w, 1);
    d->m_w = mem(&d->plain_w);
    d->m_wf = mem(&d->wf_md);
    d->m_wb = mem(&d->wb_md);
    for (int t = 0; t < d->T; t++) {
        d->m_dw[t] = mem(&d->dw_md);
        d->m_dwo[t] = mem(&d->plain_w);
    }
    d->wino = wino_use(L);
    if (d->wino) {
        const int n = L->k + wino_m(L) - 1; /* tile side, forward and input gradient */
        d->u_n = sizeof(float) * n * n * (size_t)L->ic * L->c;
        d->ub_n = sizeof(float) * n * n * (size_t)L->ic * L->c;
        d->uf = big_alloc(d->u_n);
        d->ub = big_alloc(d->ub_n);
        CHECK(d->uf && d->ub);
    }
    w->lx[i] = d;
}

static void prim_free(Prim *p, int T) {
    if (!p) return;
    for (int t = 0; t < T; t++)
        for (int n = 0; n < p->nargs; n++) dnnl_memory_destroy(p->args[t][n].memory);
    dnnl_primitive_destroy(p->p);
    free(p);
}

void conv_dnnl_fini(Work *w, int i) {
    DConv *d = w->lx[i];
    if (!d) return;
    for (int lg = 0; lg < MB_LOG; lg++)
        for (int k = 0; k < P_N; k++) prim_free(d->prim[lg][k], d->T);
    dnnl_primitive_destroy(d->r_wf);
    dnnl_primitive_destroy(d->r_wb);
    dnnl_primitive_destroy(d->r_dw);
    dnnl_primitive_destroy(d->r_dw_sum);
    dnnl_memory_destroy(d->m_w);
    dnnl_memory_destroy(d->m_wf);
    dnnl_memory_destroy(d->m_wb);
    for (int t = 0; t < d->T; t++) {
        dnnl_memory_destroy(d->m_dw[t]);
        dnnl_memory_destroy(d->m_dwo[t]);
    }
    big_free(d->wf, d->wf_n);
    big_free(d->wb, d->wb_n);
    if (d->wino) {
        big_free(d->uf, d->u_n);
        big_free(d->ub, d->ub_n);
    }
    pthread_mutex_destroy(&d->mu);
    free(d);
    w->lx[i] = NULL;
}

static void run_reorder(Work *w, int t, dnnl_primitive_t r, dnnl_memory_t from, const float *src, dnnl_memory_t to,
                        float *dst) {
    DN(dnnl_memory_set_data_handle(from, (void *)src));
    DN(dnnl_memory_set_data_handle(to, dst));
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DN(dnnl_primitive_execute(r, ((DnnlWork *)w->dnnl)->st[t], 2, a));
}

/* before a pass: the weights in the kernels' formats (W forward; B, or W with BW_TRUE, backward data) */
void conv_dnnl_prepare(Model *m, Work *w, int i, int backward, int flags, int t) {
    const Layer *L = &m->L[i];
    DConv *d = w->lx[i];
    omp_one();
    if (!backward) {
        if (w->weights_fixed && d->wf_ok && d->wf_gen == w->wgen) return;
        if (d->wino) wino_weights(d->uf, L->W, L->c, L->ic, L->k, wino_m(L), 0);
        else run_reorder(w, t, d->r_wf, d->m_w, L->W, d->m_wf, d->wf);
        d->wf_ok = 1;
        d->wf_gen = w->wgen;
        return;
    }
    const int direct = !(flags & BW_TRUE) && L->fb_direct;
    if (!need_dx_of(m, L, flags) || direct) return;
    const uint64_t key = (flags & BW_TRUE) || L->B == L->W ? ~(uint64_t)0 : m->fb_count;
    if (w->weights_fixed && d->wb_ok && d->wb_gen == w->wgen && d->wb_key == key) return;
    if (d->wino) wino_weights(d->ub, (flags & BW_TRUE) ? L->W : L->B, L->c, L->ic, L->k, wino_m(L), 1);
    else run_reorder(w, t, d->r_wb, d->m_w, (flags & BW_TRUE) ? L->W : L->B, d->m_wb, d->wb);
    d->wb_ok = 1;
    d->wb_gen = w->wgen;
    d->wb_key = key;
}

/* the largest power of two <= min(n, MB_MAX), as its log2 */
static int piece_lg(long n) {
    int lg = 0;
    while (lg + 1 < MB_LOG && (2L << lg) <= n) lg++;
    return lg;
}

void conv_dnnl_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span sp = span_of(m, w, i, b0, b1);
    const Layer *L = sp.L;
    DConv *d = w->lx[i];
    if (d->wino) {
        const int mf = wino_m(L);
        const WinoGeom g = {L->ic, L->ic, L->c, L->h, L->w, L->h, L->w, L->pad, L->k, L->blk, mf};
        wino_conv(sp.y, sp.x, d->uf, L->b, L->relu_out, sp.nb, &g, wino_scratch(w, t, L, L->ic, L->c, mf));
        return;
    }
    omp_one();
    for (long s = 0; s < sp.nb;) {
        int lg = piece_lg(sp.nb - s);
        void *h[A_N] = {(void *)(sp.x + s * sp.inn), d->wf, L->b, sp.y + s * sp.on, NULL};
        prim_run(w, prim_get(L, d, lg, P_FWD), t, h);
        s += 1L << lg;
    }
}

void conv_dnnl_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                               long bstart, int t) {
    Span sp = span_of(m, w, i, b0, b1);
    const Layer *L = sp.L;
    DConv *d = w->lx[i];
    const int need_dx = need_dx_of(m, L, flags), want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const int direct = !(flags & BW_TRUE) && L->fb_direct;
    float *dW, *db;
    layer_grads(m, w, L, t, want_params && sp.nb == 0 && b0 == bstart, &dW, &db);
    if (sp.nb == 0) return;
    omp_one();
    if (L->relu_out) { /* the fused ReLU's backward, in place: this layer is its output gradient's only reader */
        float *g = w->grad[i] + grad_row(i, b0) * sp.on;
        const v4f z = {0, 0, 0, 0};
        long j = 0, n = sp.nb * sp.on;
        for (; j + 4 <= n; j += 4) v4_st(g + j, (v4f)((v4i)v4_ld(g + j) & (v4_ld(sp.y + j) > z)));
        for (; j < n; j++) g[j] = sp.y[j] > 0 ? g[j] : 0.0f;
    }
    float *col = w->col + t * w->col_n, *tmp = w->tmp + t * w->tmp_n;
    const long ihw = (long)L->ih * L->iw, bin = (long)round_up_blk(L->ic, L->blk) * ihw; /* blocked input floats */
    /* the weight gradient of a Winograd layer by Winograd too (docs/performance.md, twelfth and thirteenth
       rounds: vgg16 training +19-32% over oneDNN's on AVX-512, +20-39% on AVX2). The whole slice at once:
       its tiles are the products' inner dimension */
    if (want_params && d->wino) {
        const WinoGeom g = {L->ic, L->ic, L->c, L->h, L->w, L->h, L->w, L->pad, L->k, L->blk, wino_m_dw(L)};
        wino_dw(dW, db, sp.x, sp.dy, sp.nb, &g, b0 != bstart, wino_dw_scratch(w, t, L));
    }
    for (long s = 0; s < sp.nb;) {
        const int lg = piece_lg(sp.nb - s);
        const long mb = 1L << lg;
        const float *x = sp.x + s * sp.inn, *g = sp.dy + s * sp.on;
        if (want_params && !d->wino) {
            const int first = b0 + s == bstart;
            float *gb = first ? db : tmp + conv_dnnl_dw_n(L);
            void *h[A_N] = {(void *)x, tmp, gb, (void *)g, NULL};
            prim_run(w, prim_get(L, d, lg, P_WU), t, h);
            run_reorder(w, t, first ? d->r_dw : d->r_dw_sum, d->m_dw[t], tmp, d->m_dwo[t], dW);
            if (!first && db) row_add(db, gb, L->c);
        }
        if (need_dx && !direct) {
            /* straight into dx when it is blocked like the kernel's output and this layer starts it */
            const int straight = L->iblk == L->blk && assign;
            float *dst = straight ? sp.dx + s * sp.inn : col;
            if (d->wino) {
                const WinoGeom wg = {L->c, L->c, L->ic, L->h, L->w, L->h, L->w, L->pad, L->k, L->blk, wino_m(L)};
                wino_conv(dst, g, d->ub, NULL, 0, mb, &wg, wino_scratch(w, t, L, L->c, L->ic, wino_m(L)));
            } else {
                void *h[A_N] = {dst, d->wb, NULL, (void *)g, NULL};
                prim_run(w, prim_get(L, d, lg, P_BWD), t, h);
            }
            if (!straight) {
                if (L->iblk == L->blk) {
                    if (assign) row_add_scalar(sp.dx + s * sp.inn, col, 0.0f, mb * bin);
                    else row_add(sp.dx + s * sp.inn, col, mb * bin);
                } else {
                    layout_move(sp.dx + s * sp.inn, L->iblk, L->icp, col, L->blk, round_up_blk(L->ic, L->blk), L->ic,
                                ihw, mb, assign);
                }
            }
        }
        s += mb;
    }
    if (need_dx && direct) { /* D e is NCHW-shaped: project, then move into the input's layout */
        layer_direct_dx(m, L, dout, col, 1, b0, sp.nb);
        layout_move(sp.dx, L->iblk, L->icp, col, 0, L->ic, L->ic, ihw, sp.nb, assign);
    }
}

/* grouped unless the weight gradient is wanted (one set of pieces per thread slice: fewer partial sums)
 * or a direct rule projects the whole slice */
int conv_dnnl_grouped(const Model *m, const Layer *L, int cap, int backward, int flags) {
    if (!backward) return 1;
    if ((flags & BW_PARAMS) && L->trainable && !L->frozen) return 0;
    return !(L->fb_direct && !(flags & BW_TRUE));
}

long conv_dnnl_dw_n(const Layer *L) { /* floats of a blocked weight gradient, at most */
    return (long)round_up_blk(L->c, 16) * round_up_blk(L->ic, 16) * L->k * L->k;
}

void conv_dnnl_work_need(const Layer *L, int cap, WorkNeed *n) {
    const long piece = cap < MB_MAX ? cap : MB_MAX; /* the largest piece a call can cut */
    long ihw = (long)L->ih * L->iw, bwd = piece * round_up_blk(L->ic, 16) * ihw;
    long dfa = L->fb_direct ? (long)cap * L->ic * ihw : 0;
    n->col = bwd > dfa ? bwd : dfa;
    n->tmp = conv_dnnl_dw_n(L) + L->c;
}

