/* test_import.c -- `concord import` against PyTorch: every architecture, the feedback rules, the round
 * trip Concord -> PyTorch -> Concord, and every refusal.
 *
 * The oracle: tests/fixtures/import/<case>.pt are PyTorch models in the usual key layouts and <case>.bin
 * what torch computes with them in float64 (logits, the true input gradient, the input gradient through
 * each rule's feedback with custom autograd Functions), both written by scripts/make_import_fixtures.py,
 * which shares no code with the importer. cases.txt lists the imports to run. Each import goes through the
 * real command (the C side and scripts/import_torch.py, which needs python3 + numpy but not torch); the
 * imported checkpoint is then run with model_forward / model_backward and compared.
 *
 * Tolerance: "within 1e-5 relative" means every element within 1e-5 of the largest reference magnitude
 * of its array (|got - want| <= 1e-5 * max|want|): elementwise relative error is meaningless for values
 * near zero. The engine is float32 (u = 6e-8) and the reference float64 from the same float32 numbers;
 * the observed worst case is ~1e-6 (IMPORT_VERBOSE=1 prints every case's figures), so 1e-5 leaves
 * headroom while a single wrong feedback element or weight (canaries below) is far outside it.
 * The round-trip test needs torch (scripts/ckpt_to_torch.py builds torch modules) and says SKIPPED
 * without it; the others need python3 with numpy (installed by make test's dependencies).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/checkpoint.h"
#include "harness/model.h"
#include "rules/build.h"
#include "tests/test.h"

#define FIXDIR "tests/fixtures/import"
#define REL_TOL 1e-5
#define MAX_RECS 16

typedef struct { char name[32]; int ndim, dims[4]; long n; double *v; } Rec;
typedef struct { int n; Rec r[MAX_RECS]; } Recs;

/* CCIMP001 (scripts/ckpt_to_torch.py write_records): uint32 count; per record uint32 name_len, name,
 * uint32 ndim, ndim x uint32 dims, prod(dims) x float32; little-endian. */
static int recs_read(const char *path, Recs *R) {
    memset(R, 0, sizeof *R);
    FILE *f = fopen(path, "rb");
    T_ASSERT_MSG(f != NULL, "%s: cannot open; run from the repo root or regenerate with make fixtures", path);
    if (!f) return -1;
    char magic[8];
    uint32_t count = 0;
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "CCIMP001", 8) == 0 && fread(&count, 4, 1, f) == 1 && count <= MAX_RECS;
    for (uint32_t i = 0; ok && i < count; i++) {
        Rec *r = &R->r[R->n];
        uint32_t len = 0, nd = 0, d;
        ok = fread(&len, 4, 1, f) == 1 && len < sizeof r->name && fread(r->name, 1, len, f) == len && fread(&nd, 4, 1, f) == 1 && nd <= 4;
        r->ndim = (int)nd;
        r->n = 1;
        for (uint32_t k = 0; ok && k < nd; k++) {
            ok = fread(&d, 4, 1, f) == 1 && d < (1u << 24);
            r->dims[k] = (int)d;
            r->n *= d;
        }
        float *tmp = ok ? malloc(sizeof(float) * (size_t)r->n + 1) : NULL;
        ok = ok && tmp && fread(tmp, sizeof(float), (size_t)r->n, f) == (size_t)r->n;
        if (ok) {
            r->v = malloc(sizeof(double) * (size_t)r->n + 1);
            for (long j = 0; j < r->n; j++) r->v[j] = tmp[j];
            R->n++;
        }
        free(tmp);
    }
    ok = ok && fgetc(f) == EOF;
    fclose(f);
    T_ASSERT_MSG(ok, "%s: not a valid CCIMP001 file; regenerate with make fixtures", path);
    return ok ? 0 : -1;
}
static void recs_free(Recs *R) {
    for (int i = 0; i < R->n; i++) free(R->r[i].v);
    R->n = 0;
}
static Rec *rec_get(Recs *R, const char *name, long n) {
    for (int i = 0; i < R->n; i++)
        if (strcmp(R->r[i].name, name) == 0) {
            T_ASSERT_MSG(n < 0 || R->r[i].n == n, "record %s has %ld values, expected %ld", name, R->r[i].n, n);
            return n < 0 || R->r[i].n == n ? &R->r[i] : NULL;
        }
    T_ASSERT_MSG(0, "record %s is missing", name);
    return NULL;
}

/* ------------------------------------------------------------------ running the command */

static int python_ok(const char *module) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", module);
    return system(cmd) == 0;
}
static int have_torch(void) {
    static int ok = -1;
    if (ok < 0) ok = python_ok("torch");
    return ok;
}
static int need_numpy(const char *test) {
    static int ok = -1;
    if (ok < 0) ok = python_ok("numpy");
    if (!ok) fprintf(stderr, "    SKIPPED %s: /usr/bin/python3 with numpy is missing (apt-get install python3-numpy)\n", test);
    return ok;
}

/* concord import ARGS; output in out, exit status returned */
static int import_run(const char *env, const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s import %s", env ? env : "", test_exe(), args);
    return test_run(cmd, out, cap);
}

/* Runs python3 (numpy only) to derive a damaged or altered file from a fixture: `edit` is Python acting on
 * s, the fixture's state_dict (weight_backward tensors dropped unless keep_fb) as numpy arrays, before
 * np.savez(dst). Returns 0 on success. */
