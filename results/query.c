/* query.c -- the reports of query.h: SQL over the views of db.c, laid out as small tables (QTab) and
 * printed by one printer per format. Aggregation (mean, sample sd) is done in SQL with sum and sum of
 * squares; the sd of a single value is not shown.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/query.h"

#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/qtab.h"
#include "results/verdict.h"
#include "results/worst.h"

static const char *const k_formats[] = {"text", "csv", "md", "json"};
_Static_assert(ARRAY_LEN(k_formats) == QF_COUNT, "one name per format");

int query_format_parse(const char *name, int *fmt) {
    for (int i = 0; i < QF_COUNT; i++)
        if (str_eq(name, k_formats[i])) { *fmt = i; return 0; }
    return err_set("unknown format '%s'; use text, csv, md or json", name);
}

static int sql_fail(Db *db, const char *what) {
    return err_set("%s: %s: %s", db_path(db), what, sqlite3_errmsg(db_sqlite(db)));
}
static const char *col_text(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

/* Sort keys shared by every report, so rules and attacks come out in the same order everywhere. */
#define RULE_RANK(col) "CASE " col " WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2 WHEN 'usf' THEN 3" \
                       " WHEN 'brsf' THEN 4 WHEN 'frsf' THEN 5 ELSE 6 END"
#define ATTACK_RANK "CASE attack WHEN 'fgsm' THEN 0 WHEN 'pgd' THEN 1 ELSE 2 END"
#define SOURCE_RANK "CASE WHEN attack = 'square' THEN 3 WHEN grad_source = 'true' THEN 0" \
                    " WHEN grad_source = 'feedback' THEN 1 ELSE 2 END"

/* One aggregated robust-accuracy cell of the eval_view. */
typedef struct Cell {
    char dataset[64], model[64], kind[48], rule[32], attack[48], source[64], eps_text[32], flags[256];
    double eps;
    int square;
    Stat robust, asr;
    long n_min, n_max;        /* examples attacked per model (equal unless the models' sets differ) */
} Cell;
typedef struct Cells { Cell *v; int n, cap; } Cells;

/* The kind column of hashing rows carries the code length: "finetune / 32 bits". */
#define HASH_KIND(kind, bits) "coalesce(" kind ", '?') || ' / ' || coalesce(" bits ", '?') || ' bits'"

/* The pre-trained model as a baseline row of its fine-tunes' tables: a pre-training (kind train) whose
 * dataset and model also have fine-tunes is shown in their group, its rule marked "(pretrained)". */
#define PRETRAIN_IN_GROUP(kind, ds, model) \
    "(" kind " = 'train' AND EXISTS(SELECT 1 FROM runs f WHERE f.kind = 'finetune' AND f.dataset = " ds \
    " AND f.model = " model "))"
#define BASE_KIND(kind, ds, model) "CASE WHEN " PRETRAIN_IN_GROUP(kind, ds, model) " THEN 'finetune' ELSE coalesce(" kind ", '?') END"
#define BASE_RULE(kind, rule, ds, model) "CASE WHEN " PRETRAIN_IN_GROUP(kind, ds, model) " THEN " rule " || ' (pretrained)' ELSE " rule " END"

/* One evaluation per trained model and (attack, source, eps, norm): the latest on the largest example
 * set. A model evaluated twice (say on 500 and then on 300 examples) is one replicate, never two seeds.
 * AutoAttack's component rows (stage > 0: the ensemble after a component, not that attack alone) are
 * left out: the AutoAttack row is the evaluation, and its Square row is not a standalone Square. */
#define ONE_PER_MODEL(task) \
    "(SELECT * FROM (SELECT v.*, row_number() OVER (PARTITION BY coalesce(v.run_id, v.target_ckpt), v.attack_label," \
    " v.source_label, v.eps_text, v.norm ORDER BY v.n DESC, v.eval_id DESC) AS one FROM eval_view v WHERE v.task = " task \
    " AND v.stage = 0) WHERE one = 1)"

