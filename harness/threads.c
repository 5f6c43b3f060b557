/* threads.c -- the thread pool a Work splits its batches over. See threads.h. */
#include "harness/threads.h"

#include <pthread.h>
#include <stdlib.h>

struct Pool {
    int T;
    pthread_t th[POOL_MAX];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    TaskFn fn;
    void *arg;
    unsigned gen;
    int pending, quit;
};

typedef struct { struct Pool *p; int t; } PoolArg;

static void *pool_main(void *a) {
    struct Pool *p = ((PoolArg *)a)->p;
    int t = ((PoolArg *)a)->t;
    free(a);
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) { pthread_mutex_unlock(&p->mu); return NULL; }
        seen = p->gen;
        TaskFn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, t, p->T);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

struct Pool *pool_create(int T) {
    CHECK(T >= 1 && T <= POOL_MAX);
    struct Pool *p = xcalloc(1, sizeof *p);
    p->T = T;
    CHECK(pthread_mutex_init(&p->mu, NULL) == 0);
    CHECK(pthread_cond_init(&p->go, NULL) == 0 && pthread_cond_init(&p->done, NULL) == 0);
    for (int t = 1; t < T; t++) {
        PoolArg *a = xmalloc(sizeof *a);
        a->p = p;
        a->t = t;
        CHECK(pthread_create(&p->th[t], NULL, pool_main, a) == 0);
    }
    return p;
}

void pool_free(struct Pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->T; t++) pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

void pool_run(struct Pool *p, TaskFn fn, void *arg) {
    if (!p) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->T - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->T);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
