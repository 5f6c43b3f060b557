/* threads.c -- the thread pool a Work splits its batches over. See threads.h. */
#include "harness/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* Hand-offs spin before they sleep. A pass runs several regions (pool_run) per batch, a few hundred
 * microseconds each on small models; waking a sleeping thread through a condition variable costs tens
 * of microseconds in a VM (the wake is an interrupt to the other CPU: perf showed 12% of a 2-thread
 * LeNet-5 epoch in the kernel's interrupt path). So a worker waiting for the next region, and the caller
 * waiting for the workers, poll for about SPIN_NS first, and sleep only when nothing comes. A hand-off
 * that needs no sleep takes no lock either: the region is published by a counter, and the mutex and
 * condition variables are touched only by a thread that goes to sleep and by whoever must wake it
 * (before, every region locked the mutex on both sides, and the worker often found it held: a 2-thread
 * LeNet-5 PGD run made 1350 futex calls, now 807; `perf stat -e syscalls:sys_enter_futex`). */
#define SPIN_NS 200000L

struct Pool {
    int T;
    pthread_t th[POOL_MAX];
    pthread_mutex_t mu; /* only for sleeping and waking: a hand-off between polling threads takes no lock */
    pthread_cond_t go, done;
    TaskFn fn;
    void *arg;
    unsigned gen;  /* the region's number: bumped (release) after fn and arg are set */
    int pending;   /* workers still in the region */
    int quit;      /* written under mu, read atomically */
    int sleepers;  /* workers asleep on go, or about to be (changed under mu) */
    int waiting;   /* the caller asleep on done, or about to be (changed under mu) */
    /* pool_sync: threads arrived at the current barrier, and the barrier's number (bumped by the last) */
    int arrived __attribute__((aligned(64)));
    unsigned bgen;
    /* the region profile: set by the caller before a region is published, busy[t] written by thread t */
    int prof __attribute__((aligned(64)));
    double busy[POOL_MAX];
};

/* ---- the region profile (threads.h); its table changes under prof_mu, once per region, only while on */
#define PROF_SITES 64
static int g_prof_on;
static pthread_mutex_t prof_mu = PTHREAD_MUTEX_INITIALIZER;
static RegionProfile g_prof[PROF_SITES];
static int g_prof_n;

void pool_profile(int on) {
    pthread_mutex_lock(&prof_mu);
    if (on) { /* turning it on clears the table; turning it off keeps it for pool_profile_get */
        memset(g_prof, 0, sizeof g_prof);
        g_prof_n = 0;
    }
    __atomic_store_n(&g_prof_on, on, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&prof_mu);
}
int pool_profile_get(RegionProfile *out, int max) {
    pthread_mutex_lock(&prof_mu);
    const int n = g_prof_n;
    for (int i = 0; i < n && i < max; i++) out[i] = g_prof[i];
    pthread_mutex_unlock(&prof_mu);
    return n;
}
static void prof_add(const char *site, double wall, const double *busy, int T) {
    pthread_mutex_lock(&prof_mu);
    int i = 0;
    while (i < g_prof_n && strcmp(g_prof[i].site, site) != 0) i++;
    if (i == g_prof_n && i < PROF_SITES) g_prof[g_prof_n++].site = site;
    if (i < g_prof_n) {
        RegionProfile *r = &g_prof[i];
        r->calls++;
        r->wall_s += wall;
        if (T > r->threads) r->threads = T;
        for (int t = 0; t < T; t++) r->thread_s[t] += busy[t];
    }
    pthread_mutex_unlock(&prof_mu);
}

typedef struct { struct Pool *p; int t; } PoolArg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* poll ready(p, seen) for up to SPIN_NS; returns whether it became true (else the caller sleeps) */
static int poll_for(int (*ready)(struct Pool *, unsigned), struct Pool *p, unsigned seen) {
    const double t0 = now_seconds();
    for (long i = 1; !ready(p, seen); i++) {
        cpu_relax();
        if ((i & 255) == 0 && now_seconds() - t0 > SPIN_NS * 1e-9) return ready(p, seen);
    }
    return 1;
}
static int region_posted(struct Pool *p, unsigned seen) { /* a worker's wait: a new region, or quit */
    return __atomic_load_n(&p->gen, __ATOMIC_SEQ_CST) != seen || __atomic_load_n(&p->quit, __ATOMIC_SEQ_CST);
}
static int workers_done(struct Pool *p, unsigned seen) { /* the caller's wait */
    return __atomic_load_n(&p->pending, __ATOMIC_SEQ_CST) == 0;
}

/* Sleeping without lost wake-ups: a sleeper announces itself (sleepers / waiting, sequentially
 * consistent) and then re-checks its condition under mu; the other side publishes its change
 * (sequentially consistent) and then reads the announcement, taking mu to wake only when it is set.
 * One of the two sees the other's write; the waker's lock waits until the sleeper is inside cond_wait. */
static void *pool_main(void *a) {
    struct Pool *p = ((PoolArg *)a)->p;
    int t = ((PoolArg *)a)->t;
    free(a);
    unsigned seen = 0;
    for (;;) {
        if (!poll_for(region_posted, p, seen)) {
            pthread_mutex_lock(&p->mu);
            __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
            while (!region_posted(p, seen)) pthread_cond_wait(&p->go, &p->mu);
            __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&p->mu);
        }
        if (__atomic_load_n(&p->quit, __ATOMIC_SEQ_CST)) return NULL;
        seen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE); /* fn and arg were set before it */
        if (p->prof) {
            const double t0 = now_seconds();
            p->fn(p->arg, t, p->T);
            p->busy[t] = now_seconds() - t0;
        } else
            p->fn(p->arg, t, p->T);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_SEQ_CST) == 0 && __atomic_load_n(&p->waiting, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&p->mu);
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
    __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->T; t++) pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

