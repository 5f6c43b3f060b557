/* report.h -- the generated report of `concord plot --report`, in markdown or as one self-contained HTML
 * file. Both hold the same content, in this order: the verdict (verdict.h) and its figure, the methods
 * block (verdict_methods), clean and robust accuracy (query `table`), gradient masking (`masking`), the
 * transfer table (when there are transfer evaluations), the hashing table (when there are hashing runs or
 * evaluations), runs by status, and the figures of the same plot call.
 *
 * HTML: generated from the markdown (headings, paragraphs, lists, tables, `code`, **bold**, images), with
 * every figure embedded as a base64 PNG, the styles inline and no script and no external reference, so
 * it opens from disk with no network. Masking is highlighted: the verdict column by label (masking,
 * worse, robust gain), a flags cell that is not empty, a masking_seeds count above 0.
 * Files are written under a temporary name and renamed; the database is only read.
 * Not for: drawing (plot.h) or the report tables themselves (query.h).
 */
#ifndef CONCORD_REPORT_H
#define CONCORD_REPORT_H
#include "results/db.h"

/* Writes the report to path: HTML when the name ends in .html or .htm, else markdown. figdir (NULL =
 * none): the directory of this call's figures (every NAME.png in it); markdown links them relative to
 * the report, HTML embeds them. 0, or -1 with err_set. */
int report_write(Db *db, const char *path, const char *figdir);
/* 1 when path names an HTML report (.html or .htm). */
int report_is_html(const char *path);
#endif