static int derive(const char *src, const char *dst, int keep_fb, const char *edit) {
    char cmd[4096], out[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, collections; sys.path.insert(0, 'scripts'); import numpy as np; "
             "from pt_reader import read_pt; s = read_pt('%s'); s = s.get('state_dict', s); "
             "s = collections.OrderedDict((k.replace('module.', '', 1), v) for k, v in s.items() if %s); "
             "%s; np.savez('%s', **s)\"",
             src, keep_fb ? "True" : "not k.endswith('weight_backward')", edit, dst);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "deriving %s failed: %s", dst, out);
    return rc;
}

/* ------------------------------------------------------------------ comparing with PyTorch */

static int g_verbose = -1;
static int verbose(void) {
    if (g_verbose < 0) g_verbose = getenv("IMPORT_VERBOSE") && atoi(getenv("IMPORT_VERBOSE")) > 0;
    return g_verbose;
}

/* |got - want| <= REL_TOL * max|want| elementwise; returns max|diff| / max|want|. */
static double compare(const char *label, const float *got, const Rec *want, double tol) {
    if (!want) return NAN;
    double mx = 0, md = 0;
    for (long i = 0; i < want->n; i++) {
        if (fabs(want->v[i]) > mx) mx = fabs(want->v[i]);
        if (fabs(got[i] - want->v[i]) > md) md = fabs(got[i] - want->v[i]);
    }
    T_ASSERT_MSG(mx > 0, "%s: the reference is all zeros", label);
    T_ALLCLOSE(label, got, want->v, want->n, tol * mx, 0.0);
    if (verbose()) fprintf(stderr, "    %-28s n %6ld  max|ref| %9.3g  max|diff|/max|ref| %.2e\n", label, want->n, mx, mx > 0 ? md / mx : 0);
    return mx > 0 ? md / mx : NAN;
}

typedef struct {
    double w_bump;         /* canary: relative change of the first layer's largest weight after loading */
    double state_bump;     /* canary: relative change of the classifier's whole rule state (fa: its B) */
    double want_bump;      /* canary: a change (in units of max|want|) to one expected feedback gradient element */
    const char *fb_record; /* compare the feedback gradient with this record instead of the case's */
} Canary;

static void bump_largest(float *v, long n, double rel) {
    long j = 0;
    for (long i = 1; i < n; i++) if (fabsf(v[i]) > fabsf(v[j])) j = i;
    v[j] *= (float)(1.0 + rel);
}

/* Imports one line of cases.txt and compares logits, dx_true and the feedback gradient with PyTorch. */
static void run_case(const char *line, const Canary *cn) {
    char name[32], rule[16], file[64], record[32], opts[1024], args[2048], out[4096], ckpt[512], path[256];
    if (sscanf(line, "%31s %15s %63s %31s %1023[^\n]", name, rule, file, record, opts) != 5) {
        T_ASSERT_MSG(0, "cases.txt: bad line '%s'", line);
        return;
    }
    snprintf(ckpt, sizeof ckpt, "%s/%s_%s.ckpt", test_tmpdir(), name, rule);
    snprintf(args, sizeof args, "--from %s/%s %s --out %s", FIXDIR, file, opts, ckpt);
    int rc = import_run(NULL, args, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "%s %s: concord import %s failed (%d): %s", name, rule, args, rc, out);
    if (rc != 0) return;
    Recs R;
    snprintf(path, sizeof path, "%s/%s.bin", FIXDIR, name);
    if (recs_read(path, &R) < 0) return;
    Model *m = ckpt_load(ckpt, NULL, NULL, 0, 0, NULL);
    T_ASSERT_MSG(m != NULL, "%s: %s", ckpt, err_msg());
    if (!m) { recs_free(&R); return; }
    T_ASSERT_MSG(str_eq(m->rule->name, rule), "%s: imported with rule %s, expected %s", ckpt, m->rule->name, rule);
    CkptMeta meta;
    T_ASSERT(ckpt_read_meta(ckpt, &meta) == 0);
    const char *src = meta_get(&meta, "import_source"), *hash = meta_get(&meta, "import_source_hash");
    T_ASSERT_MSG(src && strstr(src, file) && hash && strlen(hash) == 16 && meta_get(&meta, "import_norm") &&
                 str_eq(meta_get(&meta, "kind"), "import"), "%s: provenance meta missing", ckpt);
    const int D = model_in_dim(m), K = model_out_dim(m);
    Rec *rx = rec_get(&R, "x", -1), *rd = rec_get(&R, "dout", -1);
    const int n = rx ? rx->dims[0] : 0;
    Rec *rl = rec_get(&R, "logits", (long)n * K), *rt = rec_get(&R, "dx_true", (long)n * D),
        *rf = rec_get(&R, cn && cn->fb_record ? cn->fb_record : record, (long)n * D);
    if (!rx || rx->n != (long)n * D || !rd || rd->n != (long)n * K || !rl || !rt || !rf) goto out;
    Layer *L0 = model_param_layer(m, 0);
    if (cn && cn->w_bump != 0) bump_largest(L0->W, layer_w_n(L0), cn->w_bump);
    Layer *Lk = model_param_layer(m, model_nparam_layers(m) - 1);
    for (long j = 0; cn && cn->state_bump != 0 && j < Lk->rstate_n; j++) Lk->rstate[j] *= (float)(1.0 + cn->state_bump);
    if (cn && cn->want_bump != 0) {
        double mx = 0;
        for (long i = 0; i < rf->n; i++) mx = fmax(mx, fabs(rf->v[i]));
        rf->v[rf->n / 2] += cn->want_bump * mx;
    }
    float *x = malloc(sizeof(float) * (size_t)n * D), *dout = malloc(sizeof(float) * (size_t)n * K);
    for (long i = 0; i < (long)n * D; i++) x[i] = (float)rx->v[i];
    for (long i = 0; i < (long)n * K; i++) dout[i] = (float)rd->v[i];
    Work *w = work_create(m, n);
    char label[96];
    snprintf(label, sizeof label, "%s %s logits", name, rule);
    compare(label, model_forward(m, w, x, n, FWD_INFER), rl, REL_TOL);
    model_backward(m, w, dout, BW_INPUT | BW_TRUE);
    snprintf(label, sizeof label, "%s %s dx true", name, rule);
    compare(label, w->dx, rt, REL_TOL);
    model_refresh_feedback(m); /* what a feedback-source attack does before each backward */
    model_forward(m, w, x, n, FWD_INFER);
    model_backward(m, w, dout, BW_INPUT);
    snprintf(label, sizeof label, "%s %s dx feedback", name, rule);
    compare(label, w->dx, rf, REL_TOL);
    work_free(w);
    free(x);
    free(dout);
out:
    model_free(m);
    recs_free(&R);
}