/* Cells of one task: classification (robust accuracy %) or hashing (attacked mAP %). */
static int cells_load(Db *db, Cells *cs, int hash) {
    static const char sql_classify[] =
        "SELECT dataset, model, " BASE_KIND("kind", "dataset", "model") ", " BASE_RULE("kind", "rule", "dataset", "model") ","
        " attack_label, source_label, eps_text, eps,"
        " avg(100.0 * robust_acc), sum(100.0 * robust_acc * 100.0 * robust_acc), count(robust_acc),"
        " avg(100.0 * attack_success_rate), sum(100.0 * attack_success_rate * 100.0 * attack_success_rate),"
        " count(attack_success_rate), coalesce(group_concat(DISTINCT nullif(flags, '')), ''), attack = 'square',"
        " min(n), max(n)"
        " FROM " ONE_PER_MODEL("'classify'") " GROUP BY 1, 2, 3, 4, 5, 6, 7"
        " ORDER BY 1, 2, 3, " RULE_RANK("rule") ", 4, " ATTACK_RANK ", 5, " SOURCE_RANK ", 6, 8";
    static const char sql_hash[] =
        "SELECT dataset, model, " HASH_KIND("kind", "bits") ", rule, attack_label, source_label, eps_text, eps,"
        " avg(100.0 * map_adv), sum(100.0 * map_adv * 100.0 * map_adv), count(map_adv),"
        " avg(100.0 * attack_success_rate), sum(100.0 * attack_success_rate * 100.0 * attack_success_rate),"
        " count(attack_success_rate), coalesce(group_concat(DISTINCT nullif(flags, '')), ''), 0, min(n), max(n)"
        " FROM " ONE_PER_MODEL("'hash'") " GROUP BY 1, 2, 3, 4, 5, 6, 7"
        " ORDER BY 1, 2, 3, " RULE_RANK("rule") ", 4, 5, " SOURCE_RANK ", 6, 8";
    const char *sql = hash ? sql_hash : sql_classify;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return sql_fail(db, "reading evals");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cs->n == cs->cap) {
            cs->cap = cs->cap ? 2 * cs->cap : 64;
            cs->v = realloc(cs->v, sizeof(Cell) * (size_t)cs->cap);
            CHECK(cs->v);
        }
        Cell *c = &cs->v[cs->n++];
        memset(c, 0, sizeof *c);
        snprintf(c->dataset, sizeof c->dataset, "%s", col_text(st, 0));
        snprintf(c->model, sizeof c->model, "%s", col_text(st, 1));
        snprintf(c->kind, sizeof c->kind, "%s", col_text(st, 2));
        snprintf(c->rule, sizeof c->rule, "%s", col_text(st, 3));
        snprintf(c->attack, sizeof c->attack, "%s", col_text(st, 4));
        snprintf(c->source, sizeof c->source, "%s", col_text(st, 5));
        snprintf(c->eps_text, sizeof c->eps_text, "%s", col_text(st, 6));
        c->eps = sqlite3_column_double(st, 7);
        c->robust = stat_from(sqlite3_column_double(st, 8), sqlite3_column_double(st, 9), sqlite3_column_int64(st, 10));
        c->asr = stat_from(sqlite3_column_double(st, 11), sqlite3_column_double(st, 12), sqlite3_column_int64(st, 13));
        snprintf(c->flags, sizeof c->flags, "%s", col_text(st, 14));
        c->square = sqlite3_column_int(st, 15);
        c->n_min = sqlite3_column_int64(st, 16);
        c->n_max = sqlite3_column_int64(st, 17);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_fail(db, "reading evals");
    return 0;
}

/* Clean accuracy per (dataset, model, kind, rule) over runs: the run's final test accuracy, or the
 * clean accuracy its evals measured when the run recorded none. Runs that were neither finished nor
 * attacked are left out. */
typedef struct Clean { char dataset[64], model[64], kind[48], rule[32]; Stat s; } Clean;
static int clean_load(Db *db, Clean **out, int *n, int hash) {
    static const char sql_classify[] =
        "SELECT dataset, model, kind, rule, avg(a), sum(a * a), count(a) FROM ("
        " SELECT r.dataset, r.model, " BASE_KIND("r.kind", "r.dataset", "r.model") " AS kind,"
        " " BASE_RULE("r.kind", "r.rule", "r.dataset", "r.model") " AS rule, 100.0 * coalesce(r.test_acc,"
        "  (SELECT avg(clean_acc) FROM eval_view v WHERE v.run_id = r.id)) AS a"
        " FROM runs r WHERE r.task = 'classify' AND (r.status = 'finished' OR EXISTS(SELECT 1 FROM evals e WHERE e.run_id = r.id)))"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, " RULE_RANK("rule") ", 4";
    /* a hash run's test_acc is its mAP; its bits come from its evals, else from model_opts (classes=K) */
    static const char sql_hash[] =
        "SELECT dataset, model, kind, rule, avg(a), sum(a * a), count(a) FROM ("
        " SELECT r.dataset, r.model, " HASH_KIND("r.kind", "coalesce((SELECT max(e.bits) FROM evals e WHERE e.run_id = r.id),"
        "  CASE WHEN instr(r.model_opts, 'classes=') > 0 THEN CAST(substr(r.model_opts, instr(r.model_opts, 'classes=') + 8) AS INTEGER) END)")
        " AS kind, r.rule, 100.0 * coalesce(r.test_acc, (SELECT avg(map_clean) FROM evals v WHERE v.run_id = r.id)) AS a"
        " FROM runs r WHERE r.task = 'hash' AND (r.status = 'finished' OR EXISTS(SELECT 1 FROM evals e WHERE e.run_id = r.id)))"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, " RULE_RANK("rule") ", 4";
    const char *sql = hash ? sql_hash : sql_classify;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return sql_fail(db, "reading runs");
    int cap = 0, rc;
    *out = NULL;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            *out = realloc(*out, sizeof(Clean) * (size_t)cap);
            CHECK(*out);
        }
        Clean *c = &(*out)[(*n)++];
        snprintf(c->dataset, sizeof c->dataset, "%s", col_text(st, 0));
        snprintf(c->model, sizeof c->model, "%s", col_text(st, 1));
        snprintf(c->kind, sizeof c->kind, "%s", col_text(st, 2));
        snprintf(c->rule, sizeof c->rule, "%s", col_text(st, 3));
        c->s = stat_from(sqlite3_column_double(st, 4), sqlite3_column_double(st, 5), sqlite3_column_int64(st, 6));
        if (sqlite3_column_type(st, 4) == SQLITE_NULL) c->s.n = 0;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sql_fail(db, "reading runs");
    return 0;
}

