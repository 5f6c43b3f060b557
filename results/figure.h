/* figure.h -- the figure machinery the plot files share (results/figure.c): rule styles, gnuplot, a figure
 * under construction, line figures of panels and series, and the SQL fragments the figures select with.
 * Private to results/plot.c and results/plot_robust.c; everything else uses plot.h. */
#ifndef CONCORD_FIGURE_H
#define CONCORD_FIGURE_H
#include <sqlite3.h>
#include <stdio.h>

#include "results/db.h"
#include "results/plot.h"

#define LT_OTHER 7      /* gnuplot line type of a rule outside the table */
#define LT_PRETRAINED 8 /* ... and of the pre-trained model */

#define RULE_ORDER "CASE rule WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2 WHEN 'usf' THEN 3" \
                   " WHEN 'brsf' THEN 4 WHEN 'frsf' THEN 5 ELSE 6 END, rule"
/* a run's kind, with hashing runs kept apart from classification ones: "finetune (hash)" */
#define KIND_TASK "(r.kind || CASE WHEN r.task = 'hash' THEN ' (hash)' ELSE '' END)"

/* One evaluation per trained model and (attack, source, eps, norm): the latest on the largest example
 * set (as the reports count it). AutoAttack's component rows (stage > 0: the ensemble after each component)
 * are left out: the AutoAttack row is the evaluation. */
#define ONE_PER_MODEL_CLASSIFY \
    "(SELECT * FROM (SELECT v.*, row_number() OVER (PARTITION BY coalesce(v.run_id, v.target_ckpt), v.attack_label," \
    " v.source_label, v.eps_text, v.norm ORDER BY v.n DESC, v.eval_id DESC) AS one FROM eval_view v" \
    " WHERE v.task = 'classify' AND v.stage = 0) WHERE one = 1)"

typedef struct Fig {
    char name[256];    /* file base name */
    int rows, cols, width, height, title_lines;
    FILE *data, *body; /* datablocks, and the plot commands run once per terminal */
    char *data_s, *body_s;
    size_t data_n, body_n;
    int nblocks;
} Fig;

typedef struct Figs {
    const PlotOpts *o;
    Db *db;
    char gp[1024];
    int drawn;
    int multi;        /* several (dataset family, model) groups: every file name gets "-GROUP" */
} Figs;

typedef struct SPt { double x, y, lo, hi; } SPt;
typedef struct Ser { char label[80]; int lt; SPt *v; int n, cap; } Ser;
typedef struct Tick { double x; char label[32]; } Tick;
typedef struct Pan {
    char title[200], xlabel[400], ylabel[64];
    double ylo, yhi;            /* y range; ylo > yhi: fitted to the data of the panels sharing `yshare` */
    int yshare;                 /* panels with the same value share one fitted range */
    int int_x;                  /* integer x (epochs) */
    Tick ticks[32];             /* explicit x tics (the eps grid) when nticks > 0 */
    int nticks;
    Ser *s;
    int ns, cap;
} Pan;
typedef struct Pans { Pan *p; int n, cap; } Pans;

/* The gnuplot line type of a gradient source in the verdict figure (11.., one per source family). */
int fig_src_linetype(const char *src);
/* A gnuplot double-quoted string literal; a newline becomes gnuplot's \n. */
void gp_str(FILE *f, const char *s);
/* The dataset family: "fashion-mnist[5-9]" -> "fashion-mnist". */
void fig_family(const char *dataset, char *out, size_t n);
/* The figure group of a row, "family / model", from its columns col (dataset) and col + 1 (model). */
void fig_group(sqlite3_stmt *st, int col, char *out, size_t n);
/* Column i of a row as text ("" for NULL). */
const char *fig_txt(sqlite3_stmt *st, int i);
/* A rule's rank in the table's order (bp, fa, dfa, usf, brsf, frsf, then others). */
int fig_rule_rank(const char *r);
int gnuplot_find(const char *want, char *out, size_t n);
void fig_begin(Fig *f, const char *name, int npanels, int max_cols, int pw, int ph, int title_lines);
int fig_block(Fig *f);
void fig_block_end(Fig *f);
void fig_name(const Figs *fs, const char *base, const char *g, char *out, size_t n);
int fig_finish(Figs *fs, Fig *f, const char *title);
void fig_panel_reset(FILE *b);
Pan *pans_add(Pans *ps, const char *title);
Ser *pan_series(Pan *p, const char *label, int lt);
void ser_add(Ser *s, double x, double y, double lo, double hi);
void pan_tick(Pan *p, double x, const char *label);
void pans_free(Pans *ps);
int line_figure(Figs *fs, const char *name, const char *title, Pans *ps, const char *band, int max_cols);
int fig_count_groups(Db *db);

#endif
