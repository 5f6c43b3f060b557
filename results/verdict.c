/* verdict.c -- rule vs BP with paired statistics, and the methods block. See verdict.h. */
#define _POSIX_C_SOURCE 200809L
#include "results/verdict.h"

#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/outcomes.h"
#include "results/qtab.h"
#include "results/stats.h"

#define MAX_SRC VERDICT_MAX_SRC
#define ALPHA 0.05
#define MASK_GAP 0.05  /* masking: feedback leaves > 5 points more examples robust ... */
#define MASK_ALPHA 0.01 /* ... with McNemar p < 0.01 */

/* one evaluation read back */
typedef struct Ev {
    long id;
    int64_t run;
    char kind[16], rule[32], model[64], dataset[64], eps_text[32], norm[8], source[64];
    long seed;
    double eps;
    Outcomes o;
} Ev;

/* one model at one eps and norm, reduced to per-example vectors on one example set */
typedef struct ME {
    int64_t run;
    char kind[16], rule[32], model[64], dataset[64], eps_text[32], norm[8];
    long seed;
    double eps;
    long n;
    int32_t *index;                 /* (n) */
    uint8_t *clean, *worst;         /* (n) */
    int nsrc;
    char src[MAX_SRC][64];
    uint8_t *by_src[MAX_SRC];       /* (n) robust under every evaluation through that source */
    int nevals, other_sets;         /* evaluations combined; evaluations on other example sets left out */
} ME;