static int rule_rank(const char *r) {
    if (strstr(r, "(pretrained)")) return -1; /* the pre-trained baseline first */
    static const char *const order[] = {"bp", "fa", "dfa", "usf", "brsf", "frsf"};
    for (size_t i = 0; i < ARRAY_LEN(order); i++)
        if (str_eq(r, order[i])) return (int)i;
    return (int)ARRAY_LEN(order);
}

/* A row of the table report: one (dataset, model, kind, rule). */
typedef struct TRow { char dataset[64], model[64], kind[48], rule[32]; Stat clean; } TRow;
static int trow_cmp(const void *a, const void *b) {
    const TRow *x = a, *y = b;
    int c;
    if ((c = strcmp(x->dataset, y->dataset))) return c;
    if ((c = strcmp(x->model, y->model))) return c;
    if ((c = strcmp(x->kind, y->kind))) return c;
    if ((c = rule_rank(x->rule) - rule_rank(y->rule))) return c;
    return strcmp(x->rule, y->rule);
}
static int trow_find(TRow *rows, int n, const char *d, const char *m, const char *k, const char *r) {
    for (int i = 0; i < n; i++)
        if (str_eq(rows[i].dataset, d) && str_eq(rows[i].model, m) && str_eq(rows[i].kind, k) && str_eq(rows[i].rule, r))
            return i;
    return -1;
}

/* A column of the table report: one (attack, source, eps). Cells arrive sorted by attack, source, eps
 * within a rule, so the first-seen order over all rules, stably merged, is the display order. */
typedef struct TCol { char attack[48], source[64], eps_text[32]; double eps; int arank, srank; } TCol;
static int tcol_rank_attack(const char *a) { return strncmp(a, "fgsm", 4) == 0 ? 0 : strncmp(a, "pgd", 3) == 0 ? 1 : 2; }
static int tcol_rank_source(const char *s) {
    return str_eq(s, "true") ? 0 : strncmp(s, "feedback", 8) == 0 ? 1 : strncmp(s, "transfer", 8) == 0 ? 2 : 3;
}
static int tcol_cmp(const void *a, const void *b) {
    const TCol *x = a, *y = b;
    int c;
    if ((c = x->arank - y->arank)) return c;
    if ((c = strcmp(x->attack, y->attack))) return c;
    if ((c = x->srank - y->srank)) return c;
    if ((c = strcmp(x->source, y->source))) return c;
    if (x->eps != y->eps) return x->eps < y->eps ? -1 : 1;
    return strcmp(x->eps_text, y->eps_text);
}

typedef struct Layout { TRow *rows; int nrows; TCol *cols; int ncols; } Layout;

static void layout_free(Layout *l) { free(l->rows); free(l->cols); }