/* Every line of cases.txt whose case is `arch`. */
static void run_arch(const char *arch, const char *test) {
    if (!need_numpy(test)) return;
    FILE *f = fopen(FIXDIR "/cases.txt", "r");
    T_ASSERT_MSG(f != NULL, FIXDIR "/cases.txt: cannot open; run from the repo root");
    if (!f) return;
    char line[2048], name[32];
    int runs = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%31s", name) != 1 || !str_eq(name, arch)) continue;
        run_case(line, NULL);
        runs++;
    }
    fclose(f);
    T_ASSERT_MSG(runs >= 2, "cases.txt has %d lines for %s", runs, arch);
}

TEST(import_pytorch_mlp) { run_arch("mlp", "import_pytorch_mlp"); }
TEST(import_pytorch_lenet5) { run_arch("lenet5", "import_pytorch_lenet5"); }
TEST(import_pytorch_alexnet) { run_arch("alexnet", "import_pytorch_alexnet"); }
TEST(import_pytorch_vgg16) { run_arch("vgg16", "import_pytorch_vgg16"); }
TEST(import_pytorch_resnet18) { run_arch("resnet18", "import_pytorch_resnet18"); }
TEST(import_pytorch_resnet20) { run_arch("resnet20", "import_pytorch_resnet20"); }
TEST(import_pytorch_hash_head) { run_arch("mlph", "import_pytorch_hash_head"); }

/* The comparison can fail: the first layer's largest weight off by 1%, the classifier's feedback matrix
 * off by 0.1%, an expected feedback gradient element off by 5e-5 of the array's scale, and frsf's gradient
 * compared with fa's (same file, other rule) are each flagged. */
static const char *k_canary_line;
static const Canary *k_canary;
static void canary_case(void) { run_case(k_canary_line, k_canary); }
TEST(import_pytorch_canary) {
    if (!need_numpy("import_pytorch_canary")) return;
    static const Canary c1 = {.w_bump = 1e-2}, c2 = {.want_bump = 5e-5}, c3 = {.fb_record = "dx_fa"},
                        c4 = {.state_bump = 1e-3};
    const char *mlp_fa = "mlp fa mlp.pt dx_fa --model mlp --input 1x12x12 --mean 0.2860 --std 0.3530 --rule fa";
    const char *mlp_frsf = "mlp frsf mlp.pt dx_frsf --model mlp --input 1x12x12 --mean 0.2860 --std 0.3530 --rule frsf";
    k_canary_line = mlp_fa;
    k_canary = NULL;
    T_ASSERT_MSG(!test_expect_failure(canary_case), "the unmodified mlp fa case must pass");
    k_canary = &c1;
    T_ASSERT_MSG(test_expect_failure(canary_case), "a weight changed by 1%% went unnoticed");
    k_canary = &c4;
    T_ASSERT_MSG(test_expect_failure(canary_case), "a feedback matrix off by 0.1%% went unnoticed");
    k_canary = &c2;
    T_ASSERT_MSG(test_expect_failure(canary_case), "an expected gradient off by 5e-5 of its scale went unnoticed");
    k_canary_line = mlp_frsf;
    k_canary = &c3;
    T_ASSERT_MSG(test_expect_failure(canary_case), "frsf's feedback gradient passed as fa's");
}

/* BioTorch's uSF layer stores weight_backward = sign(W): the importer infers --usf-scale none. */
TEST(import_usf_sign_feedback) {
    if (!need_numpy("import_usf_sign_feedback")) return;
    char src[256], out[4096];
    snprintf(src, sizeof src, "%s/mlp_usf.npz", test_tmpdir());
    if (derive(FIXDIR "/mlp.pt", src, 1, "s = collections.OrderedDict((k, np.sign(s[k[:-9]]) if k.endswith('_backward') else v) for k, v in s.items())") != 0)
        return;
    char args[2048], ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/usf_sign.ckpt", test_tmpdir());
    snprintf(args, sizeof args, "--from %s --model mlp --input 1x12x12 --mean 0.2860 --std 0.3530 --rule usf --out %s", src, ckpt);
    int rc = import_run(NULL, args, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "import failed: %s", out);
    CkptMeta meta;
    T_ASSERT(ckpt_read_meta(ckpt, &meta) == 0);
    T_ASSERT(strstr(meta_get(&meta, "rule_opts"), "usf-scale=none") != NULL);
    Recs R;
    if (rc != 0 || recs_read(FIXDIR "/mlp.bin", &R) < 0) return;
    Model *m = ckpt_load(ckpt, NULL, NULL, 0, 0, NULL);
    T_ASSERT(m != NULL);
    Rec *rx = rec_get(&R, "x", -1), *rd = rec_get(&R, "dout", -1), *rf = rec_get(&R, "dx_usf_none", -1);
    if (m && rx && rd && rf) {
        int n = rx->dims[0];
        float *x = malloc(sizeof(float) * rx->n), *d = malloc(sizeof(float) * rd->n);
        for (long i = 0; i < rx->n; i++) x[i] = (float)rx->v[i];
        for (long i = 0; i < rd->n; i++) d[i] = (float)rd->v[i];
        Work *w = work_create(m, n);
        model_forward(m, w, x, n, FWD_INFER);
        model_backward(m, w, d, BW_INPUT);
        compare("mlp usf sign(W) dx feedback", w->dx, rf, REL_TOL);
        work_free(w);
        free(x);
        free(d);
    }
    model_free(m);
    recs_free(&R);
}