static const char *txt(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

static int src_rank(const char *s) {
    return str_eq(s, "true") ? 0 : strncmp(s, "feedback", 8) == 0 ? 1 : strncmp(s, "transfer", 8) == 0 ? 2 : 3;
}
static int src_cmp(const char *a, const char *b) {
    int c = src_rank(a) - src_rank(b);
    return c ? c : strcmp(a, b);
}

static void me_free(ME *m) {
    free(m->index); free(m->clean); free(m->worst);
    for (int k = 0; k < m->nsrc; k++) free(m->by_src[k]);
}

static const uint8_t *me_src(const ME *m, const char *s) {
    for (int k = 0; k < m->nsrc; k++)
        if (str_eq(m->src[k], s)) return m->by_src[k];
    return NULL;
}

/* Reduces the evaluations ev[0..n) of one (run, norm, eps) to one ME on their largest example set. */
static void me_build(ME *m, const Ev *ev, int n) {
    memset(m, 0, sizeof *m);
    int pick = 0; /* largest set; ties: the latest (ev is in id order) */
    for (int k = 1; k < n; k++)
        if (ev[k].o.n >= ev[pick].o.n) pick = k;
    const Ev *e0 = &ev[pick];
    m->run = e0->run;
    snprintf(m->kind, sizeof m->kind, "%s", e0->kind);
    snprintf(m->rule, sizeof m->rule, "%s", e0->rule);
    snprintf(m->model, sizeof m->model, "%s", e0->model);
    snprintf(m->dataset, sizeof m->dataset, "%s", e0->dataset);
    snprintf(m->eps_text, sizeof m->eps_text, "%s", e0->eps_text);
    snprintf(m->norm, sizeof m->norm, "%s", e0->norm);
    m->seed = e0->seed;
    m->eps = e0->eps;
    m->n = e0->o.n;
    size_t sz = m->n ? (size_t)m->n : 1;
    m->index = xmalloc(sizeof(int32_t) * sz);
    memcpy(m->index, e0->o.index, sizeof(int32_t) * (size_t)m->n);
    m->clean = xmalloc(sz);
    m->worst = xmalloc(sz);
    memcpy(m->clean, e0->o.clean_ok, (size_t)m->n);
    memcpy(m->worst, e0->o.clean_ok, (size_t)m->n);
    for (int k = 0; k < n; k++) {
        const Ev *e = &ev[k];
        if (e->o.n != m->n || memcmp(e->o.index, m->index, sizeof(int32_t) * (size_t)m->n) != 0) { m->other_sets++; continue; }
        uint8_t *v = (uint8_t *)me_src(m, e->source);
        if (!v && m->nsrc < MAX_SRC) {
            snprintf(m->src[m->nsrc], sizeof m->src[0], "%s", e->source);
            v = m->by_src[m->nsrc++] = xmalloc(sz);
            memcpy(v, m->clean, (size_t)m->n);
        }
        for (long i = 0; i < m->n; i++) {
            uint8_t r = e->o.robust_ok[i];
            if (v) v[i] &= r;
            m->worst[i] &= r;
        }
        m->nevals++;
    }
}

/* Every finished run's (norm, eps) with per-example outcomes, reduced. */
static int load(Db *db, ME **out, int *nout) {
    static const char sql[] =
        "SELECT e.id, e.run_id, r.kind, r.rule, r.model, r.dataset, coalesce(r.data_seed, -1), e.eps, e.eps_text, e.norm,"
        " v.source_label, e.outcomes FROM evals e JOIN runs r ON r.id = e.run_id JOIN eval_view v ON v.eval_id = e.id"
        " WHERE e.task = 'classify' AND e.outcomes IS NOT NULL AND r.status = 'finished'"
        " AND e.stage = 0" /* AutoAttack's component rows are the ensemble so far: its own row stands for them */
        " ORDER BY e.run_id, e.norm, e.eps, e.id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: reading evaluations: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    Ev *ev = NULL;
    int nev = 0, cap = 0, rc, fail = 0, n = 0, mcap = 0;
    ME *m = NULL;
    for (;;) {
        rc = sqlite3_step(st);
        int have = rc == SQLITE_ROW;
        Ev e;
        memset(&e, 0, sizeof e);
        if (have) {
            e.id = sqlite3_column_int64(st, 0);
            e.run = sqlite3_column_int64(st, 1);
            snprintf(e.kind, sizeof e.kind, "%s", txt(st, 2));
            snprintf(e.rule, sizeof e.rule, "%s", txt(st, 3));
            snprintf(e.model, sizeof e.model, "%s", txt(st, 4));
            snprintf(e.dataset, sizeof e.dataset, "%s", txt(st, 5));
            e.seed = sqlite3_column_int64(st, 6);
            e.eps = sqlite3_column_double(st, 7);
            snprintf(e.eps_text, sizeof e.eps_text, "%s", txt(st, 8));
            snprintf(e.norm, sizeof e.norm, "%s", txt(st, 9));
            snprintf(e.source, sizeof e.source, "%s", txt(st, 10));
            if (outcomes_decode(sqlite3_column_blob(st, 11), sqlite3_column_bytes(st, 11), e.id, &e.o) < 0) { fail = 1; break; }
            if (e.o.kind != OUT_CLASSIFY) { outcomes_free(&e.o); continue; }
        }
        if (nev && (!have || e.run != ev[0].run || e.eps != ev[0].eps || !str_eq(e.norm, ev[0].norm))) {
            if (n == mcap) {
                mcap = mcap ? 2 * mcap : 32;
                m = realloc(m, sizeof *m * (size_t)mcap);
                CHECK(m);
            }
            me_build(&m[n++], ev, nev);
            for (int k = 0; k < nev; k++) outcomes_free(&ev[k].o);
            nev = 0;
        }
        if (!have) break;
        if (nev == cap) {
            cap = cap ? 2 * cap : 16;
            ev = realloc(ev, sizeof *ev * (size_t)cap);
            CHECK(ev);
        }
        ev[nev++] = e;
    }
    for (int k = 0; k < nev; k++) outcomes_free(&ev[k].o);
    free(ev);
    sqlite3_finalize(st);
    if (!fail && rc != SQLITE_DONE) fail = err_set("%s: reading evaluations: %s", db_path(db), sqlite3_errmsg(db_sqlite(db))) != 0;
    if (fail) {
        for (int i = 0; i < n; i++) me_free(&m[i]);
        free(m);
        return -1;
    }
    *out = m;
    *nout = n;
    return 0;
}

/* ---- comparisons ---- */

static VerdictDelta compare(const StatsSeed *sd, int S) {
    VerdictDelta c;
    memset(&c, 0, sizeof c);
    c.S = S;
    if (!S) return c;
    c.n = sd[0].n;
    int crossed = 1;
    for (int s = 1; s < S; s++) crossed &= sd[s].n == sd[0].n;
    double sa = 0, sb = 0;
    for (int s = 0; s < S; s++) {
        StatsCounts k = stats_count(sd[s].a, sd[s].b, sd[s].n);
        sa += sd[s].n ? 100.0 * k.robust_a / sd[s].n : 0;
        sb += sd[s].n ? 100.0 * k.robust_b / sd[s].n : 0;
    }
    c.acc_rule = sa / S;
    c.acc_bp = sb / S;
    StatsBootOpts o = {.reps = 2000, .level = 0.95, .seed = 1, .design = crossed ? STATS_CROSSED : STATS_NESTED};
    StatsInterval iv = stats_bootstrap_diff(sd, S, &o);
    c.d = 100 * iv.est;
    c.lo = 100 * iv.lo;
    c.hi = 100 * iv.hi;
    c.p = crossed ? stats_signflip_examples(sd, S) : stats_mh_exact(sd, S);
    c.p_seeds = stats_signflip_seeds(sd, S);
    c.shown = (c.lo > 0 || c.hi < 0) && c.p < ALPHA;
    c.rule_level = c.shown && c.p_seeds < ALPHA;
    return c;
}

static int rule_rank(const char *r) {
    static const char *const order[] = {"bp", "fa", "dfa", "usf", "brsf", "frsf"};
    for (int i = 0; i < 6; i++)
        if (str_eq(r, order[i])) return i;
    return 6;
}

/* group key order: dataset, model, norm, eps, then rule (bp first) */
static int me_cmp(const void *a, const void *b) {
    const ME *x = a, *y = b;
    int c;
    if ((c = strcmp(x->dataset, y->dataset))) return c;
    if ((c = strcmp(x->model, y->model))) return c;
    if ((c = strcmp(x->norm, y->norm))) return c;
    if (x->eps != y->eps) return x->eps < y->eps ? -1 : 1;
    if ((c = strcmp(x->kind, y->kind))) return c > 0 ? -1 : 1; /* train (pretrained) after finetune */
    if ((c = rule_rank(x->rule) - rule_rank(y->rule))) return c;
    if ((c = strcmp(x->rule, y->rule))) return c;
    return x->seed < y->seed ? -1 : x->seed > y->seed;
}
static int same_group(const ME *a, const ME *b) {
    return str_eq(a->dataset, b->dataset) && str_eq(a->model, b->model) && str_eq(a->norm, b->norm) && a->eps == b->eps;
}
static int same_examples(const ME *a, const ME *b) {
    return a->n == b->n && memcmp(a->index, b->index, sizeof(int32_t) * (size_t)a->n) == 0;
}

/* One verdict row from the models m[i..j) of one rule in the group m[g0..g1). */
static void verdict_row(const ME *m, int g0, int g1, int i, int j, const VerdictSet *vs, StatsSeed *sd, VerdictRow *row,
                        long *unpaired) {
    const ME *r0 = &m[i];
    memset(row, 0, sizeof *row);
    int is_bp_ft = str_eq(r0->rule, "bp") && str_eq(r0->kind, "finetune");
    snprintf(row->dataset, sizeof row->dataset, "%s", r0->dataset);
    snprintf(row->model, sizeof row->model, "%s", r0->model);
    snprintf(row->norm, sizeof row->norm, "%s", r0->norm);
    snprintf(row->eps_text, sizeof row->eps_text, "%s", r0->eps_text);
    snprintf(row->rule, sizeof row->rule, "%s", r0->rule);
    snprintf(row->kind, sizeof row->kind, "%s", r0->kind);
    snprintf(row->label, sizeof row->label, "%s%s", r0->rule,
             str_eq(r0->kind, "train") ? " (pretrained)" : is_bp_ft ? " (fine-tuned, baseline)" : "");
    row->eps = r0->eps;
    /* absolute numbers of these models: mean over seeds */
    double sc = 0, sw = 0;
    for (int k = i; k < j; k++) {
        long c = 0, w = 0;
        for (long e = 0; e < m[k].n; e++) { c += m[k].clean[e]; w += m[k].worst[e]; }
        sc += m[k].n ? 100.0 * c / m[k].n : 0;
        sw += m[k].n ? 100.0 * w / m[k].n : 0;
    }
    row->seeds = j - i;
    row->n = r0->n;
    row->clean = sc / (j - i);
    row->worst = sw / (j - i);
    if (is_bp_ft || str_eq(r0->kind, "train")) {
        row->baseline = 1;
        snprintf(row->verdict, sizeof row->verdict, "baseline");
        return;
    }
    /* pair each seed with BP's fine-tune of the same seed on the same examples */
    const ME *bp[1024], *rm[1024];
    int S = 0;
    for (int k = i; k < j && S < 1024; k++) {
        const ME *b = NULL;
        for (int q = g0; q < g1 && !b; q++)
            if (str_eq(m[q].rule, "bp") && str_eq(m[q].kind, "finetune") && m[q].seed == m[k].seed && same_examples(&m[q], &m[k]))
                b = &m[q];
        if (!b) { (*unpaired)++; continue; }
        rm[S] = &m[k];
        bp[S++] = b;
    }
    if (!S) { snprintf(row->verdict, sizeof row->verdict, "no BP pair"); return; }
    row->paired = 1;
    for (int s = 0; s < S; s++) sd[s] = (StatsSeed){rm[s]->clean, bp[s]->clean, rm[s]->n};
    row->clean_d = compare(sd, S);
    int masking_any = 0, mask_rule = 0;
    for (int k = 0; k < vs->nsrc; k++) {
        int Sk = 0;
        for (int s = 0; s < S; s++) {
            const uint8_t *a = me_src(rm[s], vs->src[k]), *b = me_src(bp[s], vs->src[k]);
            if (!b) b = me_src(bp[s], "true");
            if (a && b) sd[Sk++] = (StatsSeed){a, b, rm[s]->n};
        }
        row->by_src[k] = compare(sd, Sk);
        const VerdictDelta *d = &row->by_src[k];
        if (src_rank(vs->src[k]) != 0 && d->shown && d->d > 0) {
            masking_any = 1;
            mask_rule |= d->rule_level;
        }
    }
    for (int s = 0; s < S; s++) sd[s] = (StatsSeed){rm[s]->worst, bp[s]->worst, rm[s]->n};
    const VerdictDelta w = row->worst_d = compare(sd, S);
    /* masking per model: feedback vs true on the same model */
    int Sm = 0;
    for (int s = 0; s < S; s++) {
        const uint8_t *fb = NULL, *tr = me_src(rm[s], "true");
        for (int k = 0; k < rm[s]->nsrc && !fb; k++)
            if (strncmp(rm[s]->src[k], "feedback", 8) == 0) fb = rm[s]->by_src[k];
        if (fb && tr) sd[Sm++] = (StatsSeed){fb, tr, rm[s]->n};
    }
    row->mask_n = Sm;
    if (Sm) row->mask_k = stats_masking_seeds(sd, Sm, +1, MASK_GAP, MASK_ALPHA);
    const char *lab;
    int rule_level;
    if (w.shown && w.d > 0) { lab = "robust gain"; rule_level = w.rule_level; }
    else if (w.shown && w.d < 0) { lab = "worse"; rule_level = w.rule_level; }
    else if (masking_any) { lab = "masking"; rule_level = mask_rule; }
    else { lab = "no gain"; rule_level = 0; }
    snprintf(row->verdict, sizeof row->verdict, "%s", lab);
    if (str_eq(lab, "no gain")) snprintf(row->evidence, sizeof row->evidence, "no difference shown (%d seed%s)", S, S == 1 ? "" : "s");
    else if (rule_level) snprintf(row->evidence, sizeof row->evidence, "for the rule (%d seeds)", S);
    else snprintf(row->evidence, sizeof row->evidence, "for these models (%d seed%s; the rule needs >= 6)", S, S == 1 ? "" : "s");
}

int verdict_compute(Db *db, VerdictSet *vs) {
    memset(vs, 0, sizeof *vs);
    ME *m = NULL;
    int n = 0;
    if (load(db, &m, &n) < 0) return -1;
    xqsort(m, (size_t)n, sizeof *m, me_cmp);
    /* the sources: every source seen on a model */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < m[i].nsrc; k++) {
            int seen = 0;
            for (int j = 0; j < vs->nsrc && !seen; j++) seen = str_eq(vs->src[j], m[i].src[k]);
            if (!seen && vs->nsrc < VERDICT_MAX_SRC) snprintf(vs->src[vs->nsrc++], sizeof vs->src[0], "%s", m[i].src[k]);
        }
    for (int a = 1; a < vs->nsrc; a++)
        for (int b = a; b > 0 && src_cmp(vs->src[b], vs->src[b - 1]) < 0; b--) {
            char tmp[64];
            memcpy(tmp, vs->src[b], 64);
            memcpy(vs->src[b], vs->src[b - 1], 64);
            memcpy(vs->src[b - 1], tmp, 64);
        }
    vs->rows = xcalloc((size_t)(n + 1), sizeof *vs->rows);
    StatsSeed *sd = xcalloc((size_t)(n + 1), sizeof *sd);
    for (int g0 = 0; g0 < n;) {
        int g1 = g0;
        while (g1 < n && same_group(&m[g0], &m[g1])) g1++;
        for (int i = g0; i < g1; i++) vs->other_sets += m[i].other_sets;
        for (int i = g0; i < g1;) {
            int j = i;
            while (j < g1 && str_eq(m[j].rule, m[i].rule) && str_eq(m[j].kind, m[i].kind)) j++;
            verdict_row(m, g0, g1, i, j, vs, sd, &vs->rows[vs->n++], &vs->unpaired);
            i = j;
        }
        g0 = g1;
    }
    free(sd);
    for (int i = 0; i < n; i++) me_free(&m[i]);
    free(m);
    return 0;
}