static void layout_build(const Cells *cs, const Clean *cl, int ncl, Layout *l) {
    memset(l, 0, sizeof *l);
    l->rows = xcalloc((size_t)(cs->n + ncl + 1), sizeof(TRow));
    l->cols = xcalloc((size_t)(cs->n + 1), sizeof(TCol));
    for (int i = 0; i < ncl; i++) {
        TRow *r = &l->rows[l->nrows++];
        snprintf(r->dataset, sizeof r->dataset, "%s", cl[i].dataset);
        snprintf(r->model, sizeof r->model, "%s", cl[i].model);
        snprintf(r->kind, sizeof r->kind, "%s", cl[i].kind);
        snprintf(r->rule, sizeof r->rule, "%s", cl[i].rule);
        r->clean = cl[i].s;
    }
    for (int i = 0; i < cs->n; i++) {
        const Cell *c = &cs->v[i];
        if (trow_find(l->rows, l->nrows, c->dataset, c->model, c->kind, c->rule) < 0) {
            TRow *r = &l->rows[l->nrows++];
            snprintf(r->dataset, sizeof r->dataset, "%s", c->dataset);
            snprintf(r->model, sizeof r->model, "%s", c->model);
            snprintf(r->kind, sizeof r->kind, "%s", c->kind);
            snprintf(r->rule, sizeof r->rule, "%s", c->rule);
        }
        int found = 0;
        for (int j = 0; j < l->ncols && !found; j++)
            found = str_eq(l->cols[j].attack, c->attack) && str_eq(l->cols[j].source, c->source) &&
                    str_eq(l->cols[j].eps_text, c->eps_text);
        if (!found) {
            TCol *t = &l->cols[l->ncols++];
            snprintf(t->attack, sizeof t->attack, "%s", c->attack);
            snprintf(t->source, sizeof t->source, "%s", c->source);
            snprintf(t->eps_text, sizeof t->eps_text, "%s", c->eps_text);
            t->eps = c->eps;
            t->arank = tcol_rank_attack(c->attack);
            t->srank = tcol_rank_source(c->source);
        }
    }
    xqsort(l->rows, (size_t)l->nrows, sizeof(TRow), trow_cmp);
    xqsort(l->cols, (size_t)l->ncols, sizeof(TCol), tcol_cmp);
}

static const Cell *cell_find(const Cells *cs, const TRow *r, const char *attack, const char *source, const char *eps_text) {
    for (int i = 0; i < cs->n; i++) {
        const Cell *c = &cs->v[i];
        if (str_eq(c->rule, r->rule) && str_eq(c->dataset, r->dataset) && str_eq(c->model, r->model) &&
            str_eq(c->kind, r->kind) && str_eq(c->attack, attack) && (!source || str_eq(c->source, source)) &&
            str_eq(c->eps_text, eps_text))
            return c;
    }
    return NULL;
}

static int same_group(const TRow *a, const TRow *b) {
    return str_eq(a->dataset, b->dataset) && str_eq(a->model, b->model) && str_eq(a->kind, b->kind);
}

/* Prints the block of rows [g0,g1) (one group) and columns [j0,j1) (one attack × source; empty = clean
 * accuracy only). Returns 0 without printing when the group has no cell in those columns. */
/* What a table report shows: the classification table (accuracy %) or the hashing table (mAP %). */
typedef struct TableSpec {
    int hash;                  /* cells_load / clean_load task */
    const char *attacked;      /* block title: "robust accuracy", "mAP" */
    const char *clean;         /* clean-only block title: "clean accuracy", "clean mAP" */
    int decimals;
} TableSpec;
static const TableSpec k_table_classify = {0, "robust accuracy", "clean accuracy", 1};
static const TableSpec k_table_hash = {1, "mAP", "clean mAP", 2};

static int table_block(const TableSpec *ts, const Layout *l, const Cells *cs, int g0, int g1, int j0, int j1, int fmt,
                       int nth, FILE *out) {
    int any = j0 == j1;
    for (int i = g0; i < g1 && !any; i++)
        for (int j = j0; j < j1 && !any; j++)
            any = cell_find(cs, &l->rows[i], l->cols[j].attack, l->cols[j].source, l->cols[j].eps_text) != NULL;
    if (!any) return 0;
    const TRow *gr = &l->rows[g0];
    QTab *t = qtab_new(fmt);
    if (j0 < j1)
        snprintf(t->title, sizeof t->title, "%s / %s / %s: %s %% under %s (%s gradient)", gr->dataset, gr->model,
                 gr->kind, ts->attacked, l->cols[j0].attack, l->cols[j0].source);
    else
        snprintf(t->title, sizeof t->title, "%s / %s / %s: %s %%", gr->dataset, gr->model, gr->kind, ts->clean);
    qtab_col(t, "rule", 0);
    qtab_col(t, "seeds", 1);
    int cn = j0 < j1 ? qtab_col(t, "n", 1) : -1; /* examples attacked per model */
    int cclean = qtab_stat_col(t, "clean");
    int c0 = t->ncol;
    for (int j = j0; j < j1; j++) {
        char name[64];
        snprintf(name, sizeof name, "eps=%s", l->cols[j].eps_text);
        qtab_col(t, name, 1);
    }
    for (int i = g0; i < g1; i++) {
        const TRow *r = &l->rows[i];
        int row = qtab_row(t);
        qtab_set_text(t, row, 0, r->rule);
        qtab_set(t, row, 1, "%ld", r->clean.n);
        qtab_set_stat(t, row, cclean, r->clean, ts->decimals);
        long nlo = 0, nhi = 0;
        for (int j = j0; j < j1; j++) {
            const Cell *c = cell_find(cs, r, l->cols[j].attack, l->cols[j].source, l->cols[j].eps_text);
            if (!c) continue;
            qtab_set_stat(t, row, c0 + (j - j0), c->robust, ts->decimals);
            if (!nlo || c->n_min < nlo) nlo = c->n_min;
            if (c->n_max > nhi) nhi = c->n_max;
        }
        if (cn >= 0 && nhi) {
            if (nlo == nhi) qtab_set(t, row, cn, "%ld", nhi);
            else qtab_set(t, row, cn, "%ld-%ld", nlo, nhi);
        }
    }
    if (nth && fmt == QF_TEXT) fputc('\n', out);
    qtab_print(t, fmt, out);
    qtab_free(t);
    return 1;
}

