/* test_suite.c -- suites: stable job keys, INI errors with file:line, dependency order, the plan file,
 * a tiny suite end to end through the CLI, and resume after a real SIGKILL of a running suite. */
#define _GNU_SOURCE
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"
#include "harness/suite/suite.h"
#include "tests/test.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

static const char *INI_A =
    "[suite]\nname = t\ndatasets = synthetic:300:1x8x8:4\nmodels = mlp\nseeds = 0, 1\n"
    "[pretrain]\nrules = bp\nepochs = 1\nhidden = 16\nval = 50\n"
    "[finetune]\nrules = bp, usf, frsf\nepochs = 1\nlr = 0.01\nval = 50\n"
    "[attack w]\nattacks = fgsm, pgd\neps = 0, 0.1, 8/255\ngrads = true, feedback, transfer:bp\nsteps = 3\nlimit = 20\n"
    "[attack b]\nattacks = square\neps = 0.1\nqueries = 10\n";
/* the same grid: keys, sections and list items in another order, numbers written differently */
static const char *INI_B =
    "; comment\n[attack b]\nqueries = 10\neps = 0.10\nattacks = square\n"
    "[finetune]\nval = 50\nlr = 1e-2\nrules = frsf, bp, usf\nepochs = 1\n"
    "[attack w]\nlimit = 20\nsteps = 3\ngrads = transfer:bp, feedback, true\neps = 8/255, 0.1, 0\nattacks = pgd, fgsm\n"
    "[pretrain]\nval = 50\nhidden = 16\nepochs = 1\nrules = bp\n"
    "[suite]\nseeds = 1, 0\nmodels = mlp\ndatasets = synthetic:300:1x8x8:4\nname = t\n";

static int load_plan(const char *name, const char *text, const char *out, SuitePlan *p) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    write_file(path, text);
    Suite s;
    if (suite_load(path, &s) < 0) return -1;
    return suite_plan(&s, out, "/x/db", p);
}

