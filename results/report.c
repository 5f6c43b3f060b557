/* report.c -- the markdown report and its self-contained HTML form (see report.h).
 *
 * The markdown is built once in memory; the HTML is that markdown converted line by line (only the
 * constructs this file and the query tables write), with each linked PNG read and embedded as base64.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/report.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"
#include "results/qtab.h"
#include "results/query.h"
#include "results/verdict.h"

int report_is_html(const char *path) {
    size_t n = strlen(path);
    return (n > 5 && strcmp(path + n - 5, ".html") == 0) || (n > 4 && strcmp(path + n - 4, ".htm") == 0);
}

/* ---- figures of the call: every PNG in figdir, in a fixed order ---- */

typedef struct FigInfo { const char *prefix, *caption; } FigInfo;
static const FigInfo k_figs[] = {
    {"verdict", "Per rule, the difference in robust accuracy against BP (points) with its 95% interval: one marker per "
                "gradient source and the per-example worst case; one panel per eps."},
    {"robust_eps", "Robust accuracy vs eps, mean over seeds with its 95% interval; BP in every panel; the last panel is the "
                   "per-example worst case over every attack and source."},
    {"hash_map_eps", "Hashing: mAP of the attacked queries vs eps (mean over seeds, ± sd)."},
    {"training", "Training and validation accuracy vs epoch (mean over seeds)."},
    {"alignment", "Alignment of each rule with BP: angle between B and W, and between the error it sends down and BP's."},
    {"transfer", "Transfer attacks: robust accuracy by surrogate and attacked rule."},
};

static int fig_rank(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(k_figs); i++) {
        size_t l = strlen(k_figs[i].prefix);
        if (strncmp(name, k_figs[i].prefix, l) == 0 && (name[l] == '.' || name[l] == '-')) return (int)i;
    }
    return (int)ARRAY_LEN(k_figs);
}
static int fig_cmp(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int c = fig_rank(x) - fig_rank(y);
    return c ? c : strcmp(x, y);
}

/* The PNG names in figdir, sorted; *n of them (malloc'd, free each and the array). */
static char **fig_list(const char *figdir, int *n) {
    *n = 0;
    char **names = NULL;
    DIR *d = figdir ? opendir(figdir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".png") != 0 || strstr(e->d_name, ".tmp.")) continue;
        char **nn = realloc(names, sizeof *names * (size_t)(*n + 1));
        CHECK(nn);
        names = nn;
        names[(*n)++] = xstrdup(e->d_name);
    }
    if (d) closedir(d);
    xqsort(names, (size_t)*n, sizeof *names, fig_cmp);
    return names;
}

/* "![name](rel)" and its caption line, for the figures whose name starts with prefix (all when NULL) and
 * that were not written yet (used[i]). */
static void md_figs(FILE *f, char **names, int n, int *used, const char *prefix, const char *figdir, const char *repdir) {
    size_t dl = strlen(repdir);
    for (int i = 0; i < n; i++) {
        if (used[i]) continue;
        int r = fig_rank(names[i]);
        if (prefix && (r >= (int)ARRAY_LEN(k_figs) || !str_eq(k_figs[r].prefix, prefix))) continue;
        used[i] = 1;
        char p[2100];
        snprintf(p, sizeof p, "%s/%s", figdir, names[i]);
        const char *rel = dl && strncmp(p, repdir, dl) == 0 && p[dl] == '/' ? p + dl + 1 : p;
        fprintf(f, "![%s](%s)\n\n", names[i], rel);
        if (r < (int)ARRAY_LEN(k_figs)) fprintf(f, "%s\n\n", k_figs[r].caption);
    }
}

/* ---- the content, as markdown ---- */