static int table_report(const TableSpec *ts, Db *db, int fmt, FILE *out) {
    Cells cs = {0};
    Clean *cl = NULL;
    int ncl = 0;
    if (cells_load(db, &cs, ts->hash) < 0 || clean_load(db, &cl, &ncl, ts->hash) < 0) { free(cs.v); free(cl); return -1; }
    Layout l;
    layout_build(&cs, cl, ncl, &l);
    if (!l.nrows)
        fprintf(stderr, "query %s: no finished %sruns and no %sevals in %s\n", ts->hash ? "hash-table" : "table",
                ts->hash ? "hashing " : "", ts->hash ? "hashing " : "", db_path(db));
    if (fmt == QF_CSV || fmt == QF_JSON || l.nrows == 0) { /* one wide table */
        QTab *t = qtab_new(fmt);
        qtab_col(t, "dataset", 0);
        qtab_col(t, "model", 0);
        qtab_col(t, "kind", 0);
        qtab_col(t, "rule", 0);
        qtab_col(t, "runs", 1);
        int cclean = qtab_stat_col(t, "clean");
        int *cc = xcalloc((size_t)l.ncols + 1, sizeof(int));
        for (int j = 0; j < l.ncols; j++) {
            char name[200];
            /* '|' between the parts: an eps written as 8/255 holds a '/', a source transfer:x a ':' */
            snprintf(name, sizeof name, "%s|%s|%s", l.cols[j].attack, l.cols[j].source, l.cols[j].eps_text);
            cc[j] = qtab_stat_col(t, name);
        }
        for (int i = 0; i < l.nrows; i++) {
            const TRow *r = &l.rows[i];
            int row = qtab_row(t);
            qtab_set_text(t, row, 0, r->dataset);
            qtab_set_text(t, row, 1, r->model);
            qtab_set_text(t, row, 2, r->kind);
            qtab_set_text(t, row, 3, r->rule);
            qtab_set(t, row, 4, "%ld", r->clean.n);
            qtab_set_stat(t, row, cclean, r->clean, ts->decimals);
            for (int j = 0; j < l.ncols; j++) {
                const Cell *c = cell_find(&cs, r, l.cols[j].attack, l.cols[j].source, l.cols[j].eps_text);
                if (c) qtab_set_stat(t, row, cc[j], c->robust, ts->decimals);
            }
        }
        qtab_print(t, fmt, out);
        qtab_free(t);
        free(cc);
    } else { /* text / md: per (dataset, model, kind) group, one block per attack × source */
        int blocks = 0;
        for (int g0 = 0; g0 < l.nrows;) {
            int g1 = g0;
            while (g1 < l.nrows && same_group(&l.rows[g0], &l.rows[g1])) g1++;
            int printed = 0;
            for (int j0 = 0; j0 < l.ncols;) {
                int j1 = j0;
                while (j1 < l.ncols && str_eq(l.cols[j1].attack, l.cols[j0].attack) && str_eq(l.cols[j1].source, l.cols[j0].source)) j1++;
                if (table_block(ts, &l, &cs, g0, g1, j0, j1, fmt, blocks, out)) { blocks++; printed = 1; }
                j0 = j1;
            }
            if (!printed && table_block(ts, &l, &cs, g0, g1, 0, 0, fmt, blocks, out)) blocks++; /* clean only */
            g0 = g1;
        }
    }
    layout_free(&l);
    free(cs.v);
    free(cl);
    return 0;
}

static int report_table(Db *db, int fmt, FILE *out) { return table_report(&k_table_classify, db, fmt, out); }
/* hash-table: rows rule (per dataset / model / kind / bits); clean mAP, then the attacked queries' mAP
 * against the clean database per attack × source × eps (percent, 2 decimals). */
