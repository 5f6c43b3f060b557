/* plot.c -- gnuplot figures and the markdown report (see plot.h).
 *
 * Each figure is built as text: a header fixing the rule styles, the data as inline datablocks, then one
 * loop that renders the same multiplot to PNG and to PDF. The script is written next to the images and
 * gnuplot is run on that very file (cwd = the output directory, outbase set to a temporary name with -e),
 * so the shipped .gp is exactly what produced the images.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/plot.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"
#include "results/query.h"
#include "results/verdict.h"

/* ---- rule styles: Okabe & Ito (2008) colour-blind-safe palette, one colour + dash per rule ---- */

typedef struct RuleStyle { const char *rule, *color, *dash; int point; } RuleStyle;
static const RuleStyle k_styles[] = {
    {"bp", "#000000", "1", 7},  {"fa", "#E69F00", "2", 5},   {"dfa", "#56B4E9", "3", 9},
    {"usf", "#009E73", "4", 11}, {"brsf", "#0072B2", "5", 13}, {"frsf", "#D55E00", "(10,4,3,4,3,4)", 4},
    {"other", "#CC79A7", "(2,2)", 6},
};

int plot_rule_linetype(const char *rule) {
    for (int i = 0; i < (int)ARRAY_LEN(k_styles) - 1; i++)
        if (str_eq(rule, k_styles[i].rule)) return i + 1;
    return (int)ARRAY_LEN(k_styles);
}

/* ---- small helpers ---- */

/* A gnuplot double-quoted string literal. */
static void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('"', f);
}

/* A file-name-safe copy: runs of other characters become one '_' ("a / b" -> "a_b"). */
static void sanitize(const char *in, char *out, size_t n) {
    size_t k = 0;
    for (; *in && k + 1 < n; in++) {
        int ok = isalnum((unsigned char)*in) || *in == '.' || *in == '-';
        if (ok) out[k++] = *in;
        else if (k == 0 || out[k - 1] != '_') out[k++] = '_';
    }
    out[k] = 0;
}

/* Resolves the gnuplot executable into out; -1 with the one-line install hint when there is none. */
static int gnuplot_find(const char *want, char *out, size_t n) {
    if (!want) {
        const char *e = getenv("CONCORD_GNUPLOT");
        want = e && *e ? e : "gnuplot";
    }
    if (strchr(want, '/')) {
        if (access(want, X_OK) == 0) { snprintf(out, n, "%s", want); return 0; }
        return err_set("gnuplot not found at %s; install gnuplot-nox (scripts/deps.sh does)", want);
    }
    const char *path = getenv("PATH");
    if (path) {
        char dirs[4096];
        snprintf(dirs, sizeof dirs, "%s", path);
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(out, n, "%s/%s", *d ? d : ".", want);
            if (access(out, X_OK) == 0) return 0;
        }
    }
    return err_set("gnuplot not found; install gnuplot-nox (scripts/deps.sh does)");
}

