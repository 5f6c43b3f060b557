/* plot.h -- figures from the results database, drawn by gnuplot (a child process), and the markdown report.
 *
 * Every figure is three files in the output directory: NAME.png (pngcairo), NAME.pdf (pdfcairo) and
 * NAME.gp, a self-contained gnuplot script with the data inline (`$d1 << EOD`), so `gnuplot NAME.gp`
 * run in that directory re-renders both images without the database. Files are written under temporary
 * names and renamed when complete. Each rule keeps one colour (Okabe–Ito palette) and one dash type in
 * every figure: bp black solid, fa orange dashed, dfa sky-blue dotted, usf green dash-dot, brsf blue
 * dash-dot-dot, frsf vermillion long-dash; other rules reddish purple.
 *
 * Figures (NAME gets "-DATASET-MODEL-KIND" appended when the database holds more than one such group):
 *   robust_eps   robust accuracy vs eps, one line per rule (± sd over seeds), a panel per attack × source
 *   training     train and validation accuracy vs epoch per rule (mean over seeds)
 *   alignment    angle(B,W) and the angle to the BP gradient vs epoch per rule, a panel per layer
 *                (mean over layers when there are more than 6)
 *   transfer     transfer matrix: surrogate (source) rule × attacked (target) rule, robust accuracy,
 *                a panel per attack × eps
 *   hash_map_eps hashing: mAP of the attacked queries vs eps, one line per rule (± sd over seeds), a panel
 *                per attack × source; the group carries the code length ("... / 32 bits")
 * Hashing runs form their own groups in training and alignment (kind "finetune (hash)"; their validation
 * panel is the validation mAP); robust_eps and transfer cover classification evals only.
 * A figure whose data is absent is skipped with a note on stderr.
 * Not for: adversarial-example grids (PNG files written by the attack command).
 */
#ifndef CONCORD_PLOT_H
#define CONCORD_PLOT_H
#include "results/db.h"

typedef struct PlotOpts {
    const char *out_dir;  /* created if missing */
    const char *gnuplot;  /* executable name or path; NULL = $CONCORD_GNUPLOT, else "gnuplot" on PATH */
    int quiet;            /* 1: no "wrote ..." lines on stderr (skip notes are always printed) */
} PlotOpts;

/* Draws every figure whose data exists (the database is only read: nothing is recorded).
 * *nfigures (may be NULL) gets how many figures were drawn. No gnuplot: -1 with
 * "gnuplot not found; install gnuplot-nox (scripts/deps.sh does)". */
int plot_all(Db *db, const PlotOpts *o, int *nfigures);

/* Writes a markdown report: the main table and the masking table (query.h, md format), the hashing table
 * (hash-table) when the database holds hashing runs or evals, a run summary, and links to the figure PNGs
 * in figdir (NULL = none), relative to the report. Temp-then-rename; the database is only read. */
int plot_report_md(Db *db, const char *path, const char *figdir);

/* The fixed style of a rule: gnuplot linetype index 1..7 (7 = any rule not in the list). */
int plot_rule_linetype(const char *rule);

#endif