static int have(Db *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The transfer table: per surrogate, rows = attacked rule, columns = attack × eps, robust accuracy
 * (mean ± sd over seeds). What the transfer figure would show as one heatmap row per surrogate. */
static int transfer_table(Db *db, FILE *f) {
    static const char sql[] =
        "SELECT source_label, dataset, model, rule, attack_label || ' eps ' || eps_text, avg(100.0 * robust_acc),"
        " sum(100.0 * robust_acc * 100.0 * robust_acc), count(*), eps"
        " FROM eval_view WHERE grad_source = 'transfer' AND task = 'classify' AND robust_acc IS NOT NULL"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, CASE rule WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2"
        " WHEN 'usf' THEN 3 WHEN 'brsf' THEN 4 WHEN 'frsf' THEN 5 ELSE 6 END, rule, 9, 5";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: reading transfer evals: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    typedef struct TC { char src[64], grp[140], rule[32], col[80]; Stat s; } TC;
    TC *v = NULL;
    int n = 0, cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 32; v = realloc(v, sizeof *v * (size_t)cap); CHECK(v); }
        TC *c = &v[n++];
        snprintf(c->src, sizeof c->src, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(c->grp, sizeof c->grp, "%s / %s", (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2));
        snprintf(c->rule, sizeof c->rule, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(c->col, sizeof c->col, "%s", (const char *)sqlite3_column_text(st, 4));
        c->s = stat_from(sqlite3_column_double(st, 5), sqlite3_column_double(st, 6), sqlite3_column_int64(st, 7));
    }
    sqlite3_finalize(st);
    for (int g0 = 0; g0 < n;) {
        int g1 = g0;
        while (g1 < n && str_eq(v[g1].src, v[g0].src) && str_eq(v[g1].grp, v[g0].grp)) g1++;
        QTab *t = qtab_new(QF_MD);
        snprintf(t->title, sizeof t->title, "%s: robust accuracy %% of each rule's models under adversarials crafted on %s",
                 v[g0].grp, v[g0].src);
        qtab_col(t, "rule", 0);
        char cols[32][80];
        int nc = 0;
        for (int i = g0; i < g1; i++) {
            int seen = 0;
            for (int k = 0; k < nc && !seen; k++) seen = str_eq(cols[k], v[i].col);
            if (!seen && nc < 32) snprintf(cols[nc++], sizeof cols[0], "%s", v[i].col);
        }
        for (int k = 0; k < nc; k++) qtab_stat_col(t, cols[k]);
        int row = -1;
        for (int i = g0; i < g1; i++) {
            if (i == g0 || !str_eq(v[i].rule, v[i - 1].rule)) {
                row = qtab_row(t);
                qtab_set_text(t, row, 0, v[i].rule);
            }
            for (int k = 0; k < nc; k++)
                if (str_eq(cols[k], v[i].col)) qtab_set_stat(t, row, 1 + k, v[i].s, 1);
        }
        qtab_print(t, QF_MD, f);
        qtab_free(t);
        g0 = g1;
    }
    free(v);
    return 0;
}

/* The verdict at a glance: per eps > 0 and rule, the label, the worst-case delta with its interval, the
 * masking count and the evidence (the full table follows). */
static int verdict_glance(Db *db, FILE *f) {
    VerdictSet vs;
    if (verdict_compute(db, &vs) < 0) return -1;
    QTab *t = qtab_new(QF_MD);
    snprintf(t->title, sizeof t->title, "at a glance: the worst case over every attack and source, rule minus BP (points, 95%% interval)");
    const char *const cols[] = {"dataset", "model", "eps", "rule", "verdict", "worst-case delta", "masking_seeds", "evidence"};
    for (size_t i = 0; i < ARRAY_LEN(cols); i++) qtab_col(t, cols[i], i == 5);
    for (int i = 0; i < vs.n; i++) {
        const VerdictRow *v = &vs.rows[i];
        if (v->baseline || !v->paired || !(v->eps > 0)) continue;
        int r = qtab_row(t);
        const char *vals[] = {v->dataset, v->model, v->eps_text, v->rule, v->verdict};
        for (size_t k = 0; k < ARRAY_LEN(vals); k++) qtab_set_text(t, r, (int)k, vals[k]);
        qtab_set(t, r, 5, "%+.1f [%+.1f, %+.1f]", v->worst_d.d, v->worst_d.lo, v->worst_d.hi);
        if (v->mask_n) qtab_set(t, r, 6, "%d/%d", v->mask_k, v->mask_n);
        qtab_set_text(t, r, 7, v->evidence);
    }
    if (t->nrow) qtab_print(t, QF_MD, f);
    qtab_free(t);
    verdict_set_free(&vs);
    return 0;
}

/* Writes the whole report as markdown to f. */
static int report_md(Db *db, FILE *f, const char *figdir, const char *repdir) {
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    int nf = 0;
    char **figs = fig_list(figdir, &nf);
    int *used = xcalloc((size_t)nf + 1, sizeof *used);
    fprintf(f, "# Concord results\n\nDatabase `%s`, report written %s.\n"
               "Accuracies in percent; the verdict's intervals are 95%% bootstrap intervals over seeds and examples, the "
               "tables' `m ± sd` is the mean and sample sd over seeds (sd omitted for a single seed).\n\n", db_path(db), when);
    fputs("## Verdict: does the rule make the network more robust than BP?\n\n"
          "Each rule's fine-tuned models against BP's of the same seed, on the same test examples. `d_X` is the "
          "difference in robust accuracy (points, rule minus BP) under gradient source X with its 95% bootstrap "
          "interval over seeds and examples, `p_X` the exact paired test; `worst` is the per-example worst case "
          "over every attack and source. A label needs the interval to exclude 0 and p < 0.05; it holds for the "
          "rule only when the seed-level test agrees (at least 6 seeds). Method: docs/statistics.md.\n\n", f);
    int rc = verdict_glance(db, f);
    if (rc == 0) rc = query_report(db, "verdict", QF_MD, f);
    if (rc == 0) md_figs(f, figs, nf, used, "verdict", figdir, repdir);
    if (rc == 0) rc = verdict_methods(db, f);
    if (rc == 0) fputs("\n## Clean and robust accuracy\n\n", f);
    if (rc == 0) rc = query_report(db, "table", QF_MD, f);
    if (rc == 0) md_figs(f, figs, nf, used, "robust_eps", figdir, repdir);
    if (rc == 0) {
        fputs("## Gradient masking: gradient sources side by side\n\n"
              "Robust accuracy when the attack follows the true gradient, the rule's feedback path, or a surrogate "
              "(transfer), next to the gradient-free Square attack (black-box) and the per-example worst case. A rule "
              "that looks robust only under its own feedback gradient is masking, not robust.\n\n", f);
        if (db_count(db, "evals") > 0) rc = query_report(db, "masking", QF_MD, f);
        else fputs("No attack evaluations recorded yet.\n\n", f);
    }
    if (rc == 0 && have(db, "SELECT EXISTS(SELECT 1 FROM evals WHERE grad_source = 'transfer' AND task = 'classify')")) {
        fputs("## Transfer attacks\n\nAdversarials crafted on a surrogate model (its true gradient) and evaluated on each "
              "rule's models.\n\n", f);
        rc = transfer_table(db, f);
        if (rc == 0) md_figs(f, figs, nf, used, "transfer", figdir, repdir);
    }
    if (rc == 0 && have(db, "SELECT EXISTS(SELECT 1 FROM evals WHERE task = 'hash') OR EXISTS(SELECT 1 FROM runs WHERE task = 'hash')")) {
        fputs("\n## Hashing retrieval: mAP under attack\n\n"
              "mAP (percent) of the query set against the clean database codes: the run's clean mAP, then the "
              "mAP of the attacked queries per attack, gradient source and eps (only the queries are "
              "perturbed).\n\n", f);
        rc = query_report(db, "hash-table", QF_MD, f);
        if (rc == 0) md_figs(f, figs, nf, used, "hash_map_eps", figdir, repdir);
    }
    if (rc == 0) {
        fputs("\n## Runs\n\n", f);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db_sqlite(db), "SELECT kind, status, COUNT(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2", -1, &st, NULL) != SQLITE_OK)
            rc = err_set("%s: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
        else {
            fputs("| kind | status | runs |\n| --- | --- | ---: |\n", f);
            while (sqlite3_step(st) == SQLITE_ROW)
                fprintf(f, "| %s | %s | %lld |\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                        (long long)sqlite3_column_int64(st, 2));
            sqlite3_finalize(st);
        }
    }
    if (rc == 0) {
        int left = 0;
        for (int i = 0; i < nf; i++) left += !used[i];
        if (left) {
            fputs("\n## Figures\n\n", f);
            md_figs(f, figs, nf, used, NULL, figdir, repdir);
        }
    }
    for (int i = 0; i < nf; i++) free(figs[i]);
    free(figs);
    free(used);
    return rc;
}

/* ---- markdown -> HTML ---- */

static void html_esc(FILE *o, const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++) {
        switch (s[i]) {
        case '&': fputs("&amp;", o); break;
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '"': fputs("&quot;", o); break;
        default: fputc(s[i], o);
        }
    }
}