static int report_hash_table(Db *db, int fmt, FILE *out) { return table_report(&k_table_hash, db, fmt, out); }

static int report_curve(Db *db, int fmt, FILE *out) {
    Cells cs = {0};
    if (cells_load(db, &cs, 0) < 0) { free(cs.v); return -1; }
    if (!cs.n) fprintf(stderr, "query curve: no evals in %s\n", db_path(db));
    QTab *t = qtab_new(fmt);
    const char *const names[] = {"dataset", "model", "kind", "rule", "attack", "source", "eps_text"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], 0);
    int ceps = qtab_col(t, "eps", 1), cn = qtab_col(t, "n", 1);
    int crob = qtab_stat_col(t, "robust_acc"), casr = qtab_stat_col(t, "attack_success");
    for (int i = 0; i < cs.n; i++) {
        const Cell *c = &cs.v[i];
        int r = qtab_row(t);
        const char *vals[] = {c->dataset, c->model, c->kind, c->rule, c->attack, c->source, c->eps_text};
        for (size_t k = 0; k < ARRAY_LEN(vals); k++) qtab_set_text(t, r, (int)k, vals[k]);
        qtab_set(t, r, ceps, "%.6g", c->eps);
        qtab_set(t, r, cn, "%ld", c->robust.n);
        qtab_set_stat(t, r, crob, c->robust, 1);
        qtab_set_stat(t, r, casr, c->asr, 1);
    }
    qtab_print(t, fmt, out);
    qtab_free(t);
    free(cs.v);
    return 0;
}

static int report_masking(Db *db, int fmt, FILE *out) {
    Cells cs = {0};
    if (cells_load(db, &cs, 0) < 0) { free(cs.v); return -1; }
    /* sources of the gradient attacks become columns; Square sits beside them at the same eps */
    char (*src)[64] = xcalloc((size_t)cs.n + 1, sizeof *src);
    int nsrc = 0, have_square = 0;
    for (int i = 0; i < cs.n; i++) {
        if (cs.v[i].square) { have_square = 1; continue; }
        int found = 0;
        for (int k = 0; k < nsrc && !found; k++) found = str_eq(src[k], cs.v[i].source);
        if (!found) snprintf(src[nsrc++], 64, "%s", cs.v[i].source);
    }
    for (int a = 1; a < nsrc; a++) /* insertion sort by source rank: true, feedback, transfer */
        for (int b = a; b > 0 && (tcol_rank_source(src[b]) < tcol_rank_source(src[b - 1]) ||
                                  (tcol_rank_source(src[b]) == tcol_rank_source(src[b - 1]) && strcmp(src[b], src[b - 1]) < 0)); b--) {
            char tmp[64];
            memcpy(tmp, src[b], 64);
            memcpy(src[b], src[b - 1], 64);
            memcpy(src[b - 1], tmp, 64);
        }
    QTab *t = qtab_new(fmt);
    const char *const names[] = {"dataset", "model", "kind", "rule", "attack", "eps"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], 0);
    int *cc = xcalloc((size_t)nsrc + 1, sizeof(int));
    for (int k = 0; k < nsrc; k++) cc[k] = qtab_stat_col(t, src[k]);
    int csq = have_square ? qtab_stat_col(t, "square") : -1;
    /* the per-example worst case over every attack and source of the same models (worst.h) */
    WorstRow *wr = NULL;
    int nwr = 0;
    if (worst_load(db, &wr, &nwr) < 0) { free(cc); free(src); free(cs.v); qtab_free(t); return -1; }
    int cworst = nwr ? qtab_stat_col(t, "worst") : -1;
    int cflags = qtab_col(t, "flags", 0);
    /* one row per (group, rule, gradient attack, eps): cells are sorted so equal keys are adjacent
     * except for the source, which varies fastest after the attack; scan for first occurrences */
    int rows = 0;
    for (int i = 0; i < cs.n; i++) {
        const Cell *c = &cs.v[i];
        if (c->square) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) {
            const Cell *d = &cs.v[j];
            seen = !d->square && str_eq(d->dataset, c->dataset) && str_eq(d->model, c->model) &&
                   str_eq(d->kind, c->kind) && str_eq(d->rule, c->rule) && str_eq(d->attack, c->attack) &&
                   str_eq(d->eps_text, c->eps_text);
        }
        if (seen) continue;
        TRow key;
        snprintf(key.dataset, sizeof key.dataset, "%s", c->dataset);
        snprintf(key.model, sizeof key.model, "%s", c->model);
        snprintf(key.kind, sizeof key.kind, "%s", c->kind);
        snprintf(key.rule, sizeof key.rule, "%s", c->rule);
        int r = qtab_row(t);
        rows++;
        const char *vals[] = {c->dataset, c->model, c->kind, c->rule, c->attack, c->eps_text};
        for (size_t k = 0; k < ARRAY_LEN(vals); k++) qtab_set_text(t, r, (int)k, vals[k]);
        char flags[1024] = "";
        size_t fl = 0;
        for (int k = 0; k < nsrc; k++) {
            const Cell *d = cell_find(&cs, &key, c->attack, src[k], c->eps_text);
            if (!d) continue;
            qtab_set_stat(t, r, cc[k], d->robust, 1);
            if (d->flags[0] && fl < sizeof flags)
                fl += (size_t)snprintf(flags + fl, sizeof flags - fl, "%s%s: %s", fl ? "; " : "", d->source, d->flags);
        }
        if (have_square) {
            for (int k = 0; k < cs.n; k++) {
                const Cell *d = &cs.v[k];
                if (!d->square || !str_eq(d->eps_text, c->eps_text) || !str_eq(d->rule, c->rule) ||
                    !str_eq(d->dataset, c->dataset) || !str_eq(d->model, c->model) || !str_eq(d->kind, c->kind))
                    continue;
                qtab_set_stat(t, r, csq, d->robust, 1);
                if (d->flags[0] && fl < sizeof flags)
                    fl += (size_t)snprintf(flags + fl, sizeof flags - fl, "%ssquare: %s", fl ? "; " : "", d->flags);
                break;
            }
        }
        if (flags[0]) qtab_set_text(t, r, cflags, flags);
        if (cworst >= 0) {
            WorstStat ws = worst_stat(wr, nwr, c->dataset, c->model, c->kind, c->rule, c->eps_text, NULL);
            if (ws.n) qtab_set_stat(t, r, cworst, (Stat){ws.mean, ws.sd, ws.n}, 1);
        }
    }
    worst_free(wr, nwr);
    if (!rows) fprintf(stderr, "query masking: no gradient-attack evals in %s\n", db_path(db));
    qtab_print(t, fmt, out);
    qtab_free(t);
    free(cc);
    free(src);
    free(cs.v);
    return 0;
}