/* Runs `gp -e "outbase='tmpbase'" script` in dir; gnuplot's messages end up in the error on failure. */
static int gnuplot_run(const char *gp, const char *dir, const char *script, const char *tmpbase) {
    int pfd[2];
    if (pipe(pfd) != 0) return err_set("plot: cannot create a pipe: %s", strerror(errno));
    char setvar[600];
    snprintf(setvar, sizeof setvar, "outbase='%s'", tmpbase);
    pid_t pid = fork();
    if (pid < 0) { close(pfd[0]); close(pfd[1]); return err_set("plot: cannot fork gnuplot: %s", strerror(errno)); }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        if (chdir(dir) != 0) _exit(126);
        execl(gp, gp, "-e", setvar, script, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char msg[2048];
    size_t k = 0;
    ssize_t r;
    char buf[1024];
    while ((r = read(pfd[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r && k + 1 < sizeof msg; i++) msg[k++] = buf[i] == '\n' ? ' ' : buf[i];
    msg[k] = 0;
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return err_set("%s/%s: gnuplot failed (status %d): %.400s", dir, script, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                       k ? msg : "no message");
    return 0;
}

/* ---- a figure under construction ---- */

typedef struct Fig {
    char name[256];    /* file base name */
    int rows, cols, width, height;
    FILE *data, *body; /* datablocks, and the plot commands run once per terminal */
    char *data_s, *body_s;
    size_t data_n, body_n;
    int nblocks;
} Fig;

static void fig_begin(Fig *f, const char *name, int npanels, int max_cols, int pw, int ph) {
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->cols = npanels < max_cols ? npanels : max_cols;
    if (f->cols < 1) f->cols = 1;
    f->rows = (npanels + f->cols - 1) / f->cols;
    if (f->rows < 1) f->rows = 1;
    f->width = pw * f->cols;
    f->height = ph * f->rows + 40;
    f->data = open_memstream(&f->data_s, &f->data_n);
    f->body = open_memstream(&f->body_s, &f->body_n);
    CHECK(f->data && f->body);
}

/* Starts a new datablock; returns its number (the caller writes lines to f->data, then fig_block_end). */
static int fig_block(Fig *f) {
    fprintf(f->data, "$d%d << EOD\n", ++f->nblocks);
    return f->nblocks;
}
static void fig_block_end(Fig *f) { fputs("EOD\n", f->data); }

typedef struct Figs { const PlotOpts *o; Db *db; char gp[1024]; int drawn; } Figs;

/* Writes NAME.gp, runs gnuplot on it, renames the images into place, records them as artifacts. */
static int fig_finish(Figs *fs, Fig *f, const char *title) {
    fclose(f->data);
    fclose(f->body);
    const char *dir = fs->o->out_dir;
    char path[1400], tmp[1500];
    snprintf(path, sizeof path, "%s/%s.gp", dir, f->name);
    tmp_path(path, tmp, sizeof tmp);
    FILE *g = fopen(tmp, "w");
    int rc = 0;
    if (!g) { rc = err_set("%s: cannot write: %s", tmp, strerror(errno)); goto done; }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fprintf(g, "# %s.gp -- written by `concord plot` from %s on %s.\n", f->name, db_path(fs->db), when);
    fprintf(g, "# Self-contained: `gnuplot %s.gp` in this directory re-renders %s.png and %s.pdf.\n", f->name,
            f->name, f->name);
    fprintf(g, "if (!exists(\"outbase\")) outbase = \"%s\"\n", f->name);
    fputs("# one colour (Okabe-Ito) and dash per rule, the same in every figure\n", g);
    for (size_t i = 0; i < ARRAY_LEN(k_styles); i++)
        fprintf(g, "set linetype %zu lc rgb \"%s\" dt %s pt %d ps 0.8 lw 2  # %s\n", i + 1, k_styles[i].color,
                k_styles[i].dash, k_styles[i].point, k_styles[i].rule);
    fputs("set grid lc rgb \"#dddddd\"\nset key noenhanced\n\n", g);
    fwrite(f->data_s, 1, f->data_n, g);
    fprintf(g, "\ndo for [fmt in \"png pdf\"] {\n"
               "  if (fmt eq \"png\") {\n"
               "    set terminal pngcairo noenhanced size %d,%d font \"sans,9\"\n"
               "  } else {\n"
               "    set terminal pdfcairo noenhanced size %.2fin,%.2fin font \"sans,7\"\n"
               "  }\n"
               "  set output outbase.\".\".fmt\n"
               "  set multiplot layout %d,%d title ",
            f->width, f->height, f->width / 100.0, f->height / 100.0, f->rows, f->cols);
    gp_str(g, title);
    fputs("\n", g);
    fwrite(f->body_s, 1, f->body_n, g);
    fputs("  unset multiplot\n  set output\n}\n", g);
    if (fclose(g) != 0) { rc = err_set("%s: write failed (disk full?)", tmp); goto done; }
    if ((rc = file_commit(tmp, path)) < 0) goto done;
    char script[300], tmpbase[300];
    snprintf(script, sizeof script, "%s.gp", f->name);
    snprintf(tmpbase, sizeof tmpbase, "%s.tmp.%ld", f->name, (long)getpid());
    if ((rc = gnuplot_run(fs->gp, dir, script, tmpbase)) < 0) goto done;
    static const char *const ext[] = {"png", "pdf"};
    for (size_t i = 0; i < ARRAY_LEN(ext); i++) {
        char from[1400], to[1400];
        snprintf(from, sizeof from, "%s/%s.%s", dir, tmpbase, ext[i]);
        snprintf(to, sizeof to, "%s/%s.%s", dir, f->name, ext[i]);
        if ((rc = file_commit(from, to)) < 0) goto done;
        if (!fs->o->quiet) fprintf(stderr, "plot: wrote %s\n", to);
    }
    fs->drawn++;
done:
    free(f->data_s);
    free(f->body_s);
    return rc;
}

/* ---- line figures: rows of (group, panel, series=rule, x, y, err) sorted by group, panel, rule, x ---- */

typedef struct Pt { char group[200], panel[160], rule[32]; double x, y, e; } Pt;
typedef struct Pts { Pt *v; int n, cap; } Pts;

static int pts_load(Db *db, const char *sql, Pts *p) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 4) == SQLITE_NULL || sqlite3_column_type(st, 3) == SQLITE_NULL) continue;
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 128;
            p->v = realloc(p->v, sizeof(Pt) * (size_t)p->cap);
            CHECK(p->v);
        }
        Pt *t = &p->v[p->n++];
        const char *s;
        snprintf(t->group, sizeof t->group, "%s", (s = (const char *)sqlite3_column_text(st, 0)) ? s : "?");
        snprintf(t->panel, sizeof t->panel, "%s", (s = (const char *)sqlite3_column_text(st, 1)) ? s : "?");
        snprintf(t->rule, sizeof t->rule, "%s", (s = (const char *)sqlite3_column_text(st, 2)) ? s : "?");
        t->x = sqlite3_column_double(st, 3);
        t->y = sqlite3_column_double(st, 4);
        t->e = sqlite3_column_type(st, 5) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 5);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return err_set("%s: plot query failed: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
    return 0;
}

