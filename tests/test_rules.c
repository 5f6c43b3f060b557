/* test_rules.c -- the learning-rule table against its definitions (paper-notes §2). */
#include <stdlib.h>
#include <string.h>

#include "harness/checkpoint.h"
#include "harness/gemm.h"
#include "harness/loss.h"
#include "harness/train.h"
#include "rules/build.h"
#include "tests/test.h"

static const char *const NON_DIRECT[] = {"bp", "fa", "usf", "brsf", "frsf"};

static Model *mk(const char *arch, const char *rule, uint64_t init_seed, int last_bp) {
    ModelSpec s;
    model_spec_default(&s, arch, 1, 12, 12, 5);
    snprintf(s.hidden, sizeof s.hidden, "16,12");
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = 77;
    ro.last_layer_bp = last_bp;
    Model *m = model_create(&s, rule_find(rule), &ro, init_seed);
    CHECK(m);
    return m;
}

typedef struct Batch { int n; float x[8 * 144]; int32_t y[8]; float d[8 * 5]; } Batch;
static void batch_make(Batch *b, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed, 9, 0);
    b->n = 8;
    for (int i = 0; i < 8 * 144; i++) b->x[i] = rng_uniform(&r);
    for (int i = 0; i < 8; i++) b->y[i] = (int32_t)rng_below(&r, 5);
}
/* forward + loss + (refresh) + backward: one training pass's gradients in m->grads */
static void grads(Model *m, Work *w, Batch *b, int refresh, int flags) {
    float *o = model_forward(m, w, b->x, b->n, FWD_TRAIN);
    loss_softmax_ce(o, b->y, b->n, 5, 1.0f / b->n, b->d, NULL, NULL);
    if (refresh) model_refresh_feedback(m);
    model_backward(m, w, b->d, flags);
}

TEST(rule_table_lists_every_rule_once) {
    static const char *want[] = {"bp", "fa", "dfa", "usf", "brsf", "frsf"};
    T_EQ_INT(N_RULES, 6);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) T_ASSERT_MSG(rule_find(want[i]) != NULL, "rule %s", want[i]);
    T_ASSERT(rule_find("BP") == NULL && rule_find("") == NULL);
    for (int i = 0; i < N_RULES; i++) T_ASSERT(RULES[i]->desc && RULES[i]->state && *RULES[i]->desc);
}

/* B forced to W: every rule's code path (own B buffer, FA's R, refresh skipped) is BP, bit for bit */
TEST(rule_with_B_equal_W_reproduces_bp_bitwise) {
    static const char *archs[] = {"mlp", "lenet5"};
    for (size_t a = 0; a < ARRAY_LEN(archs); a++) {
        Batch b;
        batch_make(&b, 1);
        Model *ref = mk(archs[a], "bp", 5, 0);
        Work *wr = work_create(ref, 8);
        grads(ref, wr, &b, 0, BW_PARAMS | BW_INPUT);
        for (size_t r = 1; r < ARRAY_LEN(NON_DIRECT); r++) {
            Model *m = mk(archs[a], NON_DIRECT[r], 5, 0);
            Work *w = work_create(m, 8);
            for (int i = 0; i < m->nl; i++)
                if (m->L[i].B && m->L[i].B != m->L[i].W) memcpy(m->L[i].B, m->L[i].W, sizeof(float) * layer_w_n(&m->L[i]));
            grads(m, w, &b, 0, BW_PARAMS | BW_INPUT);
            T_ASSERT_MSG(memcmp(m->grads, ref->grads, sizeof(float) * m->n_params) == 0, "%s/%s: parameter gradients differ from bp", archs[a], NON_DIRECT[r]);
            T_ASSERT_MSG(memcmp(w->dx, wr->dx, sizeof(float) * 8 * 144) == 0, "%s/%s: input gradient differs", archs[a], NON_DIRECT[r]);
            work_free(w);
            model_free(m);
        }
        work_free(wr);
        model_free(ref);
    }
}

