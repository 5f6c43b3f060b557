/* plot_robust.c -- the figures of robust accuracy: robust accuracy vs eps (per attack and gradient source,
 * 95% bands, BP and the pre-trained model in every panel, a worst-case panel) and the verdict figure
 * (rule minus BP per source and worst case, with intervals). Built on figure.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/figure.h"
#include "results/outcomes.h"
#include "results/plot_robust.h"
#include "results/stats.h"
#include "results/verdict.h"
#include "results/worst.h"

/* ---- robust accuracy vs eps ---- */

/* One evaluation of one model, as the figure needs it. */
typedef struct REv {
    char group[200], panel[160], series[80], eps_text[32], norm[8], attack[32], source[64];
    int lt, prank;             /* style; panel order */
    double eps;
    long n, robust;
    long steps, restarts, queries, eot;
    char alpha_text[32];
    int has;                   /* per-example outcomes present */
    int32_t *index;            /* (n) */
    uint8_t *robust_ok;        /* (n) */
} REv;

static void rev_free(REv *v, int n) {
    for (int i = 0; i < n; i++) { free(v[i].index); free(v[i].robust_ok); }
    free(v);
}

static int src_rank(const char *s) {
    return str_eq(s, "true") ? 0 : strncmp(s, "feedback", 8) == 0 ? 1 : strncmp(s, "transfer", 8) == 0 ? 2 : 3;
}
static int attack_rank(const char *a) {
    return strncmp(a, "fgsm", 4) == 0 ? 0 : strncmp(a, "pgd", 3) == 0 ? 1 : strncmp(a, "autoattack", 10) == 0 ? 2 : 3;
}

/* A point's estimate and 95% interval (percent) from its models' per-example outcomes: the mean over
 * models; with several models the bootstrap over seeds and examples of stats.h (the verdict's, run on
 * A = the outcomes and B = nothing robust, so A - B is the accuracy), with one the Wilson interval. Any
 * model without outcomes: no interval. */
static void point_interval(REv **m, int S, double *y, double *lo, double *hi) {
    double s = 0;
    int all = 1;
    long maxn = 0;
    for (int k = 0; k < S; k++) {
        s += m[k]->n ? 100.0 * m[k]->robust / m[k]->n : 0;
        all &= m[k]->has;
        if (m[k]->n > maxn) maxn = m[k]->n;
    }
    *y = S ? s / S : NAN;
    *lo = *hi = NAN;
    if (!S || !all) return;
    if (S == 1) {
        stats_wilson(m[0]->robust, m[0]->n, STATS_Z95, lo, hi);
        *lo *= 100;
        *hi *= 100;
        return;
    }
    uint8_t *zero = xcalloc((size_t)maxn + 1, 1);
    StatsSeed *sd = xcalloc((size_t)S, sizeof *sd);
    int crossed = 1;
    for (int k = 0; k < S; k++) {
        sd[k] = (StatsSeed){m[k]->robust_ok, zero, m[k]->n};
        crossed &= m[k]->n == m[0]->n && memcmp(m[k]->index, m[0]->index, sizeof(int32_t) * (size_t)m[0]->n) == 0;
    }
    StatsBootOpts o = {.reps = 2000, .level = 0.95, .seed = 1, .design = crossed ? STATS_CROSSED : STATS_NESTED};
    StatsInterval iv = stats_bootstrap_diff(sd, S, &o);
    *lo = 100 * iv.lo;
    *hi = 100 * iv.hi;
    free(sd);
    free(zero);
}

static int rev_cmp(const void *a, const void *b) {
    const REv *x = a, *y = b;
    int c;
    if ((c = strcmp(x->group, y->group))) return c;
    if ((c = x->prank - y->prank)) return c;
    if ((c = strcmp(x->panel, y->panel))) return c;
    if ((c = x->lt - y->lt)) return c;
    if ((c = strcmp(x->series, y->series))) return c;
    return x->eps < y->eps ? -1 : x->eps > y->eps;
}

