/* qtab.c -- small tables of strings printed as text, CSV, markdown or JSON. See qtab.h. */
#define _POSIX_C_SOURCE 200809L
#include "results/qtab.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"

QTab *qtab_new(int fmt) {
    QTab *t = xcalloc(1, sizeof *t);
    t->merge = fmt == QF_TEXT || fmt == QF_MD;
    return t;
}
void qtab_free(QTab *t) {
    if (!t) return;
    for (int i = 0; i < t->ncol; i++) free(t->head[i]);
    for (long i = 0; i < (long)t->nrow * t->ncol; i++) free(t->cell[i]);
    free(t->head);
    free(t->numeric);
    free(t->cell);
    free(t);
}
int qtab_col(QTab *t, const char *name, int numeric) {
    CHECK(t->nrow == 0);
    t->head = realloc(t->head, sizeof(char *) * (size_t)(t->ncol + 1));
    t->numeric = realloc(t->numeric, sizeof(int) * (size_t)(t->ncol + 1));
    CHECK(t->head && t->numeric);
    t->head[t->ncol] = xstrdup(name);
    t->numeric[t->ncol] = numeric;
    return t->ncol++;
}
/* A statistic column: "name" (and "name_sd" when not merged). Returns the first column's index. */
int qtab_stat_col(QTab *t, const char *name) {
    int c = qtab_col(t, name, 1); /* right-aligned; JSON only ever sees the unmerged, numeric form */
    if (!t->merge) {
        char sd[300];
        snprintf(sd, sizeof sd, "%s_sd", name);
        qtab_col(t, sd, 1);
    }
    return c;
}
int qtab_row(QTab *t) {
    if (t->nrow == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cell = realloc(t->cell, sizeof(char *) * (size_t)t->cap * (size_t)t->ncol);
        CHECK(t->cell);
    }
    for (int c = 0; c < t->ncol; c++) t->cell[(long)t->nrow * t->ncol + c] = NULL;
    return t->nrow++;
}
void qtab_set(QTab *t, int r, int c, const char *fmt, ...) {
    CHECK(r >= 0 && r < t->nrow && c >= 0 && c < t->ncol);
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **p = &t->cell[(long)r * t->ncol + c];
    free(*p);
    *p = xstrdup(buf);
}
void qtab_set_text(QTab *t, int r, int c, const char *s) {
    if (s) qtab_set(t, r, c, "%s", s);
}

Stat stat_from(double mean, double sumsq, long n) {
    Stat s = {mean, NAN, n};
    if (n >= 2) {
        double var = (sumsq - (double)n * mean * mean) / (double)(n - 1);
        s.sd = sqrt(var > 0 ? var : 0);
    }
    return s;
}
void qtab_set_stat(QTab *t, int r, int c, Stat s, int decimals) {
    if (s.n <= 0 || !isfinite(s.mean)) return;
    if (t->merge) {
        if (s.n >= 2) qtab_set(t, r, c, "%.*f ± %.*f", decimals, s.mean, decimals, s.sd);
        else qtab_set(t, r, c, "%.*f", decimals, s.mean);
    } else {
        qtab_set(t, r, c, "%.*f", decimals + 2, s.mean);
        if (s.n >= 2) qtab_set(t, r, c + 1, "%.*f", decimals + 2, s.sd);
    }
}

/* ---- printers ---- */

static int utf8_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}
static void print_pad(FILE *out, const char *s, int width, int right) {
    int pad = width - utf8_width(s);
    if (right) for (int i = 0; i < pad; i++) fputc(' ', out);
    fputs(s, out);
    if (!right) for (int i = 0; i < pad; i++) fputc(' ', out);
}