void verdict_set_free(VerdictSet *v) {
    free(v->rows);
    memset(v, 0, sizeof *v);
}

/* a "+1.2 [-0.3, +2.7]" cell */
static void set_delta(QTab *t, int r, int col, const VerdictDelta *c, int fmt) {
    if (!c->S) return;
    if (fmt == QF_TEXT || fmt == QF_MD) {
        qtab_set(t, r, col, "%+.1f [%+.1f, %+.1f]", c->d, c->lo, c->hi);
        qtab_set(t, r, col + 1, "%.2g", c->p);
    } else {
        qtab_set(t, r, col, "%.3f", c->d);
        qtab_set(t, r, col + 1, "%.3f", c->lo);
        qtab_set(t, r, col + 2, "%.3f", c->hi);
        qtab_set(t, r, col + 3, "%.4g", c->p);
    }
}
static int delta_cols(QTab *t, const char *name, int fmt) {
    char h[96];
    int c0;
    if (fmt == QF_TEXT || fmt == QF_MD) {
        snprintf(h, sizeof h, "d_%s", name);
        c0 = qtab_col(t, h, 1);
        snprintf(h, sizeof h, "p_%s", name);
        qtab_col(t, h, 1);
        return c0;
    }
    static const char *const suf[] = {"", "_lo", "_hi", "_p"};
    c0 = -1;
    for (int k = 0; k < 4; k++) {
        snprintf(h, sizeof h, "d_%s%s", name, suf[k]);
        int c = qtab_col(t, h, 1);
        if (k == 0) c0 = c;
    }
    return c0;
}