static int count_groups(const Pts *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++)
        if (i == 0 || !str_eq(p->v[i].group, p->v[i - 1].group)) n++;
    return n;
}

typedef struct LineSpec {
    const char *base, *what, *xlabel, *ylabel, *yrange; /* yrange "[0:100]" or "[0:*]" */
    int errbars, int_x, max_cols; /* int_x: integer x (epochs) gets integer tics */
    const char *key;              /* legend position where curves rarely go */
} LineSpec;

static int line_figures(Figs *fs, const Pts *p, const LineSpec *ls) {
    int ngroups = count_groups(p);
    for (int g0 = 0; g0 < p->n;) {
        int g1 = g0;
        while (g1 < p->n && str_eq(p->v[g1].group, p->v[g0].group)) g1++;
        int npanels = 0;
        for (int i = g0; i < g1; i++)
            if (i == g0 || !str_eq(p->v[i].panel, p->v[i - 1].panel)) npanels++;
        char name[256], gs[200];
        sanitize(p->v[g0].group, gs, sizeof gs);
        if (ngroups > 1) snprintf(name, sizeof name, "%s-%s", ls->base, gs);
        else snprintf(name, sizeof name, "%s", ls->base);
        /* one x range for every panel of the figure, so panels line up */
        double xlo = p->v[g0].x, xhi = p->v[g0].x;
        for (int i = g0; i < g1; i++) {
            if (p->v[i].x < xlo) xlo = p->v[i].x;
            if (p->v[i].x > xhi) xhi = p->v[i].x;
        }
        double pad = xhi > xlo ? 0.03 * (xhi - xlo) : (xlo != 0 ? 0.1 * fabs(xlo) : 0.5);
        Fig f;
        fig_begin(&f, name, npanels, ls->max_cols, 440, 340);
        fprintf(f.body, "  set xrange [%.9g:%.9g]\n", xlo - pad, xhi + pad);
        if (ls->int_x) fprintf(f.body, "  set xtics %d\n", xhi - xlo > 10 ? (int)ceil((xhi - xlo) / 10) : 1);
        for (int p0 = g0; p0 < g1;) {
            int p1 = p0;
            while (p1 < g1 && str_eq(p->v[p1].panel, p->v[p0].panel)) p1++;
            fputs("  set title ", f.body);
            gp_str(f.body, p->v[p0].panel);
            fprintf(f.body, "\n  set xlabel \"%s\"\n  set ylabel \"%s\"\n  set yrange %s\n  set key %s box opaque\n",
                    ls->xlabel, ls->ylabel, ls->yrange, ls->key);
            fputs("  plot ", f.body);
            int first = 1;
            for (int s0 = p0; s0 < p1;) {
                int s1 = s0;
                while (s1 < p1 && str_eq(p->v[s1].rule, p->v[s0].rule)) s1++;
                int b = fig_block(&f);
                fprintf(f.data, "# %s | %s | %s\n", p->v[s0].group, p->v[s0].panel, p->v[s0].rule);
                for (int i = s0; i < s1; i++) fprintf(f.data, "%.9g %.9g %.9g\n", p->v[i].x, p->v[i].y, p->v[i].e);
                fig_block_end(&f);
                fprintf(f.body, "%s$d%d using 1:2%s with %s lt %d title ", first ? "" : ", \\\n       ", b,
                        ls->errbars ? ":3" : "", ls->errbars ? "yerrorlines" : "linespoints",
                        plot_rule_linetype(p->v[s0].rule));
                gp_str(f.body, p->v[s0].rule);
                first = 0;
                s0 = s1;
            }
            fputs("\n", f.body);
            p0 = p1;
        }
        char title[400];
        snprintf(title, sizeof title, "%s: %s", p->v[g0].group, ls->what);
        if (fig_finish(fs, &f, title) < 0) return -1;
        g0 = g1;
    }
    return 0;
}

