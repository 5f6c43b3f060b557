/* worst.c -- the per-example worst case over every evaluation of a model. See worst.h. */
#define _POSIX_C_SOURCE 200809L
#include "results/worst.h"

#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/outcomes.h"
#include "results/qtab.h"

/* One evaluation read back. */
typedef struct Ev {
    long id;
    int64_t run_id;
    char hash[20], dataset[64], model[64], kind[48], rule[32], eps_text[32], norm[8], split[16], label[160], ckpt[64];
    long seed;
    double eps;
    int has;                  /* outcomes present */
    Outcomes o;
} Ev;

static const char *txt(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

/* same model, eps, norm and split */
static int same_key(const Ev *a, const Ev *b) {
    return a->run_id == b->run_id && (a->run_id || str_eq(a->hash, b->hash)) && a->eps == b->eps &&
           str_eq(a->norm, b->norm) && str_eq(a->split, b->split);
}

static void row_start(WorstRow *w, const Ev *e, int set) {
    memset(w, 0, sizeof *w);
    w->run_id = e->run_id;
    snprintf(w->target_hash, sizeof w->target_hash, "%s", e->hash);
    snprintf(w->dataset, sizeof w->dataset, "%s", e->dataset);
    snprintf(w->model, sizeof w->model, "%s", e->model);
    snprintf(w->ckpt, sizeof w->ckpt, "%s", e->ckpt);
    snprintf(w->kind, sizeof w->kind, "%s", e->kind);
    snprintf(w->rule, sizeof w->rule, "%s", e->rule);
    snprintf(w->eps_text, sizeof w->eps_text, "%s", e->eps_text);
    snprintf(w->norm, sizeof w->norm, "%s", e->norm);
    snprintf(w->split, sizeof w->split, "%s", e->split);
    w->seed = e->seed;
    w->eps = e->eps;
    w->set = set;
    w->n = e->o.n;
    size_t m = w->n ? (size_t)w->n : 1;
    w->index = xmalloc(sizeof(int32_t) * m);
    w->clean_ok = xmalloc(m);
    w->robust_ok = xmalloc(m);
    memcpy(w->index, e->o.index, sizeof(int32_t) * (size_t)w->n);
    memcpy(w->clean_ok, e->o.clean_ok, (size_t)w->n);
    memcpy(w->robust_ok, e->o.clean_ok, (size_t)w->n); /* before any attack: the clean-correct ones */
}

/* AND one evaluation into its row, noting what it broke first */
static void row_add(WorstRow *w, const Ev *e) {
    long broke = 0;
    for (long i = 0; i < w->n; i++) {
        int r = w->robust_ok[i] && e->o.robust_ok[i];
        broke += w->robust_ok[i] && !r;
        w->robust_ok[i] = (uint8_t)r;
    }
    w->nevals++;
    size_t l = strlen(w->breakdown);
    if (broke && l + 4 < sizeof w->breakdown)
        snprintf(w->breakdown + l, sizeof w->breakdown - l, "%s%s %ld", l ? ", " : "", e->label, broke);
}

static int row_cmp(const void *a, const void *b) {
    const WorstRow *x = a, *y = b;
    int c;
    if ((c = strcmp(x->dataset, y->dataset))) return c;
    if ((c = strcmp(x->model, y->model))) return c;
    if ((c = strcmp(x->kind, y->kind))) return c;
    static const char *const order[] = {"bp", "fa", "dfa", "usf", "brsf", "frsf"};
    int rx = 6, ry = 6;
    for (int i = 0; i < 6; i++) { if (str_eq(x->rule, order[i])) rx = i; if (str_eq(y->rule, order[i])) ry = i; }
    if (rx != ry) return rx - ry;
    if ((c = strcmp(x->rule, y->rule))) return c;
    if (x->seed != y->seed) return x->seed < y->seed ? -1 : 1;
    if (x->run_id != y->run_id) return x->run_id < y->run_id ? -1 : 1;
    if ((c = strcmp(x->norm, y->norm))) return c;
    if (x->eps != y->eps) return x->eps < y->eps ? -1 : 1;
    return x->set - y->set;
}

int worst_load(Db *db, WorstRow **rows, int *nrows) {
    *rows = NULL;
    *nrows = 0;
    static const char sql[] =
        "SELECT e.id, coalesce(e.run_id, 0), coalesce(e.target_hash, ''), v.dataset, v.model, coalesce(v.kind, '?'),"
        " v.rule, coalesce(v.data_seed, -1), e.eps_text, e.eps, e.norm, coalesce(e.split, 'test'),"
        " v.attack_label || '/' || v.source_label, e.outcomes, coalesce(e.target_ckpt, '')"
        " FROM evals e JOIN eval_view v ON v.eval_id = e.id WHERE e.task = 'classify'"
        " ORDER BY coalesce(e.run_id, 0), e.target_hash, e.norm, e.eps, e.split, e.id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: reading evaluations: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    int cap = 0, n = 0, rc, fail = 0;
    WorstRow *out = NULL;
    Ev *grp = NULL;           /* the evaluations of the current (model, eps, norm, split) */
    int ng = 0, gcap = 0;
    for (;;) {
        rc = sqlite3_step(st);
        Ev e;
        memset(&e, 0, sizeof e);
        int have = rc == SQLITE_ROW;
        if (have) {
            e.id = sqlite3_column_int64(st, 0);
            e.run_id = sqlite3_column_int64(st, 1);
            snprintf(e.hash, sizeof e.hash, "%s", txt(st, 2));
            snprintf(e.dataset, sizeof e.dataset, "%s", txt(st, 3));
            snprintf(e.model, sizeof e.model, "%s", txt(st, 4));
            const char *ck = txt(st, 14), *slash = strrchr(ck, '/');
            snprintf(e.ckpt, sizeof e.ckpt, "%s", slash ? slash + 1 : ck);
            snprintf(e.kind, sizeof e.kind, "%s", txt(st, 5));
            snprintf(e.rule, sizeof e.rule, "%s", txt(st, 6));
            e.seed = sqlite3_column_int64(st, 7);
            snprintf(e.eps_text, sizeof e.eps_text, "%s", txt(st, 8));
            e.eps = sqlite3_column_double(st, 9);
            snprintf(e.norm, sizeof e.norm, "%s", txt(st, 10));
            snprintf(e.split, sizeof e.split, "%s", txt(st, 11));
            snprintf(e.label, sizeof e.label, "%s", txt(st, 12));
            if (sqlite3_column_type(st, 13) == SQLITE_BLOB) {
                if (outcomes_decode(sqlite3_column_blob(st, 13), sqlite3_column_bytes(st, 13), e.id, &e.o) < 0) { fail = 1; break; }
                e.has = e.o.kind == OUT_CLASSIFY;
            }
        }
        /* a group ends: one row per example set */
        if (ng && (!have || !same_key(&grp[0], &e))) {
            long missing = 0;
            int first_row = n, sets = 0;
            for (int k = 0; k < ng; k++) missing += !grp[k].has;
            for (int k = 0; k < ng; k++) {
                if (!grp[k].has) continue;
                int r = first_row;
                while (r < n && !(out[r].n == grp[k].o.n && memcmp(out[r].index, grp[k].o.index, sizeof(int32_t) * (size_t)out[r].n) == 0)) r++;
                if (r == n) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 32;
                        out = realloc(out, sizeof *out * (size_t)cap);
                        CHECK(out);
                    }
                    row_start(&out[n++], &grp[k], sets++);
                }
                row_add(&out[r], &grp[k]);
            }
            for (int r = first_row; r < n; r++) out[r].no_outcomes = missing;
            for (int k = 0; k < ng; k++) outcomes_free(&grp[k].o);
            ng = 0;
        }
        if (!have) break;
        if (ng == gcap) {
            gcap = gcap ? 2 * gcap : 16;
            grp = realloc(grp, sizeof *grp * (size_t)gcap);
            CHECK(grp);
        }
        grp[ng++] = e;
    }
    for (int k = 0; k < ng; k++) outcomes_free(&grp[k].o);
    free(grp);
    sqlite3_finalize(st);
    if (!fail && rc != SQLITE_DONE) fail = err_set("%s: reading evaluations: %s", db_path(db), sqlite3_errmsg(db_sqlite(db))) != 0;
    if (fail) { worst_free(out, n); return -1; }
    for (int r = 0; r < n; r++) {
        for (long i = 0; i < out[r].n; i++) {
            out[r].clean += out[r].clean_ok[i];
            out[r].robust += out[r].robust_ok[i];
        }
    }
    xqsort(out, (size_t)n, sizeof *out, row_cmp);
    *rows = out;
    *nrows = n;
    return 0;
}