/* ... and the same check must fail when B != W (the comparison can fail) */
static void usf_vs_bp(void) {
    Batch b;
    batch_make(&b, 1);
    Model *ref = mk("mlp", "bp", 5, 0), *m = mk("mlp", "usf", 5, 0);
    Work *wr = work_create(ref, 8), *w = work_create(m, 8);
    grads(ref, wr, &b, 0, BW_PARAMS);
    grads(m, w, &b, 1, BW_PARAMS);
    T_ASSERT(memcmp(m->grads, ref->grads, sizeof(float) * m->n_params) == 0);
    work_free(w); work_free(wr); model_free(m); model_free(ref);
}
TEST(rule_bitwise_check_canary) { T_ASSERT(test_expect_failure(usf_vs_bp)); }

/* The output layer's weight gradient depends only on e and h_{L-1}: identical for every rule */
TEST(rule_output_layer_update_identical) {
    Batch b;
    batch_make(&b, 2);
    Model *ref = mk("lenet5", "bp", 9, 0);
    Work *wr = work_create(ref, 8);
    grads(ref, wr, &b, 1, BW_PARAMS);
    Layer *lr = model_param_layer(ref, model_nparam_layers(ref) - 1);
    for (size_t r = 1; r < ARRAY_LEN(NON_DIRECT); r++) {
        Model *m = mk("lenet5", NON_DIRECT[r], 9, 0);
        Work *w = work_create(m, 8);
        grads(m, w, &b, 1, BW_PARAMS);
        Layer *L = model_param_layer(m, model_nparam_layers(m) - 1);
        T_ASSERT_MSG(memcmp(L->dW, lr->dW, sizeof(float) * layer_w_n(L)) == 0, "%s: output dW differs", NON_DIRECT[r]);
        T_ASSERT_MSG(memcmp(L->db, lr->db, sizeof(float) * L->c) == 0, "%s: output db differs", NON_DIRECT[r]);
        /* and the hidden layers do differ (the rule is really in use) */
        Layer *h = model_param_layer(m, 1), *hr = model_param_layer(ref, 1);
        T_ASSERT_MSG(memcmp(h->dW, hr->dW, sizeof(float) * layer_w_n(h)) != 0, "%s: hidden dW equals bp", NON_DIRECT[r]);
        work_free(w);
        model_free(m);
    }
    work_free(wr);
    model_free(ref);
}

static void train_steps(Model *m, int steps, void (*after)(Model *, void *), void *ctx) {
    TrainOpts o;
    train_opts_default(&o);
    o.lr = 0.05;
    Work *w = work_create(m, 8);
    for (int s = 0; s < steps; s++) {
        Batch b;
        batch_make(&b, 100 + s);
        grads(m, w, &b, 1, BW_PARAMS);
        optimizer_step(m, w, &o, o.lr);
        if (after) after(m, ctx);
    }
    work_free(w);
}

static void check_usf(Model *m, void *ctx) {
    (void)ctx;
    model_refresh_feedback(m);
    for (int p = 0; p < model_nparam_layers(m); p++) {
        Layer *L = model_param_layer(m, p);
        float s = (float)sqrt(2.0 / (layer_fan_in(L) + layer_fan_out(L)));
        T_NEAR(L->rscale, s, 0);
        long bad = 0;
        for (long j = 0; j < layer_w_n(L); j++) {
            float want = L->W[j] > 0 ? s : L->W[j] < 0 ? -s : 0.0f;
            bad += L->B[j] != want;
        }
        T_ASSERT_MSG(bad == 0, "usf layer %s: %ld entries of B differ from s*sign(W)", L->name, bad);
    }
}
TEST(rule_usf_B_is_scaled_sign_of_W_after_every_update) {
    Model *m = mk("lenet5", "usf", 3, 0);
    Layer *L = model_param_layer(m, 2);
    for (long j = 0; j < 50; j++) L->W[j * 7] = 0.0f; /* sign(0) = 0 must hold */
    model_refresh_feedback(m);
    for (long j = 0; j < 50; j++) T_ASSERT(L->B[j * 7] == 0.0f);
    train_steps(m, 5, check_usf, NULL);
    model_free(m);
    /* meanabs recomputes s from the current W */
    ModelSpec s;
    model_spec_default(&s, "mlp", 1, 12, 12, 5);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.usf_scale = USF_MEANABS;
    m = model_create(&s, rule_find("usf"), &ro, 1);
    L = model_param_layer(m, 0);
    double ma = 0;
    for (long j = 0; j < layer_w_n(L); j++) ma += fabs(L->W[j]);
    T_NEAR(L->rscale, ma / layer_w_n(L), 1e-6);
    model_free(m);
}