/* Loads the points `sql` selects and draws them as ls; no rows: a note on stderr and no figure. */
static int sql_line_figures(Figs *fs, const char *sql, const LineSpec *ls, const char *what) {
    Pts p = {0};
    int rc = pts_load(fs->db, sql, &p);
    if (rc == 0 && p.n == 0) fprintf(stderr, "plot: no %s in %s; skipping %s\n", what, db_path(fs->db), ls->base);
    if (rc == 0 && p.n) rc = line_figures(fs, &p, ls);
    free(p.v);
    return rc;
}

#define RULE_ORDER "CASE rule WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2 WHEN 'usf' THEN 3" \
                   " WHEN 'brsf' THEN 4 WHEN 'frsf' THEN 5 ELSE 6 END, rule"
#define GROUP_EXPR(d, m, k) d " || ' / ' || " m " || ' / ' || coalesce(" k ", '?')"
/* a run's kind, with hashing runs kept apart from classification ones: "finetune (hash)" */
#define KIND_TASK "(r.kind || CASE WHEN r.task = 'hash' THEN ' (hash)' ELSE '' END)"

static int fig_robust(Figs *fs) {
    static const char sql[] =
        "SELECT " GROUP_EXPR("dataset", "model", "kind") ", attack_label || ' (' || source_label || ')', rule, eps,"
        " avg(100.0 * robust_acc), CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(10000.0 * robust_acc * robust_acc)"
        " - count(*) * avg(100.0 * robust_acc) * avg(100.0 * robust_acc)) / (count(*) - 1))) END"
        " FROM eval_view WHERE robust_acc IS NOT NULL"
        " GROUP BY dataset, model, kind, attack_label, source_label, rule, eps"
        " ORDER BY dataset, model, kind, CASE attack WHEN 'fgsm' THEN 0 WHEN 'pgd' THEN 1 ELSE 2 END, attack_label,"
        " CASE WHEN attack = 'square' THEN 3 WHEN grad_source = 'true' THEN 0 WHEN grad_source = 'feedback' THEN 1"
        " ELSE 2 END, source_label, " RULE_ORDER ", eps";
    static const LineSpec ls = {"robust_eps", "robust accuracy vs eps (mean ± sd over seeds)", "eps", "robust accuracy (%)",
                                "[0:100]", 1, 0, 3, "bottom left"};
    return sql_line_figures(fs, sql, &ls, "evals");
}

/* Hashing: the attacked queries' mAP vs eps, one line per rule, a panel per attack × source. */
static int fig_hash(Figs *fs) {
    static const char sql[] =
        "SELECT " GROUP_EXPR("dataset", "model", "kind") " || ' / ' || coalesce(bits, '?') || ' bits',"
        " attack_label || ' (' || source_label || ')', rule, eps, avg(100.0 * map_adv),"
        " CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(10000.0 * map_adv * map_adv)"
        " - count(*) * avg(100.0 * map_adv) * avg(100.0 * map_adv)) / (count(*) - 1))) END"
        " FROM eval_view WHERE task = 'hash' AND map_adv IS NOT NULL"
        " GROUP BY dataset, model, kind, bits, attack_label, source_label, rule, eps"
        " ORDER BY dataset, model, kind, bits, attack_label,"
        " CASE WHEN grad_source = 'true' THEN 0 WHEN grad_source = 'feedback' THEN 1 ELSE 2 END, source_label, " RULE_ORDER ", eps";
    static const LineSpec ls = {"hash_map_eps", "mAP of attacked queries vs eps (mean ± sd over seeds)", "eps", "mAP (%)",
                                "[0:100]", 1, 0, 3, "bottom left"};
    return sql_line_figures(fs, sql, &ls, "hashing evals");
}