/* brSF redraws |M_t| every step, so only the expectation can match: with the draws independent across
 * layers and the ReLU masks fixed by the forward pass, E[dx] is dx with B = E|M| sign(W) = (a/2) sign(W)
 * (uniform magnitudes, a = sqrt(6/(fan_in+fan_out))), what the fixture's dx_brsf_mean is. The mean of
 * 16000 of Concord's draws must land within 3% (norm) of it (observed 1%) -- and far from the meanabs uSF
 * gradient (68%). */
TEST(import_brsf_in_expectation) {
    if (!need_numpy("import_brsf_in_expectation")) return;
    char ckpt[512], args[1024], out[4096];
    snprintf(ckpt, sizeof ckpt, "%s/brsf.ckpt", test_tmpdir());
    snprintf(args, sizeof args, "--from " FIXDIR "/mlp.pt --model mlp --input 1x12x12 --mean 0.2860 --std 0.3530 --rule brsf --out %s", ckpt);
    int rc = import_run(NULL, args, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "import failed: %s", out);
    T_CONTAINS(out, "redraws");
    Recs R;
    if (rc != 0 || recs_read(FIXDIR "/mlp.bin", &R) < 0) return;
    Model *m = ckpt_load(ckpt, NULL, NULL, 0, 0, NULL);
    Rec *rx = rec_get(&R, "x", -1), *rd = rec_get(&R, "dout", -1), *rb = rec_get(&R, "dx_brsf_mean", -1), *ru = rec_get(&R, "dx_usf", -1);
    if (m && rx && rd && rb && ru) {
        int n = rx->dims[0];
        long D = rx->n;
        float *x = malloc(sizeof(float) * D), *d = malloc(sizeof(float) * rd->n);
        double *sum = calloc((size_t)D, sizeof(double));
        for (long i = 0; i < D; i++) x[i] = (float)rx->v[i];
        for (long i = 0; i < rd->n; i++) d[i] = (float)rd->v[i];
        Work *w = work_create(m, n);
        model_forward(m, w, x, n, FWD_INFER);
        const int draws = 16000;
        for (int t = 0; t < draws; t++) {
            model_refresh_feedback(m);
            model_backward(m, w, d, BW_INPUT);
            for (long i = 0; i < D; i++) sum[i] += w->dx[i];
        }
        double e_b = 0, e_u = 0, nb = 0;
        for (long i = 0; i < D; i++) {
            double v = sum[i] / draws;
            e_b += (v - rb->v[i]) * (v - rb->v[i]);
            e_u += (v - ru->v[i]) * (v - ru->v[i]);
            nb += rb->v[i] * rb->v[i];
        }
        double rel_b = sqrt(e_b / nb), rel_u = sqrt(e_u / nb);
        if (verbose()) fprintf(stderr, "    brsf mean of %d draws vs E: %.3f (vs usf meanabs: %.3f)\n", draws, rel_b, rel_u);
        T_ASSERT_MSG(rel_b < 0.03, "brsf: the mean of %d draws is %.3f (relative norm) from its expectation", draws, rel_b);
        T_ASSERT_MSG(rel_u > 0.1, "brsf canary: the mean is also within %.3f of the uSF gradient", rel_u);
        work_free(w);
        free(x);
        free(d);
        free(sum);
    }
    model_free(m);
    recs_free(&R);
}

/* ------------------------------------------------------------------ the round trip */

