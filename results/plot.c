/* plot.c -- gnuplot figures (see plot.h): plot_all, and the figures drawn from SQL rows (training curves,
 * alignment, hashing mAP) and the transfer heatmap. The robust-accuracy and verdict figures are in
 * plot_robust.c, the machinery they share in figure.c. */
#define _POSIX_C_SOURCE 200809L
#include "results/plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/figure.h"
#include "results/plot_robust.h"

/* ---- line figures from SQL rows (group, panel, series, x, y, band half-width) ---- */

/* Rows of (group, panel, series, x, y, e) into panels per group, then one figure per group. */
typedef struct LSpec {
    const char *base, *title, *xlabel, *ylabel, *band;
    int int_x, fit_y, sd_band;  /* sd_band: e is a ± sd half-width drawn as the band */
} LSpec;

static int sql_line_figures(Figs *fs, const char *sql, const LSpec *ls, const char *what) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    char group[200] = "";
    Pans ps = {0};
    int rc = 0, rows = 0, step;
    for (;;) {
        step = sqlite3_step(st);
        int have = step == SQLITE_ROW;
        char g[200] = "";
        if (have) fig_group(st, 0, g, sizeof g);
        if (ps.n && (!have || !str_eq(g, group))) {
            char name[256], title[500];
            fig_name(fs, ls->base, group, name, sizeof name);
            snprintf(title, sizeof title, "%s: %s", group, ls->title);
            rc = line_figure(fs, name, title, &ps, ls->band, 2);
            pans_free(&ps);
            if (rc < 0) break;
        }
        if (!have) break;
        if (sqlite3_column_type(st, 5) == SQLITE_NULL) continue;
        rows++;
        snprintf(group, sizeof group, "%s", g);
        const char *panel = fig_txt(st, 2);
        Pan *p = ps.n && str_eq(ps.p[ps.n - 1].title, panel) ? &ps.p[ps.n - 1] : NULL;
        if (!p) {
            p = pans_add(&ps, panel);
            snprintf(p->xlabel, sizeof p->xlabel, "%s", ls->xlabel);
            snprintf(p->ylabel, sizeof p->ylabel, "%s", ls->ylabel);
            p->int_x = ls->int_x;
            if (!ls->fit_y) { p->ylo = -4; p->yhi = 104; }
        }
        const char *series = fig_txt(st, 3);
        Ser *s = pan_series(p, series, plot_rule_linetype(series));
        double x = sqlite3_column_double(st, 4), y = sqlite3_column_double(st, 5);
        double e = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6);
        if (ls->sd_band && isfinite(e)) ser_add(s, x, y, y - e, y + e);
        else ser_add(s, x, y, NAN, NAN);
        if (!ls->int_x) pan_tick(p, x, fig_txt(st, 7));
    }
    if (rc == 0 && step != SQLITE_DONE) rc = err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    sqlite3_finalize(st);
    pans_free(&ps);
    if (rc == 0 && !rows) fprintf(stderr, "plot: no %s in %s; skipping %s\n", what, db_path(fs->db), ls->base);
    return rc;
}

/* Hashing: the attacked queries' mAP vs eps, one line per rule, a panel per attack × source × bits. */
static int fig_hash(Figs *fs) {
    static const char sql[] =
        "SELECT dataset, model, attack_label || ' (' || source_label || '), ' || coalesce(bits, '?') || ' bits', rule, eps,"
        " avg(100.0 * map_adv), CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(10000.0 * map_adv * map_adv)"
        " - count(*) * avg(100.0 * map_adv) * avg(100.0 * map_adv)) / (count(*) - 1))) END, min(eps_text)"
        " FROM eval_view WHERE task = 'hash' AND map_adv IS NOT NULL"
        " GROUP BY dataset, model, bits, attack_label, source_label, rule, eps"
        " ORDER BY dataset, model, bits, attack_label,"
        " CASE WHEN grad_source = 'true' THEN 0 WHEN grad_source = 'feedback' THEN 1 ELSE 2 END, source_label, " RULE_ORDER ", eps";
    static const LSpec ls = {"hash_map_eps", "mAP of the attacked queries vs eps, mean over seeds; shaded: ± sd over seeds",
                             "eps", "mAP (%)", "± sd over seeds", 0, 0, 1};
    return sql_line_figures(fs, sql, &ls, "hashing evals");
}