int verdict_report(Db *db, int fmt, FILE *out) {
    VerdictSet vs;
    if (verdict_compute(db, &vs) < 0) return -1;
    QTab *t = qtab_new(fmt);
    snprintf(t->title, sizeof t->title, "verdict: each rule's fine-tuned models vs BP's, paired by seed on the same examples "
             "(d = rule - BP in points, 95%% bootstrap interval over seeds and examples; p = exact paired test)");
    const char *const names[] = {"dataset", "model", "norm", "eps", "rule"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], 0);
    int cseeds = qtab_col(t, "seeds", 1), cn = qtab_col(t, "n", 1), cclean = qtab_col(t, "clean", 1);
    int cworst = qtab_col(t, "worst", 1);
    int cdclean = delta_cols(t, "clean", fmt);
    int csrc[VERDICT_MAX_SRC];
    for (int k = 0; k < vs.nsrc; k++) csrc[k] = delta_cols(t, vs.src[k], fmt);
    int cdworst = delta_cols(t, "worst", fmt);
    int cpseeds = qtab_col(t, "p_seeds_worst", 1), cmask = qtab_col(t, "masking_seeds", 0);
    int clabel = qtab_col(t, "verdict", 0), cevid = qtab_col(t, "evidence", 0);
    for (int i = 0; i < vs.n; i++) {
        const VerdictRow *v = &vs.rows[i];
        int row = qtab_row(t);
        const char *vals[] = {v->dataset, v->model, v->norm, v->eps_text, v->label};
        for (size_t k = 0; k < ARRAY_LEN(vals); k++) qtab_set_text(t, row, (int)k, vals[k]);
        qtab_set(t, row, cseeds, "%d", v->seeds);
        qtab_set(t, row, cn, "%ld", v->n);
        qtab_set(t, row, cclean, "%.1f", v->clean);
        qtab_set(t, row, cworst, "%.1f", v->worst);
        qtab_set_text(t, row, clabel, v->verdict);
        if (v->baseline || !v->paired) continue;
        set_delta(t, row, cdclean, &v->clean_d, fmt);
        for (int k = 0; k < vs.nsrc; k++) set_delta(t, row, csrc[k], &v->by_src[k], fmt);
        set_delta(t, row, cdworst, &v->worst_d, fmt);
        qtab_set(t, row, cpseeds, "%.2g", v->worst_d.p_seeds);
        if (v->mask_n) qtab_set(t, row, cmask, "%d/%d", v->mask_k, v->mask_n);
        qtab_set_text(t, row, cevid, v->evidence);
    }
    qtab_print(t, fmt, out);
    qtab_free(t);
    if (!vs.n)
        fprintf(stderr, "query verdict: no finished run with per-example outcomes in %s (record attacks with this build)\n",
                db_path(db));
    if (vs.unpaired)
        fprintf(stderr, "note: %ld model%s without a BP fine-tune of the same seed on the same examples left out of the comparison\n",
                vs.unpaired, vs.unpaired == 1 ? "" : "s");
    if (vs.other_sets)
        fprintf(stderr, "note: %ld evaluation%s on a smaller (or earlier) example set of the same model left out: each model "
                        "counts once, on its largest set\n", vs.other_sets, vs.other_sets == 1 ? "" : "s");
    verdict_set_free(&vs);
    return 0;
}