/* "n 500, 10 steps of 2.5*eps/10, 1 restart" from a panel's first evaluation; n as a range when it varies */
static void attack_caption(const REv *e, long nlo, long nhi, char *out, size_t cap) {
    char n[48];
    if (nlo == nhi) snprintf(n, sizeof n, "n %ld", nhi);
    else snprintf(n, sizeof n, "n %ld-%ld", nlo, nhi);
    if (str_eq(e->attack, "square"))
        snprintf(out, cap, "%s, %ld queries", n, e->queries);
    else if (str_eq(e->attack, "fgsm"))
        snprintf(out, cap, "%s, one step of eps", n);
    else if (strncmp(e->attack, "autoattack", 10) == 0)
        snprintf(out, cap, "%s, %s, %ld steps, %ld restart%s", n, str_eq(e->attack, "autoattack") ? "standard" : "rand",
                 e->steps, e->restarts, e->restarts == 1 ? "" : "s");
    else {
        char step[48];
        if (!e->alpha_text[0]) snprintf(step, sizeof step, "2.5*eps/%ld", e->steps);
        else if (e->alpha_text[0] == 'r') snprintf(step, sizeof step, "%s*eps", e->alpha_text + 1);
        else snprintf(step, sizeof step, "%s", e->alpha_text);
        if (str_eq(e->attack, "pgd"))
            snprintf(out, cap, "%s, %ld steps of %s, %ld restart%s", n, e->steps, step, e->restarts, e->restarts == 1 ? "" : "s");
        else
            snprintf(out, cap, "%s, %ld steps, %ld restart%s", n, e->steps, e->restarts, e->restarts == 1 ? "" : "s");
    }
    if (e->eot > 1) snprintf(out + strlen(out), cap - strlen(out), ", EOT %ld", e->eot);
}