/* inline markup: `code`, **bold**; everything else escaped */
static void html_inline(FILE *o, const char *s, size_t n) {
    size_t i = 0;
    while (i < n && s[i]) {
        if (s[i] == '`') {
            const char *e = memchr(s + i + 1, '`', n - i - 1);
            if (e) {
                fputs("<code>", o);
                html_esc(o, s + i + 1, (size_t)(e - s - i - 1));
                fputs("</code>", o);
                i = (size_t)(e - s) + 1;
                continue;
            }
        }
        if (s[i] == '*' && i + 1 < n && s[i + 1] == '*') {
            const char *e = strstr(s + i + 2, "**");
            if (e && (size_t)(e - s) < n) {
                fputs("<strong>", o);
                html_inline(o, s + i + 2, (size_t)(e - s - i - 2));
                fputs("</strong>", o);
                i = (size_t)(e - s) + 2;
                continue;
            }
        }
        html_esc(o, s + i, 1);
        i++;
    }
}

static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static void base64(FILE *o, const unsigned char *b, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        fputc(k_b64[v >> 18 & 63], o);
        fputc(k_b64[v >> 12 & 63], o);
        fputc(i + 1 < n ? k_b64[v >> 6 & 63] : '=', o);
        fputc(i + 2 < n ? k_b64[v & 63] : '=', o);
    }
}