static int fig_training(Figs *fs) {
    static const char sql[] =
        "SELECT g, panel, rule, epoch, y, NULL FROM ("
        " SELECT " GROUP_EXPR("r.dataset", "r.model", KIND_TASK) " AS g, r.dataset, r.model, " KIND_TASK " AS kind,"
        "  r.rule AS rule, 0 AS pk, 'training accuracy' AS panel, e.epoch AS epoch, avg(100.0 * e.train_acc) AS y"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch"
        " UNION ALL"
        " SELECT " GROUP_EXPR("r.dataset", "r.model", KIND_TASK) ", r.dataset, r.model, " KIND_TASK ", r.rule,"
        "  1, CASE WHEN r.task = 'hash' THEN 'validation mAP' ELSE 'validation accuracy' END, e.epoch, avg(100.0 * e.val_acc)"
        "  FROM epochs e JOIN runs r ON r.id = e.run_id GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, e.epoch)"
        " WHERE y IS NOT NULL ORDER BY dataset, model, kind, pk, " RULE_ORDER ", epoch";
    static const LineSpec ls = {"training", "accuracy vs epoch (mean over seeds)", "epoch", "accuracy (%)", "[0:100]", 0, 1, 2,
                                "bottom right"};
    return sql_line_figures(fs, sql, &ls, "epoch rows");
}

static int fig_alignment(Figs *fs) {
    long nlayers = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), "SELECT COUNT(DISTINCT layer) FROM alignment", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        nlayers = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (nlayers == 0) {
        fprintf(stderr, "plot: no alignment rows in %s; skipping alignment\n", db_path(fs->db));
        return 0;
    }
    /* per layer when there are few, else the mean over layers */
    const char *layer = nlayers <= 6 ? "a.layer || ': '" : "'mean over layers: '";
    const char *lkey = nlayers <= 6 ? "lo.k" : "0";
    char sql[4096];
    snprintf(sql, sizeof sql,
             "WITH lo AS (SELECT layer, min(rowid) AS k FROM alignment GROUP BY layer),"
             " m AS (SELECT r.dataset, r.model, " KIND_TASK " AS kind, r.rule AS rule, %s AS lk, %s AS lname, a.epoch,"
             "  avg(a.angle_bw) AS bw, avg(a.grad_angle) AS ga"
             "  FROM alignment a JOIN runs r ON r.id = a.run_id JOIN lo ON lo.layer = a.layer"
             "  GROUP BY r.dataset, r.model, r.kind, r.task, r.rule, lname, a.epoch)"
             " SELECT g, panel, rule, epoch, y, NULL FROM ("
             "  SELECT " GROUP_EXPR("dataset", "model", "kind") " AS g, dataset, model, kind, lk, 0 AS pk,"
             "   lname || 'angle(B, W)' AS panel, rule, epoch, bw AS y FROM m"
             "  UNION ALL"
             "  SELECT " GROUP_EXPR("dataset", "model", "kind") ", dataset, model, kind, lk, 1,"
             "   lname || 'angle(delta, BP delta)', rule, epoch, ga FROM m)"
             " WHERE y IS NOT NULL ORDER BY dataset, model, kind, lk, pk, " RULE_ORDER ", epoch",
             lkey, layer);
    Pts p = {0};
    int rc = pts_load(fs->db, sql, &p);
    if (rc == 0 && p.n) {
        LineSpec ls = {"alignment", "alignment angles vs epoch (degrees, mean over seeds)", "epoch", "degrees",
                       "[0:*]", 0, 1, 2, "top right"};
        rc = line_figures(fs, &p, &ls);
    }
    free(p.v);
    return rc;
}

