/* plot_robust.h -- the robust-accuracy figures (plot_robust.c), called by plot_all. Private to results/. */
#ifndef CONCORD_PLOT_ROBUST_H
#define CONCORD_PLOT_ROBUST_H
#include "results/figure.h"

/* robust accuracy vs eps, one figure per (dataset family, model): 0, or -1 with err_set */
int fig_robust(Figs *fs);
/* the verdict figure (verdict_compute): 0, or -1 with err_set */
int fig_verdict(Figs *fs);
#endif