/* splits a markdown table row into cells (unescaping \|); returns the count */
static int md_cells(const char *line, char cells[][512], int max) {
    int n = 0;
    const char *p = line;
    if (*p == '|') p++;
    while (*p && n < max) {
        size_t k = 0;
        while (*p && *p != '|') {
            if (*p == '\\' && p[1] == '|') p++;
            if (k + 1 < 512) cells[n][k++] = *p;
            p++;
        }
        while (k > 0 && cells[n][k - 1] == ' ') k--;
        cells[n][k] = 0;
        char *s = cells[n];
        while (*s == ' ') s++;
        memmove(cells[n], s, strlen(s) + 1);
        n++;
        if (*p == '|') p++;
        if (!*p || *p == '\n') break;
    }
    return n;
}

/* the highlight class of a cell, from its column's name and its text */
static const char *cell_class(const char *col, const char *v) {
    if (str_eq(col, "verdict")) {
        if (str_eq(v, "masking")) return "mask";
        if (str_eq(v, "worse")) return "worse";
        if (str_eq(v, "robust gain")) return "gain";
        return NULL;
    }
    if (str_eq(col, "flags") && v[0] && !str_eq(v, "-")) return "mask";
    if (str_eq(col, "masking_seeds") && v[0] && v[0] != '0' && v[0] != '-') return "mask";
    return NULL;
}