typedef struct Snap { float *M, *B; int step; } Snap;
static void check_sign_follow(Model *m, void *ctx) {
    Snap *sn = ctx;
    model_refresh_feedback(m);
    for (int p = 0; p < model_nparam_layers(m); p++) {
        Layer *L = model_param_layer(m, p);
        long n = layer_w_n(L), wrong = 0;
        for (long j = 0; j < n; j++) {
            float sw = (float)((L->W[j] > 0) - (L->W[j] < 0)), sb = (float)((L->B[j] > 0) - (L->B[j] < 0));
            wrong += sw != sb && L->B[j] != 0; /* |M| may be 0 only with probability 0 */
        }
        T_ASSERT_MSG(wrong == 0, "%s layer %s: %ld signs of B do not follow W", m->rule->name, L->name, wrong);
    }
    sn->step++;
}
TEST(rule_frsf_magnitudes_fixed_signs_follow_W) {
    Model *m = mk("lenet5", "frsf", 4, 0);
    Layer *L = model_param_layer(m, 1);
    long n = layer_w_n(L);
    float *M0 = xmalloc(sizeof(float) * n);
    memcpy(M0, L->rstate, sizeof(float) * n);
    Snap sn = {0};
    train_steps(m, 4, check_sign_follow, &sn);
    T_ASSERT(memcmp(M0, L->rstate, sizeof(float) * n) == 0);
    for (long j = 0; j < n; j++)
        if (fabsf(L->B[j]) != M0[j] && L->W[j] != 0) { test_fail_at(__FILE__, __LINE__, "frsf |B| != |M| at %ld", j); break; }
    free(M0);
    model_free(m);
}

TEST(rule_brsf_magnitudes_redrawn_signs_match_W) {
    Model *m = mk("lenet5", "brsf", 4, 0);
    Layer *L = model_param_layer(m, 1);
    long n = layer_w_n(L);
    float *B0 = xmalloc(sizeof(float) * n);
    model_refresh_feedback(m);
    memcpy(B0, L->B, sizeof(float) * n);
    Snap sn = {0};
    train_steps(m, 3, check_sign_follow, &sn);
    long same = 0;
    for (long j = 0; j < n; j++) same += fabsf(B0[j]) == fabsf(L->B[j]);
    T_ASSERT_MSG(same < n / 100, "brsf magnitudes did not change between batches (%ld of %ld equal)", same, n);
    free(B0);
    model_free(m);
}

TEST(rule_fa_B_never_changes) {
    Model *m = mk("lenet5", "fa", 4, 0);
    long tot = 0;
    for (int p = 0; p < model_nparam_layers(m); p++) tot += layer_w_n(model_param_layer(m, p));
    float *B0 = xmalloc(sizeof(float) * tot);
    long off = 0;
    for (int p = 0; p < model_nparam_layers(m); p++) {
        Layer *L = model_param_layer(m, p);
        T_ASSERT(L->B != L->W);
        memcpy(B0 + off, L->B, sizeof(float) * layer_w_n(L));
        off += layer_w_n(L);
    }
    train_steps(m, 4, NULL, NULL);
    off = 0;
    for (int p = 0; p < model_nparam_layers(m); p++) {
        Layer *L = model_param_layer(m, p);
        T_ASSERT_MSG(memcmp(B0 + off, L->B, sizeof(float) * layer_w_n(L)) == 0, "fa B of %s changed", L->name);
        off += layer_w_n(L);
    }
    free(B0);
    model_free(m);
}