/* Transfer matrix: y = surrogate rule, x = attacked rule, colour = robust accuracy, a panel per attack × eps. */
static int fig_transfer(Figs *fs) {
    static const char sql[] =
        "SELECT attack_label || ', eps ' || eps_text, coalesce(source_rule, '?'), rule, avg(100.0 * robust_acc)"
        " FROM eval_view WHERE grad_source = 'transfer' AND attack <> 'square' AND robust_acc IS NOT NULL AND eps > 0"
        " GROUP BY attack_label, eps_text, source_rule, rule"
        " ORDER BY CASE attack WHEN 'fgsm' THEN 0 WHEN 'pgd' THEN 1 ELSE 2 END, attack_label, eps, eps_text";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(fs->db), sql, -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db)));
    typedef struct TPt { char panel[120], src[32], dst[32]; double acc; } TPt;
    TPt *v = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) { cap = cap ? 2 * cap : 64; v = realloc(v, sizeof(TPt) * (size_t)cap); CHECK(v); }
        TPt *t = &v[n++];
        snprintf(t->panel, sizeof t->panel, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(t->src, sizeof t->src, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(t->dst, sizeof t->dst, "%s", (const char *)sqlite3_column_text(st, 2));
        t->acc = sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) { free(v); return err_set("%s: plot query failed: %s", db_path(fs->db), sqlite3_errmsg(db_sqlite(fs->db))); }
    if (!n) {
        fprintf(stderr, "plot: no transfer evals in %s; skipping transfer\n", db_path(fs->db));
        return 0;
    }
    /* axes: surrogate rules (y) and attacked rules (x), each in the fixed rule order */
    const char *xs_axis[64], *ys_axis[64];
    int nx = 0, ny = 0;
    for (int i = 0; i < n; i++) {
        int sx = 0, sy = 0;
        for (int k = 0; k < nx; k++) sx |= str_eq(xs_axis[k], v[i].dst);
        for (int k = 0; k < ny; k++) sy |= str_eq(ys_axis[k], v[i].src);
        if (!sx && nx < (int)ARRAY_LEN(xs_axis)) xs_axis[nx++] = v[i].dst;
        if (!sy && ny < (int)ARRAY_LEN(ys_axis)) ys_axis[ny++] = v[i].src;
    }
    const char **axes[2] = {xs_axis, ys_axis};
    int na[2] = {nx, ny};
    for (int ax = 0; ax < 2; ax++)
        for (int a = 1; a < na[ax]; a++)
            for (int b = a; b > 0 && plot_rule_linetype(axes[ax][b]) < plot_rule_linetype(axes[ax][b - 1]); b--) {
                const char *t = axes[ax][b]; axes[ax][b] = axes[ax][b - 1]; axes[ax][b - 1] = t;
            }
    int npanels = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) seen = str_eq(v[k].panel, v[i].panel);
        npanels += !seen;
    }
    Fig f;
    fig_begin(&f, "transfer", npanels, 3, 440, ny < 3 ? 300 : 140 + 60 * ny);
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
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        int b = fig_block(&f);
        fprintf(f.data, "# %s: target_index source_index robust_acc_pct\n", v[i].panel);
        for (int j = i; j < n; j++) {
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
    free(v);
    return fig_finish(fs, &f, "transfer attacks: robust accuracy (%) by surrogate and target");
}

int plot_all(Db *db, const PlotOpts *o, int *nfigures) {
    CHECK(db && o && o->out_dir);
    if (nfigures) *nfigures = 0;
    Figs fs = {o, db, "", 0};
    if (gnuplot_find(o->gnuplot, fs.gp, sizeof fs.gp) < 0) return -1;
    if (dir_create(o->out_dir) < 0) return -1;
    int (*const figs[])(Figs *) = {fig_robust, fig_training, fig_alignment, fig_transfer, fig_hash};
    for (size_t i = 0; i < ARRAY_LEN(figs); i++)
        if (figs[i](&fs) < 0) return -1;
    if (nfigures) *nfigures = fs.drawn;
    if (!fs.drawn) fprintf(stderr, "plot: nothing to draw in %s\n", db_path(db));
    return 0;
}

