/* figure.c -- the figure machinery shared by plot.c and plot_robust.c (figure.h): rule styles, gnuplot,
 * a figure under construction and line figures.
 *
 * Each figure is built as text: a header fixing the rule styles, the data as inline datablocks, then one
 * loop that renders the same multiplot to PNG and to PDF. The script is written next to the images and
 * gnuplot is run on that very file (cwd = the output directory, outbase set to a temporary name with -e),
 * so the shipped .gp is exactly what produced the images.
 *
 * Line figures go through one model: a figure is panels, a panel is series (one per rule), a series is
 * points (x, y, and a band lo..hi, NaN = none). Every line figure ends with a legend panel of its own, so
 * no key ever covers data and no key shows an error-bar glyph.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/figure.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"

/* ---- rule styles: Okabe & Ito (2008) colour-blind-safe palette, one colour + dash per rule ---- */

typedef struct RuleStyle { const char *rule, *color, *dash; int point; } RuleStyle;
static const RuleStyle k_styles[] = {
    {"bp", "#000000", "1", 7},  {"fa", "#E69F00", "2", 5},   {"dfa", "#56B4E9", "3", 9},
    {"usf", "#009E73", "4", 11}, {"brsf", "#0072B2", "5", 13}, {"frsf", "#D55E00", "(10,4,3,4,3,4)", 4},
    {"other", "#CC79A7", "(2,2)", 6}, {"pretrained", "#888888", "(6,3)", 6},
};

int plot_rule_linetype(const char *rule) {
    for (int i = 0; i < LT_OTHER - 1; i++)
        if (str_eq(rule, k_styles[i].rule)) return i + 1;
    return LT_OTHER;
}


/* the gradient sources of the verdict figure: a colour and a point type each (not a rule's) */
typedef struct SrcStyle { const char *prefix, *color; int point; } SrcStyle;
static const SrcStyle k_src_styles[] = {
    {"true", "#000000", 7}, {"feedback", "#E69F00", 9}, {"transfer", "#0072B2", 5}, {"black-box", "#009E73", 13},
    {"", "#CC79A7", 11},
};

int fig_src_linetype(const char *src) {
    for (int i = 0; i < (int)ARRAY_LEN(k_src_styles) - 1; i++)
        if (strncmp(src, k_src_styles[i].prefix, strlen(k_src_styles[i].prefix)) == 0) return 11 + i;
    return 11 + (int)ARRAY_LEN(k_src_styles) - 1;
}

/* ---- small helpers ---- */

/* A gnuplot double-quoted string literal; a newline becomes gnuplot's \n (a line break in titles). */
void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '\n') { fputs("\\n", f); continue; }
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
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
    while (k > 0 && out[k - 1] == '_') k--;
    out[k] = 0;
}

/* The dataset family: the name without its class subset ("fashion-mnist[5-9]" -> "fashion-mnist"), so a
 * model pre-trained on some classes and fine-tuned on others is one group. */
void fig_family(const char *dataset, char *out, size_t n) {
    const char *b = strchr(dataset, '[');
    snprintf(out, n, "%.*s", b ? (int)(b - dataset) : (int)strlen(dataset), dataset);
}

void fig_group(sqlite3_stmt *st, int col, char *out, size_t n) {
    char fam[128];
    fig_family(fig_txt(st, col), fam, sizeof fam);
    snprintf(out, n, "%s / %s", fam, fig_txt(st, col + 1));
}

