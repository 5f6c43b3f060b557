/* two_works.c -- lenet5 PGD-10 on 2048 synthetic images: one 2-thread Work
 * against two 1-thread Works in two threads of one process
 * (docs/performance.md, "Third round"). Not part of the build:
 *
 *   make concord && cc -O2 -I. -o /tmp/two_works scripts/two_works.c \
 *     $(for c in attacks/*.c datasets/*.c harness/*.c harness/layers/*.c
 * results/*.c rules/*.c; do \
 *       echo build/release/${c%.c}.o; done) -lxsmm -lpthread -lrt -ldl -lm \
 *     -L/usr/lib/x86_64-linux-gnu/openblas-pthread/ -lopenblas -lpng16
 * -lsqlite3 -lz -linih -ldnnl -lgomp env -u OPENBLAS_CORETYPE /tmp/two_works
 */
#include "attacks/attack.h"
#include "datasets/dataset.h"
#include "harness/gemm.h"
#include "rules/build.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct {
  Model *m;
  Dataset *d;
  double secs;
  int n;
  int T;
  int nb;
} Job;
static void *run(void *a) {
  Job *j = a;
  const int n = j->nb ? j->nb : 128, D = 784;
  blas_set_threads(j->T ? j->T : 1);
  Work *w = work_create(j->m, n);
  blas_set_threads(1);
  AttackScratch *s = attack_scratch_create(j->m, n);
  AttackParams p;
  attack_params_default(&p);
  p.kind = ATK_PGD;
  attack_set_eps(&p, "0.1");
  attack_set_alpha(&p, "0.01");
  p.steps = 10;
  float *xa = malloc(sizeof(float) * n * D);
  AttackExample ex[512];
  double t0 = now_seconds();
  for (int b = 0; b + n <= j->d->n; b += n)
    attack_pgd(j->m, w, j->d->x + (long)b * D, j->d->y + b, n, &p, xa, ex, s);
  j->secs = now_seconds() - t0;
  j->n = j->d->n / n * n;
  attack_scratch_free(s);
  work_free(w);
  free(xa);
  return NULL;
}
static Model *mk(void) {
  ModelSpec s;
  model_spec_default(&s, "lenet5", 1, 28, 28, 10);
  RuleOpts ro;
  rule_opts_default(&ro);
  return model_create(&s, NULL, &ro, 1);
}
int main(void) {
  blas_set_threads(1);
  Dataset d;
  if (dataset_open("synthetic:2048:1x28x28:10", NULL, SPLIT_TEST, &d))
    return 1;
  Model *a = mk(), *b = mk();
  Job j1 = {a, &d}, j2 = {b, &d};
  for (int rep = 0; rep < 2; rep++) {
    Job k2 = {a, &d, 0, 0, 2, 128};
    run(&k2);
    printf("one 2-thread Work, batch 128: %.0f img/s\n", k2.n / k2.secs);
    Job k3 = {a, &d, 0, 0, 2, 256};
    run(&k3);
    printf("one 2-thread Work, batch 256: %.0f img/s\n", k3.n / k3.secs);
    Job k4 = {a, &d, 0, 0, 1, 64};
    run(&k4);
    printf("one 1-thread Work, batch 64: %.0f img/s\n", k4.n / k4.secs);
    run(&j1);
    printf("alone: %.0f img/s\n", j1.n / j1.secs);
    pthread_t t1, t2;
    pthread_create(&t1, 0, run, &j1);
    pthread_create(&t2, 0, run, &j2);
    pthread_join(t1, 0);
    pthread_join(t2, 0);
    printf("two threads, own models: %.0f + %.0f\n", j1.n / j1.secs,
           j2.n / j2.secs);
    Job j3 = {a, &d};
    pthread_create(&t1, 0, run, &j1);
    pthread_create(&t2, 0, run, &j3);
    pthread_join(t1, 0);
    pthread_join(t2, 0);
    printf("two threads, one model: %.0f + %.0f\n", j1.n / j1.secs,
           j3.n / j3.secs);
  }
  return 0;
}