static int cmp_keys(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* sorted copy of the plan's keys */
static char (*sorted_keys(const SuitePlan *p))[SUITE_KEY_LEN] {
    char(*k)[SUITE_KEY_LEN] = xcalloc((size_t)p->n + 1, SUITE_KEY_LEN);
    for (int i = 0; i < p->n; i++) memcpy(k[i], p->jobs[i].key, SUITE_KEY_LEN);
    qsort(k, (size_t)p->n, SUITE_KEY_LEN, cmp_keys);
    return k;
}

TEST(suite_keys_stable) {
    SuitePlan a, b, c, d;
    T_ASSERT(load_plan("a.ini", INI_A, "/o1", &a) == 0);
    T_ASSERT(load_plan("b.ini", INI_B, "/o2", &b) == 0); /* another order AND another output dir */
    T_EQ_INT(a.n, 2 + 6 + 12);                          /* 2 pretrain, 2x3 finetune, 2x3x2 attack */
    T_EQ_INT(b.n, a.n);
    char(*ka)[SUITE_KEY_LEN] = sorted_keys(&a), (*kb)[SUITE_KEY_LEN] = sorted_keys(&b);
    for (int i = 0; i < a.n && i < b.n; i++) T_ASSERT_MSG(str_eq(ka[i], kb[i]), "key %d: %s vs %s", i, ka[i], kb[i]);
    for (int i = 1; i < a.n; i++) T_ASSERT_MSG(!str_eq(ka[i - 1], ka[i]), "duplicate key %s", ka[i]);
    /* one changed fine-tuning value: pretraining keys stay, every finetune and attack key changes */
    char *changed = xstrdup(INI_A);
    char *lr = strstr(changed, "lr = 0.01");
    CHECK(lr);
    lr[8] = '2'; /* lr = 0.02 */
    T_ASSERT(load_plan("c.ini", changed, "/o1", &c) == 0);
    T_EQ_INT(c.n, a.n);
    for (int i = 0; i < a.n && i < c.n; i++) {
        int same = str_eq(a.jobs[i].key, c.jobs[i].key);
        if (a.jobs[i].kind == JOB_TRAIN) T_ASSERT_MSG(same, "pretrain key changed: %s", a.jobs[i].key);
        else T_ASSERT_MSG(!same, "%s key did not change: %s", suite_job_kind_name(a.jobs[i].kind), a.jobs[i].key);
    }
    /* a changed eps list changes only attack keys */
    char *eps = xstrdup(INI_A), *e = strstr(eps, "eps = 0, 0.1, 8/255");
    CHECK(e);
    e[6] = '1'; /* eps = 1, 0.1, 8/255 */
    T_ASSERT(load_plan("d.ini", eps, "/o1", &d) == 0);
    for (int i = 0; i < a.n && i < d.n; i++)
        if (a.jobs[i].kind != JOB_ATTACK) T_ASSERT(str_eq(a.jobs[i].key, d.jobs[i].key));
    int ndiff = 0;
    for (int i = 0; i < a.n && i < d.n; i++) ndiff += !str_eq(a.jobs[i].key, d.jobs[i].key);
    T_EQ_INT(ndiff, 6); /* the six [attack w] jobs */
    free(ka);
    free(kb);
    free(changed);
    free(eps);
    suite_plan_free(&a);
    suite_plan_free(&b);
    suite_plan_free(&c);
    suite_plan_free(&d);
}

/* A suite file that must be refused: its message starts "FILE:LINE: ", names the problem, is one line. */
typedef struct IniCase { const char *text; int line; const char *want; } IniCase;
static void expect_ini_errors(const IniCase *cases, size_t n, const char *tag) {
    for (size_t i = 0; i < n; i++) {
        char path[512], want[600];
        snprintf(path, sizeof path, "%s/%s%zu.ini", test_tmpdir(), tag, i);
        write_file(path, cases[i].text);
        Suite s;
        err_clear();
        T_ASSERT_MSG(suite_load(path, &s) < 0, "%s case %zu: accepted", tag, i);
        snprintf(want, sizeof want, "%s:%d: ", path, cases[i].line);
        T_ASSERT_MSG(strncmp(err_msg(), want, strlen(want)) == 0, "%s case %zu: '%s' does not start with '%s'", tag, i, err_msg(), want);
        T_CONTAINS(err_msg(), cases[i].want);
        T_ASSERT_MSG(!strchr(err_msg(), '\n'), "%s case %zu: message is not one line", tag, i);
        err_clear();
    }
}

TEST(suite_ini_errors) {
    static const IniCase cases[] = {
        {"[suite]\nname = t\ncolour = red\n", 3, "unknown key 'colour'"},
        {"[suite]\nname = t\n[sweep]\nx = 1\n", 4, "unknown section [sweep]"},
        {"[suite]\nname = t\nmodels = lenet9\n", 3, "unknown model 'lenet9'"},
        {"[suite]\nname = t\nseeds = 0, x\n", 3, "seed 'x'"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules = bp, sgd\n", 7, "unknown rule 'sgd'"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\n\nepochs = ten\n", 6, "epochs = ten: expected a non-negative integer"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\noptimizer = rmsprop\n", 5, "one of sgd|adam"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\nrules=fa\n", 5, "given twice"},
        {"[suite]\nname=t\n[attack x]\neps = 0.1, -0.2\n", 4, "not a non-negative number"},
        {"[suite]\nname=t\n[attack x]\nattacks = cw\n", 4, "unknown attack 'cw'"},
        {"[suite]\nname=t\n[attack x]\ngrads = true, surrogate\n", 4, "unknown gradient source"},
        {"[suite]\nname=t\n[pretrain]\nrules = bp\nnew-head = true\n", 5, "belongs to [finetune]"},
        {"[suite]\nname=t\nthis is not ini\n", 3, "not an INI line"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp,usf\n[attack x]\nattacks=fgsm\neps=0\ngrads=transfer:fa\n",
         11, "surrogate rule 'fa' is not in [finetune] rules"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp\n[attack x]\nattacks=fgsm\n", 8, "has no eps"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp\nfreeze=2\n", 8, "needs a [pretrain] section"},
        {"; a suite\n[suite]\nname=t\ndatasets=d\nmodels=mlp\n", 2, "has no seeds"},
    };
    expect_ini_errors(cases, ARRAY_LEN(cases), "err");
    /* and the shipped suites load */
    Suite s;
    T_ASSERT_MSG(suite_load("suites/demo.ini", &s) == 0, "%s", err_msg());
    T_ASSERT_MSG(suite_load("suites/paper.ini", &s) == 0, "%s", err_msg());
    T_ASSERT_MSG(suite_load("suites/tiny.ini", &s) == 0, "%s", err_msg());
    err_clear();
}

/* Per-rule overrides: `lr.usf = ...` changes the usf fine-tunes (and their attacks) only. */
TEST(suite_rule_overrides) {
    SuitePlan a, b;
    char *ini = xcalloc(1, strlen(INI_A) + 64);
    const char *at = strstr(INI_A, "lr = 0.01\n");
    CHECK(at);
    size_t pre = (size_t)(at - INI_A) + strlen("lr = 0.01\n");
    memcpy(ini, INI_A, pre);
    strcat(ini, "lr.usf = 0.0005\n");
    strcat(ini, INI_A + pre);
    T_ASSERT(load_plan("ov0.ini", INI_A, "/o", &a) == 0);
    T_ASSERT_MSG(load_plan("ov1.ini", ini, "/o", &b) == 0, "%s", err_msg());
    T_EQ_INT(a.n, b.n);
    for (int i = 0; i < a.n && i < b.n; i++) {
        const SuiteJob *j = &b.jobs[i];
        int usf = strstr(j->desc, " usf ") != NULL; /* finetune ... usf ... and attack ... on mlp usf seed */
        T_ASSERT_MSG(str_eq(a.jobs[i].key, j->key) == !usf, "job %d (%s): key %s vs %s", i, j->desc, a.jobs[i].key, j->key);
        if (j->kind != JOB_FINETUNE) continue;
        const char *lr = NULL;
        int nlr = 0;
        for (int k = 0; k + 1 < j->argc; k++)
            if (str_eq(j->argv[k], "--lr")) { lr = j->argv[k + 1]; nlr++; }
        T_EQ_INT(nlr, 1);
        T_ASSERT_MSG(lr && str_eq(lr, usf ? "0.0005" : "0.01"), "%s: --lr %s", j->desc, lr ? lr : "(none)");
    }
    suite_plan_free(&a);
    suite_plan_free(&b);
    free(ini);
    static const IniCase cases[] = {
        {"[suite]\nname=t\n[finetune]\nrules=bp\nlr.sgd = 0.1\n", 5, "unknown rule 'sgd' in a per-rule override"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\nlr.dfa = x\n", 5, "lr.dfa = x: expected a non-negative number"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\nlr.dfa = 1\nlr.dfa = 2\n", 6, "lr.dfa is given twice"},
        {"[suite]\nname=t\n[finetune]\nrules=bp\ncolour.dfa = 1\n", 5, "unknown key 'colour'"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp\nlr.dfa = 0.1\n", 8,
         "rule 'dfa' is not in [finetune] rules"},
    };
    expect_ini_errors(cases, ARRAY_LEN(cases), "ov-err");
}

/* The hashing stage: [hash] fine-tunes from the pretraining checkpoint, [hash-attack] attacks them with
 * transfer sources of the same code length. */
static const char *INI_HASH =
    "[suite]\nname = h\ndatasets = synthetic:400:1x8x8:4\nmodels = mlp\nseeds = 0\n"
    "[pretrain]\nrules = bp\nepochs = 1\nhidden = 16\nval = 50\nprobe = 0\n"
    "[finetune]\nrules = bp\nepochs = 1\nval = 50\nprobe = 0\n"
    "[attack w]\nattacks = fgsm\neps = 0, 0.1\ngrads = true\nlimit = 20\n"
    "[hash]\nrules = bp, dfa\nbits = 16, 8\nepochs = 1\nlimit = 200\nval = 40\noptimizer = adam\nlr = 0.001\n"
    "lr.dfa = 0.0005\nqueries-per-class = 5\nprobe = 0\n"
    "[hash-attack h]\nattacks = hash-untargeted, hash-targeted\neps = 0, 8/255\ngrads = true, feedback, transfer:bp\n"
    "steps = 3\nlimit = 10\n";

static const char *job_opt_val(const SuiteJob *j, const char *name) {
    for (int i = 0; i + 1 < j->argc; i++)
        if (str_eq(j->argv[i], name)) return j->argv[i + 1];
    return NULL;
}

TEST(suite_hash_plan) {
    SuitePlan p;
    T_ASSERT_MSG(load_plan("hash.ini", INI_HASH, "/o", &p) == 0, "%s", err_msg());
    /* 1 pretrain, 1 finetune, 2 rules x 2 bits hash fine-tunes, 1 attack, 4 hash attacks */
    T_EQ_INT(p.n, 1 + 1 + 4 + 1 + 4);
    int nh = 0, nha = 0;
    for (int i = 0; i < p.n; i++) {
        const SuiteJob *j = &p.jobs[i];
        for (int d = 0; d < j->ndeps; d++) T_ASSERT(j->deps[d] < i && suite_job_stage(&p.jobs[j->deps[d]]) < suite_job_stage(j));
        if (j->key[0] == 'h') {
            nh++;
            T_EQ_INT(j->kind, JOB_FINETUNE);
            T_ASSERT(str_eq(job_opt_val(j, "--task"), "hash") && job_opt_val(j, "--bits"));
            T_ASSERT(str_eq(job_opt_val(j, "--optimizer"), "adam"));
            T_ASSERT(str_eq(job_opt_val(j, "--lr"), strstr(j->desc, " dfa ") ? "0.0005" : "0.001"));
            T_ASSERT(str_eq(job_opt_val(j, "--from"), p.jobs[j->deps[0]].ckpt) && p.jobs[j->deps[0]].kind == JOB_TRAIN);
        }
        if (j->kind == JOB_ATTACK && str_eq(job_opt_val(j, "--task") ? job_opt_val(j, "--task") : "", "hash")) {
            nha++;
            const SuiteJob *t = &p.jobs[j->deps[0]];
            T_ASSERT(t->key[0] == 'h' && str_eq(job_opt_val(j, "--ckpt"), t->ckpt));
            /* the surrogate: the bp hashing model with the same bits (the bp model's own attack needs only itself) */
            int self = strstr(t->desc, " bp ") != NULL;
            T_EQ_INT(j->ndeps, self ? 1 : 2);
            const SuiteJob *sur = &p.jobs[j->deps[j->ndeps - 1]];
            T_ASSERT(str_eq(job_opt_val(sur, "--bits"), job_opt_val(t, "--bits")) && strstr(sur->desc, " bp "));
            T_ASSERT(str_eq(job_opt_val(j, "--transfer-label"), sur->key));
            char **keys;
            int nk = suite_job_row_keys(j, &keys);
            T_EQ_INT(nk, 2 * 2 * 3);
            char want[128];
            snprintf(want, sizeof want, "%s/hash-targeted/0/transfer:%s", j->key, sur->key);
            T_ASSERT_MSG(str_eq(keys[1], want), "%s vs %s", keys[1], want); /* grads sorted: feedback, transfer, true */
            for (int k = 0; k < nk; k++) free(keys[k]);
            free(keys);
        }
    }
    T_EQ_INT(nh, 4);
    T_EQ_INT(nha, 4);
    suite_plan_free(&p);
    static const IniCase cases[] = {
        {"[suite]\nname=t\n[hash]\nbits = 0\n", 4, "not a code length"},
        {"[suite]\nname=t\n[hash]\nnew-head = true\n", 4, "unknown key 'new-head'"},
        {"[suite]\nname=t\n[finetune]\nhash-eta = 1\n", 4, "hash-eta belongs to [hash]"},
        {"[suite]\nname=t\n[hash-attack x]\nattacks = fgsm\n", 4, "unknown hashing attack 'fgsm'"},
        {"[suite]\nname=t\n[hash-attack x]\nqueries = 5\n", 4, "unknown key 'queries'"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp\n[hash]\nrules=bp\nbits=8\n", 8,
         "[hash] needs a [pretrain] section"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[pretrain]\nrules=bp\n[finetune]\nrules=bp\n[hash]\nrules=bp\n", 10,
         "[hash] has no bits"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[pretrain]\nrules=bp\n[finetune]\nrules=bp\n[hash]\nrules=dfa\nbits=8\n"
         "[hash-attack x]\nattacks=hash-untargeted\neps=0\ngrads=transfer:bp\n", 16, "'bp' is not in [hash] rules"},
        {"[suite]\nname=t\ndatasets=d\nmodels=mlp\nseeds=0\n[finetune]\nrules=bp\n[hash-attack x]\nattacks=hash-untargeted\neps=0\n",
         8, "needs a [hash] section"},
    };
    expect_ini_errors(cases, ARRAY_LEN(cases), "h-err");
}

static const char *job_seed(const SuiteJob *j) {
    for (int i = 0; i + 1 < j->argc; i++)
        if (str_eq(j->argv[i], "--seed")) return j->argv[i + 1];
    return "?";
}

TEST(suite_deps_order) {
    SuitePlan p, q;
    T_ASSERT(load_plan("deps.ini", INI_A, "/o", &p) == 0);
    int seen_transfer = 0;
    for (int i = 0; i < p.n; i++) {
        const SuiteJob *j = &p.jobs[i];
        for (int d = 0; d < j->ndeps; d++) T_ASSERT_MSG(j->deps[d] < i, "job %d depends on later job %d", i, j->deps[d]);
        if (j->kind == JOB_TRAIN) T_EQ_INT(j->ndeps, 0);
        if (j->kind == JOB_FINETUNE) {
            T_EQ_INT(j->ndeps, 1);
            T_EQ_INT(p.jobs[j->deps[0]].kind, JOB_TRAIN);
            T_ASSERT(str_eq(job_seed(j), job_seed(&p.jobs[j->deps[0]]))); /* pretraining of the same seed */
        }
        if (j->kind == JOB_ATTACK) {
            T_EQ_INT(p.jobs[j->deps[0]].kind, JOB_FINETUNE);
            if (strstr(j->desc, "transfer:bp")) {
                /* the bp model's own attack needs only itself; the others also need the bp surrogate */
                int target_is_bp = strstr(p.jobs[j->deps[0]].desc, " bp on") != NULL;
                T_EQ_INT(j->ndeps, target_is_bp ? 1 : 2);
                if (j->ndeps == 2) {
                    T_ASSERT(strstr(p.jobs[j->deps[1]].desc, "finetune mlp bp") != NULL);
                    seen_transfer++;
                }
            }
        }
    }
    T_EQ_INT(seen_transfer, 4); /* usf and frsf, two seeds */
    /* evaluation keys follow concord attack's KEY/<attack>/<eps>/<source> convention */
    char **keys;
    int nk = suite_job_row_keys(&p.jobs[p.n - 2], &keys);
    T_EQ_INT(nk, 2 * 3 * 3);
    char want[128];
    snprintf(want, sizeof want, "%s/fgsm/0/feedback", p.jobs[p.n - 2].key);
    T_ASSERT_MSG(str_eq(keys[0], want), "%s vs %s", keys[0], want);
    for (int i = 0; i < nk; i++) free(keys[i]);
    free(keys);
    nk = suite_job_row_keys(&p.jobs[p.n - 1], &keys); /* Square, one eps: the bare key */
    T_EQ_INT(nk, 1);
    T_ASSERT(str_eq(keys[0], p.jobs[p.n - 1].key));
    free(keys[0]);
    free(keys);
    /* the plan file round-trips */
    char path[512];
    snprintf(path, sizeof path, "%s/plan.tsv", test_tmpdir());
    T_ASSERT(suite_plan_write(&p, path) == 0);
    T_ASSERT_MSG(suite_plan_read(path, &q) == 0, "%s", err_msg());
    T_EQ_INT(q.n, p.n);
    T_ASSERT(str_eq(q.db_path, "/x/db") && str_eq(q.out_dir, "/o"));
    for (int i = 0; i < p.n && i < q.n; i++) {
        T_ASSERT(str_eq(p.jobs[i].key, q.jobs[i].key));
        T_EQ_INT(p.jobs[i].kind, q.jobs[i].kind);
        T_EQ_INT(p.jobs[i].ndeps, q.jobs[i].ndeps);
        for (int d = 0; d < p.jobs[i].ndeps; d++) T_EQ_INT(p.jobs[i].deps[d], q.jobs[i].deps[d]);
        T_EQ_INT(p.jobs[i].argc, q.jobs[i].argc);
        for (int k = 0; k < p.jobs[i].argc && k < q.jobs[i].argc; k++) T_ASSERT(str_eq(p.jobs[i].argv[k], q.jobs[i].argv[k]));
    }
    suite_plan_free(&p);
    suite_plan_free(&q);
}

/* ---- through the CLI ---- */

/* The plan's expected rows: runs = train+finetune jobs, evals = the attack jobs' evaluation keys. */
static void expected_rows(const char *ini, const char *out, long *runs, long *evals) {
    Suite s;
    SuitePlan p;
    *runs = *evals = 0;
    if (suite_load(ini, &s) < 0 || suite_plan(&s, out, "/x", &p) < 0) { T_ASSERT_MSG(0, "%s", err_msg()); return; }
    for (int i = 0; i < p.n; i++) {
        char **k;
        int n = suite_job_row_keys(&p.jobs[i], &k);
        if (p.jobs[i].kind == JOB_ATTACK) *evals += n;
        else *runs += n;
        for (int j = 0; j < n; j++) free(k[j]);
        free(k);
    }
    suite_plan_free(&p);
}

static void check_db_complete(const char *ini, const char *out) {
    char db[600];
    long runs, evals;
    snprintf(db, sizeof db, "%s/concord.db", out);
    expected_rows(ini, out, &runs, &evals);
    T_ASSERT(runs > 0 && evals > 0);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs"), runs);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(DISTINCT job_key) FROM runs"), runs);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), runs);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals"), evals);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(DISTINCT job_key) FROM evals"), evals);
    /* every epoch recorded once per run (no duplicated history after resumes) */
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM (SELECT run_id, epoch FROM epochs GROUP BY run_id, epoch HAVING COUNT(*) > 1)"), 0);
}

