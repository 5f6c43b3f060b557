/* progress.h -- a one-line progress bar with an ETA on stderr, for train, finetune, attack and audit.
 * Drawn only when stderr is a terminal (and the command is not --quiet); when stderr is a pipe or a file
 * nothing is written at all, so logs and captured output are unchanged. The line is redrawn at most ten
 * times a second and erased when a unit of work ends (an epoch, an evaluation), before the command prints
 * its own line for it.
 * Not for: the suite runner's bar (harness/suite/local.c draws its own, over jobs). */
#ifndef CONCORD_PROGRESS_H
#define CONCORD_PROGRESS_H

typedef struct Progress {
    int on;             /* drawing at all (stderr is a terminal and not quiet) */
    int shown;          /* a line is on the screen */
    double t0, last;    /* start of the current unit; last redraw */
    long t0_done;       /* work already done when the unit started (resumed training) */
} Progress;

/* on: 0 = never draw. progress_enabled(quiet) says whether to: stderr a terminal and not quiet. */
void progress_init(Progress *p, int on);
int progress_enabled(int quiet);
/* Starts timing a unit whose work counter starts at done0. */
void progress_start(Progress *p, long done0);
/* Draws "label [#####.....] done/total unit  elapsed  eta T" (the ETA from the rate since progress_start). */
void progress_draw(Progress *p, const char *label, long done, long total, const char *unit);
/* Erases the line (nothing when none is shown). */
void progress_clear(Progress *p);
#endif