/* Loads the evaluations (one per model and key) and the worst case (worst.h) into REv rows. */
static int robust_load(Db *db, REv **out, int *nout) {
    static const char sql[] =
        "SELECT v.dataset, v.model, coalesce(v.kind, '?'), v.rule, v.attack_label, v.source_label, v.attack, v.eps,"
        " v.eps_text, v.norm, v.n, v.n_robust_ok, e.outcomes, coalesce(v.steps, 0), coalesce(v.restarts, 1),"
        " coalesce(v.queries, 0), coalesce(v.eot, 1), coalesce(v.alpha_text, ''), v.eval_id,"
        " EXISTS(SELECT 1 FROM runs f WHERE f.kind = 'finetune' AND f.model = v.model"
        "  AND (f.dataset = v.dataset OR f.dataset LIKE (CASE WHEN instr(v.dataset, '[') > 0"
        "   THEN substr(v.dataset, 1, instr(v.dataset, '[') - 1) ELSE v.dataset END) || '[%'))"
        " FROM " ONE_PER_MODEL_CLASSIFY " v JOIN evals e ON e.id = v.eval_id WHERE v.n > 0";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    REv *v = NULL;
    int n = 0, cap = 0, rc, fail = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof *v * (size_t)cap); CHECK(v); }
        REv *e = &v[n];
        memset(e, 0, sizeof *e);
        fig_group(st, 0, e->group, sizeof e->group);
        const char *kind = fig_txt(st, 2), *rule = fig_txt(st, 3);
        int pretrained = str_eq(kind, "train") && sqlite3_column_int(st, 19);
        if (pretrained) { snprintf(e->series, sizeof e->series, "%s (pretrained)", rule); e->lt = LT_PRETRAINED; }
        else { snprintf(e->series, sizeof e->series, "%s", rule); e->lt = plot_rule_linetype(rule); }
        snprintf(e->source, sizeof e->source, "%s", fig_txt(st, 5));
        snprintf(e->panel, sizeof e->panel, "%s (%s)", fig_txt(st, 4), e->source);
        snprintf(e->attack, sizeof e->attack, "%s", fig_txt(st, 6));
        e->prank = 10 * attack_rank(fig_txt(st, 4)) + src_rank(e->source);
        e->eps = sqlite3_column_double(st, 7);
        snprintf(e->eps_text, sizeof e->eps_text, "%s", fig_txt(st, 8));
        snprintf(e->norm, sizeof e->norm, "%s", fig_txt(st, 9));
        e->n = sqlite3_column_int64(st, 10);
        e->robust = sqlite3_column_int64(st, 11);
        e->steps = sqlite3_column_int64(st, 13);
        e->restarts = sqlite3_column_int64(st, 14);
        e->queries = sqlite3_column_int64(st, 15);
        e->eot = sqlite3_column_int64(st, 16);
        snprintf(e->alpha_text, sizeof e->alpha_text, "%s", fig_txt(st, 17));
        if (sqlite3_column_type(st, 12) == SQLITE_BLOB) {
            Outcomes o;
            if (outcomes_decode(sqlite3_column_blob(st, 12), sqlite3_column_bytes(st, 12), (long)sqlite3_column_int64(st, 18), &o) < 0) {
                fail = 1;
                n++;
                break;
            }
            if (o.kind == OUT_CLASSIFY && o.n == e->n) {
                e->has = 1;
                e->index = o.index;
                e->robust_ok = o.robust_ok;
                o.index = NULL;
                o.robust_ok = NULL;
            }
            outcomes_free(&o);
        }
        n++;
    }
    sqlite3_finalize(st);
    if (!fail && rc != SQLITE_DONE) fail = err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db))) != 0;
    /* the worst case: one row per model and eps (its first example set) */
    WorstRow *w = NULL;
    int nw = 0;
    if (!fail && worst_load(db, &w, &nw) < 0) fail = 1;
    int norms = 0;
    for (int i = 1; i < nw; i++) norms |= !str_eq(w[i].norm, w[0].norm);
    for (int i = 0; i < nw && !fail; i++) {
        if (w[i].set != 0 || !w[i].n) continue;
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof *v * (size_t)cap); CHECK(v); }
        REv *e = &v[n++];
        memset(e, 0, sizeof *e);
        char fam[128];
        fig_family(w[i].dataset, fam, sizeof fam);
        snprintf(e->group, sizeof e->group, "%s / %s", fam, w[i].model);
        int pretrained = 0;
        if (str_eq(w[i].kind, "train"))
            for (int k = 0; k < nw && !pretrained; k++) {
                char f2[128];
                fig_family(w[k].dataset, f2, sizeof f2);
                pretrained = str_eq(w[k].kind, "finetune") && str_eq(f2, fam) && str_eq(w[k].model, w[i].model);
            }
        if (pretrained) { snprintf(e->series, sizeof e->series, "%s (pretrained)", w[i].rule); e->lt = LT_PRETRAINED; }
        else { snprintf(e->series, sizeof e->series, "%s", w[i].rule); e->lt = plot_rule_linetype(w[i].rule); }
        if (norms) snprintf(e->panel, sizeof e->panel, "worst case, %s (every attack and source)", w[i].norm);
        else snprintf(e->panel, sizeof e->panel, "worst case (every attack and source)");
        snprintf(e->source, sizeof e->source, "worst");
        snprintf(e->attack, sizeof e->attack, "worst");
        e->prank = 1000;
        e->eps = w[i].eps;
        snprintf(e->eps_text, sizeof e->eps_text, "%s", w[i].eps_text);
        snprintf(e->norm, sizeof e->norm, "%s", w[i].norm);
        e->n = w[i].n;
        e->robust = w[i].robust;
        e->steps = w[i].nevals;
        e->has = 1;
        e->index = w[i].index;
        e->robust_ok = w[i].robust_ok;
        w[i].index = NULL;
        w[i].robust_ok = NULL;
    }
    worst_free(w, nw);
    if (fail) { rev_free(v, n); return -1; }
    xqsort(v, (size_t)n, sizeof *v, rev_cmp);
    *out = v;
    *nout = n;
    return 0;
}

