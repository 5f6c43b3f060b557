/* test_fixtures.c -- mlp and lenet5 against an independent implementation: PyTorch in float64.
 *
 * tests/fixtures/<model>.ckpt is a real checkpoint with fixed seeded weights (not Concord's init) and
 * norm mean/std 0.2860/0.3530; tests/fixtures/<model>.bin holds a batch of N = 4 inputs in [0,1], their
 * labels, and what torch.nn.functional computes in float64: logits, mean cross-entropy, dL/dlogits, the
 * gradient of every parameter and dL/dx. Both are written by scripts/make_fixtures.py (`make fixtures`,
 * which documents the .bin layout); these tests need no torch. Paths are relative to the repo root,
 * where `make test` runs the tests.
 *
 * Each model is checked twice: inference-mode forward with the exact backward (BW_TRUE), and
 * training-mode forward with the backward through the bp rule's feedback (B == W). Neither model has
 * batch-norm or dropout, so both must give bitwise the same logits and the same gradients.
 *
 * Tolerances: the engine is float32 (unit roundoff u = 2^-24 = 6e-8), the reference float64 with the
 * same float32 inputs and weights, so every difference is float32 rounding in the engine. The longest
 * dot products have 784 terms (mlp fc1); each addition rounds a partial sum of order 1 by up to u, and
 * such errors add like a random walk: ~sqrt(784) * u ~ 2e-6 in a bad case. The observed max |diff| over every
 * record is 3e-7 (logits; gradients <= 1.5e-7; run with FIXTURE_VERBOSE=1 to see them). ATOL 2e-6 +
 * RTOL 2e-5 covers the bad case, with 50-100x headroom over what is observed, so other BLAS kernels or
 * summation orders pass, while a 1e-3 relative error in a single gradient element of size ~0.3 (a
 * dropped term, a wrong index) is ~40x over tolerance and flagged (the canaries below prove it).
 * The fixture inputs keep every ReLU pre-activation and max-pool runner-up more than 1e-5 away from
 * the branch point (make_fixtures.py), so float32 cannot take a different branch than float64.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/build.h"
#include "harness/checkpoint.h"
#include "harness/loss.h"
#include "harness/model.h"
#include "harness/layers/kernels.h"
#include "tests/test.h"

#define ATOL 2e-6
#define RTOL 2e-5
#define FIX_MAX_RECORDS 32

typedef struct {
    char name[64];
    int ndim, dims[4];
    long n;
    double *v; /* n values */
} Rec;
typedef struct { int n; Rec r[FIX_MAX_RECORDS]; } Fixture;

static void fixture_free(Fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->r[i].v);
    f->n = 0;
}

/* Reads the layout written by scripts/make_fixtures.py: "CCFIX001", uint32 count, then per record
 * uint32 name_len, name, uint32 ndim, ndim x uint32 dims, prod(dims) x float64 (all little-endian;
 * this host is checked to be little-endian by ckpt_load). Returns 0, or -1 after recording a failure. */
static int fixture_read(const char *path, Fixture *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        T_ASSERT_MSG(0, "%s: cannot open; run the tests from the repo root (make test), or regenerate with make fixtures", path);
        return -1;
    }
    char magic[8];
    uint32_t count = 0;
    int ok = fread(magic, 1, 8, fp) == 8 && memcmp(magic, "CCFIX001", 8) == 0 && fread(&count, 4, 1, fp) == 1 &&
             count <= FIX_MAX_RECORDS;
    for (uint32_t i = 0; ok && i < count; i++) {
        Rec *r = &f->r[f->n];
        uint32_t len = 0, nd = 0, d;
        ok = fread(&len, 4, 1, fp) == 1 && len < sizeof r->name && fread(r->name, 1, len, fp) == len &&
             fread(&nd, 4, 1, fp) == 1 && nd <= 4;
        r->ndim = (int)nd;
        r->n = 1;
        for (uint32_t k = 0; ok && k < nd; k++) {
            ok = fread(&d, 4, 1, fp) == 1 && d > 0 && d < (1u << 24);
            r->dims[k] = (int)d;
            r->n *= d;
        }
        if (ok) {
            r->v = malloc(sizeof(double) * (size_t)r->n);
            ok = r->v && fread(r->v, sizeof(double), (size_t)r->n, fp) == (size_t)r->n;
            f->n++;
        }
    }
    ok = ok && fgetc(fp) == EOF;
    fclose(fp);
    if (!ok) {
        T_ASSERT_MSG(0, "%s: not a valid fixture file (truncated or wrong layout); regenerate with make fixtures", path);
        fixture_free(f);
        return -1;
    }
    return 0;
}

static const Rec *fixture_find(const Fixture *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->r[i].name, name) == 0) return &f->r[i];
    return NULL;
}

