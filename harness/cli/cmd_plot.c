/* cmd_plot.c -- `concord plot`: gnuplot figures (PNG, PDF and a self-contained .gp each) and the report
 * (markdown, or one self-contained HTML file), from the results database. See results/plot.h and
 * results/report.h.
 * Not for: adversarial-example grids (concord attack --grid writes those). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results/plot.h"
#include "results/report.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"

static const char k_usage[] =
    "[--db PATH] [--out DIR] [--report FILE.md|FILE.html[,FILE...]] [--gnuplot EXE] [--quiet]\n\n"
    "Writes into DIR, for each figure NAME: NAME.png, NAME.pdf and NAME.gp (data inline; `gnuplot NAME.gp` in\n"
    "DIR re-renders both without the database):\n"
    "  verdict       per rule, robust accuracy minus BP's with its 95% interval, a marker per gradient source\n"
    "                and the per-example worst case, a panel per eps (the numbers of concord query verdict)\n"
    "  robust_eps    robust accuracy vs eps per rule with a 95% band, BP in every panel, a panel per attack x\n"
    "                gradient source and one for the per-example worst case\n"
    "  training      train / validation accuracy vs epoch per rule, a panel per phase\n"
    "  alignment     angle(B,W) and angle to the BP error vs epoch per rule, a panel per layer\n"
    "  transfer      surrogate rule x attacked rule heatmap (two or more surrogates; one: the report's table)\n"
    "  hash_map_eps  hashing: attacked-query mAP vs eps per rule, a panel per attack x source\n"
    "One naming scheme per call: NAME, or NAME-FAMILY_MODEL for every figure when the database holds several\n"
    "(dataset family, model) groups. Figures without data are skipped with a note. Each rule has a fixed\n"
    "Okabe-Ito colour and dash type.\n"
    "--report FILE.md writes the markdown report (the verdict first, the methods, accuracy, masking, transfer\n"
    "and hashing tables, runs, links to the figures); FILE.html the same as one self-contained page (figures\n"
    "embedded as PNG, no script, no network); a comma list writes several. An HTML report without --out draws\n"
    "its figures in a temporary directory; a markdown report without --out has no figures.\n"
    "Needs gnuplot (scripts/deps.sh installs gnuplot-nox).";

static const OptSpec k_opts[] = {
    {"db", "PATH", "results database (default $CONCORD_DB, else out/concord.db)", NULL},
    {"out", "DIR", "directory for the figures", NULL},
    {"report", "FILE[,FILE]", "also write the report: FILE.md (markdown) or FILE.html (self-contained page)", NULL},
    {"gnuplot", "EXE", "gnuplot executable (default $CONCORD_GNUPLOT, else gnuplot on PATH)", NULL},
    {"quiet", NULL, "do not list the files written (the count and the skip notes stay)", NULL},
    {0},
};

/* removes the files of a temporary figure directory, then the directory */
static void rm_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (str_eq(e->d_name, ".") || str_eq(e->d_name, "..")) continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int cmd_plot(int argc, char **argv) {
    Args a;
    int rc = args_parse(&a, "plot", k_usage, k_opts, argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return err_die();
    const char *out = arg_str(&a, "out");
    char *reps[8];
    char rbuf[4096];
    int nrep = 0, html = 0;
    if (arg_set(&a, "report")) {
        if ((nrep = arg_list(&a, "report", rbuf, sizeof rbuf, reps, (int)ARRAY_LEN(reps))) < 0) return err_die();
        for (int i = 0; i < nrep; i++) html |= report_is_html(reps[i]);
    }
    if (!out && !nrep) {
        err_set("concord plot: --out DIR is required (or --report FILE.md|FILE.html); see concord plot --help");
        return err_die();
    }
    const char *path = arg_str(&a, "db");
    if (!path) path = db_default_path();
    Db *db = NULL;
    if (db_open_readonly(path, &db) < 0) return err_die();
    rc = 0;
    char tmpdir[] = "/tmp/concord-plot-XXXXXX";
    const char *figdir = out;
    if (!out && html) { /* an HTML report embeds its figures: draw them somewhere */
        if (!mkdtemp(tmpdir)) { err_set("concord plot: cannot create a temporary directory for the figures"); db_close(db); return err_die(); }
        figdir = tmpdir;
    }
    if (figdir) {
        PlotOpts o = {figdir, arg_str(&a, "gnuplot"), arg_flag(&a, "quiet") || !out};
        int n = 0;
        rc = plot_all(db, &o, &n);
        if (rc == 0 && out) printf("%d figure%s in %s\n", n, n == 1 ? "" : "s", out);
    }
    for (int i = 0; i < nrep && rc == 0; i++) {
        rc = report_write(db, reps[i], report_is_html(reps[i]) ? figdir : out);
        if (rc == 0) printf("report: %s\n", reps[i]);
    }
    if (!out && html) rm_tmpdir(tmpdir);
    db_close(db);
    return rc < 0 ? err_die() : 0;
}