/* ---- markdown report ---- */

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int plot_report_md(Db *db, const char *path, const char *figdir) {
    CHECK(db && path);
    char tmp[1200];
    tmp_path(path, tmp, sizeof tmp);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) { *slash = 0; if (dir_create(dir) < 0) return -1; }
    else dir[0] = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write the report: %s", tmp, strerror(errno));
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fprintf(f, "# Concord results\n\nDatabase `%s`, report written %s.\n"
               "Accuracies in percent, mean ± sd over seeds (sd omitted for a single seed).\n\n", db_path(db), when);
    fputs("## Verdict: does the rule make the network more robust than BP?\n\n"
          "Each rule's fine-tuned models against BP's of the same seed, on the same test examples. `d_X` is the "
          "difference in robust accuracy (points, rule minus BP) under gradient source X with its 95% bootstrap "
          "interval over seeds and examples, `p_X` the exact paired test; `worst` is the per-example worst case "
          "over every attack and source. A label needs the interval to exclude 0 and p < 0.05; it holds for the "
          "rule only when the seed-level test agrees (at least 6 seeds). Method: docs/statistics.md.\n\n", f);
    int rc = query_report(db, "verdict", QF_MD, f);
    if (rc == 0) rc = verdict_methods(db, f);
    if (rc == 0) fputs("\n## Clean and robust accuracy\n\n", f);
    if (rc == 0) rc = query_report(db, "table", QF_MD, f);
    if (rc == 0) {
        fputs("## Gradient masking: gradient sources side by side\n\n"
              "Robust accuracy when the attack follows the true gradient, the rule's feedback path, or a surrogate "
              "(transfer), next to the gradient-free Square attack. A rule that looks robust only under its own "
              "feedback gradient is masking, not robust.\n\n", f);
        if (db_count(db, "evals") > 0) rc = query_report(db, "masking", QF_MD, f);
        else fputs("_No attack evaluations recorded yet._\n", f);
    }
    if (rc == 0) {
        sqlite3_stmt *st = NULL;
        int have_hash = 0;
        if (sqlite3_prepare_v2(db_sqlite(db), "SELECT EXISTS(SELECT 1 FROM evals WHERE task = 'hash')"
                               " OR EXISTS(SELECT 1 FROM runs WHERE task = 'hash')", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            have_hash = sqlite3_column_int(st, 0);
        else
            rc = err_set("%s: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
        sqlite3_finalize(st);
        if (rc == 0 && have_hash) {
            fputs("\n## Hashing retrieval: mAP under attack\n\n"
                  "mAP (percent) of the query set against the clean database codes: the run's clean mAP, then the "
                  "mAP of the attacked queries per attack, gradient source and eps (only the queries are "
                  "perturbed).\n\n", f);
            rc = query_report(db, "hash-table", QF_MD, f);
        }
    }
    if (rc == 0) {
        fputs("\n## Runs\n\n", f);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db_sqlite(db), "SELECT kind, status, COUNT(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2", -1,
                               &st, NULL) != SQLITE_OK)
            rc = err_set("%s: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
        else {
            fputs("| kind | status | runs |\n| --- | --- | ---: |\n", f);
            while (sqlite3_step(st) == SQLITE_ROW)
                fprintf(f, "| %s | %s | %lld |\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                        (long long)sqlite3_column_int64(st, 2));
            sqlite3_finalize(st);
        }
    }
    if (rc == 0 && figdir) { /* the figures of this plot call: every PNG in figdir, by name */
        DIR *d = opendir(figdir);
        int n = 0;
        char **names = NULL;
        for (struct dirent *e; d && (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".png") != 0 || strstr(e->d_name, ".tmp.")) continue;
            char **nn = realloc(names, sizeof *names * (size_t)(n + 1));
            CHECK(nn);
            names = nn;
            names[n++] = xstrdup(e->d_name);
        }
        if (d) closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_cstr);
        if (n) fputs("\n## Figures\n\n", f);
        size_t dl = strlen(dir);
        for (int i = 0; i < n; i++) {
            char p[2100];
            snprintf(p, sizeof p, "%s/%s", figdir, names[i]);
            const char *rel = dl && strncmp(p, dir, dl) == 0 && p[dl] == '/' ? p + dl + 1 : p;
            fprintf(f, "![%s](%s)\n\n", names[i], rel);
            free(names[i]);
        }
        free(names);
    }
    if (fclose(f) != 0 && rc == 0) rc = err_set("%s: write failed (disk full?)", tmp);
    if (rc < 0) { unlink(tmp); return -1; }
    return file_commit(tmp, path);
}