/* a table block (lines[0] header, lines[1] alignment, the rest rows) */
static void html_table(FILE *o, char **lines, int n) {
    enum { MAXC = 64 };
    static char head[MAXC][512], cells[MAXC][512];
    int nh = md_cells(lines[0], head, MAXC);
    int right[MAXC] = {0};
    if (n > 1) {
        int na = md_cells(lines[1], cells, MAXC);
        for (int c = 0; c < na && c < MAXC; c++) right[c] = strstr(cells[c], "-:") != NULL;
    }
    fputs("<div class=\"tw\"><table>\n<thead><tr>", o);
    for (int c = 0; c < nh; c++) {
        fputs(right[c] ? "<th class=\"r\">" : "<th>", o);
        html_inline(o, head[c], strlen(head[c]));
        fputs("</th>", o);
    }
    fputs("</tr></thead>\n<tbody>\n", o);
    for (int r = 2; r < n; r++) {
        int nc = md_cells(lines[r], cells, MAXC), flagged = 0;
        for (int c = 0; c < nc && c < nh; c++) flagged |= cell_class(head[c], cells[c]) && str_eq(cell_class(head[c], cells[c]), "mask");
        fputs(flagged ? "<tr class=\"flagged\">" : "<tr>", o);
        for (int c = 0; c < nc; c++) {
            const char *cls = c < nh ? cell_class(head[c], cells[c]) : NULL;
            fprintf(o, "<td%s%s%s%s%s>", right[c] || cls ? " class=\"" : "", right[c] ? "r" : "", right[c] && cls ? " " : "",
                    cls ? cls : "", right[c] || cls ? "\"" : "");
            html_inline(o, cells[c], strlen(cells[c]));
            fputs("</td>", o);
        }
        fputs("</tr>\n", o);
    }
    fputs("</tbody></table></div>\n", o);
}

/* an image line "![alt](src)": the PNG read from src (relative to repdir) and embedded */
static int html_image(FILE *o, const char *line, const char *repdir) {
    const char *a = line + 2, *ae = strstr(a, "](");
    if (!ae) return 0;
    const char *s = ae + 2, *se = strchr(s, ')');
    if (!se) return 0;
    char path[2200];
    if (*s == '/' || !repdir[0]) snprintf(path, sizeof path, "%.*s", (int)(se - s), s);
    else snprintf(path, sizeof path, "%s/%.*s", repdir, (int)(se - s), s);
    FILE *in = fopen(path, "rb");
    if (!in) return err_set("%s: cannot read a figure for the HTML report: %s", path, strerror(errno));
    size_t len = 0, cap = 1 << 16;
    unsigned char *buf = xmalloc(cap);
    for (size_t r; (r = fread(buf + len, 1, cap - len, in)) > 0;) {
        len += r;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap); CHECK(buf); }
    }
    fclose(in);
    fputs("<figure><img alt=\"", o);
    html_esc(o, a, (size_t)(ae - a));
    fputs("\" src=\"data:image/png;base64,", o);
    base64(o, buf, len);
    fputs("\">\n", o);
    free(buf);
    return 1;
}

static const char k_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1500px;margin:1.5em auto;padding:0 1.5em;color:#222}"
    "h1{font-size:1.7em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h4{margin:1.4em 0 .4em;font-size:1em}"
    "code{background:#f2f2f2;padding:0 .25em;border-radius:3px}"
    ".tw{overflow-x:auto;margin:.4em 0 1.2em}table{border-collapse:collapse;font-size:12.5px}"
    "th,td{border:1px solid #d6d6d6;padding:.25em .55em;white-space:nowrap}th{background:#f4f4f4;position:sticky;top:0}"
    "td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}tbody tr:nth-child(even){background:#fafafa}"
    "tr.flagged{background:#fff4e0!important}td.mask{background:#ffd27f;font-weight:600}td.worse{background:#f6b6b6;font-weight:600}"
    "td.gain{background:#b9e4c2;font-weight:600}"
    "figure{margin:1em 0 .3em}figure img{max-width:100%;height:auto;border:1px solid #e4e4e4}"
    "figure+p{color:#555;font-size:.95em;margin-top:.2em}ul{padding-left:1.4em}li{margin:.15em 0}"
    ".legend span{display:inline-block;padding:0 .5em;margin-right:.6em}";

