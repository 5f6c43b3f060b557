/* query.h -- reports over the results database (docs/results.md), printed as text, CSV, markdown or JSON.
 *
 * Reports (accuracies in percent; "mean ± sd" is over seeds, i.e. over runs / evals; sd is the sample
 * standard deviation and is left out when there is a single value):
 *   table      rows: (dataset, model, kind, rule); clean accuracy, then robust accuracy per attack ×
 *              gradient source × eps. text/md print one block per attack × source; csv/json one wide table.
 *   curve      robust accuracy and attack success rate vs eps, long format, one row per
 *              (dataset, model, kind, rule, attack, source, eps).
 *   masking    per (rule, gradient attack, eps): robust accuracy under each gradient source side by side,
 *              the Square attack at the same eps, and the masking flags the attack module recorded.
 *   alignment  per (rule, layer, epoch): mean angle(B,W), |B|/|W| and angle to the BP gradient.
 *   runs       one line per run with its status.
 *   hash-table the hashing task: rows (dataset, model, kind / bits, rule); clean mAP (the run's), then the
 *              mAP of the attacked queries against the clean database per attack × gradient source × eps
 *              (mAP in percent); laid out like `table`. The other reports cover classification only.
 *   worst      per attacked model, eps and norm: the per-example worst case over every evaluation of that
 *              model on the same examples (every attack, every gradient source, Square), with what broke
 *              each example first (worst.h).
 * Not for: writing to the database (db.h) or drawing (plot.h).
 */
#ifndef CONCORD_QUERY_H
#define CONCORD_QUERY_H
#include <stdio.h>

#include "results/db.h"

enum { QF_TEXT, QF_CSV, QF_MD, QF_JSON, QF_COUNT };

/* "text" | "csv" | "md" | "json" -> QF_*; -1 with err_set listing the formats. */
int query_format_parse(const char *name, int *fmt);
/* "table, curve, masking, alignment, runs, hash-table" */
const char *query_report_names(void);
/* 1 when `name` is one of the reports above */
int query_report_known(const char *name);
/* Prints one report to out. Unknown report: -1 with err_set listing the reports. A report with no data
 * prints its header (text/md/csv) or [] (json) and a note on stderr. */
int query_report(Db *db, const char *report, int fmt, FILE *out);
/* Runs one read-only SQL statement (the connection is switched to query_only for the duration) and
 * prints its rows. A statement that writes, or more than one statement: -1 with err_set. */
int query_sql(Db *db, const char *sql, int fmt, FILE *out);

#endif
