/* plot.h -- figures from the results database, drawn by gnuplot (a child process).
 *
 * Every figure is three files in the output directory: NAME.png (pngcairo), NAME.pdf (pdfcairo) and
 * NAME.gp, a self-contained gnuplot script with the data inline (`$d1 << EOD`), so `gnuplot NAME.gp`
 * run in that directory re-renders both images without the database. Files are written under temporary
 * names and renamed when complete. Each rule keeps one colour (Okabe–Ito palette) and one dash type in
 * every figure: bp black solid, fa orange dashed, dfa sky-blue dotted, usf green dash-dot, brsf blue
 * dash-dot-dot, frsf vermillion long-dash; other rules reddish purple; a pre-trained model grey dashed.
 * Every line figure ends with a legend panel: no key covers data.
 *
 * Groups: figures are per (dataset family, model), the family being the dataset without its class subset
 * (a model pre-trained on fashion-mnist[0-4] and fine-tuned on fashion-mnist[5-9] is one group). One
 * naming scheme per call: NAME when the database holds one group, NAME-FAMILY_MODEL for every figure
 * when it holds several.
 *
 * Figures:
 *   verdict      per rule, rule minus BP in robust accuracy (points) with its 95% bootstrap interval, one
 *                marker per gradient source and one for the per-example worst case, a zero line; a panel
 *                per eps > 0 (verdict_compute: the same numbers as `concord query verdict`)
 *   robust_eps   robust accuracy vs eps, one line per rule with a 95% band (bootstrap over seeds and
 *                examples of the per-example outcomes; Wilson with one seed), a panel per attack × source
 *                plus the per-example worst case (worst.h); BP's fine-tunes (and a pre-trained model, when
 *                attacked) in every panel (BP's feedback gradient is its true gradient: a source BP was not
 *                attacked through shows BP's true-gradient curve); x tics at the eps grid as it was
 *                written (8/255), each panel's x range fitted to its grid; a caption line per panel
 *                (n, steps, step size, restarts or queries). AutoAttack's component rows are left out.
 *   training     train and validation accuracy vs epoch per rule (mean over seeds), a panel per phase
 *                (pre-training, fine-tuning, hashing), y fitted to the data
 *   alignment    angle(B,W) and the angle to the BP error vs epoch per rule other than BP, a panel per
 *                layer (mean over layers when there are more than 6), one y range per quantity; panels
 *                that are 0 throughout (the classifier's error) are named in the title, not drawn
 *   transfer     surrogate rule × attacked rule heatmap, a panel per attack × eps, only with two or more
 *                surrogates (one surrogate: the report's transfer table)
 *   hash_map_eps hashing: mAP of the attacked queries vs eps, one line per rule (± sd band), a panel per
 *                attack × source × code length
 * A figure whose data is absent is skipped with a note on stderr.
 * Not for: the report (report.h) or adversarial-example grids (the attack command writes those).
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

/* The fixed style of a rule: gnuplot linetype index 1..7 (7 = any rule not in the list). */
int plot_rule_linetype(const char *rule);

#endif
