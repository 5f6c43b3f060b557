/* qtab.h -- the reports' tables: a small table of strings (a title, named columns, rows of cells),
 * printed by one printer per format (query.h QF_*): text (aligned columns), CSV, markdown, JSON (an
 * array of objects; numeric columns unquoted). A statistic column holds "mean ± sd" in text and
 * markdown, two columns (NAME, NAME_sd) in CSV and JSON.
 * Not for: computing anything (the reports do). */
#ifndef CONCORD_QTAB_H
#define CONCORD_QTAB_H
#include <stdio.h>

#include "results/query.h"

typedef struct QTab {
    char title[400];
    int ncol, nrow, cap, merge; /* merge: a statistic is one "m ± sd" cell (text/md), else two columns */
    char **head;
    int *numeric;               /* per column: right-aligned in text, unquoted in JSON */
    char **cell;                /* nrow * ncol, NULL = missing */
} QTab;

/* A mean over n values with its sample sd (NaN when n < 2); n = 0: missing. */
typedef struct Stat { double mean, sd; long n; } Stat;
Stat stat_from(double mean, double sumsq, long n); /* from the mean and the sum of squares */

QTab *qtab_new(int fmt);
void qtab_free(QTab *t);
int qtab_col(QTab *t, const char *name, int numeric);  /* returns the column index */
int qtab_stat_col(QTab *t, const char *name);          /* a statistic: one or two columns; returns the first */
int qtab_row(QTab *t);                                 /* appends an empty row; returns its index */
void qtab_set(QTab *t, int r, int c, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void qtab_set_text(QTab *t, int r, int c, const char *s);
void qtab_set_stat(QTab *t, int r, int c, Stat s, int decimals);
void qtab_print(const QTab *t, int fmt, FILE *out);
#endif
