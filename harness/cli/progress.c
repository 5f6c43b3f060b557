/* progress.c -- see progress.h */
#include "harness/cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "harness/core.h"

int progress_enabled(int quiet) { return !quiet && isatty(2); }

void progress_init(Progress *p, int on) {
    p->on = on;
    p->shown = 0;
    p->t0 = p->last = now_seconds();
    p->t0_done = 0;
}

void progress_start(Progress *p, long done0) {
    p->t0 = now_seconds();
    p->last = 0;
    p->t0_done = done0;
}

static void fmt_dur(double s, char *out, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, n, "%lds", t);
}

void progress_draw(Progress *p, const char *label, long done, long total, const char *unit) {
    if (!p->on || total <= 0) return;
    double now = now_seconds();
    if (p->shown && now - p->last < 0.1 && done < total) return;
    p->last = now;
    enum { W = 24 };
    char bar[W + 1], el[32], eta[48] = "";
    int k = (int)(done * W / total);
    for (int i = 0; i < W; i++) bar[i] = i < k ? '#' : '.';
    bar[W] = 0;
    double e = now - p->t0;
    fmt_dur(e, el, sizeof el);
    long did = done - p->t0_done;
    if (did > 0 && done < total && e > 0.5) {
        char t[32];
        fmt_dur(e / did * (double)(total - done), t, sizeof t);
        snprintf(eta, sizeof eta, "  eta %s", t);
    }
    fprintf(stderr, "\r\033[K%s [%s] %ld/%ld %s  %s%s", label, bar, done, total, unit, el, eta);
    fflush(stderr);
    p->shown = 1;
}

void progress_clear(Progress *p) {
    if (!p->on || !p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}