/* The record `name`, which must hold exactly n values (the model's size for it). */
static const Rec *fixture_get(const Fixture *f, const char *name, long n) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->r[i].name, name) == 0) {
            T_ASSERT_MSG(f->r[i].n == n, "fixture record %s has %ld values, the model has %ld", name, f->r[i].n, n);
            return f->r[i].n == n ? &f->r[i] : NULL;
        }
    T_ASSERT_MSG(0, "fixture record %s is missing", name);
    return NULL;
}

static int g_verbose = -1, g_canary;

/* t_compare plus: the reference must not be all zeros (a checker comparing zeros to zeros proves
 * nothing), and with FIXTURE_VERBOSE=1 the max |diff| is printed for the record. */
static void compare(const char *arch, const char *what, const float *got, const Rec *want) {
    if (!want) return;
    double maxabs = 0, maxdiff = 0;
    for (long i = 0; i < want->n; i++) {
        if (fabs(want->v[i]) > maxabs) maxabs = fabs(want->v[i]);
        if (fabs(got[i] - want->v[i]) > maxdiff) maxdiff = fabs(got[i] - want->v[i]);
    }
    T_ASSERT_MSG(maxabs > 0, "%s %s: the reference is all zeros", arch, what);
    char label[96];
    snprintf(label, sizeof label, "%s %s", arch, what);
    double worst = T_ALLCLOSE(label, got, want->v, want->n, ATOL, RTOL);
    if (g_verbose < 0) g_verbose = getenv("FIXTURE_VERBOSE") && atoi(getenv("FIXTURE_VERBOSE")) > 0;
    if (g_verbose && !g_canary) fprintf(stderr, "    %-8s %-20s n %7ld  max|ref| %.3g  max|diff| %.3g  (%.3g of tolerance)\n", arch, what, want->n, maxabs, maxdiff, worst);
}

enum { CANARY_NONE, CANARY_EXPECTED, CANARY_WEIGHT };

/* Loads tests/fixtures/<arch>.{ckpt,bin} and compares everything, in both passes described above.
 * canary: CANARY_EXPECTED moves the largest expected weight-gradient element of the second
 * conv/fc layer by 1e-3 relative (about 40x its tolerance); CANARY_WEIGHT adds 0.05 (a typical weight
 * size, what a loader reading the wrong element would do) to one weight of the first layer after
 * loading. Both must be flagged. */