static int fig_training(Figs *fs) {
    static const char sql[] =
        "SELECT dataset, model, panel, rule, epoch, y, NULL, '' FROM ("
        " SELECT r.dataset, r.model, r.kind, r.task, r.rule AS rule, 0 AS pk,"
        "  CASE r.kind WHEN 'train' THEN 'pre-training' ELSE 'fine-tuning' END"
        "   || CASE WHEN r.task = 'hash' THEN ' (hash)' ELSE '' END || ': training accuracy' AS panel,"
        "  e.epoch AS epoch, avg(100.0 * e.train_acc) AS y"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch"
        " UNION ALL"
        " SELECT r.dataset, r.model, r.kind, r.task, r.rule, 1,"
        "  CASE r.kind WHEN 'train' THEN 'pre-training' ELSE 'fine-tuning' END"
        "   || CASE WHEN r.task = 'hash' THEN ' (hash): validation mAP' ELSE ': validation accuracy' END,"
        "  e.epoch, avg(100.0 * e.val_acc)"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch)"
        " WHERE y IS NOT NULL"
        " ORDER BY CASE WHEN instr(dataset, '[') > 0 THEN substr(dataset, 1, instr(dataset, '[') - 1) ELSE dataset END, model,"
        " kind DESC, task, pk, " RULE_ORDER ", epoch";
    static const LSpec ls = {"training", "accuracy vs epoch (mean over seeds)", "epoch", "accuracy (%)", NULL, 1, 1, 0};
    return sql_line_figures(fs, sql, &ls, "epoch rows");
}

/* Alignment: per layer, angle(B, W) and the angle between the delivered and the true BP error, per rule.
 * BP (0 by definition) is not drawn; a panel whose every value is 0 (the classifier's error, which every
 * rule delivers exactly) is left out and named in the title; one y range per quantity. */
static int fig_alignment(Figs *fs) {
    long nlayers = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), "SELECT COUNT(DISTINCT layer) FROM alignment a JOIN runs r ON r.id = a.run_id"
                           " WHERE r.rule <> 'bp'", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        nlayers = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (nlayers == 0) {
        fprintf(stderr, "plot: no alignment rows of a rule other than BP in %s; skipping alignment\n", db_path(fs->db));
        return 0;
    }
    const char *layer = nlayers <= 6 ? "a.layer" : "'mean over layers'";
    const char *lkey = nlayers <= 6 ? "lo.k" : "0";
    char sql[4096];
    snprintf(sql, sizeof sql,
             "WITH lo AS (SELECT layer, min(rowid) AS k FROM alignment GROUP BY layer),"
             " m AS (SELECT r.dataset, r.model, " KIND_TASK " AS kind, r.rule AS rule, %s AS lk, %s AS lname, a.epoch,"
             "  avg(a.angle_bw) AS bw, avg(a.grad_angle) AS ga"
             "  FROM alignment a JOIN runs r ON r.id = a.run_id JOIN lo ON lo.layer = a.layer WHERE r.rule <> 'bp'"
             "  GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, lname, a.epoch)"
             " SELECT dataset, model, kind, lk, pk, lname, rule, epoch, y FROM ("
             "  SELECT dataset, model, kind, lk, 0 AS pk, lname, rule, epoch, bw AS y FROM m"
             "  UNION ALL SELECT dataset, model, kind, lk, 1, lname, rule, epoch, ga FROM m)"
             " WHERE y IS NOT NULL"
             " ORDER BY CASE WHEN instr(dataset, '[') > 0 THEN substr(dataset, 1, instr(dataset, '[') - 1) ELSE dataset END,"
             " model, kind DESC, lk, pk, " RULE_ORDER ", epoch",
             lkey, layer);
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    char group[200] = "", zero[600] = "";
    Pans ps = {0};
    int rc = 0, step, kinds = 0;
    char kind0[48] = "";
    for (;;) {
        step = sqlite3_step(st);
        int have = step == SQLITE_ROW;
        char g[200] = "";
        if (have) fig_group(st, 0, g, sizeof g);
        if (ps.n && (!have || !str_eq(g, group))) {
            /* leave out the panels whose every value is 0 */
            int k = 0;
            for (int i = 0; i < ps.n; i++) {
                double mx = 0;
                for (int s = 0; s < ps.p[i].ns; s++)
                    for (int j = 0; j < ps.p[i].s[s].n; j++) mx = fmax(mx, fabs(ps.p[i].s[s].v[j].y));
                if (mx < 1e-6) {
                    size_t l = strlen(zero);
                    snprintf(zero + l, sizeof zero - l, "%s%s", l ? ", " : "", ps.p[i].title);
                    for (int s = 0; s < ps.p[i].ns; s++) free(ps.p[i].s[s].v);
                    free(ps.p[i].s);
                    continue;
                }
                ps.p[k++] = ps.p[i];
            }
            ps.n = k;
            char name[256], title[1200];
            fig_name(fs, "alignment", group, name, sizeof name);
            snprintf(title, sizeof title, "%s: alignment with BP vs epoch (degrees, mean over seeds; BP is 0 by definition)%s%s%s",
                     group, zero[0] ? "\nidentical to BP's (0 throughout), not drawn: " : "", zero, "");
            if (ps.n) rc = line_figure(fs, name, title, &ps, NULL, -2); /* a row per layer: B-W angle | error angle */
            pans_free(&ps);
            zero[0] = 0;
            if (rc < 0) break;
        }
        if (!have) break;
        snprintf(group, sizeof group, "%s", g);
        const char *kind = fig_txt(st, 2);
        if (!kind0[0]) snprintf(kind0, sizeof kind0, "%s", kind);
        kinds |= !str_eq(kind, kind0);
        int pk = sqlite3_column_int(st, 4);
        char panel[200];
        snprintf(panel, sizeof panel, "%s%s%s: %s", kinds ? kind : "", kinds ? ", " : "", fig_txt(st, 5),
                 pk ? "angle(delta, BP delta)" : "angle(B, W)");
        Pan *p = NULL;
        for (int i = 0; i < ps.n && !p; i++)
            if (str_eq(ps.p[i].title, panel)) p = &ps.p[i];
        if (!p) {
            p = pans_add(&ps, panel);
            snprintf(p->xlabel, sizeof p->xlabel, "epoch");
            snprintf(p->ylabel, sizeof p->ylabel, "degrees");
            p->int_x = 1;
            p->yshare = -1 - pk; /* one range per quantity, over the layers */
        }
        const char *rule = fig_txt(st, 6);
        ser_add(pan_series(p, rule, plot_rule_linetype(rule)), sqlite3_column_double(st, 7), sqlite3_column_double(st, 8), NAN, NAN);
    }
    if (rc == 0 && step != SQLITE_DONE) rc = err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    sqlite3_finalize(st);
    pans_free(&ps);
    return rc;
}