static void run_region(struct Pool *p, TaskFn fn, void *arg);
void pool_run_at(struct Pool *p, TaskFn fn, void *arg, const char *site) {
    if (!__atomic_load_n(&g_prof_on, __ATOMIC_RELAXED)) {
        if (p) {
            if (p->prof) p->prof = 0; /* written only when it changes: the workers read its line every region */
            run_region(p, fn, arg);
        }
        else fn(arg, 0, 1);
        return;
    }
    const double t0 = now_seconds();
    if (p) {
        p->prof = 1;
        run_region(p, fn, arg); /* every worker's busy[t] is visible: it wrote it before leaving pending */
        prof_add(site, now_seconds() - t0, p->busy, p->T);
    } else {
        fn(arg, 0, 1);
        const double w = now_seconds() - t0;
        prof_add(site, w, &w, 1);
    }
}

static void run_region(struct Pool *p, TaskFn fn, void *arg) {
    /* the workers of the previous region have all finished it (pending was 0) and read fn/arg before */
    p->fn = fn;
    p->arg = arg;
    __atomic_store_n(&p->pending, p->T - 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_SEQ_CST); /* publishes fn, arg, pending */
    if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    if (p->prof) {
        const double t0 = now_seconds();
        fn(arg, 0, p->T);
        p->busy[0] = now_seconds() - t0;
    } else
        fn(arg, 0, p->T);
    if (poll_for(workers_done, p, 0)) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->waiting, 1, __ATOMIC_SEQ_CST);
    while (!workers_done(p, 0)) pthread_cond_wait(&p->done, &p->mu);
    __atomic_store_n(&p->waiting, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->mu);
}

/* A barrier inside a region: every thread of the region is running it, so a waiter spins (no lock, no
 * sleep); past SPIN_NS it yields the CPU between polls, for a VM whose other vCPU was taken away. The
 * barrier's number is read before arriving: it can only move once this thread has arrived. */
void pool_sync(struct Pool *p) {
    if (!p || p->T == 1) return;
    const unsigned g = __atomic_load_n(&p->bgen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&p->arrived, 1, __ATOMIC_ACQ_REL) == p->T) {
        __atomic_store_n(&p->arrived, 0, __ATOMIC_RELAXED);  /* before the release below: no one arrives sooner */
        __atomic_store_n(&p->bgen, g + 1, __ATOMIC_RELEASE); /* publishes every thread's writes before it */
        return;
    }
    const double t0 = now_seconds();
    for (long i = 1; __atomic_load_n(&p->bgen, __ATOMIC_ACQUIRE) == g; i++) {
        cpu_relax();
        if ((i & 255) == 0 && now_seconds() - t0 > SPIN_NS * 1e-9) sched_yield();
    }
}
