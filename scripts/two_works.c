/* two_works.c -- lenet5 PGD-10 on 2048 synthetic images, run five ways in one process: one 2-thread Work
 * (batch 128 and 256), one 1-thread Work (batch 64, and alone at 128), and two 1-thread Works side by side
 * in two threads (own models, then one shared model). It found that a 2-thread Work lost a third of its
 * speed where two 1-thread Works lost nothing (docs/performance.md, "Third round"). Not part of the build:
 *
 *   make concord
 *   cc -O2 -I. -o /tmp/two_works scripts/two_works.c \
 *      $(for c in attacks/[a-z]*.c datasets/[a-z]*.c harness/[a-z]*.c harness/layers/[a-z]*.c results/[a-z]*.c \
 *        rules/[a-z]*.c; do \
 *        echo build/release/${c%.c}.o; done) \
 *      -lxsmm -lpthread -lrt -ldl -lm -L/usr/lib/x86_64-linux-gnu/openblas-pthread/ -lopenblas \
 *      -lpng16 -lsqlite3 -lz -linih -ldnnl -lgomp
 *   env -u OPENBLAS_CORETYPE /tmp/two_works
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "attacks/attack.h"
#include "datasets/dataset.h"
#include "harness/gemm.h"
#include "rules/build.h"

typedef struct { Model *m; const Dataset *d; int threads, batch; double images_per_s; } Job;

/* PGD-10 (Linf eps 0.1, alpha 0.01) over the whole data set through one Work of job->threads threads */
static void *run(void *arg) {
    Job *j = arg;
    const int n = j->batch, D = dataset_dim(j->d);
    if (j->threads > 1) blas_set_threads(j->threads); /* a Work takes its thread count from OpenBLAS's */
    Work *w = work_create(j->m, n);
    if (j->threads > 1) blas_set_threads(1);
    AttackScratch *s = attack_scratch_create(j->m, n);
    AttackParams p;
    attack_params_default(&p);
    p.kind = ATK_PGD;
    attack_set_eps(&p, "0.1");
    attack_set_alpha(&p, "0.01");
    p.steps = 10;
    float *xa = xmalloc(sizeof(float) * (size_t)n * D);
    AttackExample *ex = xmalloc(sizeof(AttackExample) * (size_t)n);
    double t0 = now_seconds();
    int done = 0;
    for (; done + n <= j->d->n; done += n) attack_pgd(j->m, w, j->d->x + (long)done * D, j->d->y + done, n, &p, xa, ex, s);
    j->images_per_s = done / (now_seconds() - t0);
    attack_scratch_free(s);
    work_free(w);
    free(xa);
    free(ex);
    return NULL;
}
static void alone(const char *what, Job j) {
    run(&j);
    printf("%-44s %6.0f images/s\n", what, j.images_per_s);
}
static void side_by_side(const char *what, Job a, Job b) {
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run, &a);
    pthread_create(&tb, NULL, run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    printf("%-44s %6.0f + %.0f images/s\n", what, a.images_per_s, b.images_per_s);
}
static Model *lenet5(void) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, 28, 28, 10);
    RuleOpts ro;
    rule_opts_default(&ro);
    return model_create(&s, NULL, &ro, 1);
}

int main(void) {
    blas_set_threads(1);
    Dataset d;
    if (dataset_open("synthetic:2048:1x28x28:10", NULL, SPLIT_TEST, &d)) return 1;
    Model *a = lenet5(), *b = lenet5();
    for (int rep = 0; rep < 2; rep++) {
        alone("one 2-thread Work, batch 128", (Job){a, &d, 2, 128, 0});
        alone("one 2-thread Work, batch 256", (Job){a, &d, 2, 256, 0});
        alone("one 1-thread Work, batch 64", (Job){a, &d, 1, 64, 0});
        alone("one 1-thread Work, batch 128", (Job){a, &d, 1, 128, 0});
        side_by_side("two 1-thread Works side by side, own models", (Job){a, &d, 1, 128, 0}, (Job){b, &d, 1, 128, 0});
        side_by_side("two 1-thread Works side by side, one model", (Job){a, &d, 1, 128, 0}, (Job){a, &d, 1, 128, 0});
    }
    model_free(a);
    model_free(b);
    dataset_close(&d);
    return 0;
}