const char *fig_txt(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

int fig_rule_rank(const char *r) { return plot_rule_linetype(r) - 1; }

/* Resolves the gnuplot executable into out; -1 with the one-line install hint when there is none. */
int gnuplot_find(const char *want, char *out, size_t n) {
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


/* npanels laid out max_cols wide, each pw x ph pixels, under a title of title_lines lines. */
void fig_begin(Fig *f, const char *name, int npanels, int max_cols, int pw, int ph, int title_lines) {
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->cols = npanels < max_cols ? npanels : max_cols;
    if (f->cols < 1) f->cols = 1;
    f->rows = (npanels + f->cols - 1) / f->cols;
    if (f->rows < 1) f->rows = 1;
    f->title_lines = title_lines;
    f->width = pw * f->cols;
    f->height = ph * f->rows + 22 * title_lines + 12;
    f->data = open_memstream(&f->data_s, &f->data_n);
    f->body = open_memstream(&f->body_s, &f->body_n);
    CHECK(f->data && f->body);
}

/* Starts a new datablock; returns its number (the caller writes lines to f->data, then fig_block_end). */
int fig_block(Fig *f) {
    fprintf(f->data, "$d%d << EOD\n", ++f->nblocks);
    return f->nblocks;
}
void fig_block_end(Fig *f) { fputs("EOD\n", f->data); }


/* The file name of figure `base` for group g ("fashion-mnist / lenet5"): one scheme for the whole call. */
void fig_name(const Figs *fs, const char *base, const char *g, char *out, size_t n) {
    char gs[200];
    sanitize(g, gs, sizeof gs);
    if (fs->multi) snprintf(out, n, "%s-%s", base, gs);
    else snprintf(out, n, "%s", base);
}

/* Writes NAME.gp, runs gnuplot on it and renames the images into place. */
int fig_finish(Figs *fs, Fig *f, const char *title) {
    fclose(f->data);
    fclose(f->body);
    /* wide enough for the title's longest line (about 7 px a character at the title's 10 pt): a one-panel
     * figure would otherwise clip it */
    int line = 0, longest = 0;
    for (const char *c = title; *c; c++) {
        if (*c == '\n') line = 0;
        else if (((unsigned char)*c & 0xC0) != 0x80 && ++line > longest) longest = line;
    }
    if (f->width < 7 * longest + 40) f->width = 7 * longest + 40;
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
    fputs("# one colour (Okabe-Ito) and dash per rule, the same in every figure; 8: a pre-trained baseline\n", g);
    for (size_t i = 0; i < ARRAY_LEN(k_styles); i++)
        fprintf(g, "set linetype %zu lc rgb \"%s\" dt %s pt %d ps 0.8 lw 2  # %s\n", i + 1, k_styles[i].color,
                k_styles[i].dash, k_styles[i].point, k_styles[i].rule);
    fputs("# the gradient sources of the verdict figure\n", g);
    for (size_t i = 0; i < ARRAY_LEN(k_src_styles); i++)
        fprintf(g, "set linetype %zu lc rgb \"%s\" dt 1 pt %d ps 1.3 lw 1.5  # %s\n", 11 + i, k_src_styles[i].color,
                k_src_styles[i].point, k_src_styles[i].prefix[0] ? k_src_styles[i].prefix : "other");
    fputs("set linetype 16 lc rgb \"#CC0000\" dt 1 pt 3 ps 1.8 lw 2  # worst case\n", g);
    fputs("set key noenhanced\nset termoption noenhanced\n\n", g);
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
    fputs(" font \",10\"\n", g);
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

/* A panel's common settings, so nothing leaks from the panel before (or the legend panel). */
void fig_panel_reset(FILE *b) {
    fputs("  set border 3\n  set tics nomirror\n  set tics\n  set grid lc rgb \"#dddddd\"\n  unset key\n  unset arrow\n"
          "  unset label\n  set xtics autofreq\n  set ytics autofreq\n  set format x \"%g\"\n  set format y \"%g\"\n"
          "  set xtics norotate\n", b);
}

/* ---- line figures: panels of series of (x, y, band lo..hi) ---- */

Pan *pans_add(Pans *ps, const char *title) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 8;
        ps->p = realloc(ps->p, sizeof *ps->p * (size_t)ps->cap);
        CHECK(ps->p);
    }
    Pan *p = &ps->p[ps->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->title, sizeof p->title, "%s", title);
    p->yshare = ps->n; /* its own fitted range unless the figure says otherwise */
    p->ylo = 1;
    p->yhi = 0;
    return p;
}
Ser *pan_series(Pan *p, const char *label, int lt) {
    for (int i = 0; i < p->ns; i++)
        if (str_eq(p->s[i].label, label)) return &p->s[i];
    if (p->ns == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->s = realloc(p->s, sizeof *p->s * (size_t)p->cap);
        CHECK(p->s);
    }
    Ser *s = &p->s[p->ns++];
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%s", label);
    s->lt = lt;
    return s;
}
void ser_add(Ser *s, double x, double y, double lo, double hi) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = realloc(s->v, sizeof *s->v * (size_t)s->cap);
        CHECK(s->v);
    }
    s->v[s->n++] = (SPt){x, y, lo, hi};
}
void pan_tick(Pan *p, double x, const char *label) {
    for (int i = 0; i < p->nticks; i++)
        if (p->ticks[i].x == x) return;
    if (p->nticks < (int)ARRAY_LEN(p->ticks)) {
        p->ticks[p->nticks].x = x;
        snprintf(p->ticks[p->nticks].label, sizeof p->ticks[0].label, "%s", label);
        p->nticks++;
    }
}
void pans_free(Pans *ps) {
    for (int i = 0; i < ps->n; i++) {
        for (int k = 0; k < ps->p[i].ns; k++) free(ps->p[i].s[k].v);
        free(ps->p[i].s);
    }
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

static int ser_cmp(const void *a, const void *b) {
    const Ser *x = a, *y = b;
    if (x->lt != y->lt) return x->lt - y->lt;
    return strcmp(x->label, y->label);
}
static int spt_cmp(const void *a, const void *b) {
    const SPt *x = a, *y = b;
    return x->x < y->x ? -1 : x->x > y->x;
}

/* The legend panel: every series label once (first seen order sorted by style), plus the band's meaning. */
static void legend_panel(Fig *f, const Pans *ps, const char *band) {
    Ser seen[64];
    int n = 0, any_band = 0;
    for (int i = 0; i < ps->n; i++)
        for (int k = 0; k < ps->p[i].ns; k++) {
            const Ser *s = &ps->p[i].s[k];
            for (int j = 0; j < s->n; j++) any_band |= isfinite(s->v[j].lo) && isfinite(s->v[j].hi);
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = str_eq(seen[j].label, s->label);
            if (!dup && n < (int)ARRAY_LEN(seen)) seen[n++] = *s;
        }
    xqsort(seen, (size_t)n, sizeof *seen, ser_cmp);
    fputs("  unset title\n  unset xlabel\n  unset ylabel\n  unset border\n  unset tics\n  unset grid\n  unset arrow\n"
          "  set xrange [0:1]\n  set yrange [0:1]\n  set key center center vertical Left reverse box opaque samplen 4 spacing 1.3\n"
          "  plot ", f->body);
    for (int i = 0; i < n; i++) {
        fprintf(f->body, "%sNaN with linespoints lt %d title ", i ? ", \\\n       " : "", seen[i].lt);
        gp_str(f->body, seen[i].label);
    }
    if (any_band && band) {
        fprintf(f->body, "%sNaN with filledcurves fs transparent solid 0.25 noborder lc rgb \"#777777\" title ", n ? ", \\\n       " : "");
        gp_str(f->body, band);
    }
    fputs("\n", f->body);
}

/* Draws panels ps as figure `name` (title may hold '\n'), with a legend panel at the end; band: what the
 * shaded band means (NULL = no bands drawn). */
int line_figure(Figs *fs, const char *name, const char *title, Pans *ps, const char *band, int max_cols) {
    /* shared fitted y ranges */
    for (int i = 0; i < ps->n; i++) {
        Pan *p = &ps->p[i];
        for (int k = 0; k < p->ns; k++) {
            xqsort(p->s[k].v, (size_t)p->s[k].n, sizeof(SPt), spt_cmp);
        }
        xqsort(p->s, (size_t)p->ns, sizeof *p->s, ser_cmp);
    }
    int title_lines = 1;
    for (const char *c = title; *c; c++) title_lines += *c == '\n';
    Fig f;
    /* the legend takes one more slot: max_cols columns, or one more when that saves a row */
    int slots = ps->n + 1, cols = slots < max_cols ? slots : max_cols;
    if (max_cols > 0 && slots > max_cols && (slots + max_cols) / (max_cols + 1) < (slots + max_cols - 1) / max_cols) cols = max_cols + 1;
    if (max_cols < 0) cols = -max_cols; /* fixed */
    fig_begin(&f, name, slots, cols, 430, 330, title_lines);
    for (int i = 0; i < ps->n; i++) {
        Pan *p = &ps->p[i];
        double ylo = p->ylo, yhi = p->yhi;
        if (ylo > yhi) { /* fitted: over every panel sharing this range */
            double lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < ps->n; j++) {
                const Pan *q = &ps->p[j];
                if (q->ylo <= q->yhi || q->yshare != p->yshare) continue;
                for (int k = 0; k < q->ns; k++)
                    for (int m = 0; m < q->s[k].n; m++) {
                        const SPt *t = &q->s[k].v[m];
                        double a = isfinite(t->lo) ? fmin(t->lo, t->y) : t->y, b = isfinite(t->hi) ? fmax(t->hi, t->y) : t->y;
                        if (a < lo) lo = a;
                        if (b > hi) hi = b;
                    }
            }
            if (!(lo <= hi)) { lo = 0; hi = 1; }
            double pad = hi > lo ? 0.08 * (hi - lo) : (fabs(hi) > 0 ? 0.1 * fabs(hi) : 1);
            ylo = lo - pad;
            yhi = hi + pad;
        }
        double xlo = INFINITY, xhi = -INFINITY;
        for (int k = 0; k < p->ns; k++)
            for (int m = 0; m < p->s[k].n; m++) {
                if (p->s[k].v[m].x < xlo) xlo = p->s[k].v[m].x;
                if (p->s[k].v[m].x > xhi) xhi = p->s[k].v[m].x;
            }
        for (int t = 0; t < p->nticks; t++) {
            if (p->ticks[t].x < xlo) xlo = p->ticks[t].x;
            if (p->ticks[t].x > xhi) xhi = p->ticks[t].x;
        }
        if (!(xlo <= xhi)) { xlo = 0; xhi = 1; }
        double xpad = xhi > xlo ? 0.05 * (xhi - xlo) : (xlo != 0 ? 0.1 * fabs(xlo) : 0.5);
        /* every series a single point at one x (one eps): spread the series sideways so none hides another */
        int onex = p->ns > 1 && xlo == xhi;
        for (int k = 0; k < p->ns && onex; k++) onex = p->s[k].n == 1;
        if (onex) {
            double w = xlo != 0 ? 0.06 * fabs(xlo) : 0.06;
            for (int k = 0; k < p->ns; k++) p->s[k].v[0].x += w * (k - (p->ns - 1) / 2.0) / (p->ns > 1 ? (p->ns - 1) / 2.0 : 1);
            xpad = 2 * w;
        }
        fig_panel_reset(f.body);
        fputs("  set title ", f.body);
        gp_str(f.body, p->title);
        fputs("\n  set xlabel ", f.body);
        gp_str(f.body, p->xlabel);
        fputs("\n  set ylabel ", f.body);
        gp_str(f.body, p->ylabel);
        fprintf(f.body, "\n  set xrange [%.9g:%.9g]\n  set yrange [%.9g:%.9g]\n", xlo - xpad, xhi + xpad, ylo, yhi);
        if (p->ylo <= p->yhi && p->ylo < 0 && p->yhi > 100) fputs("  set ytics 0, 20, 100\n", f.body);
        if (p->nticks) {
            fputs("  set xtics (", f.body);
            int longest = 0;
            for (int t = 0; t < p->nticks; t++) {
                fprintf(f.body, "%s", t ? ", " : "");
                gp_str(f.body, p->ticks[t].label);
                fprintf(f.body, " %.9g", p->ticks[t].x);
                int l = (int)strlen(p->ticks[t].label);
                if (l > longest) longest = l;
            }
            fputs(")\n", f.body);
            if (p->nticks * (longest + 1) > 34) fputs("  set xtics rotate by -40\n", f.body);
        } else if (p->int_x) {
            fprintf(f.body, "  set xtics %d\n", xhi - xlo > 10 ? (int)ceil((xhi - xlo) / 10) : 1);
        }
        fputs("  plot ", f.body);
        int first = 1;
        for (int k = 0; k < p->ns; k++) {
            const Ser *s = &p->s[k];
            int b = fig_block(&f), has_band = 0;
            fprintf(f.data, "# %s | %s: x y lo hi%s\n", p->title, s->label, onex ? " (x spread sideways around the one eps)" : "");
            for (int m = 0; m < s->n; m++) {
                const SPt *t = &s->v[m];
                has_band |= isfinite(t->lo) && isfinite(t->hi);
                fprintf(f.data, "%.9g %.9g ", t->x, t->y);
                if (isfinite(t->lo) && isfinite(t->hi)) fprintf(f.data, "%.9g %.9g\n", t->lo, t->hi);
                else fputs("NaN NaN\n", f.data);
            }
            fig_block_end(&f);
            if (has_band && band) { /* a band, or an interval bar where the series is a single point */
                if (s->n > 1)
                    fprintf(f.body, "%s$d%d using 1:3:4 with filledcurves fs transparent solid 0.15 noborder lt %d notitle",
                            first ? "" : ", \\\n       ", b, s->lt);
                else
                    fprintf(f.body, "%s$d%d using 1:2:3:4 with yerrorbars lt %d dt 1 ps 0 notitle", first ? "" : ", \\\n       ", b, s->lt);
                first = 0;
            }
            fprintf(f.body, "%s$d%d using 1:2 with linespoints lt %d title ", first ? "" : ", \\\n       ", b, s->lt);
            gp_str(f.body, s->label);
            first = 0;
        }
        if (first) fputs("NaN notitle", f.body);
        fputs("\n", f.body);
    }
    legend_panel(&f, ps, band);
    return fig_finish(fs, &f, title);
}

/* The "(family, model)" groups of this database: figures are named by them when there are several. */
int fig_count_groups(Db *db) {
    static const char sql[] = "SELECT DISTINCT dataset, model FROM runs UNION SELECT DISTINCT dataset, model FROM eval_view";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return 0;
    char seen[64][200];
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char g[200];
        fig_group(st, 0, g, sizeof g);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = str_eq(seen[i], g);
        if (!dup && n < 64) snprintf(seen[n++], sizeof seen[0], "%s", g);
    }
    sqlite3_finalize(st);
    return n;
}