/* Converts the markdown md to a standalone HTML page. */
static int md_to_html(const char *md, FILE *o, const char *repdir) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Concord results</title>\n<style>", o);
    fputs(k_css, o);
    fputs("</style>\n</head>\n<body>\n", o);
    /* split into lines */
    char *text = xstrdup(md);
    int nl = 0, cap = 256;
    char **lines = xmalloc(sizeof *lines * (size_t)cap);
    for (char *p = text, *save = NULL, *l = strtok_r(p, "\n", &save);; l = strtok_r(NULL, "\n", &save)) {
        (void)p;
        if (!l) break;
        if (nl == cap) { cap *= 2; lines = realloc(lines, sizeof *lines * (size_t)cap); CHECK(lines); }
        lines[nl++] = l;
    }
    int rc = 0, in_list = 0, in_par = 0, legend = 0;
    for (int i = 0; i < nl && rc == 0; i++) {
        const char *l = lines[i];
        int is_item = strncmp(l, "- ", 2) == 0, is_table = l[0] == '|', is_head = l[0] == '#', is_img = strncmp(l, "![", 2) == 0;
        if (in_list && !is_item) { fputs("</ul>\n", o); in_list = 0; }
        if (in_par && (is_item || is_table || is_head || is_img)) { fputs("</p>\n", o); in_par = 0; }
        if (is_head) {
            int h = 0;
            while (l[h] == '#') h++;
            const char *t = l + h;
            while (*t == ' ') t++;
            fprintf(o, "<h%d>", h);
            html_inline(o, t, strlen(t));
            fprintf(o, "</h%d>\n", h);
            if (h == 2 && strstr(t, "Verdict") && !legend) {
                fputs("<p class=\"legend\">Highlighted: <span class=\"mask-l\" style=\"background:#ffd27f\">masking</span>"
                      "<span style=\"background:#f6b6b6\">worse than BP</span><span style=\"background:#b9e4c2\">robust gain</span>"
                      "<span style=\"background:#fff4e0\">a row with a masking flag</span></p>\n", o);
                legend = 1;
            }
        } else if (is_table) {
            int j = i;
            while (j < nl && lines[j][0] == '|') j++;
            html_table(o, lines + i, j - i);
            i = j - 1;
        } else if (is_item) {
            if (!in_list) { fputs("<ul>\n", o); in_list = 1; }
            fputs("<li>", o);
            html_inline(o, l + 2, strlen(l + 2));
            fputs("</li>\n", o);
        } else if (is_img) {
            if ((rc = html_image(o, l, repdir)) < 0) break;
            /* the caption line that follows */
            if (i + 1 < nl && lines[i + 1][0] && lines[i + 1][0] != '#' && lines[i + 1][0] != '|' && strncmp(lines[i + 1], "![", 2) != 0) {
                fputs("<figcaption>", o);
                html_inline(o, lines[i + 1], strlen(lines[i + 1]));
                fputs("</figcaption>\n", o);
                i++;
            }
            fputs("</figure>\n", o);
            rc = 0;
        } else {
            if (!in_par) { fputs("<p>", o); in_par = 1; }
            else fputc(' ', o);
            html_inline(o, l, strlen(l));
        }
        /* a blank line (strtok_r dropped it) ends a paragraph: look at the source */
        if (in_par && i + 1 < nl && lines[i + 1] > lines[i] + strlen(lines[i]) + 1) { fputs("</p>\n", o); in_par = 0; }
    }
    if (in_par) fputs("</p>\n", o);
    if (in_list) fputs("</ul>\n", o);
    fputs("</body>\n</html>\n", o);
    free(lines);
    free(text);
    return rc < 0 ? -1 : 0;
}

int report_write(Db *db, const char *path, const char *figdir) {
    CHECK(db && path);
    char tmp[1200];
    tmp_path(path, tmp, sizeof tmp);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) { *slash = 0; if (dir[0] && dir_create(dir) < 0) return -1; }
    else dir[0] = 0;
    char *md = NULL;
    size_t mdn = 0;
    FILE *m = open_memstream(&md, &mdn);
    CHECK(m);
    int rc = report_md(db, m, figdir, dir);
    fclose(m);
    FILE *f = rc == 0 ? fopen(tmp, "w") : NULL;
    if (rc == 0 && !f) rc = err_set("%s: cannot write the report: %s", tmp, strerror(errno));
    if (rc == 0) {
        if (report_is_html(path)) rc = md_to_html(md, f, dir);
        else fwrite(md, 1, mdn, f);
    }
    if (f && fclose(f) != 0 && rc == 0) rc = err_set("%s: write failed (disk full?)", tmp);
    free(md);
    if (rc < 0) { unlink(tmp); return -1; }
    return file_commit(tmp, path);
}