/* name -> "name|shape|hex" rows (ORDER BY name) or "key|value" meta rows, as one string */
static char *sql_dump(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(cap, 1);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        T_ASSERT_MSG(0, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *v = (const char *)sqlite3_column_text(st, c);
            size_t l = strlen(v ? v : "") + 2;
            while (n + l + 1 > cap) out = realloc(out, cap *= 2);
            n += (size_t)snprintf(out + n, cap - n, "%s%c", v ? v : "", c + 1 < sqlite3_column_count(st) ? '|' : '\n');
        }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Concord's own forward/backward on the source checkpoint against what ckpt_to_torch.py's module computes
 * (the .probe file): the torch reader of docs/checkpoint.md is right on every architecture and rule. */
static void check_probe(const char *ckpt, const char *probe, const char *tag) {
    Recs R;
    if (recs_read(probe, &R) < 0) return;
    Model *m = ckpt_load(ckpt, NULL, NULL, 0, 0, NULL);
    T_ASSERT_MSG(m != NULL, "%s: %s", ckpt, err_msg());
    Rec *rl = rec_get(&R, "logits", -1), *rt = rec_get(&R, "dx_true", -1);
    if (m && rl && rt) {
        const int n = rl->dims[0], K = model_out_dim(m), D = model_in_dim(m);
        float *x = malloc(sizeof(float) * (size_t)n * D), *d = malloc(sizeof(float) * (size_t)n * K);
        for (long i = 0; i < (long)n * D; i++) x[i] = (float)(((37 * i + 11) % 256) / 256.0); /* ckpt_to_torch.probe_input */
        for (int b = 0; b < n; b++)
            for (int k = 0; k < K; k++) d[b * K + k] = (float)((((7 * b + 3 * k) % 5) - 2) / 2.0); /* probe_dout */
        Work *w = work_create(m, n);
        char label[128];
        snprintf(label, sizeof label, "%s torch logits", tag);
        compare(label, model_forward(m, w, x, n, FWD_INFER), rl, REL_TOL);
        model_backward(m, w, d, BW_INPUT | BW_TRUE);
        snprintf(label, sizeof label, "%s torch dx true", tag);
        compare(label, w->dx, rt, REL_TOL);
        if (!str_eq(m->rule->name, "brsf")) {
            Rec *rf = rec_get(&R, "dx_feedback", (long)n * D);
            model_backward(m, w, d, BW_INPUT);
            snprintf(label, sizeof label, "%s torch dx feedback", tag);
            if (rf) compare(label, w->dx, rf, REL_TOL);
        }
        work_free(w);
        free(x);
        free(d);
    }
    model_free(m);
    recs_free(&R);
}

/* Concord checkpoint -> ckpt_to_torch.py (state_dict + side file) -> concord import: every tensor bitwise
 * (optimiser moments included) and every meta row the same (no import_* rows: it is the same checkpoint).
 * Checkpoints of every architecture and rule (one step of training, so the optimiser state is not zero). */
TEST(import_round_trip) {
    if (!need_numpy("import_round_trip")) return;
    if (!have_torch()) {
        fprintf(stderr, "    SKIPPED import_round_trip: scripts/ckpt_to_torch.py needs torch (apt-get install python3-torch)\n");
        return;
    }
    static const struct { const char *arch, *data, *opts, *rules; } RT[] = {
        {"mlp", "synthetic:32:1x12x12:10", "--hidden 16,8", "bp,fa,dfa,usf,brsf,frsf"},
        {"lenet5", "synthetic:32:1x12x16:10", "", "dfa"},
        {"lenet5", "synthetic:32:1x12x16:10", "--task hash --bits 8 --queries-per-class 1", "frsf"},
        {"alexnet", "synthetic:32:3x16x12:10", "--width 0.03125", "fa"},
        {"vgg16", "synthetic:32:1x32x32:10", "--width 0.015625", "frsf"},
        {"resnet18", "synthetic:32:3x16x12:10", "--width 0.015625", "dfa"},
        {"resnet20", "synthetic:32:3x16x12:10", "--width 0.0625", "usf --last-layer-bp"},
    };
    char list[8192] = "", cmd[8192], out[8192];
    int total = 0;
    for (size_t i = 0; i < ARRAY_LEN(RT); i++) {
        char rules[64], *save = NULL;
        snprintf(rules, sizeof rules, "%s", RT[i].rules);
        char *extra = strchr(rules, ' ');
        if (extra) *extra++ = 0;
        for (char *r = strtok_r(rules, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
            char ckpt[512];
            snprintf(ckpt, sizeof ckpt, "%s/rt_%zu_%s.ckpt", test_tmpdir(), i, r);
            snprintf(cmd, sizeof cmd, "%s train --model %s %s --dataset %s --rule %s %s --epochs 1 --batch 8 --val 8 --limit 8 "
                     "--probe 0 --no-db --quiet --out %s", test_exe(), RT[i].arch, RT[i].opts, RT[i].data, r, extra ? extra : "", ckpt);
            int rc = test_run(cmd, out, sizeof out);
            T_ASSERT_MSG(rc == 0, "%s: %s", cmd, out);
            if (rc == 0) { strcat(list, " "); strcat(list, ckpt); total++; }
        }
    }
    snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/ckpt_to_torch.py %s --out-dir %s --probe", list, test_tmpdir());
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "ckpt_to_torch.py failed: %s", out);
    if (rc != 0) return;
    int same = 0;
    for (char *save = NULL, *c = strtok_r(list, " ", &save); c; c = strtok_r(NULL, " ", &save)) {
        char stem[512], pt[600], back[600], probe[600], args[2048];
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(c) - 5), c);
        snprintf(pt, sizeof pt, "%s.pt", stem);
        snprintf(back, sizeof back, "%s.back.ckpt", stem);
        snprintf(probe, sizeof probe, "%s.probe", stem);
        snprintf(args, sizeof args, "--from %s --out %s", pt, back);
        rc = import_run(NULL, args, out, sizeof out);
        T_ASSERT_MSG(rc == 0, "import %s: %s", pt, out);
        if (rc != 0) continue;
        char *t0 = sql_dump(c, "SELECT name, shape, hex(data) FROM tensor ORDER BY rowid");
        char *t1 = sql_dump(back, "SELECT name, shape, hex(data) FROM tensor ORDER BY rowid");
        char *m0 = sql_dump(c, "SELECT key, value FROM meta ORDER BY rowid");
        char *m1 = sql_dump(back, "SELECT key, value FROM meta ORDER BY rowid");
        T_ASSERT_MSG(strcmp(t0, t1) == 0, "%s: tensors differ after the round trip", c);
        T_ASSERT_MSG(strcmp(m0, m1) == 0, "%s: meta differs after the round trip:\n%s---\n%s", c, m0, m1);
        same += strcmp(t0, t1) == 0 && strcmp(m0, m1) == 0;
        free(t0), free(t1), free(m0), free(m1);
        check_probe(c, probe, strrchr(stem, '/') + 1);
    }
    T_ASSERT_MSG(same == total && total == 12, "%d of %d round trips bitwise", same, total);
    if (verbose()) fprintf(stderr, "    round trip: %d of %d checkpoints bitwise\n", same, total);
}