/* Transfer matrix: y = surrogate rule, x = attacked rule, colour = robust accuracy, a panel per attack ×
 * eps. With a single surrogate a heatmap is one row: the report's transfer table shows it instead. */
static int fig_transfer(Figs *fs) {
    static const char sql[] =
        "SELECT attack_label || ', eps ' || eps_text, coalesce(source_rule, '?'), rule, avg(100.0 * robust_acc),"
        " dataset, model"
        " FROM eval_view WHERE grad_source = 'transfer' AND attack <> 'square' AND robust_acc IS NOT NULL AND eps > 0"
        " GROUP BY dataset, model, attack_label, eps_text, source_rule, rule"
        " ORDER BY dataset, model, CASE attack WHEN 'fgsm' THEN 0 WHEN 'pgd' THEN 1 ELSE 2 END, attack_label, eps, eps_text";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    typedef struct TPt { char panel[120], src[32], dst[32], group[200]; double acc; } TPt;
    TPt *v = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof(TPt) * (size_t)cap); CHECK(v); }
        TPt *t = &v[n++];
        snprintf(t->panel, sizeof t->panel, "%s", fig_txt(st, 0));
        snprintf(t->src, sizeof t->src, "%s", fig_txt(st, 1));
        snprintf(t->dst, sizeof t->dst, "%s", fig_txt(st, 2));
        t->acc = sqlite3_column_double(st, 3);
        fig_group(st, 4, t->group, sizeof t->group);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { free(v); return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db))); }
    if (!n) {
        fprintf(stderr, "plot: no transfer evals in %s; skipping transfer\n", db_path(fs->db));
        return 0;
    }
    rc = 0;
    for (int g0 = 0; g0 < n && rc == 0;) {
        int g1 = g0;
        while (g1 < n && str_eq(v[g1].group, v[g0].group)) g1++;
        /* axes: surrogate rules (y) and attacked rules (x), each in the fixed rule order */
        const char *xs_axis[64], *ys_axis[64];
        int nx = 0, ny = 0;
        for (int i = g0; i < g1; i++) {
            int sx = 0, sy = 0;
            for (int k = 0; k < nx; k++) sx |= str_eq(xs_axis[k], v[i].dst);
            for (int k = 0; k < ny; k++) sy |= str_eq(ys_axis[k], v[i].src);
            if (!sx && nx < (int)ARRAY_LEN(xs_axis)) xs_axis[nx++] = v[i].dst;
            if (!sy && ny < (int)ARRAY_LEN(ys_axis)) ys_axis[ny++] = v[i].src;
        }
        if (ny < 2) {
            fprintf(stderr, "plot: %s: one transfer surrogate (%s); its numbers are the report's transfer table, not a heatmap\n",
                    v[g0].group, ys_axis[0]);
            g0 = g1;
            continue;
        }
        const char **axes[2] = {xs_axis, ys_axis};
        int na[2] = {nx, ny};
        for (int ax = 0; ax < 2; ax++)
            for (int a = 1; a < na[ax]; a++)
                for (int b = a; b > 0 && fig_rule_rank(axes[ax][b]) < fig_rule_rank(axes[ax][b - 1]); b--) {
                    const char *t = axes[ax][b]; axes[ax][b] = axes[ax][b - 1]; axes[ax][b - 1] = t;
                }
        int npanels = 0;
        for (int i = g0; i < g1; i++) {
            int seen = 0;
            for (int k = g0; k < i && !seen; k++) seen = str_eq(v[k].panel, v[i].panel);
            npanels += !seen;
        }
        Fig f;
        char name[256];
        fig_name(fs, "transfer", v[g0].group, name, sizeof name);
        fig_begin(&f, name, npanels, 3, 440, 140 + 60 * ny, 1);
        fputs("  set palette defined (0 \"#440154\", 0.5 \"#21908C\", 1 \"#FDE725\")\n  set cbrange [0:100]\n"
              "  set cblabel \"robust accuracy (%)\"\n  unset key\n  set xlabel \"attacked model (rule)\"\n"
              "  set ylabel \"surrogate model (rule)\"\n", f.body);
        for (int ax = 0; ax < 2; ax++) {
            fprintf(f.body, "  set %ctics (", ax ? 'y' : 'x');
            for (int k = 0; k < na[ax]; k++) { fprintf(f.body, "%s", k ? ", " : ""); gp_str(f.body, axes[ax][k]); fprintf(f.body, " %d", k); }
            fprintf(f.body, ")\n  set %crange [-0.5:%d.5]\n", ax ? 'y' : 'x', na[ax] - 1);
        }
        fputs("  set grid noxtics noytics\n", f.body);
        int *done = xcalloc((size_t)n, sizeof(int));
        for (int i = g0; i < g1; i++) {
            if (done[i]) continue;
            int b = fig_block(&f);
            fprintf(f.data, "# %s: target_index source_index robust_acc_pct\n", v[i].panel);
            for (int j = i; j < g1; j++) {
                if (!str_eq(v[j].panel, v[i].panel)) continue;
                done[j] = 1;
                int xs = 0, ys = 0;
                for (int k = 0; k < nx; k++) if (str_eq(xs_axis[k], v[j].dst)) xs = k;
                for (int k = 0; k < ny; k++) if (str_eq(ys_axis[k], v[j].src)) ys = k;
                fprintf(f.data, "%d %d %.4f\n", xs, ys, v[j].acc);
            }
            fig_block_end(&f);
            /* cell labels: black on the light end of the palette, white on the dark end */
            fputs("  set title ", f.body);
            gp_str(f.body, v[i].panel);
            fprintf(f.body, "\n  plot $d%d using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder lc palette, \\\n"
                            "       $d%d using 1:2:(sprintf(\"%%.1f\", $3)):($3 > 50 ? 0 : 0xffffff) with labels tc rgb variable font \",8\"\n",
                    b, b);
        }
        free(done);
        char title[400];
        snprintf(title, sizeof title, "%s: transfer attacks, robust accuracy (%%) by surrogate and target (mean over seeds)", v[g0].group);
        rc = fig_finish(fs, &f, title);
        g0 = g1;
    }
    free(v);
    return rc;
}

int plot_all(Db *db, const PlotOpts *o, int *nfigures) {
    CHECK(db && o && o->out_dir);
    if (nfigures) *nfigures = 0;
    Figs fs = {o, db, "", 0, 0};
    if (gnuplot_find(o->gnuplot, fs.gp, sizeof fs.gp) < 0) return -1;
    if (dir_create(o->out_dir) < 0) return -1;
    fs.multi = fig_count_groups(db) > 1;
    int (*const figs[])(Figs *) = {fig_verdict, fig_robust, fig_training, fig_alignment, fig_transfer, fig_hash};
    for (size_t i = 0; i < ARRAY_LEN(figs); i++)
        if (figs[i](&fs) < 0) return -1;
    if (nfigures) *nfigures = fs.drawn;
    if (!fs.drawn) fprintf(stderr, "plot: nothing to draw in %s\n", db_path(db));
    return 0;
}
