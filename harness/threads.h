/* threads.h -- the thread pool a Work splits its batches over (work.c creates it, pass.c runs on it).
 *
 * Parallelism: a Work splits every batch across `threads` pthreads (the OpenBLAS thread count when
 * the Work was created, i.e. `--threads`), and OpenBLAS itself runs single-threaded during a pass, so
 * there is never a second pool competing for the cores. Samples are independent in every layer but
 * batch-norm in any mode and dropout's forward in training (its mask is one sequential random stream):
 * a run of sample-local layers executes as ONE parallel region (each thread carries its own samples
 * through all of them, no barrier in between); batch-norm runs between regions, each thread on its own
 * samples with barriers inside (pool_sync), and dropout's forward serially. Weight gradients: thread 0
 * writes m->grads, thread t > 0 its own partial
 * block, summed after the pass (so with several threads the summation order over samples differs
 * from the one-thread order: results agree to rounding, not bitwise; tests run with one thread). In a
 * training pass a linear layer at least as wide as the batch runs over the whole batch instead, each
 * thread on its own output features (layers/linear.c): its weight gradient has no partials. */
#ifndef CONCORD_THREADS_H
#define CONCORD_THREADS_H
#include "harness/core.h"

#define POOL_MAX 16
typedef void (*TaskFn)(void *arg, int t, int T);
struct Pool *pool_create(int T);                   /* T threads in all (T - 1 started), 1 <= T <= POOL_MAX */
void pool_free(struct Pool *p);                    /* NULL: nothing */
/* fn(arg, t, T) for t = 0..T-1, the caller being thread 0; returns when all are done. p NULL: fn(arg, 0, 1).
   site names the region in the profile below; pool_run passes the task function's name. */
void pool_run_at(struct Pool *p, TaskFn fn, void *arg, const char *site);
#define pool_run(p, fn, arg) pool_run_at((p), (fn), (arg), #fn)
/* inside a region run by pool_run: waits until all T threads have called it; every write made before it
   by any thread is then visible to all (batch-norm's per-thread partial sums). p NULL: nothing. */
void pool_sync(struct Pool *p);

/* Region profile, a diagnostic (`concord bench --regions`): while on, every region (pool_run call) adds, to
   its site's line, its wall time and each thread's time inside fn (a 1-thread run, p NULL, counts as
   thread 0). What a region's wall time spends beyond its slowest thread is hand-off; what the slowest
   thread spends beyond the others is imbalance. Off: one branch per region. pool_profile(1) also clears
   the table. pool_profile_get fills up to max sites (in first-seen order) and returns how many there are. */
typedef struct { const char *site; long calls; double wall_s, thread_s[POOL_MAX]; int threads; } RegionProfile;
void pool_profile(int on);
int pool_profile_get(RegionProfile *out, int max);
#endif