/* DFA on an MLP: the delta of hidden layer l is (D_{l+1} e) * f'(a_l), computed here by hand in double */
TEST(rule_dfa_hidden_deltas_are_projected_output_error) {
    for (int bs = 1; bs <= 8; bs += 7) { /* any batch size */
        Model *m = mk("mlp", "dfa", 6, 0);
        Work *w = work_create(m, 8);
        Batch b;
        batch_make(&b, 3);
        b.n = bs;
        grads(m, w, &b, 1, BW_PARAMS | BW_GRADS); /* the hidden layers' deltas are read below */
        int K = 5;
        for (int i = 0; i < m->nl; i++) {
            Layer *L = &m->L[i];
            if (L->kind != L_LINEAR || i == m->out) continue;
            /* L is fc1 or fc2; its output a feeds a ReLU, whose output feeds the next linear layer N */
            int relu = i + 1, nxt = i + 2;
            CHECK(m->L[relu].kind == L_RELU && m->L[nxt].kind == L_LINEAR);
            Layer *N = &m->L[nxt];
            long bad = 0;
            for (int s = 0; s < bs; s++)
                for (int u = 0; u < L->c; u++) {
                    double de = 0;
                    for (int k = 0; k < K; k++) de += (double)N->B[(long)u * K + k] * b.d[s * K + k];
                    double fprime = w->act[relu][(long)s * L->c + u] > 0 ? 1 : 0;
                    double want = de * fprime, got = w->grad[i][(long)s * L->c + u];
                    if (fabs(got - want) > 1e-6 + 1e-5 * fabs(want)) bad++;
                }
            T_ASSERT_MSG(bad == 0, "dfa layer %s batch %d: %ld deltas differ from (D e) * f'(a)", L->name, bs, bad);
        }
        /* no stale state: inference-mode gradients depend on the current labels */
        float *o = model_forward(m, w, b.x, bs, FWD_INFER);
        loss_softmax_ce(o, b.y, bs, K, 1.0f, b.d, NULL, NULL);
        model_backward(m, w, b.d, BW_INPUT);
        float g1 = w->dx[10];
        for (int s = 0; s < bs; s++) b.y[s] = (b.y[s] + 1) % K;
        loss_softmax_ce(o, b.y, bs, K, 1.0f, b.d, NULL, NULL);
        model_backward(m, w, b.d, BW_INPUT);
        T_ASSERT_MSG(w->dx[10] != g1, "dfa input gradient ignores the current labels");
        work_free(w);
        model_free(m);
    }
}

TEST(rule_angles_for_gaussian_W) {
    /* closed forms: cos = E|w| / sqrt(E w^2) = sqrt(2/pi) -> 37.0 deg for s*sign(W); with uniform
     * magnitudes E|m|/sqrt(E m^2) = sqrt(3)/2 more -> 46.3 deg */
    Layer L = {0};
    L.kind = L_LINEAR;
    L.ic = 2000; L.ih = L.iw = 1; L.c = 500;
    long n = layer_w_n(&L);
    float *W = xmalloc(sizeof(float) * n), *B = xmalloc(sizeof(float) * n), *M = xmalloc(sizeof(float) * n);
    Rng r;
    rng_seed(&r, 1, 2, 3);
    for (long j = 0; j < n; j++) W[j] = rng_normal(&r) * 0.02f;
    L.W = W; L.B = B; L.rstate = M; L.rstate_n = n;
    RuleOpts ro;
    rule_opts_default(&ro);
    RuleCtx c = {&ro, 10, &r};
    rule_find("usf")->refresh(&L, &c);
    T_NEAR(vec_angle_deg(B, W, n), 37.0, 1.0);
    rule_find("brsf")->refresh(&L, &c);
    T_NEAR(vec_angle_deg(B, W, n), 46.3, 1.5);
    rule_find("frsf")->init(&L, &c);
    rule_find("frsf")->refresh(&L, &c);
    T_NEAR(vec_angle_deg(B, W, n), 46.3, 1.5);
    free(W); free(B); free(M);
}

TEST(rule_options_parse_and_round_trip) {
    RuleOpts o, o2;
    rule_opts_default(&o);
    T_ASSERT(rule_opts_parse(&o, "usf-scale", "meanabs") == 0);
    T_ASSERT(rule_opts_parse(&o, "magnitude", "halfnormal") == 0);
    T_ASSERT(rule_opts_parse(&o, "brsf-resample", "forward") == 0);
    o.last_layer_bp = 1;
    o.seed = 42;
    char txt[256];
    rule_opts_format(&o, txt, sizeof txt);
    T_ASSERT(rule_opts_from_text(&o2, txt) == 0);
    T_ASSERT(memcmp(&o, &o2, sizeof o) == 0);
    err_clear();
    T_ASSERT(rule_opts_parse(&o, "usf-scale", "bogus") < 0);
    T_CONTAINS(err_msg(), "xavier|he-fanout|none|wstd|meanabs");
}