int fig_robust(Figs *fs) {
    REv *v = NULL;
    int n = 0;
    if (robust_load(fs->db, &v, &n) < 0) return -1;
    if (!n) {
        fprintf(stderr, "plot: no evals in %s; skipping robust_eps\n", db_path(fs->db));
        free(v);
        return 0;
    }
    int rc = 0, nointerval = 0;
    REv **grp = xcalloc((size_t)n, sizeof *grp);
    for (int g0 = 0; g0 < n && rc == 0;) {
        int g1 = g0;
        while (g1 < n && str_eq(v[g1].group, v[g0].group)) g1++;
        Pans ps = {0};
        int smin = 1 << 30, smax = 0;
        for (int p0 = g0; p0 < g1;) {
            int p1 = p0;
            while (p1 < g1 && str_eq(v[p1].panel, v[p0].panel)) p1++;
            Pan *p = pans_add(&ps, v[p0].panel);
            snprintf(p->ylabel, sizeof p->ylabel, "robust accuracy (%%)");
            p->ylo = -4;
            p->yhi = 104;
            long nlo = v[p0].n, nhi = v[p0].n;
            for (int i = p0; i < p1; i++) {
                if (v[i].n < nlo) nlo = v[i].n;
                if (v[i].n > nhi) nhi = v[i].n;
                pan_tick(p, v[i].eps, v[i].eps_text);
            }
            char cap[200];
            if (str_eq(v[p0].attack, "worst"))
                snprintf(cap, sizeof cap, "n %ld%s, per example: robust only if it survives every evaluation", nhi,
                         nlo != nhi ? " (largest)" : "");
            else attack_caption(&v[p0], nlo, nhi, cap, sizeof cap);
            snprintf(p->xlabel, sizeof p->xlabel, "eps (%s)\n%s", v[p0].norm, cap);
            for (int s0 = p0; s0 < p1;) {
                int s1 = s0;
                while (s1 < p1 && str_eq(v[s1].series, v[s0].series)) s1++;
                Ser *s = pan_series(p, v[s0].series, v[s0].lt);
                for (int e0 = s0; e0 < s1;) {
                    int e1 = e0, S = 0;
                    while (e1 < s1 && v[e1].eps == v[e0].eps) grp[S++] = &v[e1++];
                    double y, lo, hi;
                    point_interval(grp, S, &y, &lo, &hi);
                    nointerval += !isfinite(lo);
                    ser_add(s, v[e0].eps, y, lo, hi);
                    if (S < smin) smin = S;
                    if (S > smax) smax = S;
                    e0 = e1;
                }
                s0 = s1;
            }
            /* BP in every panel: BP's feedback gradient is its true gradient, so a source BP was not
               attacked through shows BP's true-gradient curve of the same attack (as the verdict pairs it) */
            int has_bp = 0;
            for (int k = 0; k < p->ns; k++) has_bp |= str_eq(p->s[k].label, "bp");
            if (!has_bp && !str_eq(v[p0].attack, "worst") && !str_eq(v[p0].source, "black-box")) {
                char want[160];
                const char *lp = strrchr(v[p0].panel, '(');
                snprintf(want, sizeof want, "%.*s(true)", lp ? (int)(lp - v[p0].panel) : 0, v[p0].panel);
                for (int i = g0; i < g1;) {
                    int j = i, S = 0;
                    if (!str_eq(v[i].panel, want) || !str_eq(v[i].series, "bp")) { i++; continue; }
                    Ser *s = pan_series(p, "bp", plot_rule_linetype("bp"));
                    while (j < g1 && str_eq(v[j].panel, want) && str_eq(v[j].series, "bp") && v[j].eps == v[i].eps) grp[S++] = &v[j++];
                    double y, lo, hi;
                    point_interval(grp, S, &y, &lo, &hi);
                    ser_add(s, v[i].eps, y, lo, hi);
                    i = j;
                }
            }
            p0 = p1;
        }
        char seeds[64], title[600], name[256];
        if (smin == smax) snprintf(seeds, sizeof seeds, "%d seed%s", smax, smax == 1 ? "" : "s");
        else snprintf(seeds, sizeof seeds, "%d-%d seeds", smin, smax);
        snprintf(title, sizeof title, "%s: robust accuracy vs eps, mean over %s\nshaded: 95%% interval (%s)", v[g0].group, seeds,
                 smax > 1 ? "bootstrap over seeds and examples; Wilson where one seed" : "Wilson, one seed");
        fig_name(fs, "robust_eps", v[g0].group, name, sizeof name);
        rc = line_figure(fs, name, title, &ps, "95% interval", 3);
        pans_free(&ps);
        g0 = g1;
    }
    if (nointerval)
        fprintf(stderr, "plot: %d point%s of robust_eps without an interval (evaluations recorded before per-example outcomes)\n",
                nointerval, nointerval == 1 ? "" : "s");
    free(grp);
    rev_free(v, n);
    return rc;
}

