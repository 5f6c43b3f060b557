/* cmd_plot.c -- `concord plot`: gnuplot figures (PNG, PDF and a self-contained .gp each) and the markdown
 * report, from the results database. See results/plot.h.
 * Not for: adversarial-example grids (concord attack --grid writes those). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "results/plot.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"

static const char k_usage[] =
    "[--db PATH] [--out DIR] [--report FILE.md] [--gnuplot EXE] [--quiet]\n\n"
    "Writes into DIR, for each figure NAME: NAME.png, NAME.pdf and NAME.gp (data inline; `gnuplot NAME.gp` in\n"
    "DIR re-renders both without the database):\n"
    "  robust_eps  robust accuracy vs eps per rule, a panel per attack x gradient source (± sd over seeds)\n"
    "  training    train / validation accuracy vs epoch per rule\n"
    "  alignment   angle(B,W) and angle to the BP gradient vs epoch per rule, a panel per layer\n"
    "  transfer    surrogate rule x attacked rule robust accuracy (only with transfer evals)\n"
    "  hash_map_eps  hashing: attacked-query mAP vs eps per rule, a panel per attack x source (only with hashing evals)\n"
    "NAME gets -DATASET_MODEL_KIND appended when the database holds several such groups. Figures without\n"
    "data are skipped with a note. Each rule has a fixed Okabe-Ito colour and dash type.\n"
    "--report FILE.md writes the markdown report (main table, masking table, hashing table when present, runs,\n"
    "figure links); with\n"
    "--report alone no figures are drawn. Needs gnuplot (scripts/deps.sh installs gnuplot-nox).";

static const OptSpec k_opts[] = {
    {"db", "PATH", "results database (default $CONCORD_DB, else out/concord.db)", NULL},
    {"out", "DIR", "directory for the figures", NULL},
    {"report", "FILE", "also write the markdown report to FILE", NULL},
    {"gnuplot", "EXE", "gnuplot executable (default $CONCORD_GNUPLOT, else gnuplot on PATH)", NULL},
    {"quiet", NULL, "do not list the files written", NULL},
    {0},
};

int cmd_plot(int argc, char **argv) {
    Args a;
    int rc = args_parse(&a, "plot", k_usage, k_opts, argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return err_die();
    if (a.npos) {
        err_set("concord plot: unexpected argument '%s'; see concord plot --help", a.pos[0]);
        return err_die();
    }
    const char *out = arg_str(&a, "out"), *report = arg_str(&a, "report");
    if (!out && !report) {
        err_set("concord plot: --out DIR is required (or --report FILE.md); see concord plot --help");
        return err_die();
    }
    const char *path = arg_str(&a, "db");
    if (!path) path = db_default_path();
    Db *db = NULL;
    if (db_open_readonly(path, &db) < 0) return err_die();
    rc = 0;
    if (out) {
        PlotOpts o = {out, arg_str(&a, "gnuplot"), arg_flag(&a, "quiet")};
        int n = 0;
        rc = plot_all(db, &o, &n);
        if (rc == 0) printf("%d figure%s in %s\n", n, n == 1 ? "" : "s", out);
    }
    if (rc == 0 && report) {
        rc = plot_report_md(db, report, out);
        if (rc == 0) printf("report: %s\n", report);
    }
    db_close(db);
    return rc < 0 ? err_die() : 0;
}