TEST(rule_last_layer_bp_uses_exact_classifier_feedback) {
    Model *m = mk("mlp", "fa", 1, 1);
    Layer *last = model_param_layer(m, model_nparam_layers(m) - 1), *first = model_param_layer(m, 0);
    T_ASSERT(str_eq(last->rule->name, "bp") && last->B == last->W);
    T_ASSERT(str_eq(first->rule->name, "fa") && first->B != first->W);
    model_free(m);
}

/* Training resumed from a checkpoint continues bitwise like uninterrupted training, rule state and
 * optimiser state included (brSF: the redraw counter; dropout: keyed by step). */
TEST(rule_state_survives_checkpoint_resume_bitwise) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:300", NULL, SPLIT_TRAIN, &d) == 0);
    static const char *rules[] = {"bp", "fa", "dfa", "usf", "brsf", "frsf"};
    for (size_t r = 0; r < ARRAY_LEN(rules); r++) {
        TrainOpts o;
        train_opts_default(&o);
        o.epochs = 2; o.batch = 64; o.quiet = 1; o.probe_n = 0; o.seed = 3; o.lr = 0.02;
        ModelSpec s;
        model_spec_default(&s, "lenet5", d.c, d.h, d.w, d.classes);
        RuleOpts ro;
        rule_opts_default(&ro);
        ro.seed = 8;
        Model *a = model_create(&s, rule_find(rules[r]), &ro, 1), *b = model_create(&s, rule_find(rules[r]), &ro, 1);
        T_ASSERT(train_run(a, &d, NULL, &o, 0, NULL, NULL) == 0);
        o.epochs = 1;
        T_ASSERT(train_run(b, &d, NULL, &o, 0, NULL, NULL) == 0);
        char path[512];
        snprintf(path, sizeof path, "%s/resume_%s.ckpt", test_tmpdir(), rules[r]);
        T_ASSERT(ckpt_save(path, b, NULL) == 0);
        Model *c = ckpt_load(path, NULL, NULL, 0, 1, NULL);
        T_ASSERT_MSG(c != NULL, "%s", err_msg());
        if (c) {
            o.epochs = 2;
            T_ASSERT(train_run(c, &d, NULL, &o, 1, NULL, NULL) == 0);
            T_ASSERT_MSG(memcmp(a->params, c->params, sizeof(float) * a->n_params) == 0, "%s: resumed training differs", rules[r]);
            T_EQ_INT(a->fb_count, c->fb_count);
        }
        model_free(a); model_free(b); model_free(c);
    }
    dataset_close(&d);
}

TEST(rule_finetune_from_bp_with_new_head_and_freeze) {
    char dir[512], ck[600], ft[600], cmd[2048], out[16384];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    snprintf(ck, sizeof ck, "%s/pre.ckpt", dir);
    snprintf(ft, sizeof ft, "%s/ft.ckpt", dir);
    snprintf(cmd, sizeof cmd, "%s train --model lenet5 --dataset synthetic:400 --val 50 --epochs 1 --rule bp --out %s --no-db --quiet", test_exe(), ck);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s finetune --from %s --rule usf --dataset synthetic:400:1x28x28:4 --new-head --freeze 2 --val 50 --epochs 1 --out %s --no-db --quiet", test_exe(), ck, ft);
    int rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    if (rc) { fprintf(stderr, "%s\n", out); return; }
    CkptMeta mt;
    T_ASSERT(ckpt_read_meta(ft, &mt) == 0);
    T_ASSERT(str_eq(meta_get(&mt, "rule"), "usf"));
    T_ASSERT(str_eq(meta_get(&mt, "parent"), ck));
    char h[17];
    file_sha_hex(ck, h);
    T_ASSERT(str_eq(meta_get(&mt, "parent_hash"), h));
    T_ASSERT(str_eq(meta_get(&mt, "classes"), "4"));
    /* frozen layers kept their pretrained weights exactly */
    Model *p = ckpt_load(ck, NULL, NULL, 0, 0, NULL), *f = ckpt_load(ft, NULL, NULL, 0, 0, NULL);
    T_ASSERT(p && f);
    if (p && f) {
        T_ASSERT(memcmp(model_param_layer(p, 0)->W, model_param_layer(f, 0)->W, sizeof(float) * layer_w_n(model_param_layer(p, 0))) == 0);
        T_ASSERT(memcmp(model_param_layer(p, 1)->W, model_param_layer(f, 1)->W, sizeof(float) * layer_w_n(model_param_layer(p, 1))) == 0);
        T_ASSERT(memcmp(model_param_layer(p, 2)->W, model_param_layer(f, 2)->W, sizeof(float) * layer_w_n(model_param_layer(p, 2))) != 0);
        T_ASSERT(memcmp(p->L[0].mean, f->L[0].mean, sizeof(float)) == 0); /* normalisation kept */
    }
    model_free(p); model_free(f);
}