static void run_fixture(const char *arch, int canary) {
    char path[256];
    Fixture f;
    g_canary = canary != CANARY_NONE;
    snprintf(path, sizeof path, "tests/fixtures/%s.bin", arch);
    if (fixture_read(path, &f) < 0) return;
    snprintf(path, sizeof path, "tests/fixtures/%s.ckpt", arch);
    Model *m = ckpt_load(path, NULL, NULL, 0, 0, NULL);
    T_ASSERT_MSG(m != NULL, "%s: %s", path, m ? "" : err_msg());
    if (!m) { fixture_free(&f); return; }
    T_ASSERT(strcmp(m->spec.arch, arch) == 0);
    const int K = model_out_dim(m), D = model_in_dim(m);
    const Rec *rx = fixture_find(&f, "x"), *ry = fixture_find(&f, "y");
    T_ASSERT(rx && ry && rx->ndim == 4 && rx->n == (long)rx->dims[0] * D && ry->n == rx->dims[0]);
    if (!rx || !ry || rx->ndim != 4 || rx->n != (long)rx->dims[0] * D || ry->n != rx->dims[0]) goto out;
    const int n = rx->dims[0];
    const Rec *rlogits = fixture_get(&f, "logits", (long)n * K), *rloss = fixture_get(&f, "loss", 1),
              *rdlog = fixture_get(&f, "dlogits", (long)n * K), *rdx = fixture_get(&f, "dx", (long)n * D);
    if (!rlogits || !rloss || !rdlog || !rdx) goto out;

    Layer *first = model_param_layer(m, 0);
    if (canary == CANARY_WEIGHT) first->W[7] += 0.05f;
    if (canary == CANARY_EXPECTED) {
        char nm[80];
        snprintf(nm, sizeof nm, "grad.%s.weight", model_param_layer(m, 1)->name);
        const Rec *r = fixture_get(&f, nm, model_tensor(m, nm + 5)->n);
        long j = 0; /* the largest element: 1e-3 of it is ~40x its tolerance */
        for (long i = 0; r && i < r->n; i++) if (fabs(r->v[i]) > fabs(r->v[j])) j = i;
        if (r) r->v[j] *= 1.001;
    }

    float *x = malloc(sizeof(float) * (size_t)n * D), *dlogits = malloc(sizeof(float) * (size_t)n * K),
          *logits0 = malloc(sizeof(float) * (size_t)n * K);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    for (long i = 0; i < (long)n * D; i++) x[i] = (float)rx->v[i]; /* float32-exact by construction */
    for (int i = 0; i < n; i++) y[i] = (int32_t)ry->v[i];
    Work *w = work_create(m, n);
    static const struct { int mode, flags; const char *tag; } PASS[2] = {
        {FWD_INFER, BW_PARAMS | BW_INPUT | BW_TRUE, "infer+true"},
        {FWD_TRAIN, BW_PARAMS | BW_INPUT, "train+rule"},
    };
    for (int p = 0; p < 2; p++) {
        char what[96];
        float *logits = model_forward(m, w, x, n, PASS[p].mode);
        if (p == 0) memcpy(logits0, logits, sizeof(float) * (size_t)n * K);
        else T_ASSERT_MSG(memcmp(logits0, logits, sizeof(float) * (size_t)n * K) == 0,
                          "%s: training-mode logits differ from inference-mode ones (no BN/dropout here)", arch);
        snprintf(what, sizeof what, "logits[%s]", PASS[p].tag);
        compare(arch, what, logits, rlogits);
        double loss = loss_softmax_ce(logits, y, n, K, 1.0f / (float)n, dlogits, NULL, NULL);
        T_NEAR(loss, rloss->v[0], ATOL + RTOL * fabs(rloss->v[0]));
        snprintf(what, sizeof what, "dlogits[%s]", PASS[p].tag);
        compare(arch, what, dlogits, rdlog);

        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params); /* stale values must not pass */
        model_backward(m, w, dlogits, PASS[p].flags);
        int compared = 0;
        for (int i = 0; i < m->nl; i++) {
            Layer *L = &m->L[i];
            if (L->kind != L_LINEAR && L->kind != L_CONV) continue;
            char nm[80];
            snprintf(nm, sizeof nm, "grad.%s.weight", L->name);
            const Tensor *t = model_tensor(m, nm + 5);
            T_ASSERT(t && t->data == L->W);
            if (!t) continue;
            snprintf(what, sizeof what, "%s[%s]", nm + 5, PASS[p].tag);
            compare(arch, what, L->dW, fixture_get(&f, nm, t->n));
            compared++;
            if (L->bias) {
                snprintf(nm, sizeof nm, "grad.%s.bias", L->name);
                snprintf(what, sizeof what, "%s[%s]", nm + 5, PASS[p].tag);
                compare(arch, what, L->db, fixture_get(&f, nm, L->c));
                compared++;
            }
        }
        /* every parameter tensor of the model, and every gradient in the fixture, was compared */
        int nparam = 0, ngrad = 0;
        for (int i = 0; i < m->ntensors; i++) nparam += m->tensors[i].kind == TK_PARAM;
        for (int i = 0; i < f.n; i++) ngrad += strncmp(f.r[i].name, "grad.", 5) == 0;
        T_EQ_INT(compared, nparam);
        T_EQ_INT(compared, ngrad);
        snprintf(what, sizeof what, "dx[%s]", PASS[p].tag);
        compare(arch, what, w->dx, rdx);
    }
    work_free(w);
    free(x);
    free(y);
    free(dlogits);
    free(logits0);
out:
    model_free(m);
    fixture_free(&f);
}

TEST(fixture_mlp) { run_fixture("mlp", CANARY_NONE); }
TEST(fixture_lenet5) { run_fixture("lenet5", CANARY_NONE); }
/* every vector level this CPU has: AVX2 without AVX-512 sends conv1 through the direct kernels and the
 * pools through their AVX2 rows (layers/conv.c, pool.c) */
TEST(fixture_lenet5_every_vector_level) {
    for (int l = 0; l <= kernels_level_max(); l++) {
        kernels_level_set(l);
        run_fixture("lenet5", CANARY_NONE);
    }
    kernels_level_set(-1);
}

static void canary_mlp_expected(void) { run_fixture("mlp", CANARY_EXPECTED); }
static void canary_mlp_weight(void) { run_fixture("mlp", CANARY_WEIGHT); }
static void canary_lenet5_expected(void) { run_fixture("lenet5", CANARY_EXPECTED); }
static void canary_lenet5_weight(void) { run_fixture("lenet5", CANARY_WEIGHT); }

/* The checker can fail: a 1e-3 relative error in one expected gradient element, or one wrong weight
 * in the first layer, must be flagged. */
TEST(fixture_canary) {
    T_ASSERT_MSG(test_expect_failure(canary_mlp_expected), "a perturbed expected fc2 gradient passed the mlp fixture check");
    T_ASSERT_MSG(test_expect_failure(canary_mlp_weight), "a perturbed fc1 weight passed the mlp fixture check");
    T_ASSERT_MSG(test_expect_failure(canary_lenet5_expected), "a perturbed expected conv2 gradient passed the lenet5 fixture check");
    T_ASSERT_MSG(test_expect_failure(canary_lenet5_weight), "a perturbed conv1 weight passed the lenet5 fixture check");
}