TEST(suite_tiny_end_to_end) {
    char cmd[2048], out[600], buf[16384];
    snprintf(out, sizeof out, "%s/tiny", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s suite run suites/tiny.ini --out %s --jobs 2", test_exe(), out);
    int rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "exit %d: %s", rc, buf);
    T_CONTAINS(buf, "7 done now");
    check_db_complete("suites/tiny.ini", out);
    /* again: everything is skipped, nothing is added */
    rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "exit %d: %s", rc, buf);
    T_CONTAINS(buf, "7 already done");
    check_db_complete("suites/tiny.ini", out);
    snprintf(cmd, sizeof cmd, "%s suite status suites/tiny.ini --out %s", test_exe(), out);
    rc = test_run(cmd, buf, sizeof buf);
    T_EQ_INT(rc, 0);
    T_CONTAINS(buf, "7 jobs: 7 done, 0 running, 0 failed, 0 pending");
    /* one job through the Slurm-shaped entry point: already done, says so */
    snprintf(cmd, sizeof cmd, "%s job --plan %s/plan.tsv --index 0", test_exe(), out);
    rc = test_run(cmd, buf, sizeof buf);
    T_EQ_INT(rc, 0);
    T_CONTAINS(buf, "already done");
    /* a failing job is reported with its log, its dependents are blocked, the exit status is non-zero */
    char ini[600];
    snprintf(ini, sizeof ini, "%s/fail.ini", test_tmpdir());
    write_file(ini, "[suite]\nname=f\ndatasets=synthetic:300:1x8x8:4\nmodels=mlp\nseeds=0\n"
                    "[pretrain]\nrules=bp\nepochs=1\nval=50\nhidden=16\n"
                    "[finetune]\nrules=bp\nepochs=1\nval=5000\n" /* more validation examples than data */
                    "[attack a]\nattacks=fgsm\neps=0.1\nlimit=10\n");
    snprintf(cmd, sizeof cmd, "%s suite run %s --out %s/fail --jobs 1", test_exe(), ini, test_tmpdir());
    rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc != 0, "a failing suite exited 0: %s", buf);
    T_CONTAINS(buf, "FAILED");
    T_CONTAINS(buf, "/logs/f-");
    T_CONTAINS(buf, "1 blocked by failures");
    snprintf(cmd, sizeof cmd, "%s suite status %s --out %s/fail", test_exe(), ini, test_tmpdir());
    rc = test_run(cmd, buf, sizeof buf);
    T_CONTAINS(buf, "3 jobs: 1 done, 0 running, 1 failed, 1 pending");
}