static void print_text(const QTab *t, FILE *out) {
    if (t->title[0]) fprintf(out, "== %s ==\n", t->title);
    int *w = xcalloc((size_t)t->ncol, sizeof(int));
    for (int c = 0; c < t->ncol; c++) {
        w[c] = utf8_width(t->head[c]);
        for (int r = 0; r < t->nrow; r++) {
            const char *s = t->cell[(long)r * t->ncol + c];
            int k = utf8_width(s ? s : "-");
            if (k > w[c]) w[c] = k;
        }
    }
    for (int c = 0; c < t->ncol; c++) {
        if (c) fputs("  ", out);
        print_pad(out, t->head[c], c == t->ncol - 1 && !t->numeric[c] ? 0 : w[c], t->numeric[c]);
    }
    fputc('\n', out);
    for (int c = 0; c < t->ncol; c++) {
        if (c) fputs("  ", out);
        for (int i = 0; i < w[c]; i++) fputc('-', out);
    }
    fputc('\n', out);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) {
            const char *s = t->cell[(long)r * t->ncol + c];
            if (c) fputs("  ", out);
            print_pad(out, s ? s : "-", c == t->ncol - 1 && !t->numeric[c] ? 0 : w[c], t->numeric[c]);
        }
        fputc('\n', out);
    }
    free(w);
}

static void print_csv_field(FILE *out, const char *s) {
    if (!s) return;
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', out);
        for (; *s; s++) {
            if (*s == '"') fputc('"', out);
            fputc(*s, out);
        }
        fputc('"', out);
    } else {
        fputs(s, out);
    }
}
static void print_csv(const QTab *t, FILE *out) {
    for (int c = 0; c < t->ncol; c++) {
        if (c) fputc(',', out);
        print_csv_field(out, t->head[c]);
    }
    fputc('\n', out);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) {
            if (c) fputc(',', out);
            print_csv_field(out, t->cell[(long)r * t->ncol + c]);
        }
        fputc('\n', out);
    }
}

static void print_md_cell(FILE *out, const char *s) {
    fputc(' ', out);
    for (; *s; s++) {
        if (*s == '|') fputc('\\', out);
        fputc(*s == '\n' ? ' ' : *s, out);
    }
    fputs(" |", out);
}
static void print_md(const QTab *t, FILE *out) {
    if (t->title[0]) fprintf(out, "#### %s\n\n", t->title);
    fputc('|', out);
    for (int c = 0; c < t->ncol; c++) print_md_cell(out, t->head[c]);
    fputs("\n|", out);
    for (int c = 0; c < t->ncol; c++) fputs(t->numeric[c] ? " ---: |" : " --- |", out);
    fputc('\n', out);
    for (int r = 0; r < t->nrow; r++) {
        fputc('|', out);
        for (int c = 0; c < t->ncol; c++) {
            const char *s = t->cell[(long)r * t->ncol + c];
            print_md_cell(out, s ? s : "-");
        }
        fputc('\n', out);
    }
    fputc('\n', out);
}

static void print_json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", out);
        else if (ch == '\t') fputs("\\t", out);
        else if (ch == '\r') fputs("\\r", out);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}
static int json_number_ok(const char *s) { /* a cell printed unquoted must be a JSON number */
    double v;
    return parse_double(s, &v) == 0 && isfinite(v) && !strpbrk(s, "xXnNiI") && s[0] != '+' && s[0] != '.';
}
static void print_json(const QTab *t, FILE *out) {
    fputs("[", out);
    for (int r = 0; r < t->nrow; r++) {
        fputs(r ? ",\n {" : "\n {", out);
        for (int c = 0; c < t->ncol; c++) {
            const char *s = t->cell[(long)r * t->ncol + c];
            if (c) fputs(", ", out);
            print_json_string(out, t->head[c]);
            fputs(": ", out);
            if (!s) fputs("null", out);
            else if (t->numeric[c] && json_number_ok(s)) fputs(s, out);
            else print_json_string(out, s);
        }
        fputc('}', out);
    }
    fputs(t->nrow ? "\n]\n" : "]\n", out);
}

void qtab_print(const QTab *t, int fmt, FILE *out) {
    switch (fmt) {
    case QF_TEXT: print_text(t, out); break;
    case QF_CSV: print_csv(t, out); break;
    case QF_MD: print_md(t, out); break;
    default: print_json(t, out); break;
    }
}

/* ---- formats and reports ---- */