void worst_free(WorstRow *rows, int n) {
    for (int i = 0; i < n; i++) { free(rows[i].index); free(rows[i].clean_ok); free(rows[i].robust_ok); }
    free(rows);
}

WorstStat worst_stat(const WorstRow *w, int n, const char *dataset, const char *model, const char *kind, const char *rule,
                     const char *eps_text, const char *norm) {
    double s = 0, ss = 0;
    long k = 0;
    for (int i = 0; i < n; i++) {
        if (w[i].set != 0 || !w[i].n || !str_eq(w[i].dataset, dataset) || !str_eq(w[i].model, model) ||
            !str_eq(w[i].kind, kind) || !str_eq(w[i].rule, rule) || !str_eq(w[i].eps_text, eps_text) ||
            (norm && !str_eq(w[i].norm, norm)))
            continue;
        double v = 100.0 * w[i].robust / w[i].n;
        s += v;
        ss += v * v;
        k++;
    }
    WorstStat r = {k ? s / k : 0, k > 1 ? sqrt((ss - s * s / k) / (k - 1)) : NAN, k};
    return r;
}

int worst_report(Db *db, int fmt, FILE *out) {
    WorstRow *w;
    int n;
    if (worst_load(db, &w, &n) < 0) return -1;
    QTab *t = qtab_new(fmt);
    snprintf(t->title, sizeof t->title, "per-example worst case over every attack and gradient source (robust = survives all)");
    const char *const names[] = {"dataset", "model", "kind", "rule", "seed", "norm", "eps"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], str_eq(names[i], "seed"));
    int cn = qtab_col(t, "n", 1), cc = qtab_col(t, "clean", 1), cr = qtab_col(t, "worst_robust", 1);
    int crn = qtab_col(t, "robust_n", 1), ce = qtab_col(t, "evals", 1), cb = qtab_col(t, "broken_first_by", 0);
    int notes = 0;
    for (int i = 0; i < n; i++) {
        int r = qtab_row(t);
        /* a model without a recorded run is named by its checkpoint file */
        const char *model = str_eq(w[i].model, "?") && w[i].ckpt[0] ? w[i].ckpt : w[i].model;
        const char *vals[] = {w[i].dataset, model, w[i].kind, w[i].rule, NULL, w[i].norm, w[i].eps_text};
        for (size_t k = 0; k < ARRAY_LEN(vals); k++)
            if (vals[k]) qtab_set_text(t, r, (int)k, vals[k]);
        if (w[i].seed >= 0) qtab_set(t, r, 4, "%ld", w[i].seed);
        qtab_set(t, r, cn, "%ld", w[i].n);
        if (w[i].n) {
            qtab_set(t, r, cc, "%.1f", 100.0 * w[i].clean / w[i].n);
            qtab_set(t, r, cr, "%.1f", 100.0 * w[i].robust / w[i].n);
        }
        qtab_set(t, r, crn, "%ld", w[i].robust);
        qtab_set(t, r, ce, "%d", w[i].nevals);
        qtab_set_text(t, r, cb, w[i].breakdown[0] ? w[i].breakdown : "-");
        notes += w[i].set > 0;
    }
    qtab_print(t, fmt, out);
    qtab_free(t);
    if (!n) fprintf(stderr, "query worst: no classification evaluation with per-example outcomes in %s\n", db_path(db));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), "SELECT COUNT(*) FROM evals WHERE task = 'classify' AND outcomes IS NULL", -1, &st,
                           NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0)
        fprintf(stderr, "note: %lld classification evaluation%s recorded before schema v4 ha%s no per-example outcomes: "
                        "%s not part of any worst case\n", (long long)sqlite3_column_int64(st, 0),
                sqlite3_column_int64(st, 0) == 1 ? "" : "s", sqlite3_column_int64(st, 0) == 1 ? "s" : "ve",
                sqlite3_column_int64(st, 0) == 1 ? "it is" : "they are");
    sqlite3_finalize(st);
    for (int i = 0; i < n && notes; i++) {
        if (w[i].set > 0)
            fprintf(stderr, "note: %s %s %s seed %ld eps %s: evaluated on %d different example sets; each is its own row (never mixed)\n",
                    w[i].dataset, w[i].model, w[i].rule, w[i].seed, w[i].eps_text, w[i].set + 1);
    }
    worst_free(w, n);
    return 0;
}