/* ---- methods ---- */

/* prints each row of sql as "- " + its columns joined by sep; returns rows printed */
static int list_rows(Db *db, const char *sql, const char *prefix, FILE *out) {
    sqlite3_stmt *st = NULL;
    int rows = 0;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        fputs(prefix, out);
        for (int c = 0; c < sqlite3_column_count(st); c++) fputs(txt(st, c), out);
        fputc('\n', out);
        rows++;
    }
    sqlite3_finalize(st);
    return rows;
}

int verdict_methods(Db *db, FILE *out) {
    fprintf(out, "## Methods\n\nEverything below is read from the database `%s`.\n\n", db_path(db));
    fputs("**Data and models**\n\n", out);
    list_rows(db,
              "SELECT '`', dataset, '` ', model, ' ', CASE kind WHEN 'train' THEN 'pre-trained' ELSE 'fine-tuned' END, ' with ',"
              " group_concat(DISTINCT rule), ': ', count(*), ' run', CASE WHEN count(*) > 1 THEN 's' ELSE '' END,"
              " ' (seeds ', group_concat(DISTINCT data_seed), ')'"
              " FROM runs WHERE status = 'finished' GROUP BY dataset, model, kind ORDER BY kind DESC, dataset, model",
              "- ", out);
    fputs("\n**Training** (per rule: epochs, batch, optimiser, learning rate, momentum, weight decay, validation split, "
          "training examples; `-` = the command's default)\n\n", out);
    list_rows(db,
              "SELECT CASE kind WHEN 'train' THEN 'pre-training' ELSE 'fine-tuning' END, ' ', rule, ': epochs ',"
              " coalesce(json_extract(config_json, '$.epochs'), '-'), ', batch ', coalesce(json_extract(config_json, '$.batch'), '-'),"
              " ', ', coalesce(json_extract(config_json, '$.optimizer'), 'sgd'), ' lr ', coalesce(json_extract(config_json, '$.lr'), '-'),"
              " ', momentum ', coalesce(json_extract(config_json, '$.momentum'), '-'), ', wd ', coalesce(json_extract(config_json, '$.wd'), '-'),"
              " ', schedule ', coalesce(json_extract(config_json, '$.schedule'), '-'), ', val ', coalesce(json_extract(config_json, '$.val'), '-'),"
              " ', limit ', coalesce(json_extract(config_json, '$.limit'), '-'),"
              " CASE WHEN json_extract(config_json, '$.new-head') IS NOT NULL THEN ', new head' ELSE '' END"
              " FROM runs WHERE status = 'finished' AND json_valid(config_json) GROUP BY kind, rule,"
              " json_extract(config_json, '$.epochs'), json_extract(config_json, '$.lr') ORDER BY kind DESC, rule",
              "- ", out);
    fputs("\n**Attacks** (attack, norm, eps, steps, step size, restarts, queries, EOT, gradient source: evaluations, examples "
          "attacked each)\n\n", out);
    list_rows(db,
              "SELECT attack, ' ', norm, ' eps ', group_concat(DISTINCT eps_text), ': steps ', coalesce(steps, '-'), ', step ',"
              " CASE WHEN alpha_text <> '' THEN alpha_text ELSE coalesce(printf('%.4g', alpha), '-') END, ', restarts ',"
              " coalesce(restarts, '-'), ', queries ', CASE WHEN queries > 0 THEN queries ELSE '-' END, ', eot ', eot,"
              " ', source ', CASE WHEN attack = 'square' THEN 'black-box' ELSE grad_source END, ': ', count(*), ' evaluations, n = ',"
              " group_concat(DISTINCT n) FROM evals WHERE task = 'classify'"
              " GROUP BY attack, norm, steps, restarts, queries, eot, grad_source ORDER BY attack, grad_source",
              "- ", out);
    fputs("\n**Transfer surrogates**\n\n", out);
    if (!list_rows(db,
                   "SELECT DISTINCT v.source_label, ': ', coalesce(s.model, '?'), ' ', coalesce(s.rule, '?'), ' ',"
                   " coalesce(s.kind, '?'), ' seed ', coalesce(s.data_seed, '?') FROM eval_view v LEFT JOIN runs s ON s.id = v.transfer_run"
                   " WHERE v.grad_source = 'transfer' ORDER BY 1",
                   "- ", out))
        fputs("- none\n", out);
    fputs("\n**Provenance**\n\n", out);
    list_rows(db,
              "SELECT 'git revision ', coalesce(git_rev, '?'), ', BLAS core ', coalesce(blas_core, '?'), ', BLAS threads ',"
              " coalesce(blas_threads, '?'), ', host ', coalesce(host, '?'), ': ', count(*), ' runs'"
              " FROM runs GROUP BY git_rev, blas_core, blas_threads, host",
              "- ", out);
    list_rows(db, "SELECT 'CPU ', cpu, ': ', count(*), ' runs' FROM runs WHERE cpu IS NOT NULL GROUP BY cpu", "- ", out);
    fputs("\nStatistics: docs/statistics.md. A model evaluated on several example sets counts once, on its largest set.\n", out);
    return 0;
}