static int report_alignment(Db *db, int fmt, FILE *out) {
    static const char sql[] =
        "WITH lo AS (SELECT layer, min(rowid) AS k FROM alignment GROUP BY layer)"
        " SELECT r.dataset, r.model, r.kind, r.rule, a.layer, a.epoch, count(*),"
        " avg(a.angle_bw), sum(a.angle_bw * a.angle_bw), count(a.angle_bw),"
        " avg(a.norm_ratio), sum(a.norm_ratio * a.norm_ratio), count(a.norm_ratio),"
        " avg(a.grad_angle), sum(a.grad_angle * a.grad_angle), count(a.grad_angle)"
        " FROM alignment a JOIN runs r ON r.id = a.run_id JOIN lo ON lo.layer = a.layer"
        " GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, " RULE_RANK("r.rule") ", 4, min(lo.k), 6";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return sql_fail(db, "reading alignment");
    QTab *t = qtab_new(fmt);
    const char *const names[] = {"dataset", "model", "kind", "rule", "layer"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], 0);
    int cep = qtab_col(t, "epoch", 1), cn = qtab_col(t, "runs", 1);
    int cbw = qtab_stat_col(t, "angle_bw_deg"), cnr = qtab_stat_col(t, "norm_ratio"), cga = qtab_stat_col(t, "grad_angle_deg");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = qtab_row(t);
        for (int k = 0; k < 5; k++) qtab_set_text(t, r, k, col_text(st, k));
        qtab_set(t, r, cep, "%d", sqlite3_column_int(st, 5));
        qtab_set(t, r, cn, "%lld", (long long)sqlite3_column_int64(st, 6));
        qtab_set_stat(t, r, cbw, stat_from(sqlite3_column_double(st, 7), sqlite3_column_double(st, 8), sqlite3_column_int64(st, 9)), 2);
        qtab_set_stat(t, r, cnr, stat_from(sqlite3_column_double(st, 10), sqlite3_column_double(st, 11), sqlite3_column_int64(st, 12)), 4);
        qtab_set_stat(t, r, cga, stat_from(sqlite3_column_double(st, 13), sqlite3_column_double(st, 14), sqlite3_column_int64(st, 15)), 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { qtab_free(t); return sql_fail(db, "reading alignment"); }
    if (!t->nrow) fprintf(stderr, "query alignment: no alignment rows in %s (train with a probe to record them)\n", db_path(db));
    qtab_print(t, fmt, out);
    qtab_free(t);
    return 0;
}

