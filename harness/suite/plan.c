/* plan.c -- expanding a Suite into a plan of jobs with stable keys (pretrain -> finetune -> attack, and the
 * hashing stage), and the database keys each job records under. See suite.h and docs/suites.md.
 * Not for: reading the suite file (ini.c) or the plan file (planfile.c). */
#include "harness/suite/suite.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "harness/model.h"
/* ---------------------------------------------------------------- planning */

const char *suite_job_kind_name(int kind) {
    static const char *names[] = {"train", "finetune", "attack"};
    _Static_assert(ARRAY_LEN(names) == JOB_KIND_COUNT, "one name per job kind");
    return kind >= 0 && kind < JOB_KIND_COUNT ? names[kind] : "?";
}

/* Canonical configuration: "k=v" lines, sorted, hashed. */
typedef struct Canon { int n; char line[SUITE_MAX_OPTS + 16][200]; } Canon;

static void canon_add(Canon *c, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void canon_add(Canon *c, const char *k, const char *fmt, ...) {
    CHECK(c->n < (int)ARRAY_LEN(c->line));
    int w = snprintf(c->line[c->n], sizeof c->line[0], "%s=", k);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->line[c->n] + w, sizeof c->line[0] - (size_t)w, fmt, ap);
    va_end(ap);
    c->n++;
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

static void canon_key(Canon *c, const char *prefix, char *key) {
    xqsort(c->line, (size_t)c->n, sizeof c->line[0], cmp_str);
    uint64_t h = FNV1A_INIT;
    for (int i = 0; i < c->n; i++) {
        h = fnv1a64(c->line[i], strlen(c->line[i]), h);
        h = fnv1a64("\n", 1, h);
    }
    snprintf(key, SUITE_KEY_LEN, "%s-%012llx", prefix, (unsigned long long)(h & 0xffffffffffffULL));
}

static void job_arg(SuiteJob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_arg(SuiteJob *j, const char *fmt, ...) {
    CHECK(j->argc < SUITE_MAX_ARGS - 1);
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    j->argv[j->argc++] = xstrdup(buf);
    j->argv[j->argc] = NULL;
}

/* --dataset D [--data-dir DIR] --rule R --seed S: what every training job says about its data and rule */
static void data_rule_seed_args(SuiteJob *j, const Suite *s, const char *ds, const char *rule, const char *seed) {
    job_arg(j, "--dataset");
    job_arg(j, "%s", ds);
    if (s->data_dir[0]) { job_arg(j, "--data-dir"); job_arg(j, "%s", s->data_dir); }
    job_arg(j, "--rule");
    job_arg(j, "%s", rule);
    job_arg(j, "--seed");
    job_arg(j, "%s", seed);
}

static void job_free(SuiteJob *j) {
    for (int i = 0; i < j->argc; i++) free(j->argv[i]);
    j->argc = 0;
}

/* 1 when o holds a `key.rule` override. */
static int has_override(const SuiteOpts *o, const char *key, const char *rule) {
    for (int i = 0; i < o->n; i++)
        if (o->o[i].rule[0] && str_eq(o->o[i].rule, rule) && str_eq(o->o[i].key, key)) return 1;
    return 0;
}

/* Options: hashed as written (canonical), passed on as --key value (booleans as flags, false omitted).
 * rule: the job's rule; its `key.rule` overrides replace the section's value, other rules' are ignored
 * (NULL: a section without overrides, [attack]). model: a training job's architecture, whose model
 * options it does not read (hidden for lenet5) are left out, so one grid can hold mlp and lenet5 (NULL:
 * finetune and attack jobs, which get every option; concord finetune refuses model options). */
static void add_opts(SuiteJob *j, Canon *c, const SuiteOpts *o, const char *rule, const char *model) {
    const ArchInfo *arch = model ? model_arch_find(model) : NULL;
    for (int i = 0; i < o->n; i++) {
        const SuiteOpt *op = &o->o[i];
        if (op->rule[0] ? !rule || !str_eq(op->rule, rule) : rule && has_override(o, op->key, rule)) continue;
        if (arch && model_arch_uses(arch, op->key) == 0) continue;
        if (op->flag) {
            if (!op->val[0]) continue;
            canon_add(c, op->key, "1");
            job_arg(j, "--%s", op->key);
        } else {
            canon_add(c, op->key, "%s", op->val);
            job_arg(j, "--%s", op->key);
            job_arg(j, "%s", op->val);
        }
    }
}

static void add_common(SuiteJob *j, const SuitePlan *p) {
    job_arg(j, "--db");
    job_arg(j, "%s", p->db_path);
    job_arg(j, "--job-key");
    job_arg(j, "%s", j->key);
}

int suite_plan_add(SuitePlan *p, SuiteJob *j) {
    int at = suite_plan_find(p, j->key);
    if (at >= 0) { job_free(j); return at; }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        SuiteJob *nj = realloc(p->jobs, (size_t)p->cap * sizeof *nj);
        CHECK(nj);
        p->jobs = nj;
    }
    p->jobs[p->n] = *j;
    return p->n++;
}

int suite_plan_find(const SuitePlan *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (str_eq(p->jobs[i].key, key)) return i;
    return -1;
}

/* Builds (without adding) the pretraining job for (dataset, model, pretrain rule, seed). */
static void make_pretrain(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *rule,
                          const char *seed, SuiteJob *j) {
    memset(j, 0, sizeof *j);
    Canon c = {0};
    const char *pds = s->pre_dataset[0] ? s->pre_dataset : ds;
    const char *pseed = str_eq(s->pre_seed, "each") ? seed : s->pre_seed;
    j->kind = JOB_TRAIN;
    j->section = SEC_PRETRAIN;
    canon_add(&c, "kind", "train");
    canon_add(&c, "dataset", "%s", pds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", pseed);
    job_arg(j, "train");
    job_arg(j, "--model");
    job_arg(j, "%s", model);
    data_rule_seed_args(j, s, pds, rule, pseed);
    add_opts(j, &c, &s->pre, rule, model);
    canon_key(&c, "t", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    snprintf(j->desc, sizeof j->desc, "pretrain %s %s on %s, seed %s", model, rule, pds, pseed);
    snprintf(j->dataset, sizeof j->dataset, "%s", pds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
}

/* The fine-tuning job (or, without [pretrain], the from-scratch training job) of one rule. */
static void make_finetune(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *pre_rule,
                          const char *rule, const char *seed, SuiteJob *j) {
    char parent_key[SUITE_KEY_LEN] = "", parent_ckpt[512] = "";
    if (pre_rule) {
        SuiteJob pj;
        make_pretrain(s, p, ds, model, pre_rule, seed, &pj);
        snprintf(parent_key, sizeof parent_key, "%s", pj.key);
        snprintf(parent_ckpt, sizeof parent_ckpt, "%s", pj.ckpt);
        job_free(&pj);
    }
    memset(j, 0, sizeof *j);
    Canon c = {0};
    j->kind = pre_rule ? JOB_FINETUNE : JOB_TRAIN;
    j->section = SEC_FINETUNE;
    canon_add(&c, "kind", "%s", pre_rule ? "finetune" : "train");
    canon_add(&c, "dataset", "%s", ds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", seed);
    if (pre_rule) {
        canon_add(&c, "parent", "%s", parent_key);
        job_arg(j, "finetune");
        job_arg(j, "--from");
        job_arg(j, "%s", parent_ckpt);
    } else {
        job_arg(j, "train");
        job_arg(j, "--model");
        job_arg(j, "%s", model);
    }
    data_rule_seed_args(j, s, ds, rule, seed);
    add_opts(j, &c, &s->ft, rule, pre_rule ? NULL : model);
    canon_key(&c, pre_rule ? "f" : "t", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    if (pre_rule) snprintf(j->desc, sizeof j->desc, "finetune %s %s on %s, seed %s (from %s)", model, rule, ds, seed, pre_rule);
    else snprintf(j->desc, sizeof j->desc, "train %s %s on %s, seed %s", model, rule, ds, seed);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    if (pre_rule) {
        int d = suite_plan_find(p, parent_key);
        CHECK(d >= 0);
        j->deps[j->ndeps++] = d;
    }
}

/* The hashing fine-tune of one rule and code length, from the pretraining checkpoint of pre_rule. */
static void make_hash(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *pre_rule,
                      const char *rule, const char *bits, const char *seed, SuiteJob *j) {
    SuiteJob pj;
    make_pretrain(s, p, ds, model, pre_rule, seed, &pj);
    memset(j, 0, sizeof *j);
    Canon c = {0};
    j->kind = JOB_FINETUNE;
    j->section = SEC_HASH;
    canon_add(&c, "kind", "finetune");
    canon_add(&c, "task", "hash");
    canon_add(&c, "bits", "%s", bits);
    canon_add(&c, "dataset", "%s", ds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", seed);
    canon_add(&c, "parent", "%s", pj.key);
    job_arg(j, "finetune");
    job_arg(j, "--from");
    job_arg(j, "%s", pj.ckpt);
    data_rule_seed_args(j, s, ds, rule, seed);
    job_arg(j, "--task");
    job_arg(j, "hash");
    job_arg(j, "--bits");
    job_arg(j, "%s", bits);
    add_opts(j, &c, &s->hash, rule, NULL);
    canon_key(&c, "h", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    snprintf(j->desc, sizeof j->desc, "hash finetune %s %s %s-bit on %s, seed %s (from %s)", model, rule, bits, ds, seed, pre_rule);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    int d = suite_plan_find(p, pj.key);
    CHECK(d >= 0);
    j->deps[j->ndeps++] = d;
    job_free(&pj);
}

static int cmp_eps(const void *a, const void *b) {
    const char *x = a, *y = b;
    double dx = strchr(x, '/') ? atof(x) / atof(strchr(x, '/') + 1) : atof(x);
    double dy = strchr(y, '/') ? atof(y) / atof(strchr(y, '/') + 1) : atof(y);
    return dx < dy ? -1 : dx > dy ? 1 : strcmp(x, y);
}

static int kind_uses_grad(const char *kind) { return !str_eq(kind, "square") && !str_eq(kind, "square-l2"); }

/* One `concord attack` invocation per (target model, [attack] section): it sweeps the section's attacks x
 * eps x gradient sources, so the masking flags compare them. Lists are sorted (eps numerically) so the
 * job does not depend on the order they were written in. */
static void make_attack(const Suite *s, const SuitePlan *p, const SuiteAttack *a, const char *ds, const char *model,
                        const char *pre_rule, const char *rule, const char *bits, const char *seed, SuiteJob *j) {
    SuiteJob tj, sj;
    if (a->hash) make_hash(s, p, ds, model, pre_rule, rule, bits, seed, &tj);
    else make_finetune(s, p, ds, model, pre_rule, rule, seed, &tj);
    int tdep = suite_plan_find(p, tj.key);
    CHECK(tdep >= 0);
    SuiteList kinds = a->kinds, eps = a->eps, grads = a->grads;
    xqsort(kinds.v, (size_t)kinds.n, sizeof kinds.v[0], cmp_str);
    xqsort(eps.v, (size_t)eps.n, sizeof eps.v[0], cmp_eps);
    xqsort(grads.v, (size_t)grads.n, sizeof grads.v[0], cmp_str);
    int any_grad = 0;
    for (int k = 0; k < kinds.n; k++) any_grad |= kind_uses_grad(kinds.v[k]);
    memset(j, 0, sizeof *j);
    j->kind = JOB_ATTACK;
    j->section = SEC_ATTACK + (int)(a - s->atk);
    j->deps[j->ndeps++] = tdep;
    char kl[SUITE_MAX_LIST * 66] = "", el[SUITE_MAX_LIST * 66] = "", gl[8192] = "", gc[SUITE_MAX_LIST * 24] = "",
         labels[SUITE_MAX_DEPS * SUITE_KEY_LEN] = "";
    for (int k = 0; k < kinds.n; k++) snprintf(kl + strlen(kl), sizeof kl - strlen(kl), "%s%s", k ? "," : "", kinds.v[k]);
    for (int e = 0; e < eps.n; e++) snprintf(el + strlen(el), sizeof el - strlen(el), "%s%s", e ? "," : "", eps.v[e]);
    for (int g = 0; any_grad && g < grads.n; g++) {
        const char *v = grads.v[g];
        const char *arg = v, *canon = v;
        if (strncmp(v, "transfer:", 9) == 0) {
            if (a->hash) make_hash(s, p, ds, model, pre_rule, v + 9, bits, seed, &sj);
            else if (str_eq(v + 9, "pretrain")) make_pretrain(s, p, ds, model, pre_rule, seed, &sj);
            else make_finetune(s, p, ds, model, pre_rule, v + 9, seed, &sj);
            int sdep = suite_plan_find(p, sj.key);
            CHECK(sdep >= 0);
            int have = 0;
            for (int d = 0; d < j->ndeps; d++) have |= j->deps[d] == sdep;
            CHECK(have || j->ndeps < SUITE_MAX_DEPS);
            if (!have) j->deps[j->ndeps++] = sdep;
            char ta[600], tc[40];
            snprintf(ta, sizeof ta, "transfer:%s", sj.ckpt);
            snprintf(tc, sizeof tc, "transfer:%s", sj.key);
            snprintf(gl + strlen(gl), sizeof gl - strlen(gl), "%s%s", g ? "," : "", ta);
            snprintf(gc + strlen(gc), sizeof gc - strlen(gc), "%s%s", g ? "," : "", tc);
            /* the surrogate's job key labels its rows: KEY/<attack>/<eps>/transfer:<label>, whatever --out is */
            snprintf(labels + strlen(labels), sizeof labels - strlen(labels), "%s%s", labels[0] ? "," : "", sj.key);
            job_free(&sj);
            continue;
        }
        snprintf(gl + strlen(gl), sizeof gl - strlen(gl), "%s%s", g ? "," : "", arg);
        snprintf(gc + strlen(gc), sizeof gc - strlen(gc), "%s%s", g ? "," : "", canon);
    }
    Canon c = {0};
    canon_add(&c, "kind", "attack");
    canon_add(&c, "target", "%s", tj.key);
    canon_add(&c, "attacks", "%s", kl);
    canon_add(&c, "eps", "%s", el);
    if (any_grad) canon_add(&c, "grads", "%s", gc);
    canon_add(&c, "seed", "%s", seed);
    if (a->hash) canon_add(&c, "task", "hash");
    job_arg(j, "attack");
    job_arg(j, "--ckpt");
    job_arg(j, "%s", tj.ckpt);
    if (a->hash) { job_arg(j, "--task"); job_arg(j, "hash"); }
    job_arg(j, "--attack");
    job_arg(j, "%s", kl);
    job_arg(j, "--eps");
    job_arg(j, "%s", el);
    if (any_grad) {
        job_arg(j, "--grad");
        job_arg(j, "%s", gl);
    }
    if (labels[0]) {
        job_arg(j, "--transfer-label");
        job_arg(j, "%s", labels);
    }
    job_arg(j, "--seed");
    job_arg(j, "%s", seed);
    if (s->data_dir[0]) { job_arg(j, "--data-dir"); job_arg(j, "%s", s->data_dir); }
    add_opts(j, &c, &a->opts, NULL, NULL);
    canon_key(&c, "a", j->key);
    add_common(j, p);
    char gshort[200] = "";
    for (int g = 0; any_grad && g < a->grads.n; g++)
        snprintf(gshort + strlen(gshort), sizeof gshort - strlen(gshort), "%s%s", g ? "," : "", grads.v[g]);
    if (a->hash)
        snprintf(j->desc, sizeof j->desc, "hash-attack [%s] %s x eps %s x %s on %s %s %s-bit seed %s", a->name, kl, el, gshort,
                 model, rule, bits, seed);
    else
        snprintf(j->desc, sizeof j->desc, "attack [%s] %s x eps %s%s%s on %s %s seed %s", a->name, kl, el, any_grad ? " x " : "",
                 gshort, model, rule, seed);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    job_free(&tj);
}

/* Finds `--name VALUE` in a job's argv; NULL when absent. */
static const char *job_opt(const SuiteJob *j, const char *name) {
    for (int i = 0; i + 1 < j->argc; i++)
        if (strncmp(j->argv[i], "--", 2) == 0 && str_eq(j->argv[i] + 2, name)) return j->argv[i + 1];
    return NULL;
}

/* Splits a comma list into malloc'd items; returns the count. */
static int split_commas(const char *text, char ***out) {
    int n = 1;
    for (const char *c = text; *c; c++) n += *c == ',';
    char **v = xcalloc((size_t)n, sizeof *v);
    const char *p = text;
    for (int i = 0; i < n; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[i] = xmalloc(len + 1);
        memcpy(v[i], p, len);
        v[i][len] = 0;
        p = e ? e + 1 : p + len;
    }
    *out = v;
    return n;
}

int suite_job_row_keys(const SuiteJob *j, char ***keys) {
    *keys = NULL;
    if (j->kind != JOB_ATTACK) {
        *keys = xcalloc(1, sizeof **keys);
        (*keys)[0] = xstrdup(j->key);
        return 1;
    }
    const char *ka = job_opt(j, "attack"), *ea = job_opt(j, "eps"), *ga = job_opt(j, "grad"), *la = job_opt(j, "transfer-label");
    CHECK(ka && ea);
    char **kinds, **eps, **grads = NULL, **labels = NULL;
    int nk = split_commas(ka, &kinds), ne = split_commas(ea, &eps), ng = ga ? split_commas(ga, &grads) : 0;
    int nl = la ? split_commas(la, &labels) : 0;
    /* transfer sources are keyed by their labels (concord attack --transfer-label), in order */
    for (int g = 0, l = 0; g < ng && l < nl; g++) {
        if (strncmp(grads[g], "transfer:", 9) != 0) continue;
        size_t len = strlen(labels[l]) + 10;
        free(grads[g]);
        grads[g] = xmalloc(len);
        snprintf(grads[g], len, "transfer:%s", labels[l++]);
    }
    for (int i = 0; i < nl; i++) free(labels[i]);
    free(labels);
    int n = 0, cap = 0;
    for (int k = 0; k < nk; k++) cap += ne * (kind_uses_grad(kinds[k]) ? (ng ? ng : 1) : 1);
    char **out = xcalloc((size_t)cap, sizeof *out);
    for (int k = 0; k < nk; k++)
        for (int e = 0; e < ne; e++) {
            int gn = kind_uses_grad(kinds[k]) ? (ng ? ng : 1) : 1;
            for (int g = 0; g < gn; g++) {
                const char *src = !kind_uses_grad(kinds[k]) ? "none" : ng ? grads[g] : "true";
                size_t len = strlen(j->key) + strlen(kinds[k]) + strlen(eps[e]) + strlen(src) + 4;
                out[n] = xmalloc(len);
                snprintf(out[n], len, "%s/%s/%s/%s", j->key, kinds[k], eps[e], src);
                n++;
            }
        }
    /* AutoAttack records a row per component besides the ensemble's: never a single evaluation; its rows
       are keyed autoattack[-rand] (concord attack's row names), the ensemble's row standing for the job */
    int aa = 0;
    for (int k = 0; k < nk; k++) aa |= strncmp(kinds[k], "autoattack", 10) == 0;
    const char *ver = job_opt(j, "version");
    if (aa && ver && str_eq(ver, "rand"))
        for (int i = 0; i < n; i++) {
            char *slash = strstr(out[i] + strlen(j->key), "/autoattack");
            if (!slash) continue;
            char *rest = slash + strlen("/autoattack");
            if (strncmp(rest, "-l2", 3) == 0) rest += 3;
            size_t len = strlen(out[i]) + 8;
            char *nk2 = xmalloc(len);
            snprintf(nk2, len, "%.*s-rand%s", (int)(rest - out[i]), out[i], rest);
            free(out[i]);
            out[i] = nk2;
        }
    if (n == 1 && !aa) { /* a single evaluation is recorded under the bare key */
        free(out[0]);
        out[0] = xstrdup(j->key);
    }
    for (int i = 0; i < nk; i++) free(kinds[i]);
    for (int i = 0; i < ne; i++) free(eps[i]);
    for (int i = 0; i < ng; i++) free(grads[i]);
    free(kinds);
    free(eps);
    free(grads);
    *keys = out;
    return n;
}

int suite_job_stage(const SuiteJob *j) { return j->kind == JOB_TRAIN ? 0 : j->kind == JOB_FINETUNE ? 1 : 2; }

int suite_plan(const Suite *s, const char *out_dir, const char *db_path, SuitePlan *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->suite_path, sizeof p->suite_path, "%s", s->path);
    snprintf(p->out_dir, sizeof p->out_dir, "%s", out_dir);
    snprintf(p->db_path, sizeof p->db_path, "%s", db_path);
    int npre = s->has_pretrain ? s->pre_rules.n : 1;
    SuiteJob j;
    /* stage by stage, so a dependency always has a lower index */
    for (int stage = 0; stage < 3; stage++)
        for (int d = 0; d < s->datasets.n; d++)
            for (int m = 0; m < s->models.n; m++)
                for (int sd = 0; sd < s->seeds.n; sd++)
                    for (int pr = 0; pr < npre; pr++) {
                        const char *ds = s->datasets.v[d], *model = s->models.v[m], *seed = s->seeds.v[sd];
                        const char *pre = s->has_pretrain ? s->pre_rules.v[pr] : NULL;
                        if (stage == 0) {
                            if (!pre) continue;
                            make_pretrain(s, p, ds, model, pre, seed, &j);
                            suite_plan_add(p, &j);
                            continue;
                        }
                        for (int r = 0; r < s->ft_rules.n; r++) {
                            const char *rule = s->ft_rules.v[r];
                            if (stage == 1) {
                                make_finetune(s, p, ds, model, pre, rule, seed, &j);
                                suite_plan_add(p, &j);
                                continue;
                            }
                            for (int ai = 0; ai < s->natk; ai++) {
                                if (s->atk[ai].hash) continue;
                                make_attack(s, p, &s->atk[ai], ds, model, pre, rule, NULL, seed, &j);
                                suite_plan_add(p, &j);
                            }
                        }
                        /* the hashing task: fine-tunes per rule x code length, then their attacks */
                        for (int r = 0; pre && s->has_hash && r < s->hash_rules.n; r++)
                            for (int b = 0; b < s->hash_bits.n; b++) {
                                const char *rule = s->hash_rules.v[r], *bits = s->hash_bits.v[b];
                                if (stage == 1) {
                                    make_hash(s, p, ds, model, pre, rule, bits, seed, &j);
                                    suite_plan_add(p, &j);
                                    continue;
                                }
                                for (int ai = 0; ai < s->natk; ai++) {
                                    if (!s->atk[ai].hash) continue;
                                    make_attack(s, p, &s->atk[ai], ds, model, pre, rule, bits, seed, &j);
                                    suite_plan_add(p, &j);
                                }
                            }
                    }
    return 0;
}

void suite_plan_free(SuitePlan *p) {
    for (int i = 0; i < p->n; i++) job_free(&p->jobs[i]);
    free(p->jobs);
    memset(p, 0, sizeof *p);
}

/* Where msg first names option --name (not a longer option that starts with it), or -1. */
static long msg_names(const char *msg, const char *name) {
    size_t n = strlen(name);
    for (const char *p = msg; (p = strstr(p, "--")) != NULL; p += 2)
        if (strncmp(p + 2, name, n) == 0 && !(p[2 + n] == '-' || (p[2 + n] >= 'a' && p[2 + n] <= 'z'))) return p - msg;
    return -1;
}

/* The job's value of --name, or NULL. */
static const char *job_value(const SuiteJob *j, const char *name) {
    for (int i = 0; i + 1 < j->argc; i++)
        if (strncmp(j->argv[i], "--", 2) == 0 && str_eq(j->argv[i] + 2, name)) return j->argv[i + 1];
    return NULL;
}

/* The line of the option or list the message names first (it is about that one), else `line`. */
typedef struct Blame { long pos; int line; } Blame;
static void blame(Blame *b, const char *msg, const char *name, int line) {
    long at = msg_names(msg, name);
    if (at >= 0 && line > 0 && (b->pos < 0 || at < b->pos)) { b->pos = at; b->line = line; }
}

int suite_plan_check(const Suite *s, const SuitePlan *p, SuiteJobCheck check) {
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        err_clear();
        if (check(j->argc, (char **)j->argv) == 0) continue; /* the checkers only read it */
        char msg[600], sec[80] = "?";
        snprintf(msg, sizeof msg, "%s", err_msg());
        const SuiteOpts *o = NULL;
        Blame b = {-1, 0};
        if (j->section == SEC_PRETRAIN) {
            snprintf(sec, sizeof sec, "pretrain");
            o = &s->pre;
            b.line = s->line_pretrain;
            blame(&b, msg, "rule", s->pre_rules.line);
        } else if (j->section == SEC_FINETUNE) {
            snprintf(sec, sizeof sec, "finetune");
            o = &s->ft;
            b.line = s->ft_rules.line;
            blame(&b, msg, "rule", s->ft_rules.line);
        } else if (j->section == SEC_HASH) {
            snprintf(sec, sizeof sec, "hash");
            o = &s->hash;
            b.line = s->line_hash;
            blame(&b, msg, "rule", s->hash_rules.line);
            blame(&b, msg, "bits", s->hash_bits.line);
        } else if (j->section >= SEC_ATTACK && j->section - SEC_ATTACK < s->natk) {
            const SuiteAttack *a = &s->atk[j->section - SEC_ATTACK];
            snprintf(sec, sizeof sec, "%s %s", a->hash ? "hash-attack" : "attack", a->name);
            o = &a->opts;
            b.line = a->line;
            blame(&b, msg, "eps", a->eps.line);
            blame(&b, msg, "attack", a->kinds.line);
            blame(&b, msg, "grad", a->grads.line);
        }
        for (int k = 0; o && k < o->n; k++) { /* an option line whose value this job got */
            const SuiteOpt *op = &o->o[k];
            const char *v = job_value(j, op->key);
            if (op->flag || (v && str_eq(v, op->val))) blame(&b, msg, op->key, op->line);
        }
        err_clear(); /* err_set keeps the first message: this one wraps it */
        return err_set("%s:%d: [%s] %s", s->path, b.line, sec, msg);
    }
    err_clear();
    return 0;
}