/* ---- the optimiser step split over threads ----
 * optimizer_step with a Work of T threads updates each layer's range in cache-line shares (split_lines):
 * every parameter and optimiser-state value must come out bitwise as from the one-thread step, for every
 * optimiser, on layers whose ranges are not multiples of 16 floats (mlp 144-16-12-5: 204 and 65). */
static void fill_grads(Model *m, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed, 5, 0);
    for (long j = 0; j < m->n_params; j++) m->grads[j] = rng_normal(&r) * 0.1f;
}
static int same_floats(const float *a, const float *b, long n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }
/* three steps of one optimiser on two twins: serially, and over T threads (lr_scale perturbs the second:
 * the canary) */
static int split_step_matches(const char *arch, int opt, int nesterov, double mom, double wd, int T, double lr_scale) {
    Model *a = mk(arch, "bp", 3, 0), *b = mk(arch, "bp", 3, 0);
    TrainOpts o;
    train_opts_default(&o);
    o.optimizer = opt;
    o.nesterov = nesterov;
    o.momentum = mom;
    o.weight_decay = wd;
    blas_set_threads(T);
    Work *w = work_create(b, 8);
    blas_set_threads(1);
    CHECK(w->threads == T);
    for (int s = 0; s < 3; s++) {
        fill_grads(a, 40 + s);
        fill_grads(b, 40 + s);
        optimizer_step(a, NULL, &o, 0.05);
        optimizer_step(b, w, &o, 0.05 * lr_scale);
    }
    int same = a->step == b->step && same_floats(a->params, b->params, a->n_params) &&
               same_floats(a->opt_m, b->opt_m, a->n_params) && same_floats(a->opt_v, b->opt_v, a->n_params);
    work_free(w);
    model_free(a);
    model_free(b);
    return same;
}
TEST(optimizer_step_over_threads_is_bitwise_the_serial_step) {
    const char *arch[] = {"mlp", "lenet5"};
    for (size_t i = 0; i < ARRAY_LEN(arch); i++)
        for (int T = 2; T <= 3; T++) {
            T_ASSERT_MSG(split_step_matches(arch[i], OPT_SGD, 0, 0.0, 0.0, T, 1.0), "%s T=%d: plain SGD", arch[i], T);
            T_ASSERT_MSG(split_step_matches(arch[i], OPT_SGD, 0, 0.9, 1e-3, T, 1.0), "%s T=%d: SGD momentum", arch[i], T);
            T_ASSERT_MSG(split_step_matches(arch[i], OPT_SGD, 1, 0.9, 1e-3, T, 1.0), "%s T=%d: nesterov", arch[i], T);
            T_ASSERT_MSG(split_step_matches(arch[i], OPT_ADAM, 0, 0.9, 1e-3, T, 1.0), "%s T=%d: adam", arch[i], T);
        }
}
static void split_step_canary(void) { /* a learning rate one part in 10^6 off must be seen */
    T_ASSERT(split_step_matches("mlp", OPT_ADAM, 0, 0.9, 0.0, 2, 1.000001));
}
TEST(optimizer_split_check_canary) { T_ASSERT(test_expect_failure(split_step_canary)); }