static void sql_text(const char *db, const char *sql, char *out, size_t cap) {
    sqlite3 *h;
    out[0] = 0;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) { sqlite3_close(h); return; }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* The same suite written to two output directories records the same evaluation keys (transfer rows are
 * keyed by the surrogate's job key, not its path), and they are exactly the planner's row keys. */
TEST(suite_transfer_keys_stable) {
    char cmd[2048], buf[16384], db[2][700], keys[2][16384];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s suite run suites/tiny.ini --out %s/where%d/x --jobs 2", test_exe(), test_tmpdir(), k);
        int rc = test_run(cmd, buf, sizeof buf);
        T_ASSERT_MSG(rc == 0, "exit %d: %s", rc, buf);
        snprintf(db[k], sizeof db[k], "%s/where%d/x/concord.db", test_tmpdir(), k);
        sql_text(db[k], "SELECT group_concat(job_key, ' ') FROM (SELECT job_key FROM evals ORDER BY job_key)", keys[k], sizeof keys[k]);
    }
    T_ASSERT(keys[0][0] && str_eq(keys[0], keys[1]));
    T_ASSERT(strstr(keys[0], "/transfer:f-") != NULL);
    T_ASSERT(strstr(keys[0], "/where") == NULL);
    /* every planned row key is recorded */
    Suite s;
    SuitePlan p;
    CHECK(suite_load("suites/tiny.ini", &s) == 0 && suite_plan(&s, "/elsewhere", "/x", &p) == 0);
    for (int i = 0; i < p.n; i++) {
        char **k;
        int n = suite_job_row_keys(&p.jobs[i], &k);
        for (int r = 0; r < n; r++) {
            if (p.jobs[i].kind == JOB_ATTACK) {
                char want[200];
                snprintf(want, sizeof want, "%s ", k[r]);
                char hay[16400];
                snprintf(hay, sizeof hay, "%s ", keys[0]);
                T_ASSERT_MSG(strstr(hay, want) != NULL, "planned key %s not recorded", k[r]);
            }
            free(k[r]);
        }
        free(k);
    }
    /* concord attack: one label per transfer source, and without labels the content hash keys the row */
    const SuiteJob *sur = NULL, *tgt = NULL;
    for (int i = 0; i < p.n; i++)
        if (p.jobs[i].kind == JOB_FINETUNE) { if (!sur) sur = &p.jobs[i]; else tgt = &p.jobs[i]; }
    CHECK(sur && tgt);
    char sc[900], tc[900];
    snprintf(sc, sizeof sc, "%s/where0/x/ckpt/%s.ckpt", test_tmpdir(), sur->key);
    snprintf(tc, sizeof tc, "%s/where0/x/ckpt/%s.ckpt", test_tmpdir(), tgt->key);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm --eps 0.1 --grad true,transfer:%s --transfer-label a,b --limit 10 --no-db",
             test_exe(), tc, sc);
    T_ASSERT(test_run(cmd, buf, sizeof buf) != 0);
    T_CONTAINS(buf, "--transfer-label: 2 labels for 1 transfer source in --grad");
    char hex[17];
    CHECK(file_sha_hex(sc, hex) == 0);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm --eps 0.1 --grad true,transfer:%s --limit 10 --db %s/lbl.db --job-key J",
             test_exe(), tc, sc, test_tmpdir());
    T_EQ_INT(test_run(cmd, buf, sizeof buf), 0);
    char lbl[900], want[100];
    snprintf(lbl, sizeof lbl, "%s/lbl.db", test_tmpdir());
    sql_text(lbl, "SELECT group_concat(job_key, ' ') FROM (SELECT job_key FROM evals ORDER BY job_key)", buf, sizeof buf);
    snprintf(want, sizeof want, "J/fgsm/0.1/transfer:%s J/fgsm/0.1/true", hex);
    T_ASSERT_MSG(str_eq(buf, want), "%s vs %s", buf, want);
    suite_plan_free(&p);
}