/* ------------------------------------------------------------------ refusals: one line, non-zero, no --out */

/* Runs concord import ARGS (env prefix optional) with --out OUT added; asserts failure, one line of output
 * holding every needle, and that nothing exists under OUT (nor a leftover OUT.tmp.*). */
static void expect_refusal(const char *env, const char *args, const char *needles[]) {
    char out[4096], full[4096], path[512];
    snprintf(path, sizeof path, "%s/refused.ckpt", test_tmpdir());
    unlink(path);
    snprintf(full, sizeof full, "%s --out %s", args, path);
    int rc = import_run(env, full, out, sizeof out);
    T_ASSERT_MSG(rc != 0, "concord import %s succeeded; expected a refusal", args);
    size_t len = strlen(out);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += out[i] == '\n';
    T_ASSERT_MSG(len > 0 && lines == 1 && out[len - 1] == '\n', "expected one line, got %d: %s", lines, out);
    for (int i = 0; needles[i]; i++) T_CONTAINS(out, needles[i]);
    T_ASSERT_MSG(access(path, F_OK) != 0, "%s exists after a refused import", path);
    DIR *d = opendir(test_tmpdir());
    for (struct dirent *e; d && (e = readdir(d));)
        T_ASSERT_MSG(strncmp(e->d_name, "refused.ckpt", 12) != 0, "leftover %s after a refused import", e->d_name);
    if (d) closedir(d);
}

#define R20 "--model resnet20 --input 3x16x12 --mean 0.45 --std 0.22"
#define MLP "--model mlp --input 1x12x12 --mean 0.2860 --std 0.3530"

static int derived(const char *name, const char *src, int keep_fb, const char *edit, char *path, size_t n) {
    snprintf(path, n, "%s/%s.npz", test_tmpdir(), name);
    return derive(src, path, keep_fb, edit);
}