/* ---- the verdict: rule minus BP per source, with intervals ---- */

int fig_verdict(Figs *fs) {
    VerdictSet vs;
    if (verdict_compute(fs->db, &vs) < 0) return -1;
    int rc = 0, any = 0;
    for (int i = 0; i < vs.n; i++) any |= vs.rows[i].paired && !vs.rows[i].baseline && vs.rows[i].eps > 0;
    if (!any) {
        fprintf(stderr, "plot: no rule paired with BP at eps > 0 in %s; skipping verdict\n", db_path(fs->db));
        verdict_set_free(&vs);
        return 0;
    }
    char done_groups[32][200];
    int ndone = 0;
    for (int g = 0; g < vs.n && rc == 0; g++) {
        char fam[128], group[200];
        fig_family(vs.rows[g].dataset, fam, sizeof fam);
        snprintf(group, sizeof group, "%s / %s", fam, vs.rows[g].model);
        int dup = 0;
        for (int k = 0; k < ndone && !dup; k++) dup = str_eq(done_groups[k], group);
        if (dup || ndone == 32) continue;
        snprintf(done_groups[ndone++], sizeof done_groups[0], "%s", group);
        /* panels: the eps (and norms) of this group with a compared rule */
        int pan_row[64], npan = 0;
        for (int i = 0; i < vs.n; i++) {
            const VerdictRow *r = &vs.rows[i];
            char f2[128], g2[200];
            fig_family(r->dataset, f2, sizeof f2);
            snprintf(g2, sizeof g2, "%s / %s", f2, r->model);
            if (!str_eq(g2, group) || !r->paired || r->baseline || !(r->eps > 0)) continue;
            int seen = 0;
            for (int k = 0; k < npan && !seen; k++)
                seen = vs.rows[pan_row[k]].eps == r->eps && str_eq(vs.rows[pan_row[k]].norm, r->norm);
            if (!seen && npan < 64) pan_row[npan++] = i;
        }
        int nnorm = 0;
        for (int k = 1; k < npan; k++) nnorm |= !str_eq(vs.rows[pan_row[k]].norm, vs.rows[pan_row[0]].norm);
        int max_rules = 1;
        for (int k = 0; k < npan; k++) {
            int c = 0;
            for (int i = 0; i < vs.n; i++) {
                const VerdictRow *r = &vs.rows[i];
                c += r->paired && !r->baseline && r->eps == vs.rows[pan_row[k]].eps && str_eq(r->norm, vs.rows[pan_row[k]].norm);
            }
            if (c > max_rules) max_rules = c;
        }
        int S = 0;
        Fig f;
        char name[256];
        fig_name(fs, "verdict", group, name, sizeof name);
        /* eps panels and the legend in one row up to three, else two or three wide (not a strip) */
        int cells = npan + 1;
        fig_begin(&f, name, cells, cells <= 3 ? cells : cells == 4 ? 2 : 3, 470, 130 + 62 * max_rules, 2);
        for (int k = 0; k < npan; k++) {
            const VerdictRow *r0 = &vs.rows[pan_row[k]];
            /* the rows of this panel, in verdict order (rule order) */
            int rows[64], nr = 0;
            double xmax = 1;
            for (int i = 0; i < vs.n && nr < 64; i++) {
                const VerdictRow *r = &vs.rows[i];
                if (!r->paired || r->baseline || r->eps != r0->eps || !str_eq(r->norm, r0->norm)) continue;
                char f2[128], g2[200];
                fig_family(r->dataset, f2, sizeof f2);
                snprintf(g2, sizeof g2, "%s / %s", f2, r->model);
                if (!str_eq(g2, group)) continue;
                rows[nr++] = i;
                if (r->worst_d.S > S) S = r->worst_d.S;
                const VerdictDelta *ds[VERDICT_MAX_SRC + 1];
                for (int s = 0; s < vs.nsrc; s++) ds[s] = &r->by_src[s];
                ds[vs.nsrc] = &r->worst_d;
                for (int s = 0; s <= vs.nsrc; s++)
                    if (ds[s]->S) xmax = fmax(xmax, fmax(fabs(ds[s]->lo), fabs(ds[s]->hi)));
            }
            fig_panel_reset(f.body);
            char title[200];
            snprintf(title, sizeof title, "eps %s%s%s", r0->eps_text, nnorm ? ", " : "", nnorm ? r0->norm : "");
            fputs("  set title ", f.body);
            gp_str(f.body, title);
            fputs("\n  set xlabel \"robust accuracy, rule minus BP (points)\"\n  unset ylabel\n", f.body);
            fprintf(f.body, "  set xrange [%.6g:%.6g]\n  set yrange [%d.5:-0.5]\n  set grid noytics\n  set border 1\n", -1.08 * xmax,
                    1.08 * xmax, nr - 1);
            fputs("  set ytics scale 0 (", f.body);
            for (int j = 0; j < nr; j++) {
                char lab[160];
                snprintf(lab, sizeof lab, "%s\n%s", vs.rows[rows[j]].rule, vs.rows[rows[j]].verdict);
                fprintf(f.body, "%s", j ? ", " : "");
                gp_str(f.body, lab);
                fprintf(f.body, " %d", j);
            }
            fputs(")\n  set arrow from 0, graph 0 to 0, graph 1 nohead lc rgb \"#555555\" dt 2 lw 1\n", f.body);
            /* one datablock per marker kind: y (rule index, offset per source), d, lo, hi */
            int nk = vs.nsrc + 1;
            fputs("  plot ", f.body);
            int first = 1;
            for (int s = 0; s < nk; s++) {
                int b = fig_block(&f), rowsin = 0;
                fprintf(f.data, "# %s eps %s: %s, per rule: y d lo hi\n", group, r0->eps_text, s < vs.nsrc ? vs.src[s] : "worst case");
                for (int j = 0; j < nr; j++) {
                    const VerdictRow *r = &vs.rows[rows[j]];
                    const VerdictDelta *d = s < vs.nsrc ? &r->by_src[s] : &r->worst_d;
                    if (!d->S) continue;
                    double off = nk > 1 ? -0.3 + 0.6 * s / (nk - 1) : 0;
                    fprintf(f.data, "%.4f %.6g %.6g %.6g  # %s\n", j + off, d->d, d->lo, d->hi, r->rule);
                    rowsin++;
                }
                fig_block_end(&f);
                if (!rowsin) continue;
                fprintf(f.body, "%s$d%d using 2:1:3:4 with xerrorbars lt %d notitle", first ? "" : ", \\\n       ", b,
                        s < vs.nsrc ? fig_src_linetype(vs.src[s]) : 16);
                first = 0;
            }
            if (first) fputs("NaN notitle", f.body);
            fputs("\n", f.body);
        }
        /* legend: one point per marker kind */
        fputs("  unset title\n  unset xlabel\n  unset ylabel\n  unset border\n  unset tics\n  unset grid\n  unset arrow\n"
              "  set xrange [0:1]\n  set yrange [0:1]\n  set key center center vertical Left reverse box opaque spacing 1.4\n  plot ",
              f.body);
        for (int s = 0; s <= vs.nsrc; s++) {
            char lab[120];
            snprintf(lab, sizeof lab, "%s", s < vs.nsrc ? vs.src[s] : "worst case (every attack and source)");
            fprintf(f.body, "%sNaN with points lt %d title ", s ? ", \\\n       " : "", s < vs.nsrc ? fig_src_linetype(vs.src[s]) : 16);
            gp_str(f.body, lab);
        }
        fputs(", \\\n       NaN with lines lc rgb \"#555555\" dt 2 lw 1 title \"no difference\"\n", f.body);
        char title[600];
        snprintf(title, sizeof title, "%s: does the rule make the network more robust than BP? (%d seed%s, paired by seed)\n"
                 "marker: rule minus BP per gradient source; bar: 95%% bootstrap interval over seeds and examples; label: the verdict",
                 group, S, S == 1 ? "" : "s");
        rc = fig_finish(fs, &f, title);
    }
    verdict_set_free(&vs);
    return rc;
}