static int report_runs(Db *db, int fmt, FILE *out) {
    static const char sql[] =
        "SELECT id, coalesce(job_key, ''), kind, coalesce(parent_run, ''), rule, model, dataset,"
        " data_seed || '/' || init_seed || '/' || rule_seed, status, epochs,"
        " CASE WHEN test_acc IS NOT NULL THEN printf('%.2f', 100.0 * test_acc) END,"
        " CASE WHEN val_acc IS NOT NULL THEN printf('%.2f', 100.0 * val_acc) END,"
        " started, coalesce(finished, ''), coalesce(heartbeat, ''), coalesce(error, '')"
        " FROM run_view ORDER BY id";
    static const char *const names[] = {"id", "job_key", "kind", "parent", "rule", "model", "dataset", "seeds",
                                         "status", "epochs", "test_acc", "val_acc", "started", "finished",
                                         "heartbeat", "error"};
    static const int numeric[] = {1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0};
    _Static_assert(ARRAY_LEN(names) == ARRAY_LEN(numeric), "one flag per column");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return sql_fail(db, "reading runs");
    QTab *t = qtab_new(fmt);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) qtab_col(t, names[i], numeric[i]);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = qtab_row(t);
        for (int k = 0; k < t->ncol; k++)
            if (sqlite3_column_type(st, k) != SQLITE_NULL && col_text(st, k)[0]) qtab_set_text(t, r, k, col_text(st, k));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { qtab_free(t); return sql_fail(db, "reading runs"); }
    if (!t->nrow) fprintf(stderr, "query runs: no runs in %s\n", db_path(db));
    qtab_print(t, fmt, out);
    qtab_free(t);
    return 0;
}

typedef struct Report { const char *name; int (*fn)(Db *db, int fmt, FILE *out); } Report;
static const Report k_reports[] = {
    {"table", report_table}, {"curve", report_curve}, {"masking", report_masking},
    {"alignment", report_alignment}, {"runs", report_runs}, {"hash-table", report_hash_table},
    {"worst", worst_report}, {"verdict", verdict_report},
};

const char *query_report_names(void) { return "table, curve, masking, alignment, runs, hash-table, worst, verdict"; }

int query_report_known(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(k_reports); i++)
        if (str_eq(name, k_reports[i].name)) return 1;
    return 0;
}

int query_report(Db *db, const char *report, int fmt, FILE *out) {
    CHECK(fmt >= 0 && fmt < QF_COUNT);
    for (size_t i = 0; i < ARRAY_LEN(k_reports); i++)
        if (str_eq(report, k_reports[i].name)) return k_reports[i].fn(db, fmt, out);
    return err_set("unknown report '%s'; use one of: %s", report, query_report_names());
}

int query_sql(Db *db, const char *sql, int fmt, FILE *out) {
    CHECK(fmt >= 0 && fmt < QF_COUNT);
    sqlite3 *h = db_sqlite(db);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, &tail) != SQLITE_OK)
        return err_set("--sql: %s", sqlite3_errmsg(h));
    if (!st) return err_set("--sql: empty statement");
    for (; tail && *tail; tail++)
        if (*tail != ';' && *tail != ' ' && *tail != '\n' && *tail != '\t' && *tail != '\r') {
            sqlite3_finalize(st);
            return err_set("--sql: one statement at a time (found more after the first ';')");
        }
    if (!sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        return err_set("--sql: the statement would modify the database; --sql is read-only");
    }
    sqlite3_exec(h, "PRAGMA query_only=1", NULL, NULL, NULL);
    QTab *t = qtab_new(QF_CSV); /* raw values: never merge */
    int ncol = sqlite3_column_count(st);
    for (int c = 0; c < ncol; c++) qtab_col(t, sqlite3_column_name(st, c), 1);
    int *nonnum = xcalloc((size_t)ncol + 1, sizeof(int));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = qtab_row(t);
        for (int c = 0; c < ncol; c++) {
            int ty = sqlite3_column_type(st, c);
            if (ty == SQLITE_NULL) continue;
            if (ty == SQLITE_BLOB) { qtab_set(t, r, c, "<blob %d bytes>", sqlite3_column_bytes(st, c)); nonnum[c] = 1; continue; }
            if (ty != SQLITE_INTEGER && ty != SQLITE_FLOAT) nonnum[c] = 1;
            qtab_set_text(t, r, c, col_text(st, c));
        }
    }
    int fail = rc != SQLITE_DONE;
    if (fail) err_set("--sql: %s", sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_exec(h, "PRAGMA query_only=0", NULL, NULL, NULL);
    for (int c = 0; c < ncol; c++) t->numeric[c] = !nonnum[c];
    if (!fail) qtab_print(t, fmt, out);
    qtab_free(t);
    free(nonnum);
    return fail ? -1 : 0;
}