TEST(import_refuses_unknown_key) {
    if (!need_numpy("import_refuses_unknown_key")) return;
    char p[512], args[1024];
    if (derived("unknown", FIXDIR "/resnet20.pt", 0, "s['layer1.0.se.weight'] = np.zeros((1, 1, 1, 1), 'f4')", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " R20, p);
    expect_refusal(NULL, args, (const char *[]){p, "unknown key 'layer1.0.se.weight'", "expected keys near it", "layer1.0.", NULL});
}

TEST(import_refuses_missing_key) {
    if (!need_numpy("import_refuses_missing_key")) return;
    char p[512], args[1024];
    if (derived("missing", FIXDIR "/resnet20.pt", 0, "s = {k: v for k, v in s.items() if not k.startswith('layer2.0.shortcut.0.')}", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " R20, p);
    expect_refusal(NULL, args, (const char *[]){p, "missing key 'layer2.0.shortcut.0.weight'", "layer2.0.downsample.0.weight", "near it", NULL});
}

TEST(import_refuses_shape_mismatch) {
    if (!need_numpy("import_refuses_shape_mismatch")) return;
    char p[512], args[1024];
    if (derived("shape", FIXDIR "/mlp.pt", 0, "s['3.weight'] = np.ascontiguousarray(s['3.weight'].T)", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " MLP " --hidden 16,8", p);
    expect_refusal(NULL, args, (const char *[]){"'3.weight' (Concord fc2.weight) has shape [16, 8]", "expects [8, 16]", "--hidden", NULL});
}

TEST(import_refuses_missing_bn_stats) {
    if (!need_numpy("import_refuses_missing_bn_stats")) return;
    char p[512], args[1024];
    if (derived("bnstats", FIXDIR "/resnet20.pt", 0, "s = {k: v for k, v in s.items() if not k.startswith('layer3.1.bn1.running_')}", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " R20, p);
    expect_refusal(NULL, args, (const char *[]){"batch-norm 'layer3.1.bn1' has no running_mean/running_var", "track_running_stats", NULL});
}

TEST(import_refuses_unknown_architecture) {
    if (!need_numpy("import_refuses_unknown_architecture")) return;
    expect_refusal(NULL, "--from " FIXDIR "/resnet20.pt --model resnet50 --input 3x16x12 --mean 0.5 --std 0.2",
                   (const char *[]){"--model resnet50", "Concord cannot rebuild", "resnet18, resnet20", NULL});
    /* the wrong one of Concord's architectures: the line names the one whose keys fit */
    expect_refusal(NULL, "--from " FIXDIR "/resnet20.pt --model resnet18 --input 3x16x12 --mean 0.5 --std 0.2 --rule fa",
                   (const char *[]){"unknown key 'layer1.2.conv1.weight' for resnet18", "its keys fit --model resnet20", NULL});
    char p[512], args[1024];
    if (derived("bottleneck", FIXDIR "/resnet20.pt", 0, "s['layer1.0.conv3.weight'] = np.zeros((1, 1, 1, 1), 'f4')", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " R20, p);
    expect_refusal(NULL, args, (const char *[]){"unknown key 'layer1.0.conv3.weight'", "Bottleneck", NULL});
    /* torchvision's ImageNet stem (7x7 conv1) is not Concord's CIFAR-style resnet */
    if (derived("imagenet", FIXDIR "/resnet20.pt", 0, "s['conv1.weight'] = np.zeros((1, 3, 7, 7), 'f4')", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " R20, p);
    expect_refusal(NULL, args, (const char *[]){"'conv1.weight' has shape [1, 3, 7, 7]", "ImageNet-style stem", NULL});
    /* a torchvision-style 3-layer classifier is not Concord's vgg16 */
    if (derived("vgg3", FIXDIR "/vgg16.pt", 0,
                "s = {k.replace('classifier.1.', 'classifier.0.'): v for k, v in s.items()}; "
                "s['classifier.3.weight'] = np.zeros((10, 10), 'f4'); s['classifier.3.bias'] = np.zeros(10, 'f4'); "
                "s['classifier.6.weight'] = np.zeros((10, 10), 'f4'); s['classifier.6.bias'] = np.zeros(10, 'f4')", p, sizeof p))
        return;
    snprintf(args, sizeof args, "--from %s --model vgg16 --input 1x32x32 --mean 0.5 --std 0.25", p);
    expect_refusal(NULL, args, (const char *[]){"3 linear layers where vgg16 has 1", "a different architecture", NULL});
}

TEST(import_refuses_feedback_mismatch) {
    if (!need_numpy("import_refuses_feedback_mismatch")) return;
    /* feedback tensors but no rule */
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt " MLP, (const char *[]){"carries feedback tensors", "--rule", NULL});
    /* --ignore-feedback cannot stand in for a rule's fixed state */
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt " MLP " --rule fa --ignore-feedback", (const char *[]){"--ignore-feedback: rule fa keeps", NULL});
    /* usf can only be s*sign(W) */
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt " MLP " --rule usf", (const char *[]){"is not s*sign(W)", "--rule fa", NULL});
    /* a DFA matrix under another rule */
    char p[512], args[1024];
    if (derived("dfaonly", FIXDIR "/mlp.pt", 0, "pass", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " MLP " --rule fa", p);
    expect_refusal(NULL, args, (const char *[]){"'1.weight_dfa' is a DFA feedback matrix but the rule is fa", "--rule dfa", NULL});
    /* a stateful rule without its state */
    if (derived("nofb", FIXDIR "/mlp.pt", 0, "s = {k: v for k, v in s.items() if not k.endswith('weight_dfa')}", p, sizeof p)) return;
    snprintf(args, sizeof args, "--from %s " MLP " --rule fa", p);
    expect_refusal(NULL, args, (const char *[]){"layer fc1 has no feedback tensor", "concord finetune --rule fa", NULL});
    /* frsf needs |M| sign(W): signs that disagree are refused, unless --frsf-abs */
    if (derived("signs", FIXDIR "/mlp.pt", 1, "s['1.weight_backward'] = s['1.weight_backward'] * np.where(np.arange(s['1.weight'].size).reshape(s['1.weight'].shape) % 3 == 0, -1, 1).astype('f4')", p, sizeof p))
        return;
    snprintf(args, sizeof args, "--from %s " MLP " --rule frsf", p);
    expect_refusal(NULL, args, (const char *[]){"signs that disagree", "--frsf-abs", NULL});
    char out[4096], ok[1024];
    snprintf(ok, sizeof ok, "--from %s " MLP " --rule frsf --frsf-abs --out %s/signs.ckpt", p, test_tmpdir());
    T_ASSERT_MSG(import_run(NULL, ok, out, sizeof out) == 0, "--frsf-abs: %s", out);
    /* a usf scale that is not the one stored */
    if (derived("usfsign", FIXDIR "/mlp.pt", 1, "s = {k: (np.sign(s[k[:-9]]) if k.endswith('_backward') else v) for k, v in s.items()}", p, sizeof p))
        return;
    snprintf(args, sizeof args, "--from %s " MLP " --rule usf --usf-scale xavier", p);
    expect_refusal(NULL, args, (const char *[]){"1*sign(W)", "--usf-scale xavier gives", "pass --usf-scale none", NULL});
}

TEST(import_refuses_bad_normalisation) {
    if (!need_numpy("import_refuses_bad_normalisation")) return;
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt --model mlp --input 1x12x12 --rule fa",
                   (const char *[]){"no input normalisation", "--mean", "--dataset", NULL});
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt --model mlp --input 1x12x12 --rule fa --mean 0.5 --std 0",
                   (const char *[]){"every std must be > 0", NULL});
    expect_refusal(NULL, "--from " FIXDIR "/mlp.pt --model mlp --input 1x12x12 --rule fa --mean 0.5,0.5 --std 0.2",
                   (const char *[]){"2 values for a model with 1 input channel (give one value)", NULL});
    expect_refusal(NULL, "--from " FIXDIR "/resnet20.pt --model resnet20 --dataset cifar100 --rule fa",
                   (const char *[]){"10 rows", "cifar100 has 100 classes", "--classes 10", NULL});
}

TEST(import_refuses_unreadable_files) {
    if (!need_numpy("import_refuses_unreadable_files")) return;
    expect_refusal(NULL, "--from " FIXDIR "/not_torch.pt " MLP, (const char *[]){"not_torch.pt", "not a PyTorch file", NULL});
    expect_refusal(NULL, "--from /nonexistent/model.pt " MLP, (const char *[]){"/nonexistent/model.pt", "cannot open", NULL});
    /* the legacy format needs torch: hide it (a torch package that cannot be imported) */
    char fake[256], env[512], cmd[2048];
    snprintf(fake, sizeof fake, "%s/notorch", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/torch %s/numpy && echo 'raise ImportError(\"hidden by the test\")' > %s/torch/__init__.py && "
             "cp %s/torch/__init__.py %s/numpy/__init__.py", fake, fake, fake, fake, fake);
    T_ASSERT(system(cmd) == 0);
    char nonumpy[256];
    snprintf(nonumpy, sizeof nonumpy, "%s/nonumpy", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && mv %s/numpy %s/", nonumpy, fake, nonumpy);
    T_ASSERT(system(cmd) == 0);
    snprintf(env, sizeof env, "PYTHONPATH=%s", fake);
    expect_refusal(env, "--from " FIXDIR "/legacy_mlp.pt " MLP, (const char *[]){"legacy (pre-1.6)", "apt-get install python3-torch", NULL});
    snprintf(env, sizeof env, "PYTHONPATH=%s", nonumpy);
    expect_refusal(env, "--from " FIXDIR "/mlp.pt " MLP " --rule fa", (const char *[]){"apt-get install python3-numpy", NULL});
    expect_refusal("CONCORD_PYTHON=/nonexistent/python3", "--from " FIXDIR "/mlp.pt " MLP " --rule fa",
                   (const char *[]){"/nonexistent/python3 not found", "apt-get install python3", NULL});
    if (have_torch()) { /* with torch the legacy file imports */
        char out[4096], args[1024];
        snprintf(args, sizeof args, "--from " FIXDIR "/legacy_mlp.pt " MLP " --out %s/legacy.ckpt", test_tmpdir());
        T_ASSERT_MSG(import_run(NULL, args, out, sizeof out) == 0, "legacy with torch: %s", out);
    }
}

/* A refused import leaves an existing --out exactly as it was. */
TEST(import_failure_keeps_existing_out) {
    if (!need_numpy("import_failure_keeps_existing_out")) return;
    char path[512], args[1024], out[4096], h0[17], h1[17];
    snprintf(path, sizeof path, "%s/existing.ckpt", test_tmpdir());
    snprintf(args, sizeof args, "--from " FIXDIR "/mlp.pt " MLP " --rule fa --out %s", path);
    T_ASSERT(import_run(NULL, args, out, sizeof out) == 0);
    T_ASSERT(file_sha_hex(path, h0) == 0);
    snprintf(args, sizeof args, "--from " FIXDIR "/mlp.pt " MLP " --rule usf --out %s", path);
    T_ASSERT(import_run(NULL, args, out, sizeof out) != 0);
    T_ASSERT(file_sha_hex(path, h1) == 0);
    T_ASSERT_MSG(strcmp(h0, h1) == 0, "a refused import changed the existing %s", path);
    /* an --out that cannot be written: one line naming it */
    T_ASSERT(import_run(NULL, "--from " FIXDIR "/mlp.pt " MLP " --rule fa --out /nonexistent/dir/x.ckpt", out, sizeof out) != 0);
    T_CONTAINS(out, "/nonexistent/dir/x.ckpt: cannot write the checkpoint");
}

/* The rule (and any option) from a side file FILE.concord.json; the command line wins over it. */
TEST(import_side_file) {
    if (!need_numpy("import_side_file")) return;
    char dir[256], cmd[2048], out[4096], args[1024];
    snprintf(dir, sizeof dir, "%s/side", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " FIXDIR "/mlp.pt %s/m.pt && printf '%%s' '{\"rule\": \"frsf\", \"model\": \"mlp\", "
             "\"input\": \"1x12x12\", \"mean\": 0.286, \"std\": 0.353, \"dataset\": \"synthetic:64:1x12x12:10\"}' > %s/m.concord.json", dir, dir, dir);
    T_ASSERT(system(cmd) == 0);
    snprintf(args, sizeof args, "--from %s/m.pt --out %s/m.ckpt", dir, dir);
    T_ASSERT_MSG(import_run(NULL, args, out, sizeof out) == 0, "%s", out);
    T_CONTAINS(out, "rule frsf");
    T_CONTAINS(out, "side file");
    snprintf(args, sizeof args, "--from %s/m.pt --rule fa --out %s/m2.ckpt", dir, dir);
    T_ASSERT_MSG(import_run(NULL, args, out, sizeof out) == 0, "%s", out);
    T_CONTAINS(out, "rule fa");
    /* the imported model is attacked through both gradient sources */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s/m.ckpt --attack fgsm --eps 0.1 --grad true,feedback --limit 32 --no-db --quiet", test_exe(), dir);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "attack on the imported model: %s", out);
    snprintf(cmd, sizeof cmd, "printf '%%s' '{\"rul\": \"frsf\"}' > %s/m.concord.json", dir);
    T_ASSERT(system(cmd) == 0);
    snprintf(args, sizeof args, "--from %s/m.pt", dir);
    expect_refusal(NULL, args, (const char *[]){"m.concord.json: unknown key 'rul'", NULL});
}

/* concord import --help lists exactly the options scripts/import_torch.py accepts. */
TEST(import_options_agree) {
    if (!need_numpy("import_options_agree")) return;
    char help[8192], list[4096], cmd[512];
    snprintf(cmd, sizeof cmd, "%s import --help", test_exe());
    T_ASSERT(test_run(cmd, help, sizeof help) == 0);
    T_ASSERT(test_run("/usr/bin/python3 scripts/import_torch.py --list-options", list, sizeof list) == 0);
    int n = 0;
    for (char *save = NULL, *o = strtok_r(list, "\n", &save); o; o = strtok_r(NULL, "\n", &save), n++) {
        char flag[64];
        snprintf(flag, sizeof flag, "  --%s ", o);
        T_ASSERT_MSG(strstr(help, flag) != NULL, "import_torch.py takes --%s, concord import --help does not list it", o);
    }
    int m = 0;
    for (const char *p = help; (p = strstr(p, "\n  --")); p++) m++;
    T_EQ_INT(m, n);
}