/* A suite big enough to be caught mid-run: LeNet-5 on synthetic 28x28 data, several epochs. */
static const char *RESUME_INI =
    "[suite]\nname = r\ndatasets = synthetic:3000:1x28x28:10\nmodels = lenet5\nseeds = 0\n"
    "[pretrain]\nrules = bp\nepochs = 4\nval = 200\nprobe = 0\n"
    "[finetune]\nrules = bp, usf, frsf\nepochs = 2\nval = 200\nprobe = 0\n"
    "[attack w]\nattacks = fgsm, pgd\neps = 0, 0.1\ngrads = true, feedback, transfer:bp\nsteps = 5\nlimit = 300\n"
    "[attack b]\nattacks = square\neps = 0.1\nqueries = 50\nlimit = 100\n";

/* Starts `suite run` as the leader of its own process group; returns its pid (= the group id). */
static pid_t start_group(const char *ini, const char *out) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        char log[700];
        snprintf(log, sizeof log, "%s.runner.log", out);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr)) _exit(126);
        execl(test_exe(), test_exe(), "suite", "run", ini, "--out", out, "--jobs", "2", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Waits (at most 60 s) until path exists; 1 when it does. */
static int wait_for(const char *path, pid_t pid) {
    for (int i = 0; i < 6000; i++) {
        if (access(path, F_OK) == 0) return 1;
        if (waitpid(pid, NULL, WNOHANG) == pid) return access(path, F_OK) == 0 ? 2 : 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void kill_group(pid_t pid) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* the children of the group are gone too once no process of the group is left */
    for (int i = 0; i < 500 && kill(-pid, 0) == 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

TEST(suite_resume_sigkill) {
    char ini[600], out[600], path[900], cmd[2048], buf[16384];
    snprintf(ini, sizeof ini, "%s/resume.ini", test_tmpdir());
    snprintf(out, sizeof out, "%s/resume", test_tmpdir());
    write_file(ini, RESUME_INI);
    Suite s;
    SuitePlan p;
    CHECK(suite_load(ini, &s) == 0);
    CHECK(mkdir(out, 0777) == 0);
    char abs_out[600];
    CHECK(realpath(out, abs_out));
    CHECK(suite_plan(&s, abs_out, "/x", &p) == 0);
    /* kill 1: as soon as the pretraining wrote its first epoch checkpoint (mid-training) */
    pid_t g = start_group(ini, out);
    snprintf(path, sizeof path, "%s", p.jobs[0].ckpt);
    int w = wait_for(path, g);
    T_ASSERT_MSG(w == 1, "the pretraining checkpoint %s never appeared while the suite ran", path);
    kill_group(g);
    /* kill 2: once an attack job has started (its log exists) */
    g = start_group(ini, out);
    snprintf(path, sizeof path, "%s/logs/%s.log", out, p.jobs[p.n - 1].key);
    for (int i = 0; i < p.n; i++)
        if (p.jobs[i].kind == JOB_ATTACK) { snprintf(path, sizeof path, "%s/logs/%s.log", out, p.jobs[i].key); break; }
    w = wait_for(path, g);
    T_ASSERT_MSG(w >= 1, "no attack job started: %s", path);
    kill_group(g);
    /* kills 3..5 at seeded random moments (0.3 to 2.5 s after a restart), whatever is running then */
    Rng rr;
    rng_seed(&rr, 2026, RNG_PROBE, 12);
    for (int k = 0; k < 3; k++) {
        g = start_group(ini, out);
        long ms = 300 + (long)rng_below(&rr, 2200);
        for (long t = 0; t < ms && waitpid(g, NULL, WNOHANG) == 0; t += 10) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        kill_group(g);
    }
    /* status after the kill: nothing reported as running (no runner alive) */
    snprintf(cmd, sizeof cmd, "%s suite status %s --out %s", test_exe(), ini, out);
    test_run(cmd, buf, sizeof buf);
    T_CONTAINS(buf, " 0 running");
    /* the rerun completes the suite */
    snprintf(cmd, sizeof cmd, "%s suite run %s --out %s --jobs 2", test_exe(), ini, out);
    int rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "exit %d: %s", rc, buf);
    T_CONTAINS(buf, "0 failed");
    check_db_complete(ini, abs_out);
    snprintf(cmd, sizeof cmd, "%s suite status %s --out %s", test_exe(), ini, out);
    test_run(cmd, buf, sizeof buf);
    char want[64];
    snprintf(want, sizeof want, "%d jobs: %d done, 0 running, 0 failed, 0 pending", p.n, p.n);
    T_CONTAINS(buf, want);
    /* the numbers, not only the counts: the same suite never interrupted records the same values */
    char ref[700], dbk[900], dbr[900];
    snprintf(ref, sizeof ref, "%s/resume-ref", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s suite run %s --out %s --jobs 2", test_exe(), ini, ref);
    rc = test_run(cmd, buf, sizeof buf);
    T_ASSERT_MSG(rc == 0, "reference run: exit %d: %s", rc, buf);
    snprintf(dbk, sizeof dbk, "%s/concord.db", out);
    snprintf(dbr, sizeof dbr, "%s/concord.db", ref);
    static const char *const same[] = {
        "SELECT job_key, kind, rule, status, test_acc, val_acc, task FROM runs ORDER BY job_key",
        "SELECT r.job_key, e.epoch, e.lr, e.train_loss, e.train_acc, e.val_loss, e.val_acc FROM epochs e JOIN runs r"
        " ON r.id = e.run_id ORDER BY r.job_key, e.epoch",
        "SELECT job_key, attack, eps, grad_source, n, n_clean_ok, n_robust_ok, n_flipped, n_zero_grad, mean_linf, mean_l2,"
        " mean_loss, queries_max, flags FROM evals ORDER BY job_key",
    };
    for (size_t i = 0; i < ARRAY_LEN(same); i++) {
        long na, nb;
        unsigned long long a = t_sql_digest(dbk, same[i], &na), b = t_sql_digest(dbr, same[i], &nb);
        T_ASSERT_MSG(a && a == b && na == nb && na > 0, "killed and resumed 5 times vs never stopped: rows differ (%ld vs %ld): %s",
                     na, nb, same[i]);
    }
    /* and every checkpoint's tensors */
    for (int i = 0; i < p.n; i++) {
        if (!p.jobs[i].ckpt[0]) continue;
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s", p.jobs[i].ckpt);
        snprintf(b, sizeof b, "%s/ckpt/%s.ckpt", ref, p.jobs[i].key);
        const char *q = "SELECT name, shape, data FROM tensor ORDER BY name";
        T_ASSERT_MSG(t_sql_digest(a, q, NULL) == t_sql_digest(b, q, NULL), "checkpoint %s differs", p.jobs[i].key);
    }
    suite_plan_free(&p);
}

/* the attack names a suite accepts are exactly concord attack's classification table */
#include "attacks/attack.h"
TEST(suite_attack_names_match_the_table) {
    int n = 0;
    for (int i = 0; i < N_ATTACKS; i++) {
        if (ATTACKS[i].objective != OBJ_CE) continue;
        n++;
        T_ASSERT_MSG(suite_attack_known(ATTACKS[i].name), "concord attack knows '%s', suites do not", ATTACKS[i].name);
    }
    T_ASSERT(n >= 15);
    T_ASSERT(!suite_attack_known("cw") && !suite_attack_known("hash-targeted"));
}
