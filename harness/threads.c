/* threads.c -- the thread pool a Work splits its batches over. See threads.h. */
#include "harness/threads.h"

#include <pthread.h>
#include <stdlib.h>

/* Hand-offs spin before they sleep. A pass runs several regions (pool_run) per batch, a few hundred
 * microseconds each on small models; waking a sleeping thread through a condition variable costs tens
 * of microseconds in a VM (the wake is an interrupt to the other CPU: perf showed 12% of a 2-thread
 * LeNet-5 epoch in the kernel's interrupt path). So a worker waiting for the next region, and the caller
 * waiting for the workers, poll for about SPIN_NS first, and sleep only when nothing comes. */
#define SPIN_NS 200000L

struct Pool {
    int T;
    pthread_t th[POOL_MAX];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    TaskFn fn;
    void *arg;
    unsigned gen;     /* written under mu; polled atomically */
    int pending, quit; /* pending: atomic; quit: under mu, polled atomically */
};

typedef struct { struct Pool *p; int t; } PoolArg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* poll ready(p, seen) for up to SPIN_NS; the caller then sleeps on its condition variable if need be */
static void poll_for(int (*ready)(struct Pool *, unsigned), struct Pool *p, unsigned seen) {
    const double t0 = now_seconds();
    for (long i = 1; !ready(p, seen); i++) {
        cpu_relax();
        if ((i & 255) == 0 && now_seconds() - t0 > SPIN_NS * 1e-9) return;
    }
}
static int region_posted(struct Pool *p, unsigned seen) { /* a worker's wait: a new region, or quit */
    return __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != seen || __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE);
}
static int workers_done(struct Pool *p, unsigned seen) { /* the caller's wait */
    return __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) == 0;
}

static void *pool_main(void *a) {
    struct Pool *p = ((PoolArg *)a)->p;
    int t = ((PoolArg *)a)->t;
    free(a);
    unsigned seen = 0;
    for (;;) {
        poll_for(region_posted, p, seen);
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) { pthread_mutex_unlock(&p->mu); return NULL; }
        seen = p->gen;
        TaskFn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, t, p->T);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&p->mu); /* the caller checks pending under mu before it sleeps */
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
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
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
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
    __atomic_store_n(&p->pending, p->T - 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->gen, p->gen + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->T);
    poll_for(workers_done, p, 0);
    pthread_mutex_lock(&p->mu);
    while (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
